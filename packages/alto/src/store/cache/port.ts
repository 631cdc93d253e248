/**
 * @module store/cache/port
 * The cache storage port: string values under string keys, each with an optional expiry, per
 * tenant namespace. Adapters: `sqlite.ts` (embedded; expires lazily on read, purged by a timer
 * the block runs) and `redis.ts` (scale-out; Redis expires keys itself). Every method takes the
 * namespace first, so one project can never name another's keys. Expired entries do not exist
 * for any method: not for reads, not for listings, not for increments.
 */

export interface CacheEntry {
  value: string;
  /** Milliseconds left before the entry expires; undefined when it never does. */
  ttlMs: number | undefined;
}

export interface CacheItem {
  key: string;
  value: string;
  /** Milliseconds until the entry expires; 0 or undefined: never. */
  ttlMs?: number;
}

/** Largest counter an increment may produce: every client reads it exactly as a JSON number. */
export const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

export interface CacheStore {
  readonly backend: 'sqlite' | 'redis';
  get(namespace: string, key: string): Promise<CacheEntry | undefined>;
  /** One result per key, in the order asked; undefined where a key is missing or expired. */
  getMany(namespace: string, keys: string[]): Promise<(CacheEntry | undefined)[]>;
  /** Writes (or overwrites) one entry; its expiry is replaced too. */
  set(namespace: string, item: CacheItem): Promise<void>;
  /** Writes every item or none. */
  setMany(namespace: string, items: CacheItem[]): Promise<void>;
  /** Returns false when there was no such (unexpired) key. */
  delete(namespace: string, key: string): Promise<boolean>;
  /**
   * Adds `delta` to an integer value atomically and returns the new value. A missing or expired
   * key counts as 0 (and gets no expiry); an existing key keeps its expiry. A value that is not
   * an integer, or a result beyond ±MAX_COUNTER, is a 400 and changes nothing.
   */
  increment(namespace: string, key: string, delta: number): Promise<number>;
  /** Unexpired keys, sorted, optionally only those starting with `prefix`. */
  listKeys(namespace: string, prefix?: string): Promise<string[]>;
  /** Deletes the keys of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<number>;
  /** Removes expired entries that nobody read since they expired; returns how many. */
  purgeExpired(): Promise<number>;
  /** Stops background work; leaves the shared connection open. */
  close(): Promise<void>;
}

/** The sentence every adapter uses when an increment meets a value that is not an integer. */
export function notAnIntegerDetail(key: string): string {
  return `value: the value of "${key}" is not an integer, so it cannot be incremented or decremented; Set it to a whole number first`;
}

export function outOfRangeDetail(key: string): string {
  return `value: incrementing "${key}" would go beyond ±${MAX_COUNTER}, the largest integer a JSON client reads exactly`;
}
