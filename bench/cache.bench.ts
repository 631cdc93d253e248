/**
 * cache benchmark: the cache store adapters on their own (SQLite, then Redis when
 * ALTO_TEST_REDIS_URL is set), then Alto in this process through the edge over HTTP with
 * `concurrency` requests in flight: cache/Set, cache/Get and cache/Increment per second.
 *
 * Run: node --import tsx bench/cache.bench.ts [operations=20000] [concurrency=32]
 * (`. scripts/test-services.sh` first for the Redis rows.)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startAlto } from '../packages/alto/src/edge/server.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';
import type { CacheStore } from '../packages/alto/src/store/cache/port.js';
import { RedisCacheStore } from '../packages/alto/src/store/cache/redis.js';
import { SqliteCacheStore } from '../packages/alto/src/store/cache/sqlite.js';
import { openSqlite } from '../packages/alto/src/store/sqlite/database.js';

const operations = Number(process.argv[2] ?? 20_000);
const concurrency = Number(process.argv[3] ?? 32);
const redisUrl = process.env.ALTO_TEST_REDIS_URL;

async function perSecond(total: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await task(next++);
    }),
  );
  return Math.round(total / ((performance.now() - started) / 1000));
}

async function storeFigures(backend: string, store: CacheStore): Promise<Record<string, string | number>> {
  const ns = `bench-${randomBytes(4).toString('hex')}/dev`;
  const value = 'v'.repeat(100);
  return {
    where: `store (${backend})`,
    'Set/s': await perSecond(operations, (i) => store.set(ns, { key: `k${i % 1000}`, value, ttlMs: 60_000 })),
    'Get/s': await perSecond(operations, (i) => store.get(ns, `k${i % 1000}`)),
    'Increment/s': await perSecond(operations, () => store.increment(ns, 'counter', 1)),
  };
}

async function httpFigures(backend: string, options: { redisUrl?: string }): Promise<Record<string, string | number>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'alto-bench-'));
  const alto = await startAlto({ port: 0, host: '127.0.0.1', dataDir, logger: silentLogger(), redisUrl: options.redisUrl });
  try {
    const key = readFileSync(alto.adminKeyPath, 'utf8').trim();
    const call = async (endpoint: string, body: unknown) => {
      const response = await fetch(`${alto.url}/v1/cache/${endpoint}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify(body),
      });
      if (response.status !== 200) throw new Error(`${endpoint}: ${response.status} ${await response.text()}`);
      return response.json();
    };
    const value = 'v'.repeat(100);
    const count = Math.min(operations, 10_000);
    return {
      where: `HTTP (${backend})`,
      'Set/s': await perSecond(count, (i) => call('Set', { key: `k${i % 1000}`, value, ttl: 60 })),
      'Get/s': await perSecond(count, (i) => call('Get', { key: `k${i % 1000}` })),
      'Increment/s': await perSecond(count, () => call('Increment', { key: 'counter', value: 1 })),
    };
  } finally {
    await alto.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const rows: Record<string, string | number>[] = [];
const dir = mkdtempSync(join(tmpdir(), 'alto-bench-'));
const db = openSqlite(join(dir, 'alto.db'));
rows.push(await storeFigures('sqlite', new SqliteCacheStore(db)));
db.close();
rmSync(dir, { recursive: true, force: true });
if (redisUrl) {
  const redis = new Redis(redisUrl);
  const prefix = `alto-bench-${randomBytes(4).toString('hex')}`;
  rows.push(await storeFigures('redis', new RedisCacheStore(redis, prefix)));
  const [, names] = await redis.scan('0', 'MATCH', `${prefix}:*`, 'COUNT', 100_000);
  if (names.length > 0) await redis.unlink(...names);
  await redis.quit();
}
rows.push(await httpFigures('sqlite', {}));
if (redisUrl) rows.push(await httpFigures('redis', { redisUrl }));
console.log(`cache: ${operations} operations per row, ${concurrency} in flight, 100-byte values`);
console.table(rows);
