/**
 * The meter on a real SQLite usage store: records wait in memory until a flush, a close writes
 * them all, and compute slices (the hook the compute layer calls) are priced and charged.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../kit/logger.js';
import { openSqlite } from '../store/sqlite/database.js';
import { SqliteUsageStore } from '../store/sqlite/usage.js';
import { dayOf, type UsageRecord } from '../store/usage.js';
import { Meter } from './metering.js';

const today = dayOf(Date.now());
const range = (projectId: string) => ({ projectId, fromDay: today, toDay: today });

function call(i: number): UsageRecord {
  return { at: Date.now(), projectId: 'p', keyId: 'k', service: 'id', endpoint: 'Generate', status: i % 10 === 0 ? 400 : 200, bytesIn: 2, bytesOut: 40, priceMicros: i % 10 === 0 ? 0 : 1 };
}

test('records are written in batches off the request path, and all of them on close', async () => {
  const db = openSqlite(':memory:');
  const store = new SqliteUsageStore(db);
  const meter = new Meter(store, silentLogger(), { intervalMs: 60_000, batchSize: 100 });
  meter.start();
  for (let i = 0; i < 50; i++) meter.record(call(i));
  assert.equal(meter.pendingCount, 50);
  assert.deepEqual(await store.readUsage(range('p')), [], 'nothing is written before a flush');
  for (let i = 50; i < 250; i++) meter.record(call(i));
  await meter.flush();
  assert.equal(meter.pendingCount, 0);
  for (let i = 250; i < 257; i++) meter.record(call(i));
  await meter.close();
  const [row] = await store.readUsage(range('p'));
  assert.equal(row.calls, 257);
  assert.equal(row.errors, 26);
  assert.equal(row.priceMicros, 257 - 26);
  assert.equal(row.bytesOut, 257 * 40);
  db.close();
});

test('compute slices are priced by the price function, charged, and summed per app', async () => {
  const db = openSqlite(':memory:');
  const store = new SqliteUsageStore(db);
  const charges: [string, number][] = [];
  const meter = new Meter(store, silentLogger(), {
    intervalMs: 60_000,
    computePrice: (runningMs, memoryMiB, requests) => Math.round((runningMs * memoryMiB * 17) / 1_024_000) + requests * 2,
    onComputeCharge: (projectId, micros) => charges.push([projectId, micros]),
  });
  const record = meter.recordCompute({ projectId: 'p', app: 'web', instance: 'i-1', runningMs: 2000, memoryMiB: 512, requests: 3 });
  assert.equal(record.priceMicros, 17 + 6, 'one GB-second and three requests');
  meter.recordCompute({ projectId: 'p', app: 'web', instance: 'i-2', runningMs: 0, memoryMiB: 512, requests: 0 });
  assert.deepEqual(charges, [['p', 23], ['p', 0]]);
  await meter.close();
  assert.deepEqual(await store.readComputeUsage(range('p')), [
    { day: today, app: 'web', runningMs: 2000, mibMs: 2000 * 512, requests: 3, priceMicros: 23 },
  ]);
  db.close();
});

test('a failed write keeps the records for the next flush', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'alto-meter-')), 'alto.db');
  const db = openSqlite(path);
  const store = new SqliteUsageStore(db);
  const meter = new Meter(store, silentLogger(), { intervalMs: 60_000 });
  meter.record(call(1));
  // Another process holds the write lock longer than the busy timeout: the write fails.
  const other = openSqlite(path);
  other.exec('BEGIN IMMEDIATE');
  db.pragma('busy_timeout = 0');
  await meter.flush();
  assert.equal(meter.pendingCount, 1, 'the record is still pending after the failed write');
  other.exec('ROLLBACK');
  await meter.flush();
  assert.equal(meter.pendingCount, 0);
  assert.equal((await store.readUsage(range('p')))[0].calls, 1, 'written by the next flush');
  other.close();
  db.close();
  rmSync(dirname(path), { recursive: true, force: true });
});
