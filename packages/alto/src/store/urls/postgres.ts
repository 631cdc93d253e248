/**
 * @module store/urls/postgres
 * The PostgreSQL adapter of the short-URL port, for Alto running with `--store postgres://`.
 * Same shape as the SQLite table: the short id is the primary key across namespaces.
 */
import type pg from 'pg';
import type { NewShortUrl, RedirectTarget, ShortUrlChanges, ShortUrlRecord, UrlStore } from './port.js';
import { migratePostgres } from '../postgres/migrate.js';

/** Applied in order, each idempotent; see `PostgresUrlStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_short_urls (
     id TEXT PRIMARY KEY,
     namespace TEXT NOT NULL,
     destination TEXT NOT NULL,
     permanent BOOLEAN NOT NULL,
     hit_count BIGINT NOT NULL DEFAULT 0,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS alto_short_urls_namespace ON alto_short_urls (namespace, created_at, id)`,
];

interface Row {
  id: string;
  destination: string;
  permanent: boolean;
  /** BIGINT arrives as a string from pg. */
  hit_count: string;
  created_at: string;
  updated_at: string;
}

function recordFromRow(row: Row): ShortUrlRecord {
  return {
    id: row.id,
    destination: row.destination,
    permanent: row.permanent,
    hitCount: Number(row.hit_count),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

const COLUMNS = 'id, destination, permanent, hit_count, created_at, updated_at';

export class PostgresUrlStore implements UrlStore {
  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresUrlStore> {
    await migratePostgres(pool, 'urls', MIGRATIONS);
    return new PostgresUrlStore(pool);
  }

  async insert(namespace: string, url: NewShortUrl): Promise<boolean> {
    const result = await this.pool.query(
      `INSERT INTO alto_short_urls (id, namespace, destination, permanent, hit_count, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 0, $5, $5) ON CONFLICT (id) DO NOTHING`,
      [url.id, namespace, url.destination, url.permanent, url.createdAt],
    );
    return result.rowCount === 1;
  }

  async get(namespace: string, id: string): Promise<ShortUrlRecord | undefined> {
    const result = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM alto_short_urls WHERE namespace = $1 AND id = $2`, [namespace, id]);
    return result.rows[0] && recordFromRow(result.rows[0]);
  }

  async list(namespace: string): Promise<ShortUrlRecord[]> {
    const result = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM alto_short_urls WHERE namespace = $1 ORDER BY created_at, id`,
      [namespace],
    );
    return result.rows.map(recordFromRow);
  }

  async update(namespace: string, id: string, changes: ShortUrlChanges): Promise<ShortUrlRecord | undefined> {
    const result = await this.pool.query<Row>(
      `UPDATE alto_short_urls SET destination = coalesce($1, destination), permanent = coalesce($2, permanent), updated_at = $3
       WHERE namespace = $4 AND id = $5 RETURNING ${COLUMNS}`,
      [changes.destination ?? null, changes.permanent ?? null, changes.updatedAt, namespace, id],
    );
    return result.rows[0] && recordFromRow(result.rows[0]);
  }

  async delete(namespace: string, id: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_short_urls WHERE namespace = $1 AND id = $2', [namespace, id]);
    return result.rowCount === 1;
  }

  async follow(id: string, countHit: boolean): Promise<RedirectTarget | undefined> {
    const sql = countHit
      ? 'UPDATE alto_short_urls SET hit_count = hit_count + 1 WHERE id = $1 RETURNING destination, permanent'
      : 'SELECT destination, permanent FROM alto_short_urls WHERE id = $1';
    const result = await this.pool.query<{ destination: string; permanent: boolean }>(sql, [id]);
    return result.rows[0] && { destination: result.rows[0].destination, permanent: result.rows[0].permanent };
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    const result = await this.pool.query('DELETE FROM alto_short_urls WHERE left(namespace, length($1)) = $1', [prefix]);
    return result.rowCount ?? 0;
  }
}
