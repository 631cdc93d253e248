/**
 * @module store/postgres/usage
 * The PostgreSQL adapter of the usage port, shared by every Alto process on one database: each
 * batch of records is inserted with one statement (arrays unnested) and added to the daily
 * totals with one upsert, in one transaction, so reports on any process count the calls of all
 * of them. Totals are upserted in a fixed order, so two processes adding to the same days cannot
 * deadlock. Text columns use the "C" collation, so reports come in the same order as from SQLite.
 */
import type pg from 'pg';
import {
  dailyCallTotals,
  dailyComputeTotals,
  type ComputeUsageDay,
  type ComputeUsageQuery,
  type ComputeUsageRecord,
  type UsageDay,
  type UsageQuery,
  type UsageRecord,
  type UsageStore,
} from '../usage.js';
import { callRows } from '../usage-calls.mjs';
import { migratePostgres } from './migrate.js';
import { inTransaction } from './transaction.js';

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_usage_records (
     at BIGINT NOT NULL,
     project_id TEXT NOT NULL,
     key_id TEXT NOT NULL,
     service TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     status INTEGER NOT NULL,
     bytes_in BIGINT NOT NULL,
     bytes_out BIGINT NOT NULL,
     price_micros BIGINT NOT NULL);
   CREATE INDEX IF NOT EXISTS alto_usage_records_at ON alto_usage_records(at);
   CREATE TABLE IF NOT EXISTS alto_usage_daily (
     project_id TEXT COLLATE "C" NOT NULL,
     day TEXT COLLATE "C" NOT NULL,
     key_id TEXT COLLATE "C" NOT NULL,
     service TEXT COLLATE "C" NOT NULL,
     endpoint TEXT COLLATE "C" NOT NULL,
     calls BIGINT NOT NULL,
     errors BIGINT NOT NULL,
     bytes_in BIGINT NOT NULL,
     bytes_out BIGINT NOT NULL,
     price_micros BIGINT NOT NULL,
     PRIMARY KEY (project_id, day, key_id, service, endpoint));
   CREATE TABLE IF NOT EXISTS alto_compute_usage_records (
     at BIGINT NOT NULL,
     project_id TEXT NOT NULL,
     app TEXT NOT NULL,
     instance TEXT NOT NULL,
     running_ms BIGINT NOT NULL,
     memory_mib BIGINT NOT NULL,
     requests BIGINT NOT NULL,
     price_micros BIGINT NOT NULL);
   CREATE INDEX IF NOT EXISTS alto_compute_usage_records_at ON alto_compute_usage_records(at);
   CREATE TABLE IF NOT EXISTS alto_compute_daily (
     project_id TEXT COLLATE "C" NOT NULL,
     day TEXT COLLATE "C" NOT NULL,
     app TEXT COLLATE "C" NOT NULL,
     running_ms BIGINT NOT NULL,
     mib_ms BIGINT NOT NULL,
     requests BIGINT NOT NULL,
     price_micros BIGINT NOT NULL,
     PRIMARY KEY (project_id, day, app));`,
  // A row per second, caller, endpoint and status (usage-calls.mjs callRows), with its number
  // of calls; rows written before were one call each.
  `ALTER TABLE alto_usage_records ADD COLUMN IF NOT EXISTS calls BIGINT NOT NULL DEFAULT 1;`,
];

/** Records deleted per statement by the retention purge, so no single delete holds locks long. */
const PURGE_CHUNK = 5000;

/** Columns of rows, one array per column, for `unnest($1::bigint[], $2::text[], ...)`. */
function columnsOf<T>(rows: T[], pick: ((row: T) => unknown)[]): unknown[][] {
  return pick.map((column) => rows.map(column));
}

export class PostgresUsageStore implements UsageStore {
  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresUsageStore> {
    await migratePostgres(pool, 'usage', MIGRATIONS);
    return new PostgresUsageStore(pool);
  }

  async appendUsage(records: UsageRecord[]): Promise<void> {
    if (records.length === 0) return;
    const rows = callRows(records);
    const totals = dailyCallTotals(rows);
    await inTransaction(this.pool, async (client) => {
      await client.query(
        `INSERT INTO alto_usage_records
           (at, project_id, key_id, service, endpoint, status, calls, bytes_in, bytes_out, price_micros)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])`,
        columnsOf(rows, [
          (r) => r.at,
          (r) => r.projectId,
          (r) => r.keyId,
          (r) => r.service,
          (r) => r.endpoint,
          (r) => r.status,
          (r) => r.calls,
          (r) => r.bytesIn,
          (r) => r.bytesOut,
          (r) => r.priceMicros,
        ]),
      );
      await client.query(
        `INSERT INTO alto_usage_daily AS d
           (project_id, day, key_id, service, endpoint, calls, errors, bytes_in, bytes_out, price_micros)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
         ON CONFLICT (project_id, day, key_id, service, endpoint) DO UPDATE SET
           calls = d.calls + excluded.calls, errors = d.errors + excluded.errors,
           bytes_in = d.bytes_in + excluded.bytes_in, bytes_out = d.bytes_out + excluded.bytes_out,
           price_micros = d.price_micros + excluded.price_micros`,
        columnsOf(totals, [
          (t) => t.projectId,
          (t) => t.day,
          (t) => t.keyId,
          (t) => t.service,
          (t) => t.endpoint,
          (t) => t.calls,
          (t) => t.errors,
          (t) => t.bytesIn,
          (t) => t.bytesOut,
          (t) => t.priceMicros,
        ]),
      );
    });
  }

  async appendComputeUsage(records: ComputeUsageRecord[]): Promise<void> {
    if (records.length === 0) return;
    const totals = dailyComputeTotals(records);
    await inTransaction(this.pool, async (client) => {
      await client.query(
        `INSERT INTO alto_compute_usage_records
           (at, project_id, app, instance, running_ms, memory_mib, requests, price_micros)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])`,
        columnsOf(records, [
          (r) => r.at,
          (r) => r.projectId,
          (r) => r.app,
          (r) => r.instance,
          (r) => r.runningMs,
          (r) => r.memoryMiB,
          (r) => r.requests,
          (r) => r.priceMicros,
        ]),
      );
      await client.query(
        `INSERT INTO alto_compute_daily AS d (project_id, day, app, running_ms, mib_ms, requests, price_micros)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
         ON CONFLICT (project_id, day, app) DO UPDATE SET
           running_ms = d.running_ms + excluded.running_ms, mib_ms = d.mib_ms + excluded.mib_ms,
           requests = d.requests + excluded.requests, price_micros = d.price_micros + excluded.price_micros`,
        columnsOf(totals, [
          (t) => t.projectId,
          (t) => t.day,
          (t) => t.app,
          (t) => t.runningMs,
          (t) => t.mibMs,
          (t) => t.requests,
          (t) => t.priceMicros,
        ]),
      );
    });
  }

  async readUsage(query: UsageQuery): Promise<UsageDay[]> {
    const { rows } = await this.pool.query<Record<keyof UsageDay, string>>(
      `SELECT day, key_id AS "keyId", service, endpoint, calls, errors,
         bytes_in AS "bytesIn", bytes_out AS "bytesOut", price_micros AS "priceMicros"
       FROM alto_usage_daily
       WHERE project_id = $1 AND day >= $2 AND day <= $3
         AND ($4::text IS NULL OR key_id = $4)
         AND ($5::text IS NULL OR service = $5)
         AND ($6::text IS NULL OR endpoint = $6)
       ORDER BY day, service, endpoint, key_id`,
      [query.projectId, query.fromDay, query.toDay, query.keyId ?? null, query.service ?? null, query.endpoint ?? null],
    );
    return rows.map((row) => ({
      day: row.day,
      keyId: row.keyId,
      service: row.service,
      endpoint: row.endpoint,
      calls: Number(row.calls),
      errors: Number(row.errors),
      bytesIn: Number(row.bytesIn),
      bytesOut: Number(row.bytesOut),
      priceMicros: Number(row.priceMicros),
    }));
  }

  async readComputeUsage(query: ComputeUsageQuery): Promise<ComputeUsageDay[]> {
    const { rows } = await this.pool.query<Record<keyof ComputeUsageDay, string>>(
      `SELECT day, app, running_ms AS "runningMs", mib_ms AS "mibMs", requests, price_micros AS "priceMicros"
       FROM alto_compute_daily
       WHERE project_id = $1 AND day >= $2 AND day <= $3 AND ($4::text IS NULL OR app = $4)
       ORDER BY day, app`,
      [query.projectId, query.fromDay, query.toDay, query.app ?? null],
    );
    return rows.map((row) => ({
      day: row.day,
      app: row.app,
      runningMs: Number(row.runningMs),
      mibMs: Number(row.mibMs),
      requests: Number(row.requests),
      priceMicros: Number(row.priceMicros),
    }));
  }

  async purgeRecords(before: number): Promise<number> {
    let deleted = 0;
    for (const table of ['alto_usage_records', 'alto_compute_usage_records']) {
      for (;;) {
        const { rowCount } = await this.pool.query(
          `DELETE FROM ${table} WHERE ctid IN (SELECT ctid FROM ${table} WHERE at < $1 LIMIT ${PURGE_CHUNK})`,
          [before],
        );
        deleted += rowCount ?? 0;
        if ((rowCount ?? 0) < PURGE_CHUNK) break;
      }
    }
    return deleted;
  }
}
