/**
 * The app's waiting room, with stand-in scheduler and meter: a freed exchange admits one waiter,
 * the oldest, which claims the room in the turn it wakes, under the lower of the app's
 * concurrency and its instance's own exchange limit; an instance with room at once is handed out
 * without a promise and its exchange counted, and only a request that must wait is admitted
 * against the project's compute time first; a busy app holds at most its capacity in waiting
 * requests. (The slots' own lifecycle: slot.test.ts; real drivers: test/serverless*.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { pino } from 'pino';
import { errors, isAltoError } from '../../kit/errors.js';
import type { Instance, SandboxDriver, SandboxSpec } from '../sandbox/index.js';
import type { AppRecord } from './records.js';
import { AppRuntime, AppVersion, type ExchangeMeter, type RuntimeScheduler } from './runtime.js';

/** A running instance the requests are handed (its driver is never asked for anything). */
function runningInstance(id: string, exchangeLimit?: number): Instance {
  return { id, driver: 'process', host: '10.0.0.2', port: 8080, state: 'running', exchangeLimit } as unknown as Instance;
}

/** Lets pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
/** A scheduler that never adds an instance (the tests place their slots themselves). */
const schedulerThatNeverScales = { scaleOut: () => false } as unknown as RuntimeScheduler;

/** A meter that records admissions, and refuses admission once told to. */
function meterOf(calls: string[]): ExchangeMeter & { refuse: boolean } {
  return {
    refuse: false,
    async assertComputeTime(projectId: string) {
      calls.push(`admitted ${projectId}`);
      if (this.refuse) throw errors.paymentRequired('compute cap reached');
    },
  };
}
beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
afterEach(() => mock.timers.reset());
test('requests waiting for room: one release lets exactly one in, the oldest, and an instance exchange limit below the concurrency holds', async () => {
  const app = { name: 'web', settings: { concurrency: 50, tcp: 0 } } as unknown as AppRecord;
  const runtime = new AppRuntime(app, schedulerThatNeverScales, pino({ level: 'silent' }), meterOf([]));
  const version = new AppVersion(1, {} as SandboxSpec, runtime, async () => ({}) as SandboxDriver);
  const slot = version.addSlot();
  slot.state = 'running';
  slot.instance = runningInstance('i0', 2);
  runtime.serve(version);

  assert.ok(runtime.claimSlot() && runtime.claimSlot(), 'two exchanges fit');
  assert.equal(runtime.claimSlot(), undefined, 'the instance limit (2), not the concurrency (50), is the room');
  const admitted: number[] = [];
  const waiting = [1, 2, 3, 4, 5].map((n) => runtime.activate(10_000).then((claimed) => claimed && admitted.push(n)));
  await settle();
  assert.equal(runtime.waiting, 5);

  slot.release();
  runtime.capacityFreed();
  await settle();
  assert.deepEqual(admitted, [1], 'one freed exchange admits one waiter, the oldest');
  assert.equal(slot.inFlight, 2);

  slot.release();
  slot.release();
  runtime.capacityFreed();
  runtime.capacityFreed();
  await settle();
  assert.deepEqual(admitted, [1, 2, 3]);
  assert.equal(slot.inFlight, 2);
  assert.equal(runtime.waiting, 2);
  runtime.serve(undefined);
  mock.timers.tick(10_000);
  await Promise.all(waiting);
});

test('a busy app holds at most its capacity in waiting requests, then answers 503 at once; an exchange that waits is admitted first, and every claim is counted on its slot', async () => {
  const app = { name: 'web', projectId: 'p1', projectName: 'shop', settings: { concurrency: 1, max_instances: 1, tcp: 0 } } as unknown as AppRecord;
  const calls: string[] = [];
  const meter = meterOf(calls);
  const runtime = new AppRuntime(app, schedulerThatNeverScales, pino({ level: 'silent' }), meter);
  const version = new AppVersion(1, {} as SandboxSpec, runtime, async () => ({}) as SandboxDriver);
  const slot = version.addSlot();
  slot.state = 'running';
  slot.instance = runningInstance('i0');
  runtime.serve(version);

  const first = runtime.acquire(10_000);
  assert.equal(first, slot, 'room at once: the slot itself, no promise and no admission');
  assert.deepEqual(calls, []);
  assert.equal(slot.exchanges, 1, 'the exchange is counted on its slot');
  const queued = runtime.acquire(10_000);
  assert.ok(queued instanceof Promise);
  await settle();
  assert.equal(runtime.waiting, 1);
  await assert.rejects(Promise.resolve(runtime.acquire(10_000)), (error) => isAltoError(error) && error.status === 503 && error.headers?.['retry-after'] === '1' && /at capacity/.test(error.detail));
  assert.deepEqual(calls, ['admitted p1', 'admitted p1']);
  assert.equal(slot.exchanges, 1, 'refused requests are not counted');
  meter.refuse = true;
  await assert.rejects(Promise.resolve(runtime.acquire(10_000)), (error) => isAltoError(error) && error.status === 402);
  slot.release();
  runtime.capacityFreed();
  assert.equal(await queued, slot, 'the waiting request gets the freed room');
  assert.equal(slot.exchanges, 2, 'and its exchange is counted');
});
