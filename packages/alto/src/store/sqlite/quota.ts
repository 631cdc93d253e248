/**
 * @module store/sqlite/quota
 * The embedded adapter of the quota port. Every take and reservation runs in an IMMEDIATE
 * transaction, which holds SQLite's write lock from its first read: two processes sharing the
 * data folder cannot both read the same bucket or counter and both spend it.
 */
import type { CounterGrant, LimitValues, QuotaStore, TokenGrant } from '../quota.js';
import { migrate, type SqliteDatabase } from './database.js';

const MIGRATIONS = [
  `CREATE TABLE limit_settings (subject TEXT PRIMARY KEY, settings TEXT NOT NULL) WITHOUT ROWID;
   CREATE TABLE rate_buckets (
     bucket TEXT PRIMARY KEY,
     tokens REAL NOT NULL,
     updated_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE TABLE limit_counters (
     counter TEXT NOT NULL,
     period TEXT NOT NULL,
     value INTEGER NOT NULL,
     PRIMARY KEY (counter, period)) WITHOUT ROWID;`,
];

/** Tolerance when turning a refilled float into whole tokens (0.9999999 is one token). */
const EPSILON = 1e-9;

export class SqliteQuotaStore implements QuotaStore {
  private readonly statements;
  private readonly take: (bucket: string, want: number, rate: number, capacity: number, now: number) => TokenGrant;
  private readonly reserveUnits: (counter: string, period: string, want: number, limit: number) => CounterGrant;
  private readonly update: (subject: string, changes: Record<string, number | null>) => LimitValues;

  constructor(db: SqliteDatabase) {
    migrate(db, 'quota', MIGRATIONS);
    this.statements = {
      getLimits: db.prepare('SELECT settings FROM limit_settings WHERE subject = ?'),
      putLimits: db.prepare(
        'INSERT INTO limit_settings (subject, settings) VALUES (?, ?) ON CONFLICT (subject) DO UPDATE SET settings = excluded.settings',
      ),
      deleteLimits: db.prepare('DELETE FROM limit_settings WHERE subject = ?'),
      getBucket: db.prepare('SELECT tokens, updated_at FROM rate_buckets WHERE bucket = ?'),
      putBucket: db.prepare(
        `INSERT INTO rate_buckets (bucket, tokens, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (bucket) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at`,
      ),
      getCounter: db.prepare('SELECT value FROM limit_counters WHERE counter = ? AND period = ?'),
      addCounter: db.prepare(
        `INSERT INTO limit_counters (counter, period, value) VALUES (?, ?, ?)
         ON CONFLICT (counter, period) DO UPDATE SET value = value + excluded.value`,
      ),
      releaseCounter: db.prepare('UPDATE limit_counters SET value = max(0, value - ?) WHERE counter = ? AND period = ?'),
      purgeCounters: db.prepare('DELETE FROM limit_counters WHERE period < ?'),
      purgeBuckets: db.prepare('DELETE FROM rate_buckets WHERE updated_at < ?'),
    };
    const s = this.statements;

    const takeTransaction = db.transaction((bucket: string, want: number, rate: number, capacity: number, now: number): TokenGrant => {
      const row = s.getBucket.get(bucket) as { tokens: number; updated_at: number } | undefined;
      // Another process may have written a slightly later time: never refill for negative time.
      const updatedAt = row ? Math.max(row.updated_at, now) : now;
      const elapsed = row ? Math.max(0, now - row.updated_at) : 0;
      let tokens = row ? Math.min(capacity, row.tokens + (elapsed * rate) / 1000) : capacity;
      const granted = Math.max(0, Math.min(want, Math.floor(tokens + EPSILON)));
      tokens = Math.max(0, tokens - granted);
      s.putBucket.run(bucket, tokens, updatedAt);
      return { granted, tokens };
    });
    this.take = (...args) => takeTransaction.immediate(...args);

    const reserveTransaction = db.transaction((counter: string, period: string, want: number, limit: number): CounterGrant => {
      const value = (s.getCounter.get(counter, period) as { value: number } | undefined)?.value ?? 0;
      const granted = Math.max(0, Math.min(want, limit - value));
      if (granted > 0) s.addCounter.run(counter, period, granted);
      return { granted, value: value + granted };
    });
    this.reserveUnits = (...args) => reserveTransaction.immediate(...args);

    const updateTransaction = db.transaction((subject: string, changes: Record<string, number | null>): LimitValues => {
      const current = this.readLimits(subject);
      for (const [name, value] of Object.entries(changes)) {
        if (value === null) delete current[name];
        else current[name] = value;
      }
      if (Object.keys(current).length === 0) s.deleteLimits.run(subject);
      else s.putLimits.run(subject, JSON.stringify(current));
      return current;
    });
    this.update = (...args) => updateTransaction.immediate(...args);
  }

  private readLimits(subject: string): LimitValues {
    const row = this.statements.getLimits.get(subject) as { settings: string } | undefined;
    return row ? (JSON.parse(row.settings) as LimitValues) : {};
  }

  async getLimits(subject: string): Promise<LimitValues> {
    return this.readLimits(subject);
  }

  async updateLimits(subject: string, changes: Record<string, number | null>): Promise<LimitValues> {
    return this.update(subject, changes);
  }

  async deleteLimits(subject: string): Promise<void> {
    this.statements.deleteLimits.run(subject);
  }

  async takeTokens(bucket: string, want: number, ratePerSecond: number, capacity: number, now: number): Promise<TokenGrant> {
    return this.take(bucket, want, ratePerSecond, capacity, now);
  }

  async reserve(counter: string, period: string, want: number, limit: number): Promise<CounterGrant> {
    return this.reserveUnits(counter, period, want, limit);
  }

  async release(counter: string, period: string, amount: number): Promise<void> {
    if (amount > 0) this.statements.releaseCounter.run(amount, counter, period);
  }

  async add(counter: string, period: string, amount: number): Promise<void> {
    if (amount > 0) this.statements.addCounter.run(counter, period, amount);
  }

  async counterValue(counter: string, period: string): Promise<number> {
    return (this.statements.getCounter.get(counter, period) as { value: number } | undefined)?.value ?? 0;
  }

  async purge(period: string, before: number): Promise<void> {
    this.statements.purgeCounters.run(period);
    this.statements.purgeBuckets.run(before);
  }
}
