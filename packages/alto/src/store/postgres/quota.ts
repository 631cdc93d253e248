/**
 * @module store/postgres/quota
 * The PostgreSQL adapter of the quota port: limit settings, token buckets and monthly counters
 * shared by every Alto process on one database. Each take, reservation and settings change runs
 * in one transaction that first locks its row (an upsert that leaves the row as it is, so a row
 * seen for the first time is created and locked in the same statement): two processes never
 * read the same bucket or counter and both spend it. Additions, releases and reads are single
 * statements. The arithmetic is the embedded adapter's, so both give the same answers.
 */
import type pg from 'pg';
import type { CounterGrant, LimitValues, QuotaStore, TokenGrant } from '../quota.js';
import { migratePostgres } from './migrate.js';
import { inTransaction } from './transaction.js';

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_limit_settings (subject TEXT PRIMARY KEY, settings TEXT NOT NULL);
   CREATE TABLE IF NOT EXISTS alto_rate_buckets (
     bucket TEXT PRIMARY KEY,
     tokens DOUBLE PRECISION NOT NULL,
     updated_at BIGINT NOT NULL);
   CREATE INDEX IF NOT EXISTS alto_rate_buckets_updated ON alto_rate_buckets(updated_at);
   CREATE TABLE IF NOT EXISTS alto_limit_counters (
     counter TEXT NOT NULL,
     period TEXT COLLATE "C" NOT NULL,
     value BIGINT NOT NULL,
     PRIMARY KEY (counter, period));
   CREATE INDEX IF NOT EXISTS alto_limit_counters_period ON alto_limit_counters(period);`,
];

/** Tolerance when turning a refilled float into whole tokens (0.9999999 is one token). */
const EPSILON = 1e-9;

export class PostgresQuotaStore implements QuotaStore {
  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresQuotaStore> {
    await migratePostgres(pool, 'quota', MIGRATIONS);
    return new PostgresQuotaStore(pool);
  }

  async getLimits(subject: string): Promise<LimitValues> {
    const { rows } = await this.pool.query<{ settings: string }>('SELECT settings FROM alto_limit_settings WHERE subject = $1', [subject]);
    return rows[0] ? (JSON.parse(rows[0].settings) as LimitValues) : {};
  }

  async updateLimits(subject: string, changes: Record<string, number | null>): Promise<LimitValues> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ settings: string }>(
        `INSERT INTO alto_limit_settings (subject, settings) VALUES ($1, '{}')
         ON CONFLICT (subject) DO UPDATE SET settings = alto_limit_settings.settings RETURNING settings`,
        [subject],
      );
      const current = JSON.parse(rows[0].settings) as LimitValues;
      for (const [name, value] of Object.entries(changes)) {
        if (value === null) delete current[name];
        else current[name] = value;
      }
      if (Object.keys(current).length === 0) await client.query('DELETE FROM alto_limit_settings WHERE subject = $1', [subject]);
      else await client.query('UPDATE alto_limit_settings SET settings = $2 WHERE subject = $1', [subject, JSON.stringify(current)]);
      return current;
    });
  }

  async deleteLimits(subject: string): Promise<void> {
    await this.pool.query('DELETE FROM alto_limit_settings WHERE subject = $1', [subject]);
  }

  async takeTokens(bucket: string, want: number, ratePerSecond: number, capacity: number, now: number): Promise<TokenGrant> {
    return inTransaction(this.pool, async (client) => {
      // A bucket seen for the first time is created full as of now; either way the row is locked.
      const { rows } = await client.query<{ tokens: number; updated_at: string }>(
        `INSERT INTO alto_rate_buckets (bucket, tokens, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (bucket) DO UPDATE SET bucket = excluded.bucket
         RETURNING tokens, updated_at`,
        [bucket, capacity, now],
      );
      const storedAt = Number(rows[0].updated_at);
      // Another process may have written a slightly later time: never refill for negative time.
      const updatedAt = Math.max(storedAt, now);
      const elapsed = Math.max(0, now - storedAt);
      let tokens = Math.min(capacity, rows[0].tokens + (elapsed * ratePerSecond) / 1000);
      const granted = Math.max(0, Math.min(want, Math.floor(tokens + EPSILON)));
      tokens = Math.max(0, tokens - granted);
      await client.query('UPDATE alto_rate_buckets SET tokens = $2, updated_at = $3 WHERE bucket = $1', [bucket, tokens, updatedAt]);
      return { granted, tokens };
    });
  }

  async reserve(counter: string, period: string, want: number, limit: number): Promise<CounterGrant> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ value: string }>(
        `INSERT INTO alto_limit_counters (counter, period, value) VALUES ($1, $2, 0)
         ON CONFLICT (counter, period) DO UPDATE SET value = alto_limit_counters.value RETURNING value`,
        [counter, period],
      );
      const value = Number(rows[0].value);
      const granted = Math.max(0, Math.min(want, limit - value));
      if (granted > 0) {
        await client.query('UPDATE alto_limit_counters SET value = value + $3 WHERE counter = $1 AND period = $2', [counter, period, granted]);
      }
      return { granted, value: value + granted };
    });
  }

  async release(counter: string, period: string, amount: number): Promise<void> {
    if (amount <= 0) return;
    await this.pool.query('UPDATE alto_limit_counters SET value = GREATEST(0, value - $3) WHERE counter = $1 AND period = $2', [
      counter,
      period,
      amount,
    ]);
  }

  async add(counter: string, period: string, amount: number): Promise<void> {
    if (amount <= 0) return;
    await this.pool.query(
      `INSERT INTO alto_limit_counters AS c (counter, period, value) VALUES ($1, $2, $3)
       ON CONFLICT (counter, period) DO UPDATE SET value = c.value + excluded.value`,
      [counter, period, amount],
    );
  }

  async counterValue(counter: string, period: string): Promise<number> {
    const { rows } = await this.pool.query<{ value: string }>(
      'SELECT value FROM alto_limit_counters WHERE counter = $1 AND period = $2',
      [counter, period],
    );
    return rows[0] ? Number(rows[0].value) : 0;
  }

  async purge(period: string, before: number): Promise<void> {
    await this.pool.query('DELETE FROM alto_limit_counters WHERE period < $1', [period]);
    await this.pool.query('DELETE FROM alto_rate_buckets WHERE updated_at < $1', [before]);
  }
}
