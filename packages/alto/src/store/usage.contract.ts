/**
 * @module store/usage.contract
 * The behaviour every usage store adapter must have, as one node:test suite; `usage.contract.test.ts`
 * runs it on every adapter (SQLite and PostgreSQL).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { ComputeUsageRecord, UsageRecord, UsageStore } from './usage.js';

export interface UsageAdapterUnderTest {
  store: UsageStore;
  cleanup(): Promise<void>;
}

const DAY_MS = 86_400_000;
/** 2025-03-10T12:00:00Z and the next day, so records fall on known UTC days. */
const MARCH_10 = Date.UTC(2025, 2, 10, 12);
const MARCH_11 = MARCH_10 + DAY_MS;

function call(projectId: string, overrides: Partial<UsageRecord> = {}): UsageRecord {
  return {
    at: MARCH_10,
    projectId,
    keyId: 'key-a',
    service: 'db',
    endpoint: 'Create',
    status: 200,
    bytesIn: 10,
    bytesOut: 20,
    priceMicros: 3,
    ...overrides,
  };
}

export function runUsageContract(name: string, open: () => Promise<UsageAdapterUnderTest>): void {
  describe(`usage store contract: ${name}`, () => {
    let adapter: UsageAdapterUnderTest;
    let store: UsageStore;
    const run = randomBytes(4).toString('hex');
    const project = (label: string) => `project-${run}-${label}`;

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(() => adapter.cleanup());

    test('daily totals per day, key, service and endpoint; batches add up; failed calls are errors', async () => {
      const p = project('totals');
      await store.appendUsage([
        call(p),
        call(p, { status: 404, priceMicros: 0, bytesOut: 5 }),
        call(p, { keyId: 'key-b' }),
        call(p, { endpoint: 'Read', priceMicros: 1 }),
        call(p, { at: MARCH_11 }),
      ]);
      await store.appendUsage([call(p), call(p, { service: 'cache', endpoint: 'Get', priceMicros: 1 })]);
      const rows = await store.readUsage({ projectId: p, fromDay: '2025-03-01', toDay: '2025-03-31' });
      assert.deepEqual(rows, [
        { day: '2025-03-10', keyId: 'key-a', service: 'cache', endpoint: 'Get', calls: 1, errors: 0, bytesIn: 10, bytesOut: 20, priceMicros: 1 },
        { day: '2025-03-10', keyId: 'key-a', service: 'db', endpoint: 'Create', calls: 3, errors: 1, bytesIn: 30, bytesOut: 45, priceMicros: 6 },
        { day: '2025-03-10', keyId: 'key-b', service: 'db', endpoint: 'Create', calls: 1, errors: 0, bytesIn: 10, bytesOut: 20, priceMicros: 3 },
        { day: '2025-03-10', keyId: 'key-a', service: 'db', endpoint: 'Read', calls: 1, errors: 0, bytesIn: 10, bytesOut: 20, priceMicros: 1 },
        { day: '2025-03-11', keyId: 'key-a', service: 'db', endpoint: 'Create', calls: 1, errors: 0, bytesIn: 10, bytesOut: 20, priceMicros: 3 },
      ]);
    });

    test('filters by key, service, endpoint and day range; projects are kept apart', async () => {
      const p = project('filters');
      const other = project('other');
      await store.appendUsage([
        call(p),
        call(p, { keyId: 'key-b', endpoint: 'Read' }),
        call(p, { at: MARCH_11, service: 'cache', endpoint: 'Get' }),
        call(other),
      ]);
      const sum = (rows: { calls: number }[]) => rows.reduce((total, row) => total + row.calls, 0);
      const range = { projectId: p, fromDay: '2025-03-01', toDay: '2025-03-31' };
      assert.equal(sum(await store.readUsage(range)), 3);
      assert.equal(sum(await store.readUsage({ ...range, keyId: 'key-b' })), 1);
      assert.equal(sum(await store.readUsage({ ...range, service: 'cache' })), 1);
      assert.equal(sum(await store.readUsage({ ...range, service: 'db', endpoint: 'Read' })), 1);
      assert.equal(sum(await store.readUsage({ ...range, fromDay: '2025-03-11' })), 1);
      assert.equal(sum(await store.readUsage({ ...range, toDay: '2025-03-10' })), 2);
      assert.deepEqual(await store.readUsage({ ...range, fromDay: '2025-04-01', toDay: '2025-04-30' }), []);
      assert.equal(sum(await store.readUsage({ ...range, projectId: other })), 1);
    });

    test('compute records: running milliseconds × MiB and prices summed per day and app', async () => {
      const p = project('compute');
      const slice = (overrides: Partial<ComputeUsageRecord>): ComputeUsageRecord => ({
        at: MARCH_10,
        projectId: p,
        app: 'web',
        instance: 'i-1',
        runningMs: 1500,
        memoryMiB: 256,
        requests: 4,
        priceMicros: 7,
        ...overrides,
      });
      await store.appendComputeUsage([slice({}), slice({ instance: 'i-2', runningMs: 500, memoryMiB: 512 })]);
      await store.appendComputeUsage([slice({ app: 'worker', requests: 0 }), slice({ at: MARCH_11 })]);
      const range = { projectId: p, fromDay: '2025-03-01', toDay: '2025-03-31' };
      assert.deepEqual(await store.readComputeUsage(range), [
        { day: '2025-03-10', app: 'web', runningMs: 2000, mibMs: 1500 * 256 + 500 * 512, requests: 8, priceMicros: 14 },
        { day: '2025-03-10', app: 'worker', runningMs: 1500, mibMs: 1500 * 256, requests: 0, priceMicros: 7 },
        { day: '2025-03-11', app: 'web', runningMs: 1500, mibMs: 1500 * 256, requests: 4, priceMicros: 7 },
      ]);
      assert.equal((await store.readComputeUsage({ ...range, app: 'worker' })).length, 1);
    });

    test('the retention purge deletes old per-call records and keeps the daily totals', async () => {
      const p = project('purge');
      const longAgo = Date.UTC(2000, 0, 1);
      await store.appendUsage([call(p, { at: longAgo }), call(p, { at: longAgo + 1 })]);
      await store.appendComputeUsage([
        { at: longAgo, projectId: p, app: 'web', instance: 'i', runningMs: 1, memoryMiB: 1, requests: 1, priceMicros: 1 },
      ]);
      const before = await store.readUsage({ projectId: p, fromDay: '2000-01-01', toDay: '2000-01-31' });
      const deleted = await store.purgeRecords(longAgo + 1);
      // Exactly the records before the cut-off (other tests' records are from 2025).
      assert.equal(deleted, 2);
      assert.equal(await store.purgeRecords(longAgo + 1), 0);
      assert.deepEqual(await store.readUsage({ projectId: p, fromDay: '2000-01-01', toDay: '2000-01-31' }), before);
      assert.equal(before[0].calls, 2);
    });
  });
}
