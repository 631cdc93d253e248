/**
 * @module store/secrets/sqlite
 * The embedded secret adapter: one table in the shared SQLite file, keyed by (namespace, path,
 * key), the sealed value a BLOB. A committed write survives a crash of the process (WAL).
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { SecretStore, SecretWrite, StoredSecret } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE secrets (
     namespace TEXT NOT NULL,
     path TEXT NOT NULL,
     key TEXT NOT NULL,
     ciphertext BLOB NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, path, key)) WITHOUT ROWID;
   CREATE TABLE secret_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

interface SecretRow {
  path: string;
  key: string;
  ciphertext: Buffer;
  created_at: number;
  updated_at: number;
}

export class SqliteSecretStore implements SecretStore {
  readonly backend = 'sqlite';
  private readonly statements;

  constructor(db: SqliteDatabase) {
    migrate(db, 'secrets', MIGRATIONS);
    this.statements = {
      put: db.prepare(`INSERT INTO secrets (namespace, path, key, ciphertext, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (namespace, path, key) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at`),
      get: db.prepare(
        'SELECT path, key, ciphertext, created_at, updated_at FROM secrets WHERE namespace = ? AND path = ? AND key = ?',
      ),
      delete: db.prepare('DELETE FROM secrets WHERE namespace = ? AND path = ? AND key = ?'),
      listKeys: db.prepare('SELECT key FROM secrets WHERE namespace = ? AND path = ? ORDER BY key'),
      listPaths: db.prepare(`SELECT DISTINCT path FROM secrets
        WHERE namespace = ? AND path > ? AND substr(path, 1, length(?)) = ? ORDER BY path`),
      deleteProject: db.prepare('DELETE FROM secrets WHERE namespace >= ? AND substr(namespace, 1, length(?)) = ?'),
      claimSetting: db.prepare('INSERT INTO secret_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING'),
      getSetting: db.prepare('SELECT value FROM secret_settings WHERE name = ?'),
    };
  }

  async put(namespace: string, secret: SecretWrite): Promise<void> {
    this.statements.put.run(namespace, secret.path, secret.key, secret.ciphertext, secret.at, secret.at);
  }

  async get(namespace: string, path: string, key: string): Promise<StoredSecret | undefined> {
    const row = this.statements.get.get(namespace, path, key) as SecretRow | undefined;
    return row && { path: row.path, key: row.key, ciphertext: row.ciphertext, createdAt: row.created_at, updatedAt: row.updated_at };
  }

  async delete(namespace: string, path: string, key: string): Promise<boolean> {
    return this.statements.delete.run(namespace, path, key).changes > 0;
  }

  async listKeys(namespace: string, path: string): Promise<string[]> {
    return (this.statements.listKeys.all(namespace, path) as { key: string }[]).map((row) => row.key);
  }

  async listPaths(namespace: string, path: string): Promise<string[]> {
    const prefix = path === '' ? '' : `${path}/`;
    const rows = this.statements.listPaths.all(namespace, prefix, prefix, prefix) as { path: string }[];
    return rows.map((row) => row.path);
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    return this.statements.deleteProject.run(prefix, prefix, prefix).changes;
  }

  async claimKeyFingerprint(fingerprint: string): Promise<string> {
    this.statements.claimSetting.run('master_key_fingerprint', fingerprint);
    return (this.statements.getSetting.get('master_key_fingerprint') as { value: string }).value;
  }

  async close(): Promise<void> {
    // The database handle is shared with other adapters; `Stores.close()` closes it.
  }
}
