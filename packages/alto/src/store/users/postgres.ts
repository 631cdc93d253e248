/**
 * @module store/users/postgres
 * The scale-out users adapter: the same tables in PostgreSQL, shared by several Alto replicas.
 * Uniqueness of id, email and username is the database's (unique indexes), so replicas racing
 * on one sign-up cannot both win; a violation is mapped back to the field that was taken.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import type {
  CreateUserOutcome,
  StoredSession,
  StoredTemplate,
  StoredToken,
  StoredUser,
  TokenPurpose,
  UpdateUserOutcome,
  UserChanges,
  UserStore,
} from './port.js';

const MIGRATIONS = [
  `CREATE TABLE alto_user_accounts (
     namespace TEXT NOT NULL,
     id TEXT NOT NULL,
     username TEXT NOT NULL,
     email TEXT NOT NULL,
     password_hash TEXT NOT NULL,
     verified BOOLEAN NOT NULL,
     verified_at BIGINT NOT NULL,
     profile JSONB NOT NULL,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     CONSTRAINT alto_user_accounts_id PRIMARY KEY (namespace, id));
   CREATE UNIQUE INDEX alto_user_accounts_email ON alto_user_accounts (namespace, email);
   CREATE UNIQUE INDEX alto_user_accounts_username ON alto_user_accounts (namespace, username) WHERE username <> '';
   CREATE INDEX alto_user_accounts_created ON alto_user_accounts (namespace, created_at, id);
   CREATE TABLE alto_user_sessions (
     namespace TEXT NOT NULL,
     id_hash TEXT NOT NULL,
     user_id TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     expires_at BIGINT NOT NULL,
     PRIMARY KEY (namespace, id_hash));
   CREATE INDEX alto_user_sessions_user ON alto_user_sessions (namespace, user_id);
   CREATE INDEX alto_user_sessions_expiry ON alto_user_sessions (expires_at);
   CREATE TABLE alto_user_tokens (
     namespace TEXT NOT NULL,
     hash TEXT NOT NULL,
     purpose TEXT NOT NULL,
     user_id TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     expires_at BIGINT NOT NULL,
     data JSONB NOT NULL,
     PRIMARY KEY (namespace, hash));
   CREATE INDEX alto_user_tokens_user ON alto_user_tokens (namespace, user_id, purpose);
   CREATE INDEX alto_user_tokens_expiry ON alto_user_tokens (expires_at);
   CREATE TABLE alto_user_attempts (namespace TEXT NOT NULL, subject TEXT NOT NULL, at BIGINT NOT NULL);
   CREATE INDEX alto_user_attempts_subject ON alto_user_attempts (namespace, subject, at);
   CREATE INDEX alto_user_attempts_at ON alto_user_attempts (at);
   CREATE TABLE alto_user_templates (
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     subject TEXT NOT NULL,
     text_body TEXT NOT NULL,
     html_body TEXT NOT NULL,
     from_name TEXT NOT NULL,
     updated_at BIGINT NOT NULL,
     PRIMARY KEY (namespace, name));`,
];

interface UserRow {
  id: string;
  username: string;
  email: string;
  password_hash: string;
  verified: boolean;
  verified_at: string;
  profile: Record<string, string>;
  created_at: string;
  updated_at: string;
}

interface TokenRow {
  hash: string;
  purpose: TokenPurpose;
  user_id: string;
  created_at: string;
  expires_at: string;
  data: Record<string, string>;
}

const USER_COLUMNS = 'id, username, email, password_hash, verified, verified_at, profile, created_at, updated_at';
const TABLES = ['alto_user_accounts', 'alto_user_sessions', 'alto_user_tokens', 'alto_user_attempts', 'alto_user_templates'];
const UNIQUE_VIOLATION = '23505';

function userOf(row: UserRow): StoredUser {
  return {
    id: row.id,
    username: row.username,
    email: row.email,
    passwordHash: row.password_hash,
    verified: row.verified,
    verifiedAt: Number(row.verified_at),
    profile: row.profile,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function tokenOf(row: TokenRow): StoredToken {
  return {
    hash: row.hash,
    purpose: row.purpose,
    userId: row.user_id,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    data: row.data,
  };
}

/** Which field a unique violation was about, from the constraint's name. */
function takenField(error: unknown): 'id_taken' | 'email_taken' | 'username_taken' | undefined {
  const failure = error as { code?: string; constraint?: string };
  if (failure.code !== UNIQUE_VIOLATION) return undefined;
  if (failure.constraint === 'alto_user_accounts_email') return 'email_taken';
  if (failure.constraint === 'alto_user_accounts_username') return 'username_taken';
  if (failure.constraint === 'alto_user_accounts_id') return 'id_taken';
  return undefined;
}

/** LIKE pattern matching text that starts with `prefix` literally. */
function startsWith(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (char) => `\\${char}`) + '%';
}

export class PostgresUserStore implements UserStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  static async open(pool: pg.Pool): Promise<PostgresUserStore> {
    await migratePostgres(pool, 'users', MIGRATIONS);
    return new PostgresUserStore(pool);
  }

  async createUser(namespace: string, user: StoredUser): Promise<CreateUserOutcome> {
    try {
      await this.pool.query(
        `INSERT INTO alto_user_accounts (namespace, ${USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [
          namespace,
          user.id,
          user.username,
          user.email,
          user.passwordHash,
          user.verified,
          user.verifiedAt,
          JSON.stringify(user.profile),
          user.createdAt,
          user.updatedAt,
        ],
      );
      return 'created';
    } catch (error) {
      const taken = takenField(error);
      if (taken) return taken;
      throw error;
    }
  }

  async getUser(namespace: string, id: string): Promise<StoredUser | undefined> {
    const result = await this.pool.query<UserRow>(`SELECT ${USER_COLUMNS} FROM alto_user_accounts WHERE namespace = $1 AND id = $2`, [
      namespace,
      id,
    ]);
    return result.rows[0] && userOf(result.rows[0]);
  }

  async findUser(namespace: string, field: 'email' | 'username', value: string): Promise<StoredUser | undefined> {
    if (value === '') return undefined;
    const column = field === 'email' ? 'email' : 'username';
    const result = await this.pool.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM alto_user_accounts WHERE namespace = $1 AND ${column} = $2`,
      [namespace, value],
    );
    return result.rows[0] && userOf(result.rows[0]);
  }

  async updateUser(namespace: string, id: string, changes: UserChanges): Promise<UpdateUserOutcome> {
    try {
      const result = await this.pool.query(
        `UPDATE alto_user_accounts SET
           username = COALESCE($3, username), email = COALESCE($4, email), password_hash = COALESCE($5, password_hash),
           verified = COALESCE($6, verified), verified_at = COALESCE($7, verified_at), profile = COALESCE($8::jsonb, profile),
           updated_at = $9
         WHERE namespace = $1 AND id = $2`,
        [
          namespace,
          id,
          changes.username ?? null,
          changes.email ?? null,
          changes.passwordHash ?? null,
          changes.verified ?? null,
          changes.verifiedAt ?? null,
          changes.profile === undefined ? null : JSON.stringify(changes.profile),
          changes.updatedAt,
        ],
      );
      return (result.rowCount ?? 0) > 0 ? 'updated' : 'not_found';
    } catch (error) {
      const taken = takenField(error);
      if (taken === 'email_taken' || taken === 'username_taken') return taken;
      throw error;
    }
  }

  async deleteUser(namespace: string, id: string): Promise<boolean> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('DELETE FROM alto_user_sessions WHERE namespace = $1 AND user_id = $2', [namespace, id]);
      await client.query('DELETE FROM alto_user_tokens WHERE namespace = $1 AND user_id = $2', [namespace, id]);
      const result = await client.query('DELETE FROM alto_user_accounts WHERE namespace = $1 AND id = $2', [namespace, id]);
      await client.query('COMMIT');
      return (result.rowCount ?? 0) > 0;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async listUsers(namespace: string, offset: number, limit: number): Promise<StoredUser[]> {
    const result = await this.pool.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM alto_user_accounts WHERE namespace = $1 ORDER BY created_at, id COLLATE "C" LIMIT $2 OFFSET $3`,
      [namespace, limit, offset],
    );
    return result.rows.map(userOf);
  }

  async createSession(namespace: string, session: StoredSession): Promise<void> {
    await this.pool.query(
      'INSERT INTO alto_user_sessions (namespace, id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)',
      [namespace, session.idHash, session.userId, session.createdAt, session.expiresAt],
    );
  }

  async getSession(namespace: string, idHash: string, now: number): Promise<StoredSession | undefined> {
    const result = await this.pool.query<{ id_hash: string; user_id: string; created_at: string; expires_at: string }>(
      'SELECT id_hash, user_id, created_at, expires_at FROM alto_user_sessions WHERE namespace = $1 AND id_hash = $2 AND expires_at > $3',
      [namespace, idHash, now],
    );
    const row = result.rows[0];
    return row && { idHash: row.id_hash, userId: row.user_id, createdAt: Number(row.created_at), expiresAt: Number(row.expires_at) };
  }

  async deleteSession(namespace: string, idHash: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_user_sessions WHERE namespace = $1 AND id_hash = $2', [namespace, idHash]);
    return (result.rowCount ?? 0) > 0;
  }

  async deleteSessions(namespace: string, userId: string, keepIdHash = ''): Promise<number> {
    const result = await this.pool.query('DELETE FROM alto_user_sessions WHERE namespace = $1 AND user_id = $2 AND id_hash <> $3', [
      namespace,
      userId,
      keepIdHash,
    ]);
    return result.rowCount ?? 0;
  }

  async createToken(namespace: string, token: StoredToken): Promise<void> {
    await this.pool.query(
      'INSERT INTO alto_user_tokens (namespace, hash, purpose, user_id, created_at, expires_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [namespace, token.hash, token.purpose, token.userId, token.createdAt, token.expiresAt, JSON.stringify(token.data)],
    );
  }

  async consumeToken(namespace: string, purpose: TokenPurpose, hash: string): Promise<StoredToken | undefined> {
    const result = await this.pool.query<TokenRow>(
      `DELETE FROM alto_user_tokens WHERE namespace = $1 AND hash = $2 AND purpose = $3
       RETURNING hash, purpose, user_id, created_at, expires_at, data`,
      [namespace, hash, purpose],
    );
    return result.rows[0] && tokenOf(result.rows[0]);
  }

  async deleteTokens(namespace: string, userId: string, purposes: TokenPurpose[]): Promise<number> {
    if (purposes.length === 0) return 0;
    const result = await this.pool.query(
      'DELETE FROM alto_user_tokens WHERE namespace = $1 AND user_id = $2 AND purpose = ANY($3::text[])',
      [namespace, userId, purposes],
    );
    return result.rowCount ?? 0;
  }

  async recordAttempt(namespace: string, subject: string, at: number): Promise<void> {
    await this.pool.query('INSERT INTO alto_user_attempts (namespace, subject, at) VALUES ($1, $2, $3)', [namespace, subject, at]);
  }

  async countAttempts(namespace: string, subject: string, since: number): Promise<number> {
    const result = await this.pool.query<{ count: string }>(
      'SELECT count(*) AS count FROM alto_user_attempts WHERE namespace = $1 AND subject = $2 AND at >= $3',
      [namespace, subject, since],
    );
    return Number(result.rows[0].count);
  }

  async clearAttempts(namespace: string, subject: string): Promise<void> {
    await this.pool.query('DELETE FROM alto_user_attempts WHERE namespace = $1 AND subject = $2', [namespace, subject]);
  }

  async putTemplate(namespace: string, template: StoredTemplate): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_user_templates (namespace, name, subject, text_body, html_body, from_name, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (namespace, name) DO UPDATE SET subject = EXCLUDED.subject,
       text_body = EXCLUDED.text_body, html_body = EXCLUDED.html_body, from_name = EXCLUDED.from_name, updated_at = EXCLUDED.updated_at`,
      [namespace, template.name, template.subject, template.textBody, template.htmlBody, template.fromName, template.updatedAt],
    );
  }

  async getTemplate(namespace: string, name: string): Promise<StoredTemplate | undefined> {
    const result = await this.pool.query<{
      name: string;
      subject: string;
      text_body: string;
      html_body: string;
      from_name: string;
      updated_at: string;
    }>('SELECT name, subject, text_body, html_body, from_name, updated_at FROM alto_user_templates WHERE namespace = $1 AND name = $2', [
      namespace,
      name,
    ]);
    const row = result.rows[0];
    return (
      row && {
        name: row.name,
        subject: row.subject,
        textBody: row.text_body,
        htmlBody: row.html_body,
        fromName: row.from_name,
        updatedAt: Number(row.updated_at),
      }
    );
  }

  async deleteTemplate(namespace: string, name: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_user_templates WHERE namespace = $1 AND name = $2', [namespace, name]);
    return (result.rowCount ?? 0) > 0;
  }

  async deleteProject(projectId: string): Promise<number> {
    const pattern = startsWith(`${projectId}/`);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      let accounts = 0;
      for (const table of TABLES) {
        const result = await client.query(`DELETE FROM ${table} WHERE namespace LIKE $1`, [pattern]);
        if (table === 'alto_user_accounts') accounts = result.rowCount ?? 0;
      }
      await client.query('COMMIT');
      return accounts;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async purgeExpired(now: number, attemptsBefore: number): Promise<number> {
    const sessions = await this.pool.query('DELETE FROM alto_user_sessions WHERE expires_at <= $1', [now]);
    const tokens = await this.pool.query('DELETE FROM alto_user_tokens WHERE expires_at <= $1', [now]);
    const attempts = await this.pool.query('DELETE FROM alto_user_attempts WHERE at < $1', [attemptsBefore]);
    return (sessions.rowCount ?? 0) + (tokens.rowCount ?? 0) + (attempts.rowCount ?? 0);
  }

  async close(): Promise<void> {
    // The pool is shared; `Stores.close()` ends it.
  }
}
