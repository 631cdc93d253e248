/**
 * The restart policy of `InstanceSlot`, on a clock the test moves: an instance that exits on its
 * own is started again after 1 s, then 2, 4 ... up to 30 s between tries; one that ran for a
 * while before exiting starts over at 1 s; a slot told to stop never restarts. (The real drivers
 * and the whole journey are in test/apps*.e2e.test.ts.) And the slot's lifecycle state machine,
 * every change reported to its one listener: concurrent wakes share one resume, a wake during a
 * suspend waits for it then resumes, an idle suspend never freezes an instance with a request in
 * flight, and a snapshot ends the instance without a restart, the next wake restoring it; the
 * ready snapshot is written from a running or suspended instance, which is left as it was, and a
 * copy of it goes back to it when snapshotted (real drivers: test/serverless*.e2e.test.ts).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { errors } from '../../kit/errors.js';
import type { Instance, InstanceExit } from '../sandbox/index.js';
import { InstanceSlot, RESTART_FIRST_DELAY_MS, RESTART_MAX_DELAY_MS, type LifecycleChange, type SlotHost, type SlotListener } from './slot.js';

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

/** The slot's version and its one listener at once: records what the slot asks and reports. */
class RecordingHost implements SlotHost, SlotListener<RecordingHost> {
  readonly version = 1;
  readonly booted: ReturnType<typeof controllableInstance>[] = [];
  readonly delays: number[] = [];
  readonly exits: { expected: boolean; exit: InstanceExit }[] = [];

  async start(): Promise<Instance> {
    const controlled = controllableInstance(`i${this.booted.length}`);
    this.booted.push(controlled);
    return controlled.instance;
  }
  slotStarted(): void {}
  slotExited(_slot: InstanceSlot<RecordingHost>, _instance: Instance, exit: InstanceExit, expected: boolean): void {
    this.exits.push({ expected, exit });
  }
  slotStartFailed(): void {}
  slotRestarting(_slot: InstanceSlot<RecordingHost>, delayMs: number): void {
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
  snapshotUnusable(_slot: InstanceSlot<RecordingHost>, dir: string, error: Error): void {
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
  lifecycleChanged(_slot: InstanceSlot<RecordingHost>, change: LifecycleChange): void {
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
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  const expected = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000];
  for (const [index, delay] of expected.entries()) {
    host.booted[index].exit({ code: 1, reason: 'exited' });
    await settle();
    assert.equal(slot.state, 'backoff');
    assert.equal(host.delays.at(-1), delay);
    // Not a moment before its time.
    mock.timers.tick(delay - 1);
    await settle();
    assert.equal(host.booted.length, index + 1);
    mock.timers.tick(1);
    await settle();
    assert.equal(host.booted.length, index + 2);
    assert.equal(slot.state, 'running');
  }
  assert.equal(slot.restarts, expected.length);
  assert.equal(RESTART_FIRST_DELAY_MS, 1_000);
  assert.equal(RESTART_MAX_DELAY_MS, 30_000);
  await slot.stop(1_000);
});

test('an instance that ran a while before exiting restarts after 1 s again', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  host.booted[0].exit({ code: 1, reason: 'exited' });
  await settle();
  mock.timers.tick(1_000);
  await settle();
  host.booted[1].exit({ code: 1, reason: 'exited' });
  await settle();
  assert.deepEqual(host.delays, [1_000, 2_000]);
  mock.timers.tick(2_000);
  await settle();
  // The third instance runs for a minute, then exits.
  mock.timers.tick(60_000);
  host.booted[2].exit({ code: 137, reason: 'exited' });
  await settle();
  assert.deepEqual(host.delays, [1_000, 2_000, 1_000]);
  await slot.stop(1_000);
});

test('a slot told to stop ends its instance and never restarts it', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  await slot.stop(1_000);
  await settle();
  mock.timers.tick(60_000);
  await settle();
  assert.equal(host.booted.length, 1);
  assert.deepEqual(host.delays, []);
  assert.deepEqual(host.exits, [{ expected: true, exit: { code: 0, reason: 'stopped' } }]);
  assert.equal(slot.state, 'stopped');
});

test('a stop during back-off cancels the restart', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  host.booted[0].exit({ code: 2, reason: 'exited' });
  await settle();
  assert.equal(slot.state, 'backoff');
  await slot.stop(1_000);
  mock.timers.tick(60_000);
  await settle();
  assert.equal(host.booted.length, 1);
});

test('concurrent wakes share one resume; a wake during a suspend waits for it, then resumes', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  const { calls } = host.booted[0];
  const open = host.booted[0].holdSuspend();
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
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  slot.acquire();
  await slot.suspendIfIdle(() => true);
  assert.equal(slot.state, 'running');
  assert.deepEqual(host.booted[0].calls, []);
  slot.release();
  await slot.suspendIfIdle(() => true);
  assert.equal(slot.state, 'suspended');
  await slot.stop(1_000);
});

test('a snapshot ends the instance without a restart; the next wake restores it', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  await slot.snapshotIfSuspended(() => true);
  // Only a suspended instance is snapshotted.
  assert.equal(slot.state, 'running');
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  await settle();
  assert.equal(slot.state, 'snapshotted');
  assert.equal(slot.instance, undefined);
  assert.deepEqual(host.booted[0].calls, ['suspend', 'suspended', 'snapshot /snapshots/slot-0']);
  assert.deepEqual(host.exits, [{ expected: true, exit: { code: 0, reason: 'stopped' } }]);
  mock.timers.tick(60_000);
  await settle();
  assert.equal(host.booted.length, 1, 'no restart after a snapshot');
  await Promise.all([slot.wake(), slot.wake()]);
  // Its own snapshot, which no other copy uses: the copy takes the memory as its own.
  assert.deepEqual(host.restored, ['/snapshots/slot-0 own']);
  assert.equal(slot.state, 'running');
  assert.equal((slot.instance as Instance | undefined)?.id, 'i1');
  // A restored copy that took no exchange is not snapshotted again: its snapshot is kept, the copy just ends.
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.equal(slot.state, 'snapshotted');
  assert.deepEqual(host.booted[1].calls, ['suspend', 'suspended']);
  // One that served is written anew, so what its memory holds is kept.
  await slot.wake();
  slot.acquire();
  slot.release();
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.equal(slot.state, 'snapshotted');
  assert.deepEqual(host.booted[2].calls, ['suspend', 'suspended', 'snapshot /snapshots/slot-0']);
  await slot.stop(1_000);
  assert.equal(slot.state, 'stopped');
});

test('a snapshot that cannot be restored ever (gone, another accelerator) gives way to a boot; one that failed otherwise is tried again', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.equal(slot.state, 'snapshotted');
  // A failure that may pass (QEMU could not start, say): the request sees it, the snapshot stays.
  host.restoreFailures.push(new Error('qemu exited'));
  await assert.rejects(slot.wake(), /qemu exited/);
  assert.equal(slot.state, 'snapshotted');
  assert.equal(slot.snapshotDir, '/snapshots/slot-0');
  assert.equal(host.booted.length, 1, 'nothing booted');
  // One that cannot pass: the app boots and serves, and the slot says why.
  host.restoreFailures.push(errors.conflict('the snapshot was taken under tcg but this host runs kvm'));
  await slot.wake();
  assert.equal(slot.state, 'running');
  assert.equal(slot.origin, 'boot');
  assert.equal(host.booted.length, 2, 'booted instead');
  assert.equal(slot.instance, host.booted[1].instance);
  assert.deepEqual(host.unusable, ['/snapshots/slot-0: the snapshot was taken under tcg but this host runs kvm']);
  assert.deepEqual(host.restored, ['/snapshots/slot-0 own', '/snapshots/slot-0 own']);
  // Its next snapshot is written anew, in place of the unusable one.
  await slot.suspendIfIdle(() => true);
  await slot.snapshotIfSuspended(() => true);
  assert.deepEqual(host.booted[1].calls, ['suspend', 'suspended', 'snapshot /snapshots/slot-0']);
  await slot.stop(1_000);
});

test('the ready snapshot is written from a running instance, which runs again after; a suspended one stays suspended', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
  await slot.startFirst();
  assert.equal(slot.origin, 'boot');
  assert.equal(await slot.captureReadySnapshot('/snapshots/ready'), true);
  assert.deepEqual(host.booted[0].calls, ['snapshot /snapshots/ready', 'resume']);
  assert.equal(slot.state, 'running');
  await slot.suspendIfIdle(() => true);
  assert.equal(await slot.captureReadySnapshot('/snapshots/ready-2'), true);
  assert.deepEqual(host.booted[0].calls.slice(2), ['suspend', 'suspended', 'snapshot /snapshots/ready-2']);
  assert.equal(slot.state, 'suspended');
  await slot.stop(1_000);
  assert.equal(await slot.captureReadySnapshot('/snapshots/ready-3'), false, 'nothing to write from a stopped slot');
});

test('a copy of the ready snapshot is not snapshotted again: it ends, and its next wake is a fresh copy', async () => {
  const host = new RecordingHost();
  const slot = new InstanceSlot(host, host);
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
  assert.deepEqual(host.booted[0].calls, ['suspend', 'suspended'], 'no snapshot of its own');
  await slot.wake();
  // The ready snapshot's pages stay shared between its copies.
  assert.deepEqual(host.restored, ['/snapshots/ready shared']);
  assert.equal(slot.origin, 'ready_snapshot');
  await slot.stop(1_000);
});
