/**
 * @module blocks/cache/cache
 * The cache block's logic over the cache storage port: the limits (key and value sizes, TTL
 * range, batch size) with a precise 4xx for each, seconds on the wire and milliseconds in the
 * store, and M3O's answers (a missing key reads as an empty value). The embedded adapter also
 * gets a purge timer here, so rows that expire unread do not pile up.
 */
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { CacheEntry, CacheStore } from '../../store/cache/port.js';

export interface CacheLimits {
  /** Longest key, in UTF-8 bytes. */
  maxKeyBytes: number;
  /** Largest value, in UTF-8 bytes. */
  maxValueBytes: number;
  /** Longest time to live, in seconds. */
  maxTtlSeconds: number;
  /** Most keys in one GetMany or SetMany. */
  maxBatchItems: number;
}

export const DEFAULT_CACHE_LIMITS: CacheLimits = {
  maxKeyBytes: 512,
  maxValueBytes: 1024 * 1024,
  maxTtlSeconds: 10 * 365 * 24 * 3600,
  maxBatchItems: 1000,
};

/** How often the embedded adapter removes entries that expired without being read. */
export const PURGE_INTERVAL_MS = 60_000;

export interface CacheValue {
  key: string;
  value: string;
  ttl: number;
}

export interface NewCacheValue {
  key: string;
  value: string;
  ttl: number;
}

export class CacheBlock {
  private purgeTimer: NodeJS.Timeout | undefined;
  private purging: Promise<unknown> = Promise.resolve();

  constructor(
    readonly store: CacheStore,
    private readonly log: Logger,
    private readonly limits: CacheLimits = DEFAULT_CACHE_LIMITS,
  ) {}

  /** Starts the periodic purge (embedded adapter only; Redis expires keys itself). */
  startPurging(intervalMs = PURGE_INTERVAL_MS): void {
    if (this.store.backend !== 'sqlite' || this.purgeTimer) return;
    this.purgeTimer = setInterval(() => {
      this.purging = this.store
        .purgeExpired()
        .then((removed) => removed > 0 && this.log.debug({ removed }, 'cache: purged expired entries'))
        .catch((error: unknown) => this.log.error({ err: error }, 'cache: purging expired entries failed'));
    }, intervalMs);
    this.purgeTimer.unref(); // a pending purge never keeps the process alive
  }

  async get(namespace: string, key: string): Promise<CacheValue> {
    this.checkKey(key);
    return toWire(key, await this.store.get(namespace, key));
  }

  async getMany(namespace: string, keys: string[]): Promise<CacheValue[]> {
    this.checkBatch(keys.length, 'keys');
    keys.forEach((key, i) => this.checkKey(key, `keys.${i}`));
    const entries = await this.store.getMany(namespace, keys);
    return keys.flatMap((key, i) => (entries[i] ? [toWire(key, entries[i])] : []));
  }

  async set(namespace: string, item: NewCacheValue): Promise<void> {
    this.checkItem(item, '');
    await this.store.set(namespace, { key: item.key, value: item.value, ttlMs: item.ttl * 1000 });
  }

  async setMany(namespace: string, items: NewCacheValue[]): Promise<void> {
    this.checkBatch(items.length, 'items');
    items.forEach((item, i) => this.checkItem(item, `items.${i}.`));
    await this.store.setMany(
      namespace,
      items.map((item) => ({ key: item.key, value: item.value, ttlMs: item.ttl * 1000 })),
    );
  }

  async delete(namespace: string, key: string): Promise<void> {
    this.checkKey(key);
    await this.store.delete(namespace, key);
  }

  async increment(namespace: string, key: string, delta: number): Promise<number> {
    this.checkKey(key);
    return this.store.increment(namespace, key, delta);
  }

  async listKeys(namespace: string, prefix: string): Promise<string[]> {
    if (Buffer.byteLength(prefix) > this.limits.maxKeyBytes) {
      throw errors.badRequest(`prefix: longer than the ${this.limits.maxKeyBytes}-byte key limit, so no key can start with it`);
    }
    return this.store.listKeys(namespace, prefix);
  }

  async deleteProject(projectId: string): Promise<number> {
    return this.store.deleteProject(projectId);
  }

  async close(): Promise<void> {
    clearInterval(this.purgeTimer);
    this.purgeTimer = undefined;
    await this.purging;
    await this.store.close();
  }

  private checkKey(key: string, field = 'key'): void {
    if (key.length === 0) throw errors.badRequest(`${field}: missing; give the key of the entry`);
    const bytes = Buffer.byteLength(key);
    if (bytes > this.limits.maxKeyBytes) {
      throw errors.badRequest(
        `${field}: ${bytes} bytes is longer than the ${this.limits.maxKeyBytes}-byte limit; use a shorter key (a hash of a long one, say)`,
      );
    }
  }

  private checkItem(item: NewCacheValue, fieldPrefix: string): void {
    this.checkKey(item.key, `${fieldPrefix}key`);
    const bytes = Buffer.byteLength(item.value);
    if (bytes > this.limits.maxValueBytes) {
      throw errors.payloadTooLarge(
        `${fieldPrefix}value: ${bytes} bytes is larger than the ${this.limits.maxValueBytes}-byte limit of a cache value`,
      );
    }
    if (item.ttl < 0 || item.ttl > this.limits.maxTtlSeconds) {
      throw errors.badRequest(
        `${fieldPrefix}ttl: ${item.ttl} is out of range; give 1 to ${this.limits.maxTtlSeconds} seconds, or 0 for no expiry`,
      );
    }
  }

  private checkBatch(count: number, field: string): void {
    if (count > this.limits.maxBatchItems) {
      throw errors.badRequest(`${field}: ${count} entries is more than ${this.limits.maxBatchItems} in one call; split the call`);
    }
  }
}

/** Seconds left, rounded up: a value set with ttl 60 reads back as 60, not 59. */
function toWire(key: string, entry: CacheEntry | undefined): CacheValue {
  if (!entry) return { key, value: '', ttl: 0 };
  return { key, value: entry.value, ttl: entry.ttlMs === undefined ? 0 : Math.max(1, Math.ceil(entry.ttlMs / 1000)) };
}
