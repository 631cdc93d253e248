/**
 * @module store/sqlite/usage
 * The embedded adapter of the usage port: records appended and daily totals updated in one
 * transaction per batch. A batch is summed in memory first, so a batch of a thousand calls to
 * one endpoint in one second costs one row of records and one upsert of its daily total.
 */
import {
  dailyComputeTotals,
  type ComputeUsageDay,
  type ComputeUsageQuery,
  type ComputeUsageRecord,
  type UsageDay,
  type UsageQuery,
  type UsageRecord,
  type UsageStore,
} from '../usage.js';
import { callRows, callRowsOfColumns, sqliteCallWriter } from '../usage-calls.mjs';
import { UsageWriteError, type CallColumns, type CallRow } from '../usage.js';
import { migrate, type SqliteDatabase } from './database.js';
import { SqliteWriterThread } from './writer-thread.js';

const MIGRATIONS = [
  `CREATE TABLE usage_records (
     at INTEGER NOT NULL,
     project_id TEXT NOT NULL,
     key_id TEXT NOT NULL,
     service TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     status INTEGER NOT NULL,
     bytes_in INTEGER NOT NULL,
     bytes_out INTEGER NOT NULL,
     price_micros INTEGER NOT NULL);
   CREATE INDEX usage_records_project ON usage_records(project_id, at);`,
  // Daily totals (what reports read), compute records, and an index by time alone for the
  // retention purge; reports no longer scan the records, so the per-project index goes.
  `CREATE TABLE usage_daily (
     project_id TEXT NOT NULL,
     day TEXT NOT NULL,
     key_id TEXT NOT NULL,
     service TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     calls INTEGER NOT NULL,
     errors INTEGER NOT NULL,
     bytes_in INTEGER NOT NULL,
     bytes_out INTEGER NOT NULL,
     price_micros INTEGER NOT NULL,
     PRIMARY KEY (project_id, day, key_id, service, endpoint)) WITHOUT ROWID;
   INSERT INTO usage_daily
     SELECT project_id, strftime('%Y-%m-%d', at / 1000, 'unixepoch'), key_id, service, endpoint,
            COUNT(*), SUM(status >= 400), SUM(bytes_in), SUM(bytes_out), SUM(price_micros)
     FROM usage_records GROUP BY 1, 2, 3, 4, 5;
   DROP INDEX usage_records_project;
   CREATE INDEX usage_records_at ON usage_records(at);
   CREATE TABLE compute_usage_records (
     at INTEGER NOT NULL,
     project_id TEXT NOT NULL,
     app TEXT NOT NULL,
     instance TEXT NOT NULL,
     running_ms INTEGER NOT NULL,
     memory_mib INTEGER NOT NULL,
     requests INTEGER NOT NULL,
     price_micros INTEGER NOT NULL);
   CREATE INDEX compute_usage_records_at ON compute_usage_records(at);
   CREATE TABLE compute_daily (
     project_id TEXT NOT NULL,
     day TEXT NOT NULL,
     app TEXT NOT NULL,
     running_ms INTEGER NOT NULL,
     mib_ms INTEGER NOT NULL,
     requests INTEGER NOT NULL,
     price_micros INTEGER NOT NULL,
     PRIMARY KEY (project_id, day, app)) WITHOUT ROWID;`,
  // A row per second, caller, endpoint and status (usage-calls.mjs callRows), with its number
  // of calls; rows written before were one call each.
  `ALTER TABLE usage_records ADD COLUMN calls INTEGER NOT NULL DEFAULT 1;`,
];

/** Records deleted per statement by the retention purge, so no single delete stalls requests. */
const PURGE_CHUNK = 5000;

export class SqliteUsageStore implements UsageStore {
  private readonly appendCalls: (rows: CallRow[]) => void;
  private readonly writer: SqliteWriterThread<CallColumns> | undefined;
  private readonly appendCompute: (records: ComputeUsageRecord[]) => void;
  private readonly statements;

  /** `writerThread`: write call records from a thread of its own (a database in a file only); the running instance's store does. */
  constructor(
    private readonly db: SqliteDatabase,
    options: { writerThread?: boolean } = {},
  ) {
    migrate(db, 'usage', MIGRATIONS);
    const insertCompute = db.prepare(`INSERT INTO compute_usage_records
      (at, project_id, app, instance, running_ms, memory_mib, requests, price_micros) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    const addComputeDay = db.prepare(`INSERT INTO compute_daily
      (project_id, day, app, running_ms, mib_ms, requests, price_micros) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (project_id, day, app) DO UPDATE SET
        running_ms = running_ms + excluded.running_ms, mib_ms = mib_ms + excluded.mib_ms,
        requests = requests + excluded.requests, price_micros = price_micros + excluded.price_micros`);

    this.appendCalls = sqliteCallWriter(db);
    // Off the event loop: a thread of its own with its own connection (usage-worker.mjs).
    if (options.writerThread && !db.memory)
      // Beside this file, in src/ and in dist/ alike (the build copies it as it is).
      this.writer = new SqliteWriterThread<CallColumns>(
        new URL('./usage-worker.mjs', import.meta.url),
        db.name,
        'usage writer',
        (message, written) => new UsageWriteError(`writing usage records failed: ${message}`, written),
        (error) => new UsageWriteError(error.message, 0),
      );
    this.appendCompute = db.transaction((records: ComputeUsageRecord[]) => {
      for (const r of records) {
        insertCompute.run(r.at, r.projectId, r.app, r.instance, r.runningMs, r.memoryMiB, r.requests, r.priceMicros);
      }
      for (const t of dailyComputeTotals(records)) {
        addComputeDay.run(t.projectId, t.day, t.app, t.runningMs, t.mibMs, t.requests, t.priceMicros);
      }
    });
    this.statements = {
      readCalls: db.prepare(`SELECT day, key_id AS keyId, service, endpoint, calls, errors,
          bytes_in AS bytesIn, bytes_out AS bytesOut, price_micros AS priceMicros
        FROM usage_daily
        WHERE project_id = @projectId AND day >= @fromDay AND day <= @toDay
          AND (@keyId IS NULL OR key_id = @keyId)
          AND (@service IS NULL OR service = @service)
          AND (@endpoint IS NULL OR endpoint = @endpoint)
        ORDER BY day, service, endpoint, key_id`),
      readCompute: db.prepare(`SELECT day, app, running_ms AS runningMs, mib_ms AS mibMs, requests, price_micros AS priceMicros
        FROM compute_daily
        WHERE project_id = @projectId AND day >= @fromDay AND day <= @toDay AND (@app IS NULL OR app = @app)
        ORDER BY day, app`),
      purgeCalls: db.prepare(
        `DELETE FROM usage_records WHERE rowid IN (SELECT rowid FROM usage_records WHERE at < ? LIMIT ${PURGE_CHUNK})`,
      ),
      purgeCompute: db.prepare(
        `DELETE FROM compute_usage_records WHERE rowid IN (SELECT rowid FROM compute_usage_records WHERE at < ? LIMIT ${PURGE_CHUNK})`,
      ),
    };
  }

  async appendUsage(records: UsageRecord[]): Promise<void> {
    if (records.length > 0) this.appendCalls(callRows(records));
  }

  /** Through the writer thread when there is one, else here. */
  appendCallColumns(batch: CallColumns): Promise<void> {
    if (this.writer?.alive) return this.writer.write(batch);
    if (batch.length > 0) this.appendCalls(callRowsOfColumns(batch));
    return Promise.resolve();
  }

  async close(): Promise<void> {
    await this.writer?.close();
  }

  async appendComputeUsage(records: ComputeUsageRecord[]): Promise<void> {
    if (records.length > 0) this.appendCompute(records);
  }

  async readUsage(query: UsageQuery): Promise<UsageDay[]> {
    return this.statements.readCalls.all({
      projectId: query.projectId,
      fromDay: query.fromDay,
      toDay: query.toDay,
      keyId: query.keyId ?? null,
      service: query.service ?? null,
      endpoint: query.endpoint ?? null,
    }) as UsageDay[];
  }

  async readComputeUsage(query: ComputeUsageQuery): Promise<ComputeUsageDay[]> {
    return this.statements.readCompute.all({
      projectId: query.projectId,
      fromDay: query.fromDay,
      toDay: query.toDay,
      app: query.app ?? null,
    }) as ComputeUsageDay[];
  }

  async purgeRecords(before: number): Promise<number> {
    let deleted = 0;
    for (const statement of [this.statements.purgeCalls, this.statements.purgeCompute]) {
      for (;;) {
        const { changes } = statement.run(before);
        deleted += changes;
        if (changes < PURGE_CHUNK) break;
        // SQLite calls are synchronous: let requests through between chunks.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    return deleted;
  }
}
