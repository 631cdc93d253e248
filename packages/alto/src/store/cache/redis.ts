/**
 * @module store/cache/redis
 * The scale-out cache adapter. Each entry is one Redis string named `alto:{namespace}:key`:
 * the braces make the namespace a Redis Cluster hash tag, so a namespace's keys share a slot and
 * multi-key commands (MULTI over GetMany/SetMany) work on a cluster too. Redis expires keys
 * itself, so there is nothing to purge. Listing uses SCAN (never KEYS, which blocks the server)
 * with the key's glob characters escaped. Increments run as one Lua script around INCRBY, which
 * keeps the key's TTL, so the range check and its undo are atomic.
 */
import type { Redis } from 'ioredis';
import { errors } from '../../kit/errors.js';
import {
  MAX_COUNTER,
  notAnIntegerDetail,
  outOfRangeDetail,
  type CacheEntry,
  type CacheItem,
  type CacheStore,
} from './port.js';

/** INCRBY, undone inside the same script when the result leaves what JSON clients read exactly. */
const INCREMENT_SCRIPT = `
local result = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(result) == 'table' and result.err then
  if string.find(result.err, 'overflow') then return redis.error_reply('ALTO_OUT_OF_RANGE') end
  return redis.error_reply('ALTO_NOT_INTEGER')
end
if result > ${MAX_COUNTER} or result < -${MAX_COUNTER} then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return redis.error_reply('ALTO_OUT_OF_RANGE')
end
return result`;

/** Keys asked of SCAN per round trip. */
const SCAN_COUNT = 500;

type RedisWithIncrement = Redis & { altoIncrement(key: string, delta: string): Promise<number> };

export class RedisCacheStore implements CacheStore {
  readonly backend = 'redis';
  private readonly redis: RedisWithIncrement;

  /** `keyPrefix` separates deployments (and test runs) sharing one Redis. */
  constructor(redis: Redis, private readonly keyPrefix = 'alto') {
    if (!('altoIncrement' in redis)) redis.defineCommand('altoIncrement', { numberOfKeys: 1, lua: INCREMENT_SCRIPT });
    this.redis = redis as RedisWithIncrement;
  }

  private namespacePrefix(namespace: string): string {
    return `${this.keyPrefix}:{${namespace}}:`;
  }

  private redisKey(namespace: string, key: string): string {
    return this.namespacePrefix(namespace) + key;
  }

  async get(namespace: string, key: string): Promise<CacheEntry | undefined> {
    return (await this.getMany(namespace, [key]))[0];
  }

  async getMany(namespace: string, keys: string[]): Promise<(CacheEntry | undefined)[]> {
    if (keys.length === 0) return [];
    const transaction = this.redis.multi();
    for (const key of keys) transaction.get(this.redisKey(namespace, key)).pttl(this.redisKey(namespace, key));
    const replies = checked(await transaction.exec());
    return keys.map((_, i) => {
      const value = replies[2 * i] as string | null;
      const pttl = replies[2 * i + 1] as number;
      if (value === null) return undefined;
      return { value, ttlMs: pttl >= 0 ? pttl : undefined };
    });
  }

  async set(namespace: string, item: CacheItem): Promise<void> {
    await this.setMany(namespace, [item]);
  }

  async setMany(namespace: string, items: CacheItem[]): Promise<void> {
    if (items.length === 0) return;
    const transaction = this.redis.multi();
    for (const item of items) {
      const name = this.redisKey(namespace, item.key);
      if (item.ttlMs) transaction.set(name, item.value, 'PX', item.ttlMs);
      else transaction.set(name, item.value);
    }
    checked(await transaction.exec());
  }

  async delete(namespace: string, key: string): Promise<boolean> {
    return (await this.redis.unlink(this.redisKey(namespace, key))) > 0;
  }

  async increment(namespace: string, key: string, delta: number): Promise<number> {
    try {
      return Number(await this.redis.altoIncrement(this.redisKey(namespace, key), String(delta)));
    } catch (error) {
      const message = (error as Error).message;
      if (message.includes('ALTO_NOT_INTEGER')) throw errors.badRequest(notAnIntegerDetail(key));
      if (message.includes('ALTO_OUT_OF_RANGE')) throw errors.badRequest(outOfRangeDetail(key));
      throw error;
    }
  }

  async listKeys(namespace: string, prefix = ''): Promise<string[]> {
    const namespacePrefix = this.namespacePrefix(namespace);
    const names = await this.scan(escapeGlob(namespacePrefix + prefix) + '*');
    return names.map((name) => name.slice(namespacePrefix.length)).sort(compareBytes);
  }

  async deleteProject(projectId: string): Promise<number> {
    const names = await this.scan(`${escapeGlob(`${this.keyPrefix}:{${projectId}/`)}*`);
    let deleted = 0;
    for (let i = 0; i < names.length; i += SCAN_COUNT) {
      deleted += await this.redis.unlink(...names.slice(i, i + SCAN_COUNT));
    }
    return deleted;
  }

  async purgeExpired(): Promise<number> {
    return 0; // Redis expires keys on its own.
  }

  async close(): Promise<void> {
    // The connection is shared; `Stores.close()` closes it.
  }

  private async scan(pattern: string): Promise<string[]> {
    const names = new Set<string>(); // SCAN may return a key more than once
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
      for (const name of batch) names.add(name);
      cursor = next;
    } while (cursor !== '0');
    return [...names];
  }
}

/** Redis glob specials (`* ? [ ] \`) matched literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`);
}

/** The order SQLite's BINARY collation gives (UTF-8 bytes), so both adapters list alike. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function checked(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('redis transaction was aborted');
  return replies.map(([error, reply]) => {
    if (error) throw error;
    return reply;
  });
}
