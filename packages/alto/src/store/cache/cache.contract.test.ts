/**
 * Runs the cache contract against the embedded SQLite adapter and the Redis adapter, plus the
 * SQLite adapter's own expiry bookkeeping (lazy deletion on read, batched purge).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { openSqlite } from '../sqlite/database.js';
import { runCacheContract } from './contract.js';
import { RedisCacheStore } from './redis.js';
import { SqliteCacheStore } from './sqlite.js';

runCacheContract('sqlite', async () => {
  const path = join(tmpdir(), `alto-cache-${randomBytes(4).toString('hex')}.db`);
  const db = openSqlite(path);
  return {
    store: new SqliteCacheStore(db),
    async cleanup() {
      db.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
    },
  };
});

runCacheContract('redis', async () => {
  const url = process.env.ALTO_TEST_REDIS_URL;
  if (!url) throw new Error('ALTO_TEST_REDIS_URL is not set: run ". scripts/test-services.sh" first');
  const redis = new Redis(url, { maxRetriesPerRequest: 2 });
  const keyPrefix = `alto-test-${randomBytes(4).toString('hex')}`;
  return {
    store: new RedisCacheStore(redis, keyPrefix),
    async cleanup() {
      let cursor = '0';
      do {
        const [next, names] = await redis.scan(cursor, 'MATCH', `${keyPrefix}:*`, 'COUNT', 500);
        if (names.length > 0) await redis.unlink(...names);
        cursor = next;
      } while (cursor !== '0');
      await redis.quit();
    },
  };
});

test('sqlite: an expired row is deleted when read, the rest by purgeExpired', async () => {
  const db = openSqlite(':memory:');
  let now = 1_000_000;
  const store = new SqliteCacheStore(db, () => now);
  const rows = () => (db.prepare('SELECT COUNT(*) AS n FROM cache_entries').get() as { n: number }).n;
  await store.setMany('p/dev', [
    ...Array.from({ length: 2500 }, (_, i) => ({ key: `short${i}`, value: 'x', ttlMs: 1000 })),
    { key: 'long', value: 'y', ttlMs: 60_000 },
    { key: 'forever', value: 'z' },
  ]);
  assert.equal((await store.get('p/dev', 'long'))?.ttlMs, 60_000);
  now += 1000;
  assert.equal(rows(), 2502, 'nothing is deleted before anyone looks');
  assert.equal(await store.get('p/dev', 'short0'), undefined);
  assert.equal(rows(), 2501, 'reading an expired key deletes it');
  assert.equal(await store.purgeExpired(), 2499);
  assert.equal(rows(), 2);
  assert.deepEqual(await store.listKeys('p/dev'), ['forever', 'long']);
  assert.equal((await store.get('p/dev', 'long'))?.ttlMs, 59_000);
  db.close();
});
