/**
 * @module store/request-log/sqlite
 * The embedded adapter of the request-log port: one SQLite table with an index by project and
 * time, which serves both the newest-first reads (walked backwards) and the retention deletes.
 * Rows are written many to a statement and a few hundred to a transaction, yielding to the
 * event loop between transactions, so a large batch never holds the edge up for long. The table
 * takes a row per request, so each row names its project by a small number
 * (`request_log_projects`) rather than its 36-character id: that halves what a row costs to
 * write, its index entry included.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { RequestKind, RequestLogQuery, RequestLogRow, RequestLogStore, StoredRequestLogRow } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE request_log (
     id INTEGER PRIMARY KEY,
     project_id TEXT NOT NULL,
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
   CREATE INDEX request_log_project_at ON request_log(project_id, at);`,
  // Projects by number: the rows of the first layout (hours old at most) are not kept.
  `DROP TABLE request_log;
   CREATE TABLE request_log_projects (
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

const COLUMNS = 'project, at, kind, method, path, status, duration_ms, bytes_in, bytes_out, key_prefix, client_address, request_id, app';
const COLUMN_COUNT = 13;
/** Rows bound to one INSERT statement. */
const ROWS_PER_STATEMENT = 32;
/** Rows per transaction: about a millisecond of the write lock and of the event loop. */
const ROWS_PER_TRANSACTION = 512;

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

function placeholders(rows: number): string {
  const one = `(${new Array(COLUMN_COUNT).fill('?').join(', ')})`;
  return new Array(rows).fill(one).join(', ');
}

/** Puts the row's values into `values` from `offset` on, in COLUMNS order (`project`: the project's number). */
function bind(values: unknown[], offset: number, row: RequestLogRow, project: number): void {
  values[offset] = project;
  values[offset + 1] = row.at;
  values[offset + 2] = row.kind;
  values[offset + 3] = row.method;
  values[offset + 4] = row.path;
  values[offset + 5] = row.status;
  values[offset + 6] = row.durationMs;
  values[offset + 7] = row.bytesIn;
  values[offset + 8] = row.bytesOut;
  values[offset + 9] = row.keyPrefix;
  values[offset + 10] = row.clientAddress;
  values[offset + 11] = row.requestId;
  values[offset + 12] = row.app;
}

export class SqliteRequestLogStore implements RequestLogStore {
  private readonly insertMany;
  private readonly insertOne;
  private readonly writeChunk: (rows: RequestLogRow[], from: number, to: number) => void;
  private readonly statements;
  /** Each project's number, as `request_log_projects` holds it (it never changes once given). */
  private readonly projectNumbers = new Map<string, number>();

  constructor(db: SqliteDatabase) {
    migrate(db, 'request_log', MIGRATIONS);
    this.insertMany = db.prepare(`INSERT INTO request_log (${COLUMNS}) VALUES ${placeholders(ROWS_PER_STATEMENT)}`);
    this.insertOne = db.prepare(`INSERT INTO request_log (${COLUMNS}) VALUES ${placeholders(1)}`);
    const many = new Array<unknown>(ROWS_PER_STATEMENT * COLUMN_COUNT);
    const one = new Array<unknown>(COLUMN_COUNT);
    this.writeChunk = db.transaction((rows: RequestLogRow[], from: number, to: number) => {
      let index = from;
      for (; index + ROWS_PER_STATEMENT <= to; index += ROWS_PER_STATEMENT) {
        for (let row = 0; row < ROWS_PER_STATEMENT; row++) bind(many, row * COLUMN_COUNT, rows[index + row], this.numberOf(rows[index + row].projectId, true)!);
        this.insertMany.run(many);
      }
      for (; index < to; index++) {
        bind(one, 0, rows[index], this.numberOf(rows[index].projectId, true)!);
        this.insertOne.run(one);
      }
    });
    this.statements = {
      addProject: db.prepare('INSERT INTO request_log_projects (project_id) VALUES (?) ON CONFLICT (project_id) DO NOTHING'),
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

  /** The project's number, given it first with `add` (another process sharing the file may give it first); undefined when it has none. */
  private numberOf(projectId: string, add: boolean): number | undefined {
    const known = this.projectNumbers.get(projectId);
    if (known !== undefined) return known;
    if (add) this.statements.addProject.run(projectId);
    const found = this.statements.projectNumber.get(projectId) as number | undefined;
    if (found !== undefined) this.projectNumbers.set(projectId, found);
    return found;
  }

  async append(rows: RequestLogRow[]): Promise<void> {
    for (let from = 0; from < rows.length; from += ROWS_PER_TRANSACTION) {
      // SQLite calls are synchronous: let requests through between transactions.
      if (from > 0) await new Promise((resolve) => setImmediate(resolve));
      this.writeChunk(rows, from, Math.min(rows.length, from + ROWS_PER_TRANSACTION));
    }
  }

  async read(query: RequestLogQuery): Promise<StoredRequestLogRow[]> {
    const project = this.numberOf(query.projectId, false);
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
    const project = this.numberOf(projectId, false);
    return project === undefined ? 0 : this.statements.deleteOlder.run(project, before, limit).changes;
  }

  async deleteProject(projectId: string): Promise<number> {
    const project = this.numberOf(projectId, false);
    if (project === undefined) return 0;
    let deleted = 0;
    for (;;) {
      const { changes } = this.statements.deleteProject.run(project, 5000);
      deleted += changes;
      if (changes < 5000) return deleted;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
