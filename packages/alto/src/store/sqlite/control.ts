/**
 * @module store/sqlite/control
 * The embedded adapter of the control-state port: accounts, projects, keys and the environments
 * acted in, in SQLite.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { errors } from '../../kit/errors.js';
import type {
  AccountRecord,
  ControlStore,
  KeyRecord,
  KeyStatus,
  ProjectRecord,
  ResolvedKey,
} from '../control.js';
import { migrate, type SqliteDatabase } from './database.js';

/** How long a lock outlives a holder that died without releasing it. */
const LOCK_LEASE_MS = 30_000;
const LOCK_RETRY_MS = 20;

const MIGRATIONS = [
  `CREATE TABLE accounts (
     id TEXT PRIMARY KEY,
     email TEXT UNIQUE,
     password_hash TEXT,
     email_verified INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL);
   CREATE TABLE projects (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
     name TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     UNIQUE (account_id, name));
   CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
     project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
     environment TEXT NOT NULL,
     scopes TEXT NOT NULL,
     description TEXT NOT NULL,
     role TEXT NOT NULL,
     status TEXT NOT NULL,
     prefix TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     created_at INTEGER NOT NULL);
   CREATE INDEX api_keys_project ON api_keys(project_id, created_at);
   CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // The operator chose the text of ALTO_ADMIN_KEY: its first characters are part of a secret.
  `UPDATE api_keys SET prefix = '' WHERE description = 'admin key (ALTO_ADMIN_KEY)';`,
  // Environments an admin or owner key acted in (X-Alto-Environment): they go with their project.
  `CREATE TABLE project_environments (
     project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
     environment TEXT NOT NULL,
     first_used INTEGER NOT NULL,
     PRIMARY KEY (project_id, environment));`,
];

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
  created_at: number;
  project_name?: string;
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
    createdAt: row.created_at,
  };
}

function accountFromRow(row: { id: string; email: string | null; password_hash: string | null; email_verified: number; created_at: number }): AccountRecord {
  return {
    id: row.id,
    email: row.email,
    passwordHash: row.password_hash,
    emailVerified: row.email_verified === 1,
    createdAt: row.created_at,
  };
}

function projectFromRow(row: { id: string; account_id: string; name: string; created_at: number }): ProjectRecord {
  return { id: row.id, accountId: row.account_id, name: row.name, createdAt: row.created_at };
}

function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE';
}

export class SqliteControlStore implements ControlStore {
  readonly kind = 'sqlite';
  private readonly statements;
  private generation = 0;
  /**
   * Watches `<database>-keys`, which every handle on the file rewrites after it changes keys: the
   * other processes' signal, as a notification is on PostgreSQL. Without it (an in-memory
   * database, or a watch that failed) nothing may be cached.
   */
  private keysWatcher: FSWatcher | undefined;
  private readonly keysMarker: string | undefined;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'control', MIGRATIONS);
    if (!db.memory) {
      this.keysMarker = `${db.name}-keys`;
      if (!existsSync(this.keysMarker)) writeFileSync(this.keysMarker, '0\n', { mode: 0o600 });
      try {
        this.keysWatcher = watch(this.keysMarker, { persistent: false }, () => this.generation++);
        this.keysWatcher.on('error', () => {
          this.keysWatcher?.close();
          this.keysWatcher = undefined;
        });
      } catch {
        this.keysWatcher = undefined;
      }
    }
    const keyColumns = `k.id, k.account_id, k.project_id, k.environment, k.scopes, k.description, k.role,
      k.status, k.prefix, k.created_at, p.name AS project_name`;
    this.statements = {
      insertAccount: db.prepare(
        'INSERT INTO accounts (id, email, password_hash, email_verified, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      getAccount: db.prepare('SELECT * FROM accounts WHERE id = ?'),
      findAccountByEmail: db.prepare('SELECT * FROM accounts WHERE email = ?'),
      verifyEmail: db.prepare('UPDATE accounts SET email_verified = 1 WHERE id = ?'),
      insertProject: db.prepare('INSERT INTO projects (id, account_id, name, created_at) VALUES (?, ?, ?, ?)'),
      findProject: db.prepare('SELECT * FROM projects WHERE account_id = ? AND name = ?'),
      listProjects: db.prepare('SELECT * FROM projects WHERE account_id = ? ORDER BY created_at, name'),
      listAllProjects: db.prepare('SELECT * FROM projects ORDER BY created_at, name'),
      deleteProject: db.prepare('DELETE FROM projects WHERE id = ?'),
      noteEnvironment: db.prepare(
        'INSERT INTO project_environments (project_id, environment, first_used) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      listEnvironments: db.prepare('SELECT environment FROM project_environments WHERE project_id = ? ORDER BY environment'),
      insertKey: db.prepare(`INSERT INTO api_keys
        (id, account_id, project_id, environment, scopes, description, role, status, prefix, hash, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      findKeyByHash: db.prepare(
        `SELECT ${keyColumns} FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.hash = ?`,
      ),
      getKey: db.prepare(`SELECT ${keyColumns} FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.id = ?`),
      listKeys: db.prepare(
        `SELECT ${keyColumns} FROM api_keys k JOIN projects p ON p.id = k.project_id
         WHERE k.project_id = ? ORDER BY k.created_at DESC, k.id`,
      ),
      setKeyStatus: db.prepare('UPDATE api_keys SET status = ? WHERE id = ?'),
      getSetting: db.prepare('SELECT value FROM settings WHERE name = ?'),
      setSetting: db.prepare(
        'INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
      ),
      claimSetting: db.prepare('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING'),
      replaceLock: db.prepare('UPDATE settings SET value = ? WHERE name = ? AND value = ?'),
      releaseLock: db.prepare('DELETE FROM settings WHERE name = ? AND value = ?'),
    };
  }

  async createAccount(account: AccountRecord): Promise<void> {
    try {
      this.statements.insertAccount.run(
        account.id,
        account.email,
        account.passwordHash,
        account.emailVerified ? 1 : 0,
        account.createdAt,
      );
    } catch (error) {
      if (isUniqueViolation(error)) throw errors.conflict(`an account with email "${account.email}" already exists`);
      throw error;
    }
  }

  async getAccount(id: string): Promise<AccountRecord | undefined> {
    const row = this.statements.getAccount.get(id) as Parameters<typeof accountFromRow>[0] | undefined;
    return row && accountFromRow(row);
  }

  async findAccountByEmail(email: string): Promise<AccountRecord | undefined> {
    const row = this.statements.findAccountByEmail.get(email) as Parameters<typeof accountFromRow>[0] | undefined;
    return row && accountFromRow(row);
  }

  async markEmailVerified(accountId: string): Promise<void> {
    this.statements.verifyEmail.run(accountId);
  }

  async createProject(project: ProjectRecord): Promise<void> {
    try {
      this.statements.insertProject.run(project.id, project.accountId, project.name, project.createdAt);
    } catch (error) {
      if (isUniqueViolation(error)) throw errors.conflict(`a project named "${project.name}" already exists`);
      throw error;
    }
  }

  async findProject(accountId: string, name: string): Promise<ProjectRecord | undefined> {
    const row = this.statements.findProject.get(accountId, name) as Parameters<typeof projectFromRow>[0] | undefined;
    return row && projectFromRow(row);
  }

  async listProjects(accountId: string | undefined): Promise<ProjectRecord[]> {
    const rows = (accountId === undefined
      ? this.statements.listAllProjects.all()
      : this.statements.listProjects.all(accountId)) as Parameters<typeof projectFromRow>[0][];
    return rows.map(projectFromRow);
  }

  async deleteProject(projectId: string): Promise<void> {
    // Keys and recorded environments go with the project through ON DELETE CASCADE, inside the same statement.
    this.changeKeys(() => this.statements.deleteProject.run(projectId));
  }

  async noteEnvironment(projectId: string, environment: string): Promise<void> {
    this.statements.noteEnvironment.run(projectId, environment, Date.now());
  }

  async listEnvironments(projectId: string): Promise<string[]> {
    return (this.statements.listEnvironments.all(projectId) as { environment: string }[]).map((row) => row.environment);
  }

  async insertKey(key: KeyRecord, hash: string): Promise<void> {
    this.statements.insertKey.run(
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
    );
  }

  async findKeyByHash(hash: string): Promise<ResolvedKey | undefined> {
    const row = this.statements.findKeyByHash.get(hash) as KeyRow | undefined;
    return row && { ...keyFromRow(row), projectName: row.project_name ?? '' };
  }

  async getKey(id: string): Promise<ResolvedKey | undefined> {
    const row = this.statements.getKey.get(id) as KeyRow | undefined;
    return row && { ...keyFromRow(row), projectName: row.project_name ?? '' };
  }

  async listKeys(projectId: string): Promise<KeyRecord[]> {
    return (this.statements.listKeys.all(projectId) as KeyRow[]).map(keyFromRow);
  }

  async setKeyStatus(id: string, status: KeyStatus): Promise<void> {
    this.changeKeys(() => this.statements.setKeyStatus.run(status, id));
  }

  keyGeneration(): number {
    if (!this.keysWatcher) this.generation++;
    return this.generation;
  }

  /** Runs a change to keys, then tells this handle and every other on the file. */
  private changeKeys(change: () => void): void {
    change();
    this.generation++;
    if (this.keysMarker) writeFileSync(this.keysMarker, `${Date.now()}\n`);
  }

  async getSetting(name: string): Promise<string | undefined> {
    const row = this.statements.getSetting.get(name) as { value: string } | undefined;
    return row?.value;
  }

  async setSetting(name: string, value: string): Promise<void> {
    this.statements.setSetting.run(name, value);
  }

  async exclusively<T>(name: string, work: () => Promise<T>): Promise<T> {
    // A row in settings stands for the lock: inserted by the one who takes it, deleted when done.
    // Each statement is atomic across connections; a holder that died frees it when its lease ends.
    const setting = `lock.${name}`;
    const holder = `${randomUUID()} ${Date.now() + LOCK_LEASE_MS}`;
    for (;;) {
      const current = await this.claimSetting(setting, holder);
      if (current === holder) break;
      const expiresAt = Number(current.split(' ')[1]);
      if (!(expiresAt > Date.now()) && this.statements.replaceLock.run(holder, setting, current).changes === 1) break;
      await delay(LOCK_RETRY_MS);
    }
    try {
      return await work();
    } finally {
      this.statements.releaseLock.run(setting, holder);
    }
  }

  async claimSetting(name: string, value: string): Promise<string> {
    this.statements.claimSetting.run(name, value);
    return (this.statements.getSetting.get(name) as { value: string }).value;
  }

  async close(): Promise<void> {
    // The database handle is shared with other adapters; `Stores.close()` closes it.
    this.keysWatcher?.close();
  }
}
