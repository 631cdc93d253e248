/**
 * The restart policy of `InstanceSlot`, on a clock the test moves: an instance that exits on its
 * own is started again after 1 s, then 2, 4 ... up to 30 s between tries; one that ran for a
 * while before exiting starts over at 1 s; a slot told to stop never restarts. (The real drivers
 * and the whole journey are in test/apps*.e2e.test.ts.) And the slot's lifecycle state machine:
 * concurrent wakes share one resume, a wake during a suspend waits for it then resumes, an idle
 * suspend never freezes an instance with a request in flight, and a snapshot ends the instance
 * without a restart, the next wake restoring it; the ready snapshot is written from a running or
 * suspended instance, which is left as it was, and a copy of it goes back to it when snapshotted
 * (real drivers: test/serverless*.e2e.test.ts). And the app's waiting room: a freed exchange
 * admits one waiter, the oldest, which claims the room in the turn it wakes, under the lower of
 * the app's concurrency and its instance's own exchange limit.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { pino } from 'pino';
import { errors, isAltoError } from '../../kit/errors.js';
import type { Instance, InstanceExit, SandboxDriver, SandboxSpec } from '../sandbox/index.js';
import type { AppRecord } from './records.js';
import { AppRuntime, AppVersion, InstanceSlot, RESTART_FIRST_DELAY_MS, RESTART_MAX_DELAY_MS, type LifecycleChange, type RuntimeEvents, type SlotHost } from './runtime.js';

/** An instance whose end the test decides. */
function controllableInstance(id: string): { instance: Instance; exit(exit: InstanceExit): void; calls: string[]; holdSuspend(): () => void } {
  let end!: (exit: InstanceExit) => void;
  const calls: string[] = [];
  let suspendGate: Promise<void> | undefined;
  const exited = new Promise<InstanceExit>((resolve) => (end = resolve));
  let state: Instance['state'] = 'running';
  const instance = {
    id,
    driver: 'process',
    host: '10.0.0.2',
    port: 8080,
    get state() {
      return state;
    },
    exited,
    events: new EventEmitter(),
    async *logs() {},
    async stop() {
      state = 'exited';
      end({ code: 0, reason: 'stopped' });
      return exited;
    },
    suspend: async () => {
      calls.push('suspend');
      await suspendGate;
      calls.push('suspended');
    },
    resume: async () => {
      calls.push('resume');
    },
    isFrozen: async () => false,
    snapshot: async (dir: string) => {
      calls.push(`snapshot ${dir}`);
    },
  } as unknown as Instance;
  return {
    calls,
    holdSuspend() {
      let open!: () => void;
      suspendGate = new Promise<void>((resolve) => (open = resolve));
      return open;
    },
    instance,
    exit(exit) {
      state = 'exited';
      end(exit);
    },
  };
}

class RecordingHost implements SlotHost {
  readonly version = 1;
  readonly started: ReturnType<typeof controllableInstance>[] = [];
  readonly delays: number[] = [];
  readonly exits: { expected: boolean; exit: InstanceExit }[] = [];

  async start(): Promise<Instance> {
    const controlled = controllableInstance(`i${this.started.length}`);
    this.started.push(controlled);
    return controlled.instance;
  }
  onStarted(): void {}
  onExited(_slot: InstanceSlot, _instance: Instance, exit: InstanceExit, expected: boolean): void {
    this.exits.push({ expected, exit });
  }
  onStartFailed(): void {}
  onRestartScheduled(_slot: InstanceSlot, delayMs: number): void {
    this.delays.push(delayMs);
  }
  readonly restored: string[] = [];
  readonly changes: string[] = [];
  /** What the next restores throw, in turn (none: they succeed). */
  readonly restoreFailures: Error[] = [];
  readonly unusable: string[] = [];
  /** Each restore: the folder, and whether the copy takes the memory as its own or shares it. */
  async restore(dir: string, ownMemory: boolean): Promise<Instance> {
    this.restored.push(`${dir} ${ownMemory ? 'own' : 'shared'}`);
    const failure = this.restoreFailures.shift();
    if (failure) throw failure;
    return this.start();
  }
  onSnapshotUnusable(_slot: InstanceSlot, dir: string, error: Error): void {
    this.unusable.push(`${dir}: ${error.message}`);
  }
  snapshotDirOf(): string {
    return '/snapshots/slot-0';
  }
  /** Instances the test declares copies of a ready snapshot. */
  readonly readyCopies = new Map<Instance, string>();
  readySnapshotOf(instance: Instance): string | undefined {
    return this.readyCopies.get(instance);
  }
  onLifecycle(_slot: InstanceSlot, change: LifecycleChange): void {
    this.changes.push(`${change.from}->${change.to}`);
  }
}

/** Lets pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
afterEach(() => mock.timers.reset());

test('a crashing instance restarts after 1 s, then 2, 4 ... at most 30 s apart', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  const expected = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000];
  for (const [index, delay] of expected.entries()) {
    host.started[index].exit({ code: 1, reason: 'exited' });
    await settle();
    assert.equal(slot.state, 'backoff');
    assert.equal(host.delays.at(-1), delay);
    // Not a moment before its time.
    mock.timers.tick(delay - 1);
    await settle();
    assert.equal(host.started.length, index + 1);
    mock.timers.tick(1);
    await settle();
    assert.equal(host.started.length, index + 2);
    assert.equal(slot.state, 'running');
  }
  assert.equal(slot.restarts, expected.length);
  assert.equal(RESTART_FIRST_DELAY_MS, 1_000);
  assert.equal(RESTART_MAX_DELAY_MS, 30_000);
  await slot.stop(1_000);
});

test('an instance that ran a while before exiting restarts after 1 s again', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  host.started[0].exit({ code: 1, reason: 'exited' });
  await settle();
  mock.timers.tick(1_000);
  await settle();
  host.started[1].exit({ code: 1, reason: 'exited' });
  await settle();
  assert.deepEqual(host.delays, [1_000, 2_000]);
  mock.timers.tick(2_000);
  await settle();
  // The third instance runs for a minute, then exits.
  mock.timers.tick(60_000);
  host.started[2].exit({ code: 137, reason: 'exited' });
  await settle();
  assert.deepEqual(host.delays, [1_000, 2_000, 1_000]);
  await slot.stop(1_000);
});

test('a slot told to stop ends its instance and never restarts it', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  await slot.stop(1_000);
  await settle();
  mock.timers.tick(60_000);
  await settle();
  assert.equal(host.started.length, 1);
  assert.deepEqual(host.delays, []);
  assert.deepEqual(host.exits, [{ expected: true, exit: { code: 0, reason: 'stopped' } }]);
  assert.equal(slot.state, 'stopped');
});

test('a stop during back-off cancels the restart', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  host.started[0].exit({ code: 2, reason: 'exited' });
  await settle();
  assert.equal(slot.state, 'backoff');
  await slot.stop(1_000);
  mock.timers.tick(60_000);
  await settle();
  assert.equal(host.started.length, 1);
});

test('concurrent wakes share one resume; a wake during a suspend waits for it, then resumes', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  const { calls } = host.started[0];
  const open = host.started[0].holdSuspend();
  const suspending = slot.suspendIfIdle(() => true);
  await settle();
  assert.equal(slot.state, 'suspending');
  const wakes = [slot.wake(), slot.wake(), slot.wake()];
  await settle();
  // Nothing resumes before the suspend has finished.
  assert.deepEqual(calls, ['suspend']);
  open();
  await suspending;
  await Promise.all(wakes);
  assert.deepEqual(calls, ['suspend', 'suspended', 'resume']);
  assert.equal(slot.state, 'running');
  assert.deepEqual(host.changes, ['running->suspended', 'suspended->running']);
  await slot.stop(1_000);
});

test('an idle suspend never freezes an instance with a request in flight', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  slot.acquire();
  await slot.suspendIfIdle(() => true);
  assert.equal(slot.state, 'running');
  assert.deepEqual(host.started[0].calls, []);
  slot.release();
  await slot.suspendIfIdle(() => true);
  assert.equal(slot.state, 'suspended');
  await slot.stop(1_000);
});

test('a snapshot ends the instance without a restart; the next wake restores it', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  await slot.snapshotIfSuspended(() => true);
  // Only a suspended instance is snapshotted.
  assert.equal(slot.state, 'running');
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  await settle();
  assert.equal(slot.state, 'snapshotted');
  assert.equal(slot.instance, undefined);
  assert.deepEqual(host.started[0].calls, ['suspend', 'suspended', 'snapshot /snapshots/slot-0']);
  assert.deepEqual(host.exits, [{ expected: true, exit: { code: 0, reason: 'stopped' } }]);
  mock.timers.tick(60_000);
  await settle();
  assert.equal(host.started.length, 1, 'no restart after a snapshot');
  await Promise.all([slot.wake(), slot.wake()]);
  // Its own snapshot, which no other copy uses: the copy takes the memory as its own.
  assert.deepEqual(host.restored, ['/snapshots/slot-0 own']);
  assert.equal(slot.state, 'running');
  assert.equal((slot.instance as Instance | undefined)?.id, 'i1');
  // A restored copy that took no exchange is not snapshotted again: its snapshot is kept, the copy just ends.
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.equal(slot.state, 'snapshotted');
  assert.deepEqual(host.started[1].calls, ['suspend', 'suspended']);
  // One that served is written anew, so what its memory holds is kept.
  await slot.wake();
  slot.acquire();
  slot.release();
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.equal(slot.state, 'snapshotted');
  assert.deepEqual(host.started[2].calls, ['suspend', 'suspended', 'snapshot /snapshots/slot-0']);
  await slot.stop(1_000);
  assert.equal(slot.state, 'stopped');
});

test('a snapshot that cannot be restored ever (gone, another accelerator) gives way to a boot; one that failed otherwise is tried again', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.equal(slot.state, 'snapshotted');
  // A failure that may pass (QEMU could not start, say): the request sees it, the snapshot stays.
  host.restoreFailures.push(new Error('qemu exited'));
  await assert.rejects(slot.wake(), /qemu exited/);
  assert.equal(slot.state, 'snapshotted');
  assert.equal(slot.snapshotDir, '/snapshots/slot-0');
  assert.equal(host.started.length, 1, 'nothing booted');
  // One that cannot pass: the app boots and serves, and the slot says why.
  host.restoreFailures.push(errors.conflict('the snapshot was taken under tcg but this host runs kvm'));
  await slot.wake();
  assert.equal(slot.state, 'running');
  assert.equal(slot.origin, 'boot');
  assert.equal(host.started.length, 2, 'booted instead');
  assert.equal(slot.instance, host.started[1].instance);
  assert.deepEqual(host.unusable, ['/snapshots/slot-0: the snapshot was taken under tcg but this host runs kvm']);
  assert.deepEqual(host.restored, ['/snapshots/slot-0 own', '/snapshots/slot-0 own']);
  // Its next snapshot is written anew, in place of the unusable one.
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.deepEqual(host.started[1].calls, ['suspend', 'suspended', 'snapshot /snapshots/slot-0']);
  await slot.stop(1_000);
});

test('the ready snapshot is written from a running instance, which runs again after; a suspended one stays suspended', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  await slot.startFirst();
  assert.equal(slot.origin, 'boot');
  assert.equal(await slot.captureReadySnapshot('/snapshots/ready'), true);
  assert.deepEqual(host.started[0].calls, ['snapshot /snapshots/ready', 'resume']);
  assert.equal(slot.state, 'running');
  await slot.suspendIfIdle(() => true);
  assert.equal(await slot.captureReadySnapshot('/snapshots/ready-2'), true);
  assert.deepEqual(host.started[0].calls.slice(2), ['suspend', 'suspended', 'snapshot /snapshots/ready-2']);
  assert.equal(slot.state, 'suspended');
  await slot.stop(1_000);
  assert.equal(await slot.captureReadySnapshot('/snapshots/ready-3'), false, 'nothing to write from a stopped slot');
});

test('a copy of the ready snapshot is not snapshotted again: it ends, and its next wake is a fresh copy', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host);
  const start = host.start.bind(host);
  host.start = async () => {
    const instance = await start();
    host.readyCopies.set(instance, '/snapshots/ready');
    return instance;
  };
  await slot.startFirst();
  assert.equal(slot.origin, 'ready_snapshot');
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.equal(slot.state, 'snapshotted');
  assert.deepEqual(host.started[0].calls, ['suspend', 'suspended'], 'no snapshot of its own');
  await slot.wake();
  // The ready snapshot's pages stay shared between its copies.
  assert.deepEqual(host.restored, ['/snapshots/ready shared']);
  assert.equal(slot.origin, 'ready_snapshot');
  await slot.stop(1_000);
});

test('requests waiting for room: one release lets exactly one in, the oldest, and an instance exchange limit below the concurrency holds', async () => {
  const events = { scaleOut: () => false } as unknown as RuntimeEvents;
  const app = { name: 'web', settings: { concurrency: 50, tcp: 0 } } as unknown as AppRecord;
  const runtime = new AppRuntime(app, events, pino({ level: 'silent' }));
  const version = new AppVersion(1, {} as SandboxSpec, runtime, async () => ({}) as SandboxDriver);
  const slot = new InstanceSlot(version);
  slot.state = 'running';
  slot.instance = { ...controllableInstance('i0').instance, state: 'running', exchangeLimit: 2 } as Instance;
  version.slots.push(slot);
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

test('a busy app holds at most its capacity in waiting requests, then answers 503 at once; an exchange that waits is admitted first', async () => {
  const events = { scaleOut: () => false } as unknown as RuntimeEvents;
  const app = { name: 'web', settings: { concurrency: 1, max_instances: 1, tcp: 0 } } as unknown as AppRecord;
  const runtime = new AppRuntime(app, events, pino({ level: 'silent' }));
  const version = new AppVersion(1, {} as SandboxSpec, runtime, async () => ({}) as SandboxDriver);
  const slot = new InstanceSlot(version);
  slot.state = 'running';
  slot.instance = { ...controllableInstance('i0').instance, state: 'running' } as Instance;
  version.slots.push(slot);
  runtime.serve(version);

  let admissions = 0;
  const admit = async () => {
    admissions += 1;
  };
  const first = await runtime.acquireSlot(10_000, admit);
  assert.equal(first, slot, 'room at once: no admission needed');
  assert.equal(admissions, 0);
  const queued = runtime.acquireSlot(10_000, admit);
  await settle();
  assert.equal(runtime.waiting, 1);
  await assert.rejects(runtime.acquireSlot(10_000, admit), (error) => isAltoError(error) && error.status === 503 && error.headers?.['retry-after'] === '1' && /at capacity/.test(error.detail));
  assert.equal(admissions, 2);
  await assert.rejects(
    runtime.acquireSlot(10_000, async () => {
      throw errors.paymentRequired('compute cap reached');
    }),
    (error) => isAltoError(error) && error.status === 402,
  );
  slot.release();
  runtime.capacityFreed();
  assert.equal(await queued, slot, 'the waiting request gets the freed room');
});
