/**
 * @module store/cache/sqlite
 * The embedded cache adapter: one WITHOUT ROWID table keyed by (namespace, key) in the shared
 * SQLite file. Expiry is a timestamp column: reads treat a past timestamp as absent and delete
 * the row on the way (lazy expiry); `purgeExpired` removes the rest in small batches so a big
 * purge never holds the write lock for long. Increments run in one IMMEDIATE transaction, so
 * two processes sharing the file never lose an update.
 */
import { errors } from '../../kit/errors.js';
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import {
  MAX_COUNTER,
  notAnIntegerDetail,
  outOfRangeDetail,
  type CacheEntry,
  type CacheItem,
  type CacheStore,
} from './port.js';

const MIGRATIONS = [
  `CREATE TABLE cache_entries (
     namespace TEXT NOT NULL,
     key TEXT NOT NULL,
     value TEXT NOT NULL,
     expires_at INTEGER,
     PRIMARY KEY (namespace, key)) WITHOUT ROWID;
   CREATE INDEX cache_entries_expiry ON cache_entries(expires_at) WHERE expires_at IS NOT NULL;`,
];

/** Rows deleted per purge statement: small enough that writers barely wait. */
const PURGE_BATCH = 1000;
const INTEGER = /^-?(0|[1-9][0-9]*)$/;

interface EntryRow {
  value: string;
  expires_at: number | null;
}

export class SqliteCacheStore implements CacheStore {
  readonly backend = 'sqlite';
  private readonly statements;
  private readonly writeMany: (namespace: string, items: CacheItem[], now: number) => void;
  private readonly incrementInTransaction: (namespace: string, key: string, delta: number, now: number) => number;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => number = Date.now,
  ) {
    migrate(db, 'cache', MIGRATIONS);
    this.statements = {
      get: db.prepare('SELECT value, expires_at FROM cache_entries WHERE namespace = ? AND key = ?'),
      deleteIfExpired: db.prepare(
        'DELETE FROM cache_entries WHERE namespace = ? AND key = ? AND expires_at IS NOT NULL AND expires_at <= ?',
      ),
      upsert: db.prepare(`INSERT INTO cache_entries (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`),
      delete: db.prepare(
        'DELETE FROM cache_entries WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)',
      ),
      deleteAny: db.prepare('DELETE FROM cache_entries WHERE namespace = ? AND key = ?'),
      listKeys: db.prepare(`SELECT key FROM cache_entries
        WHERE namespace = ? AND key >= ? AND substr(key, 1, length(?)) = ? AND (expires_at IS NULL OR expires_at > ?)
        ORDER BY key`),
      deleteProject: db.prepare(`DELETE FROM cache_entries WHERE namespace >= ? AND substr(namespace, 1, length(?)) = ?`),
      purge: db.prepare(`DELETE FROM cache_entries WHERE (namespace, key) IN (
        SELECT namespace, key FROM cache_entries WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ${PURGE_BATCH})`),
    };
    this.writeMany = db.transaction((namespace: string, items: CacheItem[], now: number) => {
      for (const item of items) this.statements.upsert.run(namespace, item.key, item.value, expiryOf(item, now));
    });
    const incrementBody = db.transaction((namespace: string, key: string, delta: number, now: number) => {
      const row = this.statements.get.get(namespace, key) as EntryRow | undefined;
      const live = row && !isExpired(row, now) ? row : undefined;
      let current = 0;
      if (live) {
        if (!INTEGER.test(live.value)) throw errors.badRequest(notAnIntegerDetail(key));
        current = Number(live.value);
      }
      const next = current + delta;
      if (!Number.isSafeInteger(current) || Math.abs(next) > MAX_COUNTER) throw errors.badRequest(outOfRangeDetail(key));
      // A live key keeps its expiry (as Redis INCRBY does); a missing or expired one starts afresh.
      this.statements.upsert.run(namespace, key, String(next), live ? live.expires_at : null);
      return next;
    });
    this.incrementInTransaction = (namespace, key, delta, now) => incrementBody.immediate(namespace, key, delta, now);
  }

  private read(namespace: string, key: string, now: number): CacheEntry | undefined {
    const row = this.statements.get.get(namespace, key) as EntryRow | undefined;
    if (!row) return undefined;
    if (isExpired(row, now)) {
      this.statements.deleteIfExpired.run(namespace, key, now);
      return undefined;
    }
    return { value: row.value, ttlMs: row.expires_at === null ? undefined : row.expires_at - now };
  }

  async get(namespace: string, key: string): Promise<CacheEntry | undefined> {
    return this.read(namespace, key, this.now());
  }

  async getMany(namespace: string, keys: string[]): Promise<(CacheEntry | undefined)[]> {
    const now = this.now();
    return keys.map((key) => this.read(namespace, key, now));
  }

  async set(namespace: string, item: CacheItem): Promise<void> {
    this.statements.upsert.run(namespace, item.key, item.value, expiryOf(item, this.now()));
  }

  async setMany(namespace: string, items: CacheItem[]): Promise<void> {
    this.writeMany(namespace, items, this.now());
  }

  async delete(namespace: string, key: string): Promise<boolean> {
    const now = this.now();
    const deleted = this.statements.delete.run(namespace, key, now).changes > 0;
    if (!deleted) this.statements.deleteAny.run(namespace, key); // an expired leftover goes too
    return deleted;
  }

  async increment(namespace: string, key: string, delta: number): Promise<number> {
    return this.incrementInTransaction(namespace, key, delta, this.now());
  }

  async listKeys(namespace: string, prefix = ''): Promise<string[]> {
    const rows = this.statements.listKeys.all(namespace, prefix, prefix, prefix, this.now()) as { key: string }[];
    return rows.map((row) => row.key);
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    return this.statements.deleteProject.run(prefix, prefix, prefix).changes;
  }

  async purgeExpired(): Promise<number> {
    const now = this.now();
    let total = 0;
    for (;;) {
      const removed = this.statements.purge.run(now).changes;
      total += removed;
      if (removed < PURGE_BATCH) return total;
    }
  }

  async close(): Promise<void> {
    // The database handle is shared with other adapters; `Stores.close()` closes it.
  }
}

function isExpired(row: EntryRow, now: number): boolean {
  return row.expires_at !== null && row.expires_at <= now;
}

function expiryOf(item: CacheItem, now: number): number | null {
  return item.ttlMs ? now + item.ttlMs : null;
}
