/**
 * @module store/secrets/postgres
 * The scale-out secret adapter: one table in PostgreSQL keyed by (namespace, path, key), the
 * sealed value a BYTEA. Several Alto replicas share it; they must share the master key too,
 * which `claimKeyFingerprint` checks at start.
 */
import type pg from 'pg';
import type { SecretStore, SecretWrite, StoredSecret } from './port.js';
import { migratePostgres } from '../postgres/migrate.js';

const MIGRATIONS = [
  `CREATE TABLE alto_secrets (
     namespace TEXT NOT NULL,
     path TEXT NOT NULL,
     key TEXT NOT NULL,
     ciphertext BYTEA NOT NULL,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     PRIMARY KEY (namespace, path, key));
   CREATE TABLE alto_secret_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

interface SecretRow {
  path: string;
  key: string;
  ciphertext: Buffer;
  created_at: string;
  updated_at: string;
}

/** LIKE pattern matching text that starts with `prefix` literally. */
function startsWith(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (char) => `\\${char}`) + '%';
}

export class PostgresSecretStore implements SecretStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  static async open(pool: pg.Pool): Promise<PostgresSecretStore> {
    await migratePostgres(pool, 'secrets', MIGRATIONS);
    return new PostgresSecretStore(pool);
  }

  async put(namespace: string, secret: SecretWrite): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_secrets (namespace, path, key, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
       ON CONFLICT (namespace, path, key) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = EXCLUDED.updated_at`,
      [namespace, secret.path, secret.key, secret.ciphertext, secret.at],
    );
  }

  async get(namespace: string, path: string, key: string): Promise<StoredSecret | undefined> {
    const result = await this.pool.query<SecretRow>(
      'SELECT path, key, ciphertext, created_at, updated_at FROM alto_secrets WHERE namespace = $1 AND path = $2 AND key = $3',
      [namespace, path, key],
    );
    const row = result.rows[0];
    return (
      row && {
        path: row.path,
        key: row.key,
        ciphertext: row.ciphertext,
        createdAt: Number(row.created_at),
        updatedAt: Number(row.updated_at),
      }
    );
  }

  async delete(namespace: string, path: string, key: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_secrets WHERE namespace = $1 AND path = $2 AND key = $3', [
      namespace,
      path,
      key,
    ]);
    return (result.rowCount ?? 0) > 0;
  }

  async listKeys(namespace: string, path: string): Promise<string[]> {
    const result = await this.pool.query<{ key: string }>(
      'SELECT key FROM alto_secrets WHERE namespace = $1 AND path = $2 ORDER BY key COLLATE "C"',
      [namespace, path],
    );
    return result.rows.map((row) => row.key);
  }

  async listPaths(namespace: string, path: string): Promise<string[]> {
    const result = await this.pool.query<{ path: string }>(
      `SELECT DISTINCT path COLLATE "C" AS path FROM alto_secrets
       WHERE namespace = $1 AND path <> '' AND path LIKE $2 ORDER BY 1`,
      [namespace, startsWith(path === '' ? '' : `${path}/`)],
    );
    return result.rows.map((row) => row.path);
  }

  async deleteProject(projectId: string): Promise<number> {
    const result = await this.pool.query('DELETE FROM alto_secrets WHERE namespace LIKE $1', [startsWith(`${projectId}/`)]);
    return result.rowCount ?? 0;
  }

  async claimKeyFingerprint(fingerprint: string): Promise<string> {
    await this.pool.query(
      `INSERT INTO alto_secret_settings (name, value) VALUES ('master_key_fingerprint', $1) ON CONFLICT (name) DO NOTHING`,
      [fingerprint],
    );
    const result = await this.pool.query<{ value: string }>(
      `SELECT value FROM alto_secret_settings WHERE name = 'master_key_fingerprint'`,
    );
    return result.rows[0].value;
  }

  async close(): Promise<void> {
    // The pool is shared; `Stores.close()` ends it.
  }
}
