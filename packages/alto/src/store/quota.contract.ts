/**
 * @module store/quota.contract
 * The behaviour every quota store adapter must have, as one node:test suite; `quota.contract.test.ts`
 * runs it on every adapter (SQLite and PostgreSQL). `open` may be called twice: the second store
 * must see the same state (another process on the same data), so limits hold across processes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { QuotaStore } from './quota.js';

export interface QuotaAdapterUnderTest {
  /** Two handles on the same state, as two processes would have. */
  stores: [QuotaStore, QuotaStore];
  cleanup(): Promise<void>;
}

export function runQuotaContract(name: string, open: () => Promise<QuotaAdapterUnderTest>): void {
  describe(`quota store contract: ${name}`, () => {
    let adapter: QuotaAdapterUnderTest;
    let store: QuotaStore;
    let other: QuotaStore;
    const run = randomBytes(4).toString('hex');
    const id = (label: string) => `${label}-${run}`;

    before(async () => {
      adapter = await open();
      [store, other] = adapter.stores;
    });
    after(() => adapter.cleanup());

    test('limit settings: set, clear with null, keep the rest; visible to the other handle', async () => {
      const subject = id('project');
      assert.deepEqual(await store.getLimits(subject), {});
      assert.deepEqual(await store.updateLimits(subject, { rate_limit: 5, monthly_quota: 100 }), { rate_limit: 5, monthly_quota: 100 });
      assert.deepEqual(await store.updateLimits(subject, { rate_limit: null, db_rows: 0 }), { monthly_quota: 100, db_rows: 0 });
      assert.deepEqual(await other.getLimits(subject), { monthly_quota: 100, db_rows: 0 });
      await store.deleteLimits(subject);
      assert.deepEqual(await other.getLimits(subject), {});
    });

    test('token bucket: starts full, grants what it has, refills at the rate, never past capacity', async () => {
      const bucket = id('bucket');
      const t0 = 1_000_000;
      assert.deepEqual(await store.takeTokens(bucket, 3, 5, 5, t0), { granted: 3, tokens: 2 });
      assert.deepEqual(await store.takeTokens(bucket, 3, 5, 5, t0), { granted: 2, tokens: 0 });
      assert.equal((await store.takeTokens(bucket, 1, 5, 5, t0 + 199)).granted, 0, 'less than one token after 199 ms at 5/s');
      assert.equal((await store.takeTokens(bucket, 1, 5, 5, t0 + 200)).granted, 1, 'one token after 200 ms');
      const later = await store.takeTokens(bucket, 10, 5, 5, t0 + 60_000);
      assert.deepEqual(later, { granted: 5, tokens: 0 }, 'a minute later the bucket holds its capacity, no more');
      // A clock a little behind (another process) neither refills nor fails.
      assert.equal((await store.takeTokens(bucket, 1, 5, 5, t0 + 59_000)).granted, 0);
    });

    test('token bucket: two handles on one bucket together never take more than it holds', async () => {
      const bucket = id('shared');
      const t0 = 2_000_000;
      let granted = 0;
      for (let i = 0; i < 10; i++) granted += (await (i % 2 ? other : store).takeTokens(bucket, 1, 5, 5, t0)).granted;
      assert.equal(granted, 5);
      let afterOneSecond = 0;
      for (let i = 0; i < 10; i++) afterOneSecond += (await (i % 2 ? other : store).takeTokens(bucket, 1, 5, 5, t0 + 1000)).granted;
      assert.equal(afterOneSecond, 5);
    });

    test('counters: reservations stop at the limit across handles; release, add and periods', async () => {
      const counter = id('requests');
      assert.deepEqual(await store.reserve(counter, '2025-03', 4, 10), { granted: 4, value: 4 });
      assert.deepEqual(await other.reserve(counter, '2025-03', 4, 10), { granted: 4, value: 8 });
      assert.deepEqual(await store.reserve(counter, '2025-03', 4, 10), { granted: 2, value: 10 });
      assert.deepEqual(await other.reserve(counter, '2025-03', 1, 10), { granted: 0, value: 10 });
      await store.release(counter, '2025-03', 3);
      assert.equal(await other.counterValue(counter, '2025-03'), 7);
      await store.release(counter, '2025-03', 100);
      assert.equal(await store.counterValue(counter, '2025-03'), 0, 'never below zero');
      await other.add(counter, '2025-03', 25);
      assert.equal(await store.counterValue(counter, '2025-03'), 25, 'add ignores limits: the usage already happened');
      assert.deepEqual(await store.reserve(counter, '2025-03', 1, 10), { granted: 0, value: 25 });
      assert.deepEqual(await store.reserve(counter, '2025-04', 1, 10), { granted: 1, value: 1 }, 'a new month starts at zero');
    });

    test('purge forgets counters of old periods and idle buckets', async () => {
      const counter = id('old');
      const bucket = id('idle');
      await store.add(counter, '2024-01', 5);
      await store.add(counter, '2024-03', 5);
      await store.takeTokens(bucket, 5, 5, 5, 1000);
      await store.purge('2024-02', 2000);
      assert.equal(await store.counterValue(counter, '2024-01'), 0);
      assert.equal(await store.counterValue(counter, '2024-03'), 5);
      assert.equal((await store.takeTokens(bucket, 5, 5, 5, 1000)).granted, 5, 'a forgotten bucket starts full again');
    });
  });
}
