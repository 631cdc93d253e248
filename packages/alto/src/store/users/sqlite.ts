/**
 * @module store/users/sqlite
 * The embedded users adapter: accounts, sessions, tokens, attempts and templates as tables in the
 * shared SQLite file. Uniqueness of email and username is checked and written in one
 * transaction, so two concurrent sign-ups with one email never both succeed.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
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
  `CREATE TABLE user_accounts (
     namespace TEXT NOT NULL,
     id TEXT NOT NULL,
     username TEXT NOT NULL,
     email TEXT NOT NULL,
     password_hash TEXT NOT NULL,
     verified INTEGER NOT NULL,
     verified_at INTEGER NOT NULL,
     profile TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, id)) WITHOUT ROWID;
   CREATE UNIQUE INDEX user_accounts_email ON user_accounts (namespace, email);
   CREATE UNIQUE INDEX user_accounts_username ON user_accounts (namespace, username) WHERE username <> '';
   CREATE INDEX user_accounts_created ON user_accounts (namespace, created_at, id);
   CREATE TABLE user_sessions (
     namespace TEXT NOT NULL,
     id_hash TEXT NOT NULL,
     user_id TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, id_hash)) WITHOUT ROWID;
   CREATE INDEX user_sessions_user ON user_sessions (namespace, user_id);
   CREATE INDEX user_sessions_expiry ON user_sessions (expires_at);
   CREATE TABLE user_tokens (
     namespace TEXT NOT NULL,
     hash TEXT NOT NULL,
     purpose TEXT NOT NULL,
     user_id TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     data TEXT NOT NULL,
     PRIMARY KEY (namespace, hash)) WITHOUT ROWID;
   CREATE INDEX user_tokens_user ON user_tokens (namespace, user_id, purpose);
   CREATE INDEX user_tokens_expiry ON user_tokens (expires_at);
   CREATE TABLE user_attempts (namespace TEXT NOT NULL, subject TEXT NOT NULL, at INTEGER NOT NULL);
   CREATE INDEX user_attempts_subject ON user_attempts (namespace, subject, at);
   CREATE INDEX user_attempts_at ON user_attempts (at);
   CREATE TABLE user_templates (
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     subject TEXT NOT NULL,
     text_body TEXT NOT NULL,
     html_body TEXT NOT NULL,
     from_name TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, name)) WITHOUT ROWID;`,
];

interface UserRow {
  id: string;
  username: string;
  email: string;
  password_hash: string;
  verified: number;
  verified_at: number;
  profile: string;
  created_at: number;
  updated_at: number;
}

interface TokenRow {
  hash: string;
  purpose: TokenPurpose;
  user_id: string;
  created_at: number;
  expires_at: number;
  data: string;
}

const USER_COLUMNS = 'id, username, email, password_hash, verified, verified_at, profile, created_at, updated_at';
const TABLES = ['user_accounts', 'user_sessions', 'user_tokens', 'user_attempts', 'user_templates'];

function userOf(row: UserRow): StoredUser {
  return {
    id: row.id,
    username: row.username,
    email: row.email,
    passwordHash: row.password_hash,
    verified: row.verified === 1,
    verifiedAt: row.verified_at,
    profile: JSON.parse(row.profile) as Record<string, string>,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function tokenOf(row: TokenRow): StoredToken {
  return {
    hash: row.hash,
    purpose: row.purpose,
    userId: row.user_id,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    data: JSON.parse(row.data) as Record<string, string>,
  };
}

export class SqliteUserStore implements UserStore {
  readonly backend = 'sqlite';
  private readonly statements;
  private readonly createTransaction;
  private readonly updateTransaction;
  private readonly deleteUserTransaction;
  private readonly deleteProjectTransaction;
  private readonly purgeTransaction;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'users', MIGRATIONS);
    const statements = {
      insertUser: db.prepare(`INSERT INTO user_accounts (namespace, ${USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      getUser: db.prepare(`SELECT ${USER_COLUMNS} FROM user_accounts WHERE namespace = ? AND id = ?`),
      findByEmail: db.prepare(`SELECT ${USER_COLUMNS} FROM user_accounts WHERE namespace = ? AND email = ?`),
      findByUsername: db.prepare(`SELECT ${USER_COLUMNS} FROM user_accounts WHERE namespace = ? AND username = ? AND username <> ''`),
      updateUser: db.prepare(`UPDATE user_accounts SET username = ?, email = ?, password_hash = ?, verified = ?, verified_at = ?,
        profile = ?, updated_at = ? WHERE namespace = ? AND id = ?`),
      deleteUser: db.prepare('DELETE FROM user_accounts WHERE namespace = ? AND id = ?'),
      listUsers: db.prepare(`SELECT ${USER_COLUMNS} FROM user_accounts WHERE namespace = ? ORDER BY created_at, id LIMIT ? OFFSET ?`),
      insertSession: db.prepare('INSERT INTO user_sessions (namespace, id_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)'),
      getSession: db.prepare(
        'SELECT id_hash, user_id, created_at, expires_at FROM user_sessions WHERE namespace = ? AND id_hash = ? AND expires_at > ?',
      ),
      deleteSession: db.prepare('DELETE FROM user_sessions WHERE namespace = ? AND id_hash = ?'),
      deleteSessions: db.prepare('DELETE FROM user_sessions WHERE namespace = ? AND user_id = ? AND id_hash <> ?'),
      insertToken: db.prepare(
        'INSERT INTO user_tokens (namespace, hash, purpose, user_id, created_at, expires_at, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      consumeToken: db.prepare(
        'DELETE FROM user_tokens WHERE namespace = ? AND hash = ? AND purpose = ? RETURNING hash, purpose, user_id, created_at, expires_at, data',
      ),
      deleteUserTokens: db.prepare('DELETE FROM user_tokens WHERE namespace = ? AND user_id = ?'),
      deleteUserSessions: db.prepare('DELETE FROM user_sessions WHERE namespace = ? AND user_id = ?'),
      insertAttempt: db.prepare('INSERT INTO user_attempts (namespace, subject, at) VALUES (?, ?, ?)'),
      countAttempts: db.prepare('SELECT count(*) AS count FROM user_attempts WHERE namespace = ? AND subject = ? AND at >= ?'),
      clearAttempts: db.prepare('DELETE FROM user_attempts WHERE namespace = ? AND subject = ?'),
      putTemplate: db.prepare(`INSERT INTO user_templates (namespace, name, subject, text_body, html_body, from_name, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, name) DO UPDATE SET subject = excluded.subject,
        text_body = excluded.text_body, html_body = excluded.html_body, from_name = excluded.from_name, updated_at = excluded.updated_at`),
      getTemplate: db.prepare(
        'SELECT name, subject, text_body, html_body, from_name, updated_at FROM user_templates WHERE namespace = ? AND name = ?',
      ),
      deleteTemplate: db.prepare('DELETE FROM user_templates WHERE namespace = ? AND name = ?'),
      purgeSessions: db.prepare('DELETE FROM user_sessions WHERE expires_at <= ?'),
      purgeTokens: db.prepare('DELETE FROM user_tokens WHERE expires_at <= ?'),
      purgeAttempts: db.prepare('DELETE FROM user_attempts WHERE at < ?'),
      deleteProject: Object.fromEntries(
        TABLES.map((table) => [table, db.prepare(`DELETE FROM ${table} WHERE namespace >= ? AND substr(namespace, 1, length(?)) = ?`)]),
      ),
    };
    this.statements = statements;

    this.createTransaction = db.transaction((namespace: string, user: StoredUser): CreateUserOutcome => {
      if (statements.getUser.get(namespace, user.id)) return 'id_taken';
      if (statements.findByEmail.get(namespace, user.email)) return 'email_taken';
      if (user.username !== '' && statements.findByUsername.get(namespace, user.username)) return 'username_taken';
      statements.insertUser.run(
        namespace,
        user.id,
        user.username,
        user.email,
        user.passwordHash,
        user.verified ? 1 : 0,
        user.verifiedAt,
        JSON.stringify(user.profile),
        user.createdAt,
        user.updatedAt,
      );
      return 'created';
    });

    this.updateTransaction = db.transaction((namespace: string, id: string, changes: UserChanges): UpdateUserOutcome => {
      const row = statements.getUser.get(namespace, id) as UserRow | undefined;
      if (!row) return 'not_found';
      const current = userOf(row);
      const next = { ...current, ...withoutUndefined(changes) };
      if (next.email !== current.email) {
        const holder = statements.findByEmail.get(namespace, next.email) as UserRow | undefined;
        if (holder && holder.id !== id) return 'email_taken';
      }
      if (next.username !== current.username && next.username !== '') {
        const holder = statements.findByUsername.get(namespace, next.username) as UserRow | undefined;
        if (holder && holder.id !== id) return 'username_taken';
      }
      statements.updateUser.run(
        next.username,
        next.email,
        next.passwordHash,
        next.verified ? 1 : 0,
        next.verifiedAt,
        JSON.stringify(next.profile),
        next.updatedAt,
        namespace,
        id,
      );
      return 'updated';
    });

    this.deleteUserTransaction = db.transaction((namespace: string, id: string): boolean => {
      statements.deleteUserSessions.run(namespace, id);
      statements.deleteUserTokens.run(namespace, id);
      return statements.deleteUser.run(namespace, id).changes > 0;
    });

    this.deleteProjectTransaction = db.transaction((prefix: string): number => {
      let accounts = 0;
      for (const [table, statement] of Object.entries(statements.deleteProject)) {
        const changes = statement.run(prefix, prefix, prefix).changes;
        if (table === 'user_accounts') accounts = changes;
      }
      return accounts;
    });

    this.purgeTransaction = db.transaction(
      (now: number, attemptsBefore: number): number =>
        statements.purgeSessions.run(now).changes +
        statements.purgeTokens.run(now).changes +
        statements.purgeAttempts.run(attemptsBefore).changes,
    );
  }

  async createUser(namespace: string, user: StoredUser): Promise<CreateUserOutcome> {
    return this.createTransaction.immediate(namespace, user);
  }

  async getUser(namespace: string, id: string): Promise<StoredUser | undefined> {
    const row = this.statements.getUser.get(namespace, id) as UserRow | undefined;
    return row && userOf(row);
  }

  async findUser(namespace: string, field: 'email' | 'username', value: string): Promise<StoredUser | undefined> {
    if (value === '') return undefined;
    const statement = field === 'email' ? this.statements.findByEmail : this.statements.findByUsername;
    const row = statement.get(namespace, value) as UserRow | undefined;
    return row && userOf(row);
  }

  async updateUser(namespace: string, id: string, changes: UserChanges): Promise<UpdateUserOutcome> {
    return this.updateTransaction.immediate(namespace, id, changes);
  }

  async deleteUser(namespace: string, id: string): Promise<boolean> {
    return this.deleteUserTransaction.immediate(namespace, id);
  }

  async listUsers(namespace: string, offset: number, limit: number): Promise<StoredUser[]> {
    return (this.statements.listUsers.all(namespace, limit, offset) as UserRow[]).map(userOf);
  }

  async createSession(namespace: string, session: StoredSession): Promise<void> {
    this.statements.insertSession.run(namespace, session.idHash, session.userId, session.createdAt, session.expiresAt);
  }

  async getSession(namespace: string, idHash: string, now: number): Promise<StoredSession | undefined> {
    const row = this.statements.getSession.get(namespace, idHash, now) as
      | { id_hash: string; user_id: string; created_at: number; expires_at: number }
      | undefined;
    return row && { idHash: row.id_hash, userId: row.user_id, createdAt: row.created_at, expiresAt: row.expires_at };
  }

  async deleteSession(namespace: string, idHash: string): Promise<boolean> {
    return this.statements.deleteSession.run(namespace, idHash).changes > 0;
  }

  async deleteSessions(namespace: string, userId: string, keepIdHash = ''): Promise<number> {
    return this.statements.deleteSessions.run(namespace, userId, keepIdHash).changes;
  }

  async createToken(namespace: string, token: StoredToken): Promise<void> {
    this.statements.insertToken.run(
      namespace,
      token.hash,
      token.purpose,
      token.userId,
      token.createdAt,
      token.expiresAt,
      JSON.stringify(token.data),
    );
  }

  async consumeToken(namespace: string, purpose: TokenPurpose, hash: string): Promise<StoredToken | undefined> {
    const row = this.statements.consumeToken.get(namespace, hash, purpose) as TokenRow | undefined;
    return row && tokenOf(row);
  }

  async deleteTokens(namespace: string, userId: string, purposes: TokenPurpose[]): Promise<number> {
    if (purposes.length === 0) return 0;
    const marks = purposes.map(() => '?').join(', ');
    return this.db
      .prepare(`DELETE FROM user_tokens WHERE namespace = ? AND user_id = ? AND purpose IN (${marks})`)
      .run(namespace, userId, ...purposes).changes;
  }

  async recordAttempt(namespace: string, subject: string, at: number): Promise<void> {
    this.statements.insertAttempt.run(namespace, subject, at);
  }

  async countAttempts(namespace: string, subject: string, since: number): Promise<number> {
    return (this.statements.countAttempts.get(namespace, subject, since) as { count: number }).count;
  }

  async clearAttempts(namespace: string, subject: string): Promise<void> {
    this.statements.clearAttempts.run(namespace, subject);
  }

  async putTemplate(namespace: string, template: StoredTemplate): Promise<void> {
    this.statements.putTemplate.run(
      namespace,
      template.name,
      template.subject,
      template.textBody,
      template.htmlBody,
      template.fromName,
      template.updatedAt,
    );
  }

  async getTemplate(namespace: string, name: string): Promise<StoredTemplate | undefined> {
    const row = this.statements.getTemplate.get(namespace, name) as
      | { name: string; subject: string; text_body: string; html_body: string; from_name: string; updated_at: number }
      | undefined;
    return (
      row && {
        name: row.name,
        subject: row.subject,
        textBody: row.text_body,
        htmlBody: row.html_body,
        fromName: row.from_name,
        updatedAt: row.updated_at,
      }
    );
  }

  async deleteTemplate(namespace: string, name: string): Promise<boolean> {
    return this.statements.deleteTemplate.run(namespace, name).changes > 0;
  }

  async deleteProject(projectId: string): Promise<number> {
    return this.deleteProjectTransaction.immediate(`${projectId}/`);
  }

  async purgeExpired(now: number, attemptsBefore: number): Promise<number> {
    return this.purgeTransaction.immediate(now, attemptsBefore);
  }

  async close(): Promise<void> {
    // The database handle is shared with other adapters; `Stores.close()` closes it.
  }
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, inner]) => inner !== undefined)) as Partial<T>;
}
