/**
 * @module store/postgres/control
 * The PostgreSQL adapter of the control-state port: accounts, projects, keys, the environments
 * acted in and instance settings shared by every Alto process on one database, so a key made or
 * revoked through one process is seen by the next request on any other. Names and ids use the
 * "C" collation, so listings come in the same order as from SQLite. A project's keys and
 * recorded environments go with it through ON DELETE CASCADE, as in the embedded adapter.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { errors } from '../../kit/errors.js';
import type { AccountRecord, ControlStore, KeyRecord, KeyStatus, ProjectRecord, ResolvedKey } from '../control.js';
import { migratePostgres } from './migrate.js';
import { postgresErrorCode } from './transaction.js';

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_accounts (
     id TEXT COLLATE "C" PRIMARY KEY,
     email TEXT UNIQUE,
     password_hash TEXT,
     email_verified BOOLEAN NOT NULL DEFAULT false,
     created_at BIGINT NOT NULL);
   CREATE TABLE IF NOT EXISTS alto_projects (
     id TEXT COLLATE "C" PRIMARY KEY,
     account_id TEXT COLLATE "C" NOT NULL REFERENCES alto_accounts(id) ON DELETE CASCADE,
     name TEXT COLLATE "C" NOT NULL,
     created_at BIGINT NOT NULL,
     UNIQUE (account_id, name));
   CREATE TABLE IF NOT EXISTS alto_api_keys (
     id TEXT COLLATE "C" PRIMARY KEY,
     account_id TEXT COLLATE "C" NOT NULL REFERENCES alto_accounts(id) ON DELETE CASCADE,
     project_id TEXT COLLATE "C" NOT NULL REFERENCES alto_projects(id) ON DELETE CASCADE,
     environment TEXT NOT NULL,
     scopes TEXT NOT NULL,
     description TEXT NOT NULL,
     role TEXT NOT NULL,
     status TEXT NOT NULL,
     prefix TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     created_at BIGINT NOT NULL);
   CREATE INDEX IF NOT EXISTS alto_api_keys_project ON alto_api_keys(project_id, created_at);
   CREATE INDEX IF NOT EXISTS alto_api_keys_account ON alto_api_keys(account_id);
   CREATE TABLE IF NOT EXISTS alto_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // Environments an admin or owner key acted in (X-Alto-Environment): they go with their project.
  `CREATE TABLE IF NOT EXISTS alto_project_environments (
     project_id TEXT COLLATE "C" NOT NULL REFERENCES alto_projects(id) ON DELETE CASCADE,
     environment TEXT COLLATE "C" NOT NULL,
     first_used BIGINT NOT NULL,
     PRIMARY KEY (project_id, environment));`,
];

interface AccountRow {
  id: string;
  email: string | null;
  password_hash: string | null;
  email_verified: boolean;
  /** BIGINT arrives as a string from pg. */
  created_at: string;
}

interface ProjectRow {
  id: string;
  account_id: string;
  name: string;
  created_at: string;
}

interface KeyRow {
  id: string;
  account_id: string;
  project_id: string;
  environment: string;
  scopes: string;
  description: string;
  role: KeyRecord['role'];
  status: KeyStatus;
  prefix: string;
  created_at: string;
  project_name: string;
}

const KEY_COLUMNS = `k.id, k.account_id, k.project_id, k.environment, k.scopes, k.description, k.role,
  k.status, k.prefix, k.created_at, p.name AS project_name`;

function accountFromRow(row: AccountRow): AccountRecord {
  return {
    id: row.id,
    email: row.email,
    passwordHash: row.password_hash,
    emailVerified: row.email_verified,
    createdAt: Number(row.created_at),
  };
}

function projectFromRow(row: ProjectRow): ProjectRecord {
  return { id: row.id, accountId: row.account_id, name: row.name, createdAt: Number(row.created_at) };
}

function keyFromRow(row: KeyRow): KeyRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    projectId: row.project_id,
    environment: row.environment,
    scopes: JSON.parse(row.scopes) as string[],
    description: row.description,
    role: row.role,
    status: row.status,
    prefix: row.prefix,
    createdAt: Number(row.created_at),
  };
}

function resolvedFromRow(row: KeyRow): ResolvedKey {
  return { ...keyFromRow(row), projectName: row.project_name };
}

const UNIQUE_VIOLATION = '23505';
/** Notified, in the transaction that makes it, of every change to keys. */
const KEYS_CHANNEL = 'alto_keys';
/** How long a change to keys waits for its own notification to come back before returning. */
const OWN_NOTIFICATION_WAIT_MS = 2_000;
/** How soon a lost LISTEN connection is opened again. */
const RELISTEN_MS = 1_000;

export class PostgresControlStore implements ControlStore {
  readonly kind = 'postgres';
  private generation = 0;
  /**
   * The connection LISTENing on KEYS_CHANNEL, of its own beside the pool so it never takes a
   * pooled connection from the queries; while there is none, nothing may be cached.
   */
  private listener: pg.Client | undefined;
  /** Changes made here, by token, waiting for their notification. */
  private readonly awaited = new Map<string, () => void>();
  private closed = false;

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresControlStore> {
    await migratePostgres(pool, 'control', MIGRATIONS);
    const store = new PostgresControlStore(pool);
    await store.listen();
    return store;
  }

  keyGeneration(): number {
    // Not listening, a change made by another process would go unseen: a new generation for
    // every call, so the cache holds nothing until the connection is back.
    if (!this.listener) this.generation++;
    return this.generation;
  }

  private async listen(): Promise<void> {
    const client = new pg.Client(this.pool.options);
    const lost = () => {
      if (this.listener !== client) return;
      this.listener = undefined;
      void client.end().catch(() => undefined);
      this.relistenLater();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (message) => {
      if (message.channel !== KEYS_CHANNEL) return;
      this.generation++;
      if (message.payload) this.awaited.get(message.payload)?.();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${KEYS_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.generation++;
  }

  private relistenLater(): void {
    if (this.closed) return;
    setTimeout(() => void this.listen().catch(() => this.relistenLater()), RELISTEN_MS).unref();
  }

  /**
   * Runs `statement` (an UPDATE or DELETE of keys, or of projects with their keys) and notifies
   * every process in the same transaction, then waits (briefly) until this process's own
   * listener has the notification: by then the other processes' listeners have it too.
   */
  private async changeKeys(statement: string, values: unknown[]): Promise<void> {
    const token = randomUUID();
    let arrived: Promise<void> = Promise.resolve();
    if (this.listener) {
      arrived = new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, OWN_NOTIFICATION_WAIT_MS);
        this.awaited.set(token, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    try {
      await this.pool.query(`WITH changed AS (${statement} RETURNING 1) SELECT pg_notify('${KEYS_CHANNEL}', $${values.length + 1})`, [...values, token]);
      this.generation++;
      await arrived;
    } finally {
      this.awaited.get(token)?.();
      this.awaited.delete(token);
    }
  }

  async createAccount(account: AccountRecord): Promise<void> {
    try {
      await this.pool.query(
        'INSERT INTO alto_accounts (id, email, password_hash, email_verified, created_at) VALUES ($1, $2, $3, $4, $5)',
        [account.id, account.email, account.passwordHash, account.emailVerified, account.createdAt],
      );
    } catch (error) {
      if (postgresErrorCode(error) === UNIQUE_VIOLATION) throw errors.conflict(`an account with email "${account.email}" already exists`);
      throw error;
    }
  }

  async getAccount(id: string): Promise<AccountRecord | undefined> {
    const { rows } = await this.pool.query<AccountRow>('SELECT * FROM alto_accounts WHERE id = $1', [id]);
    return rows[0] && accountFromRow(rows[0]);
  }

  async findAccountByEmail(email: string): Promise<AccountRecord | undefined> {
    const { rows } = await this.pool.query<AccountRow>('SELECT * FROM alto_accounts WHERE email = $1', [email]);
    return rows[0] && accountFromRow(rows[0]);
  }

  async markEmailVerified(accountId: string): Promise<void> {
    await this.pool.query('UPDATE alto_accounts SET email_verified = true WHERE id = $1', [accountId]);
  }

  async createProject(project: ProjectRecord): Promise<void> {
    try {
      await this.pool.query('INSERT INTO alto_projects (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)', [
        project.id,
        project.accountId,
        project.name,
        project.createdAt,
      ]);
    } catch (error) {
      if (postgresErrorCode(error) === UNIQUE_VIOLATION) throw errors.conflict(`a project named "${project.name}" already exists`);
      throw error;
    }
  }

  async findProject(accountId: string, name: string): Promise<ProjectRecord | undefined> {
    const { rows } = await this.pool.query<ProjectRow>('SELECT * FROM alto_projects WHERE account_id = $1 AND name = $2', [
      accountId,
      name,
    ]);
    return rows[0] && projectFromRow(rows[0]);
  }

  async listProjects(accountId: string | undefined): Promise<ProjectRecord[]> {
    const { rows } =
      accountId === undefined
        ? await this.pool.query<ProjectRow>('SELECT * FROM alto_projects ORDER BY created_at, name')
        : await this.pool.query<ProjectRow>('SELECT * FROM alto_projects WHERE account_id = $1 ORDER BY created_at, name', [
            accountId,
          ]);
    return rows.map(projectFromRow);
  }

  async deleteProject(projectId: string): Promise<void> {
    // Keys and recorded environments go with the project through ON DELETE CASCADE, inside the same statement.
    await this.changeKeys('DELETE FROM alto_projects WHERE id = $1', [projectId]);
  }

  async noteEnvironment(projectId: string, environment: string): Promise<void> {
    await this.pool.query(
      'INSERT INTO alto_project_environments (project_id, environment, first_used) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      [projectId, environment, Date.now()],
    );
  }

  async listEnvironments(projectId: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ environment: string }>(
      'SELECT environment FROM alto_project_environments WHERE project_id = $1 ORDER BY environment',
      [projectId],
    );
    return rows.map((row) => row.environment);
  }

  async insertKey(key: KeyRecord, hash: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_api_keys
         (id, account_id, project_id, environment, scopes, description, role, status, prefix, hash, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        key.id,
        key.accountId,
        key.projectId,
        key.environment,
        JSON.stringify(key.scopes),
        key.description,
        key.role,
        key.status,
        key.prefix,
        hash,
        key.createdAt,
      ],
    );
  }

  async findKeyByHash(hash: string): Promise<ResolvedKey | undefined> {
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM alto_api_keys k JOIN alto_projects p ON p.id = k.project_id WHERE k.hash = $1`,
      [hash],
    );
    return rows[0] && resolvedFromRow(rows[0]);
  }

  async getKey(id: string): Promise<ResolvedKey | undefined> {
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM alto_api_keys k JOIN alto_projects p ON p.id = k.project_id WHERE k.id = $1`,
      [id],
    );
    return rows[0] && resolvedFromRow(rows[0]);
  }

  async listKeys(projectId: string): Promise<KeyRecord[]> {
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM alto_api_keys k JOIN alto_projects p ON p.id = k.project_id
       WHERE k.project_id = $1 ORDER BY k.created_at DESC, k.id`,
      [projectId],
    );
    return rows.map(keyFromRow);
  }

  async setKeyStatus(id: string, status: KeyStatus): Promise<void> {
    await this.changeKeys('UPDATE alto_api_keys SET status = $1 WHERE id = $2', [status, id]);
  }

  async getSetting(name: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ value: string }>('SELECT value FROM alto_settings WHERE name = $1', [name]);
    return rows[0]?.value;
  }

  async setSetting(name: string, value: string): Promise<void> {
    await this.pool.query(
      'INSERT INTO alto_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
      [name, value],
    );
  }

  async claimSetting(name: string, value: string): Promise<string> {
    // One statement: the insert either lands or finds the row another process committed first.
    // DO UPDATE with the same value (rather than DO NOTHING) makes RETURNING give the row in both cases.
    const { rows } = await this.pool.query<{ value: string }>(
      `INSERT INTO alto_settings (name, value) VALUES ($1, $2)
       ON CONFLICT (name) DO UPDATE SET value = alto_settings.value RETURNING value`,
      [name, value],
    );
    return rows[0].value;
  }

  async exclusively<T>(name: string, work: () => Promise<T>): Promise<T> {
    // A session-level advisory lock, held by one pooled connection while `work` runs on others;
    // PostgreSQL releases it if this process dies.
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [`alto.lock.${name}`]);
      try {
        return await work();
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`alto.lock.${name}`]).catch((error: Error) => {
          broken = error; // a connection that could not unlock must not go back to the pool holding the lock
        });
      }
    } finally {
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    // The pool is shared with other adapters; `Stores.close()` ends it.
    this.closed = true;
    const client = this.listener;
    this.listener = undefined;
    await client?.end().catch(() => undefined);
  }
}
