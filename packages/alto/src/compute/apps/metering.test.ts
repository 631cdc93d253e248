/**
 * Compute metering and caps on a clock the test moves: an instance's running time is reported
 * with its requests, stands still while it is suspended and is reported once more when it ends;
 * compute_apps and compute_instances refuse with 402 past the cap (admin keys are held to none),
 * and compute_gb_seconds counts stored time plus what running instances ran since their last
 * report, and has the project's instances suspended past it. (The whole journey with a real
 * server: test/apps-billing.e2e.test.ts, test/serverless-tcp-caps.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { pino } from 'pino';
import { isAltoError } from '../../kit/errors.js';
import { LIMIT_NAMES, type LimitSet } from '../../platform/limit-names.js';
import type { ComputeUsage } from '../../platform/metering.js';
import { ComputeMeter, type ComputeMeteringOptions } from './metering.js';

const log = pino({ level: 'silent' });
const owner = { projectId: 'p1', projectName: 'demo', admin: false };

function limits(set: Partial<LimitSet>): LimitSet {
  return { ...(Object.fromEntries(LIMIT_NAMES.map((name) => [name, 0])) as LimitSet), ...set };
}

let meters: ComputeMeter[] = [];
function meterOf(options: Partial<ComputeMeteringOptions>): ComputeMeter {
  const meter = new ComputeMeter({ log, appsOfProject: async () => 0, instancesOfProject: () => 0, suspendProject: () => undefined, ...options });
  meters.push(meter);
  return meter;
}

beforeEach(() => mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 }));
afterEach(() => {
  for (const meter of meters) meter.stop();
  meters = [];
  mock.timers.reset();
});

test('running time and requests are reported each slice and at the end; suspended time is not', () => {
  const usage: ComputeUsage[] = [];
  const meter = meterOf({ recordCompute: (record) => usage.push(record), usageSliceMs: 60_000 });
  const slot = { exchanges: 3 };
  meter.started('i1', { projectId: 'p1', app: 'web', memoryMiB: 256, counter: slot });
  // The slot counts the exchanges it takes; the meter reports those since the instance started.
  slot.exchanges += 2;
  mock.timers.tick(60_000);
  assert.deepEqual(
    usage.map(({ instance, runningMs, memoryMiB, requests }) => ({ instance, runningMs, memoryMiB, requests })),
    [{ instance: 'i1', runningMs: 60_000, memoryMiB: 256, requests: 2 }],
  );
  mock.timers.tick(5_000);
  meter.paused('i1');
  assert.equal(usage.at(-1)?.runningMs, 5_000, 'what ran until the suspend is reported');
  mock.timers.tick(50_000);
  assert.equal(usage.length, 2, 'a suspended instance with no requests reports nothing');
  meter.resumed('i1');
  mock.timers.tick(2_000);
  meter.ended('i1');
  assert.equal(usage.at(-1)?.runningMs, 2_000, 'only the time since the resume counts');
  meter.reportAll(false);
  assert.equal(usage.length, 3, 'an ended instance has no meter left');
});

test('compute_apps and compute_instances refuse with 402 past the cap; an admin key is held to none', async () => {
  const meter = meterOf({ projectLimits: async () => limits({ compute_apps: 2, compute_instances: 3 }), appsOfProject: async () => 2, instancesOfProject: () => 2 });
  await assert.rejects(meter.assertCaps(owner, { apps: 1, instances: 1 }), (error) => isAltoError(error) && error.status === 402 && /compute_apps/.test(error.detail));
  await assert.rejects(meter.assertCaps(owner, { apps: 0, instances: 2 }), (error) => isAltoError(error) && error.status === 402 && /compute_instances/.test(error.detail));
  await meter.assertCaps(owner, { apps: 0, instances: 1 });
  await meter.assertCaps({ ...owner, admin: true }, { apps: 5, instances: 5 });
  assert.equal(await meter.withinInstanceCap('p1'), true);
});

test('compute_gb_seconds counts stored time and running meters; past it, calls are refused and the project suspended', async () => {
  const suspended: string[] = [];
  const meter = meterOf({
    projectLimits: async () => limits({ compute_gb_seconds: 10 }),
    // 8 GB-seconds stored this month.
    computeUsedThisMonth: async () => 8 * 1024 * 1000,
    suspendProject: (projectId) => suspended.push(projectId),
  });
  await meter.assertComputeTime('p1', 'demo');
  meter.started('i1', { projectId: 'p1', app: 'web', memoryMiB: 1024, counter: { exchanges: 0 } });
  mock.timers.tick(1_000);
  assert.equal(await meter.computeGbSecondsUsed('p1'), 9);
  mock.timers.tick(1_000);
  await assert.rejects(meter.assertComputeTime('p1', 'demo'), (error) => isAltoError(error) && error.status === 402 && /compute_gb_seconds/.test(error.detail));
  mock.timers.tick(1_000);
  // The cap check runs on its own clock; let its reads settle.
  for (let i = 0; i < 5 && suspended.length === 0; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(suspended, ['p1']);
});
