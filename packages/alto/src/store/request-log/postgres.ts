/**
 * @module store/request-log/postgres
 * The PostgreSQL adapter of the request-log port, for Alto running with `--store postgres://`:
 * the same table as SQLite's, shared by every process, rows appended with one INSERT of arrays
 * (unnest) per few thousand rows.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import type { RequestKind, RequestLogQuery, RequestLogRow, RequestLogStore, StoredRequestLogRow } from './port.js';

/** Applied in order, each idempotent; see `PostgresRequestLogStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_request_log (
     id BIGSERIAL PRIMARY KEY,
     project_id TEXT NOT NULL,
     at BIGINT NOT NULL,
     kind TEXT NOT NULL,
     method TEXT NOT NULL,
     path TEXT NOT NULL,
     status INTEGER NOT NULL,
     duration_ms DOUBLE PRECISION NOT NULL,
     bytes_in BIGINT NOT NULL,
     bytes_out BIGINT NOT NULL,
     key_prefix TEXT,
     client_address TEXT,
     request_id TEXT NOT NULL,
     app TEXT)`,
  `CREATE INDEX IF NOT EXISTS alto_request_log_project_at ON alto_request_log (project_id, at, id)`,
];

const COLUMNS = 'project_id, at, kind, method, path, status, duration_ms, bytes_in, bytes_out, key_prefix, client_address, request_id, app';
/** Rows per INSERT. */
const ROWS_PER_STATEMENT = 2000;

interface Row {
  /** BIGINT arrives as a string from pg. */
  id: string;
  project_id: string;
  at: string;
  kind: RequestKind;
  method: string;
  path: string;
  status: number;
  duration_ms: number;
  bytes_in: string;
  bytes_out: string;
  key_prefix: string | null;
  client_address: string | null;
  request_id: string;
  app: string | null;
}

function rowOf(row: Row): StoredRequestLogRow {
  return {
    id: Number(row.id),
    projectId: row.project_id,
    at: Number(row.at),
    kind: row.kind,
    method: row.method,
    path: row.path,
    status: row.status,
    durationMs: row.duration_ms,
    bytesIn: Number(row.bytes_in),
    bytesOut: Number(row.bytes_out),
    keyPrefix: row.key_prefix,
    clientAddress: row.client_address,
    requestId: row.request_id,
    app: row.app,
  };
}

export class PostgresRequestLogStore implements RequestLogStore {
  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresRequestLogStore> {
    await migratePostgres(pool, 'request_log', MIGRATIONS);
    return new PostgresRequestLogStore(pool);
  }

  async append(rows: RequestLogRow[]): Promise<void> {
    for (let from = 0; from < rows.length; from += ROWS_PER_STATEMENT) {
      const chunk = rows.slice(from, from + ROWS_PER_STATEMENT);
      await this.pool.query(
        `INSERT INTO alto_request_log (${COLUMNS})
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::int[], $7::float8[],
                              $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[])`,
        [
          chunk.map((row) => row.projectId),
          chunk.map((row) => row.at),
          chunk.map((row) => row.kind),
          chunk.map((row) => row.method),
          chunk.map((row) => row.path),
          chunk.map((row) => row.status),
          chunk.map((row) => row.durationMs),
          chunk.map((row) => row.bytesIn),
          chunk.map((row) => row.bytesOut),
          chunk.map((row) => row.keyPrefix),
          chunk.map((row) => row.clientAddress),
          chunk.map((row) => row.requestId),
          chunk.map((row) => row.app),
        ],
      );
    }
  }

  async read(query: RequestLogQuery): Promise<StoredRequestLogRow[]> {
    const result = await this.pool.query<Row>(
      `SELECT id, ${COLUMNS} FROM alto_request_log
       WHERE project_id = $1 AND at >= $2 AND at < $3
         AND (at, id) < ($4, $5)
         AND ($6::text IS NULL OR kind = $6)
         AND ($7::text IS NULL OR app = $7)
         AND status >= $8 AND status <= $9
         AND ($10::text IS NULL OR left(path, length($10)) = $10)
       ORDER BY at DESC, id DESC
       LIMIT $11`,
      [
        query.projectId,
        query.since ?? 0,
        query.until ?? Number.MAX_SAFE_INTEGER,
        query.after?.at ?? Number.MAX_SAFE_INTEGER,
        query.after?.id ?? Number.MAX_SAFE_INTEGER,
        query.kind ?? null,
        query.app ?? null,
        query.statusMin ?? 0,
        query.statusMax ?? 999,
        query.pathPrefix ?? null,
        query.limit,
      ],
    );
    return result.rows.map(rowOf);
  }

  async deleteOlder(projectId: string, before: number, limit: number): Promise<number> {
    const result = await this.pool.query(
      'DELETE FROM alto_request_log WHERE id IN (SELECT id FROM alto_request_log WHERE project_id = $1 AND at < $2 LIMIT $3)',
      [projectId, before, limit],
    );
    return result.rowCount ?? 0;
  }

  async deleteProject(projectId: string): Promise<number> {
    const result = await this.pool.query('DELETE FROM alto_request_log WHERE project_id = $1', [projectId]);
    return result.rowCount ?? 0;
  }
}
