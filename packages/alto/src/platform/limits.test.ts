/**
 * Limits on a real SQLite quota store with a clock the test moves: token buckets and their
 * leases, monthly quotas and spend caps across two "processes" (two Limits on two connections to
 * one file), the free tier, storage caps and compute charges.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { z } from 'zod';
import { isAltoError, type AltoError } from '../kit/errors.js';
import { silentLogger } from '../kit/logger.js';
import type { QuotaStore } from '../store/quota.js';
import { openSqlite, type SqliteDatabase } from '../store/sqlite/database.js';
import { SqliteQuotaStore } from '../store/sqlite/quota.js';
import { Limits, monthOf, nextMonthStart } from './limits.js';
import { PriceList } from './prices.js';
import { defineService, endpoint, type Tenant } from './service.js';

const plain = { description: 'x', request: z.object({}), response: z.object({}), example: {}, handler: () => ({}) };
const services = [
  defineService({ name: 'id', description: 'x', priceMicros: 1, endpoints: { Generate: endpoint(plain) } }),
  defineService({ name: 'mail', description: 'x', priceMicros: 10, endpoints: { Send: endpoint(plain) } }),
  defineService({ name: 'usage', description: 'x', priceMicros: 0, endpoints: { Summary: endpoint(plain) } }),
];

const dir = mkdtempSync(join(tmpdir(), 'alto-limits-'));
const databases: SqliteDatabase[] = [];
after(() => {
  for (const db of databases) db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A store whose takes and reservations are counted, to show how rarely the hot path asks. */
class CountingStore extends SqliteQuotaStore {
  takes = 0;
  reservations = 0;
  override takeTokens(...args: Parameters<QuotaStore['takeTokens']>) {
    this.takes += 1;
    return super.takeTokens(...args);
  }
  override reserve(...args: Parameters<QuotaStore['reserve']>) {
    this.reservations += 1;
    return super.reserve(...args);
  }
}

let worlds = 0;
/** One data folder; `processes` Limits sharing it, each with its own connection. */
function world(options: { processes?: number; prices?: unknown } = {}) {
  const folder = join(dir, `world-${worlds++}`);
  const path = join(folder, 'alto.db');
  const pricesPath = join(dir, `prices-${worlds}.json`);
  if (options.prices) writeFileSync(pricesPath, JSON.stringify(options.prices));
  const prices = PriceList.open(pricesPath, services, silentLogger());
  const clock = { now: Date.UTC(2025, 2, 10, 12) };
  const limits = Array.from({ length: options.processes ?? 1 }, () => {
    const db = openSqlite(path);
    databases.push(db);
    const store = new CountingStore(db);
    return { store, limits: new Limits(store, prices, silentLogger(), () => clock.now) };
  });
  return { clock, prices, pricesPath, processes: limits, limits: limits[0].limits, store: limits[0].store };
}

function tenant(overrides: Partial<Tenant> = {}): Tenant {
  return {
    accountId: 'account',
    projectId: 'project-1',
    projectName: 'shop',
    environment: 'dev',
    keyId: 'key-1',
    role: 'project',
    scopes: ['*'],
    namespace: 'project-1/dev',
    ...overrides,
  };
}

async function refusal(promise: Promise<unknown>): Promise<AltoError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isAltoError(error), `expected an AltoError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to be refused');
}

async function admitted(limits: Limits, who: Tenant, count: number, service = 'id', endpointName = 'Generate'): Promise<number> {
  let passed = 0;
  for (let i = 0; i < count; i++) {
    try {
      await limits.admit(who, service, endpointName);
      passed += 1;
    } catch (error) {
      if (!isAltoError(error)) throw error;
    }
  }
  return passed;
}

describe('rate limits', () => {
  test('a key with 5 requests per second: five pass with RateLimit headers counting down, the sixth is a 429 with Retry-After', async () => {
    const { limits, clock } = world();
    await limits.updateKeyLimits('key-1', { rate_limit: 5 });
    const remaining: string[] = [];
    for (let i = 0; i < 5; i++) {
      const admission = await limits.admit(tenant(), 'id', 'Generate');
      assert.equal(admission.headers?.['ratelimit-limit'], '5');
      remaining.push(admission.headers!['ratelimit-remaining']);
    }
    assert.deepEqual(remaining, ['4', '3', '2', '1', '0']);
    const refused = await refusal(limits.admit(tenant(), 'id', 'Generate'));
    assert.equal(refused.status, 429);
    assert.equal(refused.code, 'too_many_requests');
    assert.match(refused.detail, /rate limit reached: key key-1 may make 5 requests per second/);
    assert.deepEqual(refused.headers, {
      'ratelimit-limit': '5',
      'ratelimit-remaining': '0',
      'ratelimit-reset': '1',
      'retry-after': '1',
    });

    clock.now += 199;
    await refusal(limits.admit(tenant(), 'id', 'Generate'));
    clock.now += 1;
    await limits.admit(tenant(), 'id', 'Generate'); // one token every 200 ms
    await refusal(limits.admit(tenant(), 'id', 'Generate'));
  });

  test('admitNow admits from this process\'s leases at once, and takes nothing when the store must be asked', async () => {
    const { limits, store } = world();
    await limits.updateProjectLimits('admin', 'project-1', { rate_limit: 1000, monthly_quota: 1_000_000 });
    await limits.updateKeyLimits('key-1', { rate_limit: 1000, monthly_quota: 1_000_000 });
    // Nothing leased yet: admitNow declines, and asked nothing of the store.
    const before = { takes: store.takes, reservations: store.reservations };
    assert.equal(limits.admitNow(tenant(), 'id', 'Generate'), undefined);
    assert.deepEqual({ takes: store.takes, reservations: store.reservations }, before);
    const first = await limits.admit(tenant(), 'id', 'Generate');
    // A busy key's next leases cover several calls: a few more through admit, then from memory.
    for (let i = 0; i < 10; i++) await limits.admit(tenant(), 'id', 'Generate');
    const asked = { takes: store.takes, reservations: store.reservations };
    const now = limits.admitNow(tenant(), 'id', 'Generate');
    assert.ok(now, 'admitted from the leases');
    assert.deepEqual({ takes: store.takes, reservations: store.reservations }, asked, 'without the store');
    assert.equal(now.priceMicros, first.priceMicros);
    assert.deepEqual(Object.keys(now.headers ?? {}).sort(), ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']);
  });

  test("a project's rate limit covers all its keys; a key's limit only itself", async () => {
    const { limits } = world();
    await limits.updateProjectLimits('admin', 'project-1', { rate_limit: 3 });
    assert.equal(await admitted(limits, tenant({ keyId: 'a' }), 2), 2);
    assert.equal(await admitted(limits, tenant({ keyId: 'b' }), 5), 1);
    const refused = await refusal(limits.admit(tenant({ keyId: 'c' }), 'id', 'Generate'));
    assert.match(refused.detail, /project "shop" may make 3 requests per second/);
    assert.equal(await admitted(limits, tenant({ projectId: 'project-2', keyId: 'd' }), 5), 5, 'other projects are not affected');
  });

  test('leases: a busy key asks the store a few times, not once per call, and never passes the bucket', async () => {
    const { limits, store, clock } = world();
    await limits.updateKeyLimits('key-1', { rate_limit: 1000 });
    assert.equal(await admitted(limits, tenant(), 300), 300);
    assert.ok(store.takes <= 12, `300 calls took ${store.takes} store transactions`);
    assert.equal(await admitted(limits, tenant(), 2000), 700, 'the bucket holds 1000 tokens: 700 more, then refusals');
    clock.now += 1000;
    assert.equal(await admitted(limits, tenant(), 2000), 1000, 'a second later, full again');
  });

  test('two processes sharing the store share one bucket', async () => {
    const { processes } = world({ processes: 2 });
    await processes[0].limits.updateKeyLimits('key-1', { rate_limit: 5 });
    let passed = 0;
    for (let i = 0; i < 20; i++) passed += await admitted(processes[i % 2].limits, tenant(), 1);
    assert.equal(passed, 5);
  });

  test('the admin key is never limited', async () => {
    const { limits } = world();
    await limits.updateProjectLimits('admin', 'project-1', { rate_limit: 1, monthly_quota: 1 });
    assert.equal(await admitted(limits, tenant({ role: 'admin' }), 10), 10);
  });
});

describe('monthly quotas and spend', () => {
  test('a monthly quota is exact across two processes, with reservations given back when idle', async () => {
    const { processes, clock } = world({ processes: 2 });
    const [a, b] = processes.map((p) => p.limits);
    await a.updateProjectLimits('admin', 'project-1', { monthly_quota: 1000 });
    let passed = 0;
    // Both processes busy: chunks shrink as the counter nears the limit.
    for (let round = 0; round < 150; round++) passed += (await admitted(a, tenant(), 5)) + (await admitted(b, tenant(), 3));
    assert.ok(passed <= 1000, `${passed} calls passed a quota of 1000`);
    // Process b stops; a second later a's tick and b's give back what they reserved and did not use.
    clock.now += 1500;
    await a.tick();
    await b.tick();
    passed += await admitted(a, tenant(), 1000);
    assert.equal(passed, 1000, 'exactly the quota, no more and no less');
    const refused = await refusal(b.admit(tenant(), 'id', 'Generate'));
    assert.equal(refused.status, 429);
    assert.match(refused.detail, /monthly quota reached: project "shop" may make 1000 requests a month \(monthly_quota 1000\) and made them all in 2025-03/);
    assert.match(refused.detail, /resets at 2025-04-01T00:00:00.000Z/);
    assert.equal(refused.headers?.['retry-after'], String(Math.ceil((nextMonthStart(clock.now) - clock.now) / 1000)));
  });

  test('a busy counter reserves about a second of its demand at once, not a thousand calls at a time', async () => {
    const { limits, store, clock } = world();
    await limits.updateProjectLimits('admin', 'project-1', { monthly_quota: 1_000_000_000 });
    assert.equal(await admitted(limits, tenant(), 5000), 5000);
    // A tick later the last second's demand (5,000 calls) sizes the chunk.
    clock.now += 500;
    await limits.tick();
    const before = store.reservations;
    assert.equal(await admitted(limits, tenant(), 5000), 5000);
    assert.ok(store.reservations - before <= 2, `5,000 calls of a busy second took ${store.reservations - before} reservations`);
    clock.now += 500;
    await limits.close();
    assert.equal(await limits.counterValue('requests', 'project', 'project-1'), 10_000, 'what was reserved and not used went back');
  });

  test('quotas reset with the month; key quotas apply to the key; control services are never counted', async () => {
    const { limits, clock } = world();
    await limits.updateKeyLimits('key-1', { monthly_quota: 2 });
    assert.equal(await admitted(limits, tenant(), 5), 2);
    assert.match((await refusal(limits.admit(tenant(), 'id', 'Generate'))).detail, /key key-1 may make 2 requests a month.*keys\/Update/);
    assert.equal(await admitted(limits, tenant({ keyId: 'key-2' }), 3), 3, 'another key of the project is not limited');
    assert.equal(await admitted(limits, tenant(), 3, 'usage', 'Summary'), 3, 'an owner at a cap can still read usage');
    clock.now = nextMonthStart(clock.now);
    assert.equal(await admitted(limits, tenant(), 5), 2, 'a new month, a new quota');
    assert.equal(monthOf(clock.now), '2025-04');
  });

  test('a spend cap refuses with 402 the call that would pass it; failed calls are refunded', async () => {
    const { limits } = world();
    await limits.updateProjectLimits('admin', 'project-1', { monthly_spend_cap_micros: 25 });
    const first = await limits.admit(tenant(), 'mail', 'Send'); // 10
    await limits.admit(tenant(), 'mail', 'Send'); // 20
    const refused = await refusal(limits.admit(tenant(), 'mail', 'Send'));
    assert.equal(refused.status, 402);
    assert.equal(refused.code, 'payment_required');
    assert.match(refused.detail, /monthly spend cap reached: project "shop" may spend 0.000025 USD a month/);
    assert.equal(await admitted(limits, tenant(), 5), 5, 'cheaper calls fit under the cap: 5 × 1');
    await refusal(limits.admit(tenant(), 'id', 'Generate'));
    limits.settle(first, false); // the first Send failed: it costs nothing
    await limits.admit(tenant(), 'mail', 'Send');
  });

  test("the free tier's credit comes on top of the cap; compute charges count against it", async () => {
    const { limits, clock } = world({ prices: { free_tier: { monthly_credit_micros: 20 } } });
    await limits.updateProjectLimits('admin', 'project-1', { monthly_spend_cap_micros: 10 });
    limits.charge('project-1', 15); // compute time already used
    await limits.tick();
    assert.equal(await limits.counterValue('spend', 'project', 'project-1'), 15);
    assert.equal(await admitted(limits, tenant(), 30), 15, '20 free + 10 capped - 15 of compute');
    clock.now += 5000;
    await limits.close();
    assert.equal(await limits.counterValue('spend', 'project', 'project-1'), 30, 'after close the counter holds exactly what was used');
  });

  test('close gives back reservations not used', async () => {
    const { limits } = world();
    await limits.updateProjectLimits('admin', 'project-1', { monthly_quota: 1_000_000 });
    for (let round = 0; round < 3; round++) {
      await admitted(limits, tenant(), 400);
      await limits.tick(); // a tick per "second" so chunks grow with demand
    }
    assert.ok((await limits.counterValue('requests', 'project', 'project-1')) > 1200, 'the process reserved ahead of its use');
    await limits.close();
    assert.equal(await limits.counterValue('requests', 'project', 'project-1'), 1200);
  });
});

describe('free tier and storage caps', () => {
  test('projects follow the free tier unless set; only the admin key may loosen past it', async () => {
    const { limits } = world({ prices: { free_tier: { limits: { rate_limit: 2, db_rows: 100 } } } });
    assert.equal((await limits.projectLimits('project-1')).rate_limit, 2);
    assert.equal(await admitted(limits, tenant(), 5), 2);

    const forbidden = await refusal(limits.updateProjectLimits('owner', 'project-1', { rate_limit: 10 }));
    assert.equal(forbidden.status, 403);
    assert.match(forbidden.detail, /rate_limit: this instance's free tier allows at most 2; only the operator \(the admin key\)/);
    await refusal(limits.updateProjectLimits('owner', 'project-1', { rate_limit: 0 }));
    assert.equal((await limits.updateProjectLimits('owner', 'project-1', { rate_limit: 1, db_rows: 50 })).rate_limit, 1);
    assert.equal((await limits.updateProjectLimits('admin', 'project-1', { rate_limit: 50 })).rate_limit, 50);
    assert.equal((await limits.updateProjectLimits('owner', 'project-1', { rate_limit: 20 })).rate_limit, 20, 'an owner may lower what the operator granted');
    const reset = await limits.updateProjectLimits('owner', 'project-1', { rate_limit: null, db_rows: null });
    assert.equal(reset.rate_limit, 2);
    assert.equal(reset.db_rows, 100);
  });

  test('storage caps: refused with 402 naming the cap; the count is not asked when there is no cap', async () => {
    const { limits } = world();
    let asked = 0;
    const current = (rows: number) => async () => {
      asked += 1;
      return rows;
    };
    await limits.assertStorage(tenant(), 'db_rows', 5, current(1_000_000));
    assert.equal(asked, 0);
    await limits.updateProjectLimits('admin', 'project-1', { db_rows: 10 });
    await limits.assertStorage(tenant(), 'db_rows', 2, current(8));
    const refused = await refusal(limits.assertStorage(tenant(), 'db_rows', 3, current(8)));
    assert.equal(refused.status, 402);
    assert.match(refused.detail, /storage cap reached: project "shop" may keep 10 records \(db_rows 10\); it keeps 8 and this call adds 3/);
    await limits.assertStorage(tenant({ role: 'admin' }), 'db_rows', 3, current(8));
  });

  test('compute caps are kept as settings for the compute layer', async () => {
    const { limits } = world();
    const set = await limits.updateProjectLimits('admin', 'project-1', { compute_apps: 3, compute_instances: 6, compute_gb_seconds: 3600 });
    assert.deepEqual([set.compute_apps, set.compute_instances, set.compute_gb_seconds], [3, 6, 3600]);
  });
});
