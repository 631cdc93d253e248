import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { silentLogger } from '../../kit/logger.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { SqliteCacheStore } from '../../store/cache/sqlite.js';
import type { CacheStore } from '../../store/cache/port.js';
import { CacheBlock, DEFAULT_CACHE_LIMITS, PURGE_INTERVAL_MS } from './cache.js';

function block(now = () => 1_000_000): { cache: CacheBlock; store: CacheStore } {
  const store = new SqliteCacheStore(openSqlite(':memory:'), now);
  return { cache: new CacheBlock(store, silentLogger()), store };
}

async function rejectsWith(promise: Promise<unknown>, status: number, detail: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isAltoError(error));
    assert.equal(error.status, status);
    assert.match(error.detail, detail);
    return true;
  });
}

test('a missing key reads as M3O answered it: the key, an empty value, ttl 0', async () => {
  const { cache } = block();
  assert.deepEqual(await cache.get('p/dev', 'nope'), { key: 'nope', value: '', ttl: 0 });
});

test('ttl is in seconds on the wire and rounds up, so a fresh value shows the ttl it was given', async () => {
  let now = 1_000_000;
  const { cache } = block(() => now);
  await cache.set('p/dev', { key: 'session', value: 'abc', ttl: 60 });
  assert.deepEqual(await cache.get('p/dev', 'session'), { key: 'session', value: 'abc', ttl: 60 });
  now += 59_500;
  assert.equal((await cache.get('p/dev', 'session')).ttl, 1);
  now += 500;
  assert.deepEqual(await cache.get('p/dev', 'session'), { key: 'session', value: '', ttl: 0 });
});

test('limits answer 4xx with the field and the limit', async () => {
  const { cache } = block();
  const limits = DEFAULT_CACHE_LIMITS;
  await rejectsWith(cache.get('p/dev', ''), 400, /^key: missing/);
  await rejectsWith(cache.set('p/dev', { key: 'k'.repeat(limits.maxKeyBytes + 1), value: 'v', ttl: 0 }), 400, /key: 513 bytes .* 512-byte limit/);
  // Multi-byte characters count as bytes: 257 two-byte characters are over 512 bytes.
  await rejectsWith(cache.get('p/dev', 'é'.repeat(257)), 400, /514 bytes/);
  await rejectsWith(cache.set('p/dev', { key: 'big', value: 'v'.repeat(limits.maxValueBytes + 1), ttl: 0 }), 413, /value: .* 1048576-byte limit/);
  await rejectsWith(cache.set('p/dev', { key: 'neg', value: 'v', ttl: -1 }), 400, /ttl: -1 is out of range/);
  await rejectsWith(cache.set('p/dev', { key: 'far', value: 'v', ttl: limits.maxTtlSeconds + 1 }), 400, /ttl: .* out of range/);
  await rejectsWith(
    cache.setMany('p/dev', [{ key: 'ok', value: 'v', ttl: 0 }, { key: '', value: 'v', ttl: 0 }]),
    400,
    /^items\.1\.key: missing/,
  );
  await rejectsWith(cache.getMany('p/dev', Array.from({ length: limits.maxBatchItems + 1 }, (_, i) => `k${i}`)), 400, /split the call/);
  assert.deepEqual(await cache.listKeys('p/dev', ''), [], 'a refused SetMany wrote nothing');
  await cache.set('p/dev', { key: 'k'.repeat(limits.maxKeyBytes), value: 'v'.repeat(limits.maxValueBytes), ttl: limits.maxTtlSeconds });
});

test('getMany leaves out missing keys and keeps the order asked', async () => {
  const { cache } = block();
  await cache.setMany('p/dev', [
    { key: 'a', value: '1', ttl: 0 },
    { key: 'b', value: '2', ttl: 30 },
  ]);
  assert.deepEqual(await cache.getMany('p/dev', ['b', 'zzz', 'a']), [
    { key: 'b', value: '2', ttl: 30 },
    { key: 'a', value: '1', ttl: 0 },
  ]);
});

test('the purge timer runs on its interval and stops on close', async () => {
  mock.timers.enable({ apis: ['setInterval'] });
  try {
    let purges = 0;
    const store = { backend: 'sqlite', purgeExpired: async () => ++purges, close: async () => {} } as unknown as CacheStore;
    const cache = new CacheBlock(store, silentLogger());
    cache.startPurging();
    mock.timers.tick(PURGE_INTERVAL_MS);
    mock.timers.tick(PURGE_INTERVAL_MS);
    assert.equal(purges, 2);
    await cache.close();
    mock.timers.tick(PURGE_INTERVAL_MS * 5);
    assert.equal(purges, 2, 'no purge after close');
  } finally {
    mock.timers.reset();
  }
});

test('the purge timer never keeps the process alive', async () => {
  const timers = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
  const before = timers();
  const { cache } = block();
  cache.startPurging();
  assert.equal(timers(), before, 'the timer is unref\'d');
  await cache.close();
});

test('no purge timer for Redis, which expires keys itself', async () => {
  mock.timers.enable({ apis: ['setInterval'] });
  try {
    let purges = 0;
    const store = { backend: 'redis', purgeExpired: async () => ++purges, close: async () => {} } as unknown as CacheStore;
    const cache = new CacheBlock(store, silentLogger());
    cache.startPurging();
    mock.timers.tick(PURGE_INTERVAL_MS * 3);
    assert.equal(purges, 0);
    await cache.close();
  } finally {
    mock.timers.reset();
  }
});
