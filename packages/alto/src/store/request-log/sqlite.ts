/**
 * @module store/request-log/sqlite
 * The embedded adapter of the request-log port: one SQLite table with an index by project and
 * time, which serves both the newest-first reads (walked backwards) and the retention deletes.
 * The running instance's store writes from a thread of its own (sqlite-worker.mjs, with its own
 * connection), so the inserts never run on the edge's event loop; a batch crosses to it as
 * columns (sqlite-writer.mjs). Without the thread (a database in memory), rows are written a few
 * hundred to a transaction, yielding to the event loop between transactions. The table takes a
 * row per request, so each row names its project by a small number (`request_log_projects`)
 * rather than its 36-character id: that halves what a row costs to write, index included.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { SqliteWriterThread } from '../sqlite/writer-thread.js';
import { batchOfRows, COLUMNS, requestLogWriter, ROWS_PER_TRANSACTION, type RequestLogBatch } from './sqlite-writer.mjs';
import type { RequestKind, RequestLogQuery, RequestLogRow, RequestLogStore, StoredRequestLogRow } from './port.js';

const MIGRATIONS = [
  // Projects by number (request_log_projects): a row is about half as large to write and index.
  `CREATE TABLE request_log_projects (
     id INTEGER PRIMARY KEY,
     project_id TEXT NOT NULL UNIQUE);
   CREATE TABLE request_log (
     id INTEGER PRIMARY KEY,
     project INTEGER NOT NULL,
     at INTEGER NOT NULL,
     kind TEXT NOT NULL,
     method TEXT NOT NULL,
     path TEXT NOT NULL,
     status INTEGER NOT NULL,
     duration_ms REAL NOT NULL,
     bytes_in INTEGER NOT NULL,
     bytes_out INTEGER NOT NULL,
     key_prefix TEXT,
     client_address TEXT,
     request_id TEXT NOT NULL,
     app TEXT);
   CREATE INDEX request_log_project_at ON request_log(project, at);`,
];

/** Rows deleted per statement by deleteProject. */
const DELETE_CHUNK = 5000;

interface Row {
  id: number;
  at: number;
  kind: RequestKind;
  method: string;
  path: string;
  status: number;
  duration_ms: number;
  bytes_in: number;
  bytes_out: number;
  key_prefix: string | null;
  client_address: string | null;
  request_id: string;
  app: string | null;
}

function rowOf(row: Row, projectId: string): StoredRequestLogRow {
  return {
    id: row.id,
    projectId,
    at: row.at,
    kind: row.kind,
    method: row.method,
    path: row.path,
    status: row.status,
    durationMs: row.duration_ms,
    bytesIn: row.bytes_in,
    bytesOut: row.bytes_out,
    keyPrefix: row.key_prefix,
    clientAddress: row.client_address,
    requestId: row.request_id,
    app: row.app,
  };
}

export class SqliteRequestLogStore implements RequestLogStore {
  private readonly writer: ReturnType<typeof requestLogWriter>;
  private readonly thread: SqliteWriterThread<RequestLogBatch> | undefined;
  private readonly statements;

  /** `writerThread`: write rows from a thread of its own (a database in a file only); the running instance's store does. */
  constructor(db: SqliteDatabase, options: { writerThread?: boolean } = {}) {
    migrate(db, 'request_log', MIGRATIONS);
    this.writer = requestLogWriter(db);
    // Off the event loop: a thread of its own with its own connection (sqlite-worker.mjs).
    if (options.writerThread && !db.memory)
      // Beside this file, in src/ and in dist/ alike (the build copies it as it is).
      this.thread = new SqliteWriterThread<RequestLogBatch>(new URL('./sqlite-worker.mjs', import.meta.url), db.name, 'request log writer', (message, written) =>
        new Error(`writing the request log failed after ${written} rows: ${message}`),
      );
    this.statements = {
      projectNumber: db.prepare('SELECT id FROM request_log_projects WHERE project_id = ?').pluck(),
      read: db.prepare(`SELECT id, ${COLUMNS} FROM request_log
        WHERE project = @project AND at >= @since AND at < @until
          AND (at < @afterAt OR (at = @afterAt AND id < @afterId))
          AND (@kind IS NULL OR kind = @kind)
          AND (@app IS NULL OR app = @app)
          AND status >= @statusMin AND status <= @statusMax
          AND (@pathPrefix IS NULL OR substr(path, 1, length(@pathPrefix)) = @pathPrefix)
        ORDER BY at DESC, id DESC
        LIMIT @limit`),
      deleteOlder: db.prepare('DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE project = ? AND at < ? LIMIT ?)'),
      deleteProject: db.prepare('DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE project = ? LIMIT ?)'),
    };
  }

  /** The project's number, or undefined when it has no rows yet (none was given). */
  private numberOf(projectId: string): number | undefined {
    return this.statements.projectNumber.get(projectId) as number | undefined;
  }

  async append(rows: RequestLogRow[]): Promise<void> {
    if (rows.length === 0) return;
    const batch = batchOfRows(rows);
    if (this.thread?.alive) return this.thread.write(batch);
    for (let from = 0; from < batch.length; from += ROWS_PER_TRANSACTION) {
      // SQLite calls are synchronous: let requests through between transactions.
      if (from > 0) await new Promise((resolve) => setImmediate(resolve));
      this.writer.write(batch, from, Math.min(batch.length, from + ROWS_PER_TRANSACTION));
    }
  }

  async read(query: RequestLogQuery): Promise<StoredRequestLogRow[]> {
    const project = this.numberOf(query.projectId);
    if (project === undefined) return [];
    const rows = this.statements.read.all({
      project,
      since: query.since ?? 0,
      until: query.until ?? Number.MAX_SAFE_INTEGER,
      afterAt: query.after?.at ?? Number.MAX_SAFE_INTEGER,
      afterId: query.after?.id ?? Number.MAX_SAFE_INTEGER,
      kind: query.kind ?? null,
      app: query.app ?? null,
      statusMin: query.statusMin ?? 0,
      statusMax: query.statusMax ?? 999,
      pathPrefix: query.pathPrefix ?? null,
      limit: query.limit,
    }) as Row[];
    return rows.map((row) => rowOf(row, query.projectId));
  }

  async deleteOlder(projectId: string, before: number, limit: number): Promise<number> {
    const project = this.numberOf(projectId);
    return project === undefined ? 0 : this.statements.deleteOlder.run(project, before, limit).changes;
  }

  async deleteProject(projectId: string): Promise<number> {
    const project = this.numberOf(projectId);
    if (project === undefined) return 0;
    let deleted = 0;
    for (;;) {
      const { changes } = this.statements.deleteProject.run(project, DELETE_CHUNK);
      deleted += changes;
      if (changes < DELETE_CHUNK) return deleted;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async close(): Promise<void> {
    await this.thread?.close();
  }
}
