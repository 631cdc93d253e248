/**
 * @module compute/apps/runtime
 * The live side of one app: its instances (one `InstanceSlot` per instance it should have,
 * each restarting its instance with back-off when it exits unexpectedly), the log lines of
 * every instance it ran (kept across restarts, so a crash's output stays visible), and which
 * version serves traffic. `AppManager` owns one `AppRuntime` per app that runs.
 */
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import { errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { isSandboxStartError, type Instance, type InstanceExit, type SandboxDriver, type SandboxSpec } from '../sandbox/index.js';
import { BoundedLog } from '../sandbox/log-capture.js';
import type { AppRecord } from './records.js';

/** How many log lines, and bytes of them, an app keeps (all instances together). */
const KEPT_LOG_LINES = 5_000;
const KEPT_LOG_BYTES = 4 * 1024 * 1024;
/** The most one read of the log (app/Logs, function/Logs) answers with. */
export const MAX_LOG_ANSWER_BYTES = 1024 * 1024;
/** First pause before restarting an instance that exited, doubled each time up to the most. */
export const RESTART_FIRST_DELAY_MS = 1_000;
export const RESTART_MAX_DELAY_MS = 30_000;
/** An instance that ran this long before exiting restarts after the first delay again. */
const STABLE_AFTER_MS = 30_000;
/**
 * Requests an app may hold waiting for capacity: as many as its full capacity (concurrency ×
 * max_instances), at most this; more are answered 503 with Retry-After at once.
 */
export const MAX_QUEUED_PER_APP = 200;

export type AppLogStream = 'stdout' | 'stderr' | 'system';

export interface AppLogLine {
  at: number;
  stream: AppLogStream;
  line: string;
  instance: string;
  version: number;
}

export interface LastExit {
  instance: string;
  version: number;
  code: number | null;
  reason: string;
  at: number;
}

/** What a slot asks of its owner: start an instance, and hear about its life. */
export interface SlotHost {
  readonly version: number;
  start(): Promise<Instance>;
  onStarted(slot: InstanceSlot, instance: Instance): void;
  onExited(slot: InstanceSlot, instance: Instance, exit: InstanceExit, expected: boolean): void;
  onStartFailed(slot: InstanceSlot, error: Error): void;
  onRestartScheduled(slot: InstanceSlot, delayMs: number): void;
  /** Starts a private copy of a snapshot this slot took (the driver's restore); `ownMemory` as in RestoreOptions. */
  restore(snapshotDir: string, ownMemory: boolean): Promise<Instance>;
  /** The slot's snapshot cannot be restored, ever (`error` says why): it boots afresh instead. */
  onSnapshotUnusable(slot: InstanceSlot, snapshotDir: string, error: Error): void;
  /** Where this slot keeps its snapshot. */
  snapshotDirOf(slot: InstanceSlot): string;
  /** The version's ready snapshot `instance` was restored from, if it was. */
  readySnapshotOf(instance: Instance): string | undefined;
  onLifecycle(slot: InstanceSlot, change: LifecycleChange): void;
}

/** A lifecycle transition a slot reports: the instance it concerns and how long it took. */
export interface LifecycleChange {
  from: SlotState;
  to: SlotState;
  instance: Instance | undefined;
  ms: number;
}

export type SlotState =
  | 'starting'
  | 'running'
  | 'suspending'
  | 'suspended'
  | 'resuming'
  | 'snapshotting'
  | 'snapshotted'
  | 'restoring'
  | 'backoff'
  | 'stopping'
  | 'stopped';

/** How a slot's current instance came to be: booted, restored from its version's ready snapshot, or from the slot's own snapshot. */
export type SlotOrigin = 'boot' | 'ready_snapshot' | 'snapshot';

/** States in which a slot holds a healthy instance (or its snapshot) that a request can wake. */
export const ASLEEP_STATES: ReadonlySet<SlotState> = new Set(['suspending', 'suspended', 'resuming', 'snapshotting', 'snapshotted', 'restoring']);

/**
 * One instance position of an app version: starts its instance, and while not told to stop,
 * starts it again after an unexpected exit, waiting 1 s, then 2, 4 ... up to 30 s between tries.
 */
export class InstanceSlot {
  state: SlotState = 'starting';
  instance: Instance | undefined;
  restarts = 0;
  /** Requests or connections in flight on the current instance. */
  inFlight = 0;
  /** When the last exchange began or ended (the idle clock). */
  lastActivity = Date.now();
  /** When the slot entered its current state. */
  stateSince = Date.now();
  /** The snapshot this slot restores from, once it took one (or was given one at restart). */
  snapshotDir: string | undefined;
  /** The snapshot this slot wrote itself (or was given at restart): removed once a newer one replaces it. */
  private ownSnapshot: string | undefined;
  /** The snapshot the current instance was restored from, if it was. */
  private restoredFrom: string | undefined;
  /** Whether the current instance took any exchange since it started. */
  private served = false;
  origin: SlotOrigin = 'boot';
  /** Resolves when the transitions queued so far have run; each runs alone. */
  private transitions: Promise<void> = Promise.resolve();
  private waking: Promise<void> | undefined;
  /** A snapshot of this slot failed (the driver or the app cannot): it stays suspended. */
  snapshotRefused = false;
  /** Set while the slot ends its instance itself (after a snapshot): not a crash. */
  private parking = false;
  private delayMs = RESTART_FIRST_DELAY_MS;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private stopRequested = false;
  private readonly drained = new EventEmitter();

  constructor(readonly host: SlotHost) {}

  /** Starts the first instance; rejects (and leaves the slot stopped) when it never becomes ready. */
  async startFirst(): Promise<void> {
    const instance = await this.host.start();
    if (this.stopRequested) {
      await instance.stop().catch(() => undefined);
      throw new Error('stopped while starting');
    }
    this.adopt(instance);
  }

  /** Starts supervising without a first instance that must succeed: failures go to back-off. */
  startSupervised(): void {
    void this.tryStart();
  }

  /** Takes `instance` as the slot's own; `restored` from the slot's snapshot (else booted, or a copy of the ready snapshot). */
  private adopt(instance: Instance, restored = false): void {
    this.instance = instance;
    this.origin = this.host.readySnapshotOf(instance) ? 'ready_snapshot' : restored ? 'snapshot' : 'boot';
    this.restoredFrom = this.host.readySnapshotOf(instance) ?? (restored ? this.snapshotDir : undefined);
    this.served = false;
    this.setState('running');
    this.lastActivity = Date.now();
    this.startedAt = Date.now();
    this.host.onStarted(this, instance);
    void instance.exited.then((exit) => this.onExit(instance, exit));
  }

  private setState(state: SlotState): SlotState {
    const from = this.state;
    this.state = state;
    this.stateSince = Date.now();
    return from;
  }

  /** Runs `step` after every transition queued before it (never two at once). */
  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const result = this.transitions.then(step);
    this.transitions = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Moves to `to` around `work`, reporting the change; on failure goes back to `onError`. */
  private async transition(via: SlotState, to: SlotState, onError: SlotState, work: () => Promise<void>): Promise<void> {
    const from = this.setState(via);
    const instance = this.instance;
    const began = performance.now();
    try {
      await work();
    } catch (error) {
      if (this.state === via) this.setState(onError);
      throw error;
    }
    if (this.state === via) this.setState(to);
    this.host.onLifecycle(this, { from, to, instance, ms: performance.now() - began });
  }

  /** Whether a request can wake this slot (it holds a suspended instance or a snapshot). */
  get asleep(): boolean {
    return ASLEEP_STATES.has(this.state);
  }

  /**
   * Brings a suspended or snapshotted slot back to running; resolves at once when it runs.
   * Concurrent calls share one resume (or restore); a suspend in progress finishes first.
   */
  wake(): Promise<void> {
    if (this.state === 'running' && !this.waking) return Promise.resolve();
    this.lastActivity = Date.now();
    this.waking ??= this.enqueue(() => this.wakeNow()).finally(() => (this.waking = undefined));
    return this.waking;
  }

  private async wakeNow(): Promise<void> {
    this.lastActivity = Date.now();
    if (this.state === 'suspended' && this.instance) {
      const instance = this.instance;
      await this.transition('resuming', 'running', 'suspended', () => instance.resume());
    } else if (this.state === 'snapshotted' && this.snapshotDir) {
      const dir = this.snapshotDir;
      const from = this.setState('restoring');
      const began = performance.now();
      let instance: Instance;
      let restored = true;
      try {
        // Its own snapshot has no other user: the copy takes its memory whole, and its next
        // snapshot is the quick kind. The ready snapshot's pages stay shared between its copies.
        instance = await this.host.restore(dir, dir === this.ownSnapshot);
      } catch (error) {
        // A snapshot that no retry can restore (gone, or taken under another accelerator) would
        // fail every request from now on: the app comes back booted, without what it held. Any
        // other failure may pass, and the snapshot is worth another try on the next request.
        if (!isAltoError(error) || error.status >= 500 || this.stopRequested) {
          if ((this.state as SlotState) === 'restoring') this.setState('snapshotted');
          throw error;
        }
        this.host.onSnapshotUnusable(this, dir, error);
        this.snapshotDir = undefined;
        try {
          instance = await this.host.start();
        } catch (bootError) {
          if (!this.stopRequested) {
            this.host.onStartFailed(this, bootError as Error);
            this.scheduleRestart();
          }
          throw bootError;
        }
        restored = false;
      }
      if (this.stopRequested) {
        await instance.stop(0).catch(() => undefined);
        return;
      }
      this.adopt(instance, restored);
      this.host.onLifecycle(this, { from, to: 'running', instance, ms: performance.now() - began });
    }
  }

  /** Freezes the instance when it is still running and idle (checked when the step runs). */
  suspendIfIdle(isIdle: (slot: InstanceSlot) => boolean): Promise<void> {
    return this.enqueue(async () => {
      if (this.state !== 'running' || this.waking || this.inFlight > 0 || !isIdle(this)) return;
      const instance = this.instance;
      if (!instance) return;
      await this.transition('suspending', 'suspended', 'running', () => instance.suspend());
    });
  }

  /**
   * Zero memory: writes a snapshot of the suspended instance and ends its process; the next wake
   * restores it. A restored copy that took no exchange since goes back to the snapshot it came
   * from, unchanged; one that did is written anew (its memory holds what it was asked to keep),
   * and the slot's older snapshot removed once the new one is in place. Only from suspended,
   * checked when the step runs.
   */
  async snapshotIfSuspended(isStillIdle: (slot: InstanceSlot) => boolean): Promise<void> {
    let superseded: string | undefined;
    await this.enqueue(async () => {
      if (this.state !== 'suspended' || this.waking || !isStillIdle(this)) return;
      const instance = this.instance;
      if (!instance) return;
      await this.transition('snapshotting', 'snapshotted', 'suspended', async () => {
        if (this.restoredFrom && !this.served) {
          this.snapshotDir = this.restoredFrom;
        } else {
          const dir = this.host.snapshotDirOf(this);
          try {
            await instance.snapshot(dir);
          } catch (error) {
            await rm(dir, { recursive: true, force: true });
            throw error;
          }
          if (this.ownSnapshot !== dir) superseded = this.ownSnapshot;
          this.snapshotDir = this.ownSnapshot = dir;
        }
        this.parking = true;
        await instance.stop(0);
      });
    });
    // Recorded by now (the transition's lifecycle change), and no instance maps it any more.
    if (superseded) await rm(superseded, { recursive: true, force: true });
  }

  /**
   * Writes the version's ready snapshot from this slot's freshly booted instance, which is
   * suspended for the time it takes (and resumed after, unless it was suspended already).
   * Resolves false when the slot holds no running or suspended instance when the step runs.
   */
  captureReadySnapshot(dir: string): Promise<boolean> {
    return this.enqueue(async () => {
      const instance = this.instance;
      if (!instance || (this.state !== 'running' && this.state !== 'suspended')) return false;
      const wasRunning = this.state === 'running';
      await this.transition('snapshotting', this.state, this.state, async () => {
        await instance.snapshot(dir);
        if (wasRunning) await instance.resume();
      });
      return true;
    });
  }

  /** At a restart of Alto: the slot starts as a snapshot, restored on the first request; `own` when the slot wrote it. */
  startSnapshotted(dir: string, own: boolean): void {
    this.snapshotDir = dir;
    if (own) this.ownSnapshot = dir;
    this.setState('snapshotted');
  }

  private async tryStart(): Promise<void> {
    if (this.stopRequested) return;
    this.setState('starting');
    try {
      const instance = await this.host.start();
      if (this.stopRequested) {
        await instance.stop().catch(() => undefined);
        return;
      }
      this.adopt(instance);
    } catch (error) {
      if (this.stopRequested) return;
      this.host.onStartFailed(this, error as Error);
      this.scheduleRestart();
    }
  }

  private onExit(instance: Instance, exit: InstanceExit): void {
    if (this.instance === instance) this.instance = undefined;
    this.inFlight = 0;
    this.drained.emit('drained');
    if (this.parking) {
      this.parking = false;
      this.host.onExited(this, instance, exit, true);
      return;
    }
    const expected = this.stopRequested;
    this.host.onExited(this, instance, exit, expected);
    if (expected) return;
    if (Date.now() - this.startedAt >= STABLE_AFTER_MS) this.delayMs = RESTART_FIRST_DELAY_MS;
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    this.setState('backoff');
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, RESTART_MAX_DELAY_MS);
    this.host.onRestartScheduled(this, delay);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.restarts += 1;
      void this.tryStart();
    }, delay);
  }

  acquire(): void {
    this.inFlight += 1;
    this.served = true;
    this.lastActivity = Date.now();
  }

  release(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.lastActivity = Date.now();
    if (this.inFlight === 0) this.drained.emit('drained');
  }

  /** Waits until nothing is in flight on this slot (or `timeoutMs` passed). */
  async drain(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      const check = () => {
        if (this.inFlight === 0) {
          this.drained.off('drained', check);
          done();
        }
      };
      this.drained.on('drained', check);
    });
  }

  /** Stops for good: no restart, the instance gets SIGTERM and `graceMs` to end. */
  async stop(graceMs: number): Promise<void> {
    this.stopRequested = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // A suspend, snapshot or restore in progress ends first (each is short or bounded).
    await this.transitions;
    this.setState('stopping');
    const instance = this.instance;
    if (instance) await instance.stop(graceMs).catch(() => undefined);
    this.setState('stopped');
  }
}

/**
 * One version of an app: the spec its instances run with and their slots. Where the driver can
 * snapshot, the version may hold a ready snapshot (its first instance, just ready, written to
 * disk): instances it starts after that (scale-out, pool spares, restarts) are private copies of
 * it, restored in a fraction of a boot and sharing its unchanged memory pages.
 */
export class AppVersion implements SlotHost {
  readonly slots: InstanceSlot[] = [];
  readySnapshot: string | undefined;
  private readonly fromReadySnapshot = new WeakMap<Instance, string>();

  constructor(
    readonly version: number,
    readonly spec: SandboxSpec,
    private readonly runtime: AppRuntime,
    private readonly driver: () => Promise<SandboxDriver>,
  ) {}

  /** Runs one start (boot or restore) in the app's turn of the host's starts. */
  private async inStartTurn(work: (driver: SandboxDriver) => Promise<Instance>): Promise<Instance> {
    this.runtime.beforeStart(this);
    const release = await this.runtime.admitStart();
    try {
      return await work(await this.driver());
    } finally {
      release();
    }
  }

  start(): Promise<Instance> {
    return this.inStartTurn(async (driver) => {
      const ready = this.readySnapshot;
      if (ready) {
        try {
          const instance = await driver.restore(ready, { links: this.spec.links });
          this.fromReadySnapshot.set(instance, ready);
          return instance;
        } catch (error) {
          // Boot instead, from now on: the snapshot is unusable (removed, or from another accelerator).
          if (this.readySnapshot === ready) this.readySnapshot = undefined;
          this.runtime.system(this, '', `restoring the ready snapshot failed, booting instead: ${(error as Error).message}`);
        }
      }
      return driver.start(this.spec);
    });
  }

  readySnapshotOf(instance: Instance): string | undefined {
    return this.fromReadySnapshot.get(instance);
  }

  onSnapshotUnusable(_slot: InstanceSlot, snapshotDir: string, error: Error): void {
    this.runtime.system(this, '', `the instance's snapshot cannot be restored, booting instead (what its memory held is lost): ${error.message} (${snapshotDir})`);
  }

  onStarted(slot: InstanceSlot, instance: Instance): void {
    this.runtime.instanceStarted(this, slot, instance);
  }

  onExited(slot: InstanceSlot, instance: Instance, exit: InstanceExit, expected: boolean): void {
    this.runtime.instanceExited(this, slot, instance, exit, expected);
  }

  onStartFailed(slot: InstanceSlot, error: Error): void {
    this.runtime.startFailed(this, slot, error);
  }

  onRestartScheduled(slot: InstanceSlot, delayMs: number): void {
    this.runtime.restartScheduled(this, slot, delayMs);
  }

  restore(snapshotDir: string, ownMemory: boolean): Promise<Instance> {
    return this.inStartTurn((driver) => driver.restore(snapshotDir, { links: this.spec.links, ownMemory }));
  }

  snapshotDirOf(slot: InstanceSlot): string {
    return this.runtime.snapshotDirOf(this, this.slots.indexOf(slot));
  }

  onLifecycle(slot: InstanceSlot, change: LifecycleChange): void {
    this.runtime.lifecycleChanged(this, slot, change);
  }

  /** Slots whose instance is ready for traffic. */
  runningSlots(): InstanceSlot[] {
    return this.slots.filter((slot) => slot.state === 'running' && slot.instance?.state === 'running');
  }

  async stop(graceMs: number, drainMs = 0): Promise<void> {
    await Promise.all(
      this.slots.map(async (slot) => {
        if (drainMs > 0) await slot.drain(drainMs);
        await slot.stop(graceMs);
      }),
    );
  }
}

/** What the runtime reports to its manager (records, metering, caps). */
export interface RuntimeEvents {
  beforeStart(runtime: AppRuntime, version: AppVersion): void;
  /** Waits for the app's fair share of the host's starts (boots and restores); call the result when the start ended. */
  admitStart(runtime: AppRuntime): Promise<() => void>;
  instanceStarted(runtime: AppRuntime, version: AppVersion, instance: Instance): void;
  instanceExited(runtime: AppRuntime, version: AppVersion, instance: Instance, exit: InstanceExit, expected: boolean): void;
  statusChanged(runtime: AppRuntime): void;
  /** A slot was suspended, resumed, snapshotted or restored. */
  lifecycleChanged(runtime: AppRuntime, version: AppVersion, slot: InstanceSlot, change: LifecycleChange): void;
  /** Where slot `index` of `version` keeps its snapshot. */
  snapshotDirOf(runtime: AppRuntime, version: AppVersion, index: number): string;
  /** Every running instance is at its concurrency: add one if the app may (true when it did). */
  scaleOut(runtime: AppRuntime): boolean;
}

/** An app's live state: the version serving traffic, one being rolled out, and their logs. */
export class AppRuntime {
  serving: AppVersion | undefined;
  /** A version being started by Update, not serving yet. */
  candidate: AppVersion | undefined;
  lastExit: LastExit | undefined;
  /** Restarts of crashed instances, all versions together. */
  restarts = 0;
  /** Set while Run, Update or Delete works on the app: they refuse to overlap. */
  busy: string | undefined;
  readonly tcp: { port?: number; close?: () => Promise<void>; opening?: Promise<void> } = {};
  private readonly lines = new BoundedLog<AppLogLine>(KEPT_LOG_LINES, KEPT_LOG_BYTES);
  private readonly emitter = new EventEmitter();
  private readonly waiters = new Set<() => void>();

  constructor(
    public app: AppRecord,
    private readonly events: RuntimeEvents,
    readonly log: Logger,
  ) {
    this.emitter.setMaxListeners(0);
  }

  beforeStart(version: AppVersion): void {
    this.events.beforeStart(this, version);
  }

  admitStart(): Promise<() => void> {
    return this.events.admitStart(this);
  }

  instanceStarted(version: AppVersion, _slot: InstanceSlot, instance: Instance): void {
    void this.pipeLogs(version, instance);
    this.system(version, instance.id, `instance ${instance.id} of version ${version.version} is ready (${instance.driver})`);
    this.events.instanceStarted(this, version, instance);
    this.events.statusChanged(this);
    for (const wake of [...this.waiters]) wake();
  }

  instanceExited(version: AppVersion, _slot: InstanceSlot, instance: Instance, exit: InstanceExit, expected: boolean): void {
    if (!expected) {
      this.lastExit = { instance: instance.id, version: version.version, code: exit.code, reason: exit.reason, at: Date.now() };
      this.system(version, instance.id, `instance ${instance.id} exited unexpectedly: ${describeExit(exit)}`);
      this.log.warn({ app: this.app.name, project: this.app.projectName, instance: instance.id, exit }, 'app instance exited');
    }
    this.events.instanceExited(this, version, instance, exit, expected);
    this.events.statusChanged(this);
  }

  startFailed(version: AppVersion, _slot: InstanceSlot, error: Error): void {
    this.recordFailedStart(version, error);
    this.lastExit = { instance: '', version: version.version, code: null, reason: error.message, at: Date.now() };
    this.system(version, '', `an instance of version ${version.version} failed to start: ${error.message}`);
    this.events.statusChanged(this);
  }

  /**
   * Copies what an instance that never became ready wrote into the app's log (its output is
   * piped here only once it is ready, so this is the one place it can still be read) and
   * returns those lines.
   */
  recordFailedStart(version: AppVersion, error: unknown): AppLogLine[] {
    if (!isSandboxStartError(error)) return [];
    const lines = error.logTail.map((entry): AppLogLine => ({ at: entry.at, stream: entry.stream, line: entry.line, instance: error.instanceId, version: version.version }));
    for (const line of lines) this.push(line);
    return lines;
  }

  lifecycleChanged(version: AppVersion, slot: InstanceSlot, change: LifecycleChange): void {
    this.events.lifecycleChanged(this, version, slot, change);
  }

  snapshotDirOf(version: AppVersion, index: number): string {
    return this.events.snapshotDirOf(this, version, index);
  }

  /** Requests waiting now for an instance (activation, start, or capacity): the queue depth. */
  waiting = 0;

  restartScheduled(version: AppVersion, slot: InstanceSlot, delayMs: number): void {
    this.restarts += 1;
    this.system(version, slot.instance?.id ?? '', `restarting in ${delayMs / 1000} s`);
    this.events.statusChanged(this);
  }

  /** Copies an instance's output into the app's log, from its first line until it ends. */
  private async pipeLogs(version: AppVersion, instance: Instance): Promise<void> {
    try {
      for await (const entry of instance.logs({ follow: true })) {
        this.push({ at: entry.at, stream: entry.stream, line: entry.line, instance: instance.id, version: version.version });
      }
    } catch (error) {
      this.log.warn({ err: error, instance: instance.id }, 'reading app instance logs failed');
    }
  }

  system(version: AppVersion | number, instance: string, line: string): void {
    this.push({ at: Date.now(), stream: 'system', line, instance, version: typeof version === 'number' ? version : version.version });
  }

  private push(entry: AppLogLine): void {
    this.lines.push(entry);
    this.emitter.emit('line', entry);
  }

  /** The last `count` lines (of one stream, when given), no more than MAX_LOG_ANSWER_BYTES of them. */
  tail(count: number, stream?: AppLogStream): AppLogLine[] {
    return this.lines.newest(count, MAX_LOG_ANSWER_BYTES, stream ? (entry) => entry.stream === stream : undefined);
  }

  /** The last `count` lines, then every new one until `signal` aborts. */
  async *follow(count: number, signal: AbortSignal, stream?: AppLogStream): AsyncGenerator<AppLogLine> {
    const queue: AppLogLine[] = [...this.tail(count, stream)];
    let wake: (() => void) | undefined;
    const onLine = (entry: AppLogLine) => {
      if (stream && entry.stream !== stream) return;
      queue.push(entry);
      wake?.();
    };
    const onEnd = () => wake?.();
    this.emitter.on('line', onLine);
    this.emitter.on('end', onEnd);
    signal.addEventListener('abort', onEnd);
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (signal.aborted || this.ended) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.emitter.off('line', onLine);
      this.emitter.off('end', onEnd);
      signal.removeEventListener('abort', onEnd);
    }
  }

  private ended = false;

  /** Ends followers (the app was deleted). */
  end(): void {
    this.ended = true;
    this.emitter.emit('end');
    for (const wake of [...this.waiters]) wake();
  }

  /** Moves traffic to `version` (or nowhere); requests waiting for an instance look again. */
  serve(version: AppVersion | undefined): void {
    this.serving = version;
    for (const wake of [...this.waiters]) wake();
  }

  /**
   * A running instance of the serving version: the one with the fewest requests in flight, and
   * with fewer than `limit` (the app's concurrency) when given, or than its instance's own
   * exchange limit when that is lower and the app serves HTTP.
   */
  pickSlot(limit = Infinity): InstanceSlot | undefined {
    const running = this.serving?.runningSlots() ?? [];
    let best: InstanceSlot | undefined;
    for (const slot of running) if (slot.inFlight < this.roomOf(slot, limit) && (!best || slot.inFlight < best.inFlight)) best = slot;
    return best;
  }

  /** Exchanges `slot` may hold at once under `limit` (Instance.exchangeLimit; a TCP app's connections are not capped by it). */
  private roomOf(slot: InstanceSlot, limit: number): number {
    const own = this.app.settings.tcp || limit === Infinity ? undefined : slot.instance?.exchangeLimit;
    return own === undefined ? limit : Math.min(limit, own);
  }

  /** An exchange ended: the request waiting longest looks again (it claims the room in the turn it wakes). */
  capacityFreed(): void {
    if (this.waiting === 0) return;
    const [oldest] = this.waiters;
    oldest?.();
  }

  /** A slot of the serving version a request can wake: suspended ones before snapshotted ones. */
  pickAsleep(): InstanceSlot | undefined {
    const asleep = this.serving?.slots.filter((slot) => slot.asleep) ?? [];
    const order: SlotState[] = ['resuming', 'suspending', 'suspended', 'restoring', 'snapshotting', 'snapshotted'];
    asleep.sort((a, b) => order.indexOf(a.state) - order.indexOf(b.state));
    return asleep[0];
  }

  /**
   * A running instance with room for one more exchange, claimed for it (`acquire`d) in the same
   * turn it was picked: callers woken together must not all see the room one release made.
   */
  claimSlot(): InstanceSlot | undefined {
    const slot = this.pickSlot(this.app.settings.concurrency);
    slot?.acquire();
    return slot;
  }

  /**
   * A claimed instance for one exchange (the caller releases it): one with room at once; else,
   * once `admit` lets the exchange wait (compute caps), activation, up to `timeoutMs`. Only a
   * busy app turns requests away, past its bounded queue, with a 503 at once: an idle one holds
   * every request while it wakes.
   */
  async acquireSlot(timeoutMs: number, admit: () => Promise<void>): Promise<InstanceSlot | undefined> {
    const running = this.claimSlot();
    if (running) return running;
    await admit();
    const { settings } = this.app;
    const atCapacity = (this.serving?.runningSlots().length ?? 0) > 0 && !this.pickAsleep();
    const queueLimit = Math.min(MAX_QUEUED_PER_APP, Math.max(1, settings.concurrency * settings.max_instances));
    if (atCapacity && this.waiting >= queueLimit)
      throw errors.unavailable(`app "${this.app.name}" is at capacity: ${this.waiting} requests already wait for an instance; try again shortly`).withHeaders({ 'retry-after': '1' });
    return this.activate(timeoutMs);
  }

  /**
   * Activation: a claimed running instance of the serving version (the caller releases it),
   * waking a suspended or snapshotted one when none runs (concurrent callers share its wake),
   * or waiting for one that starts or frees room, up to `timeoutMs`. A failed wake is logged and
   * the wait goes on (the slot restarts its instance).
   */
  async activate(timeoutMs: number): Promise<InstanceSlot | undefined> {
    const deadline = Date.now() + timeoutMs;
    this.waiting += 1;
    try {
      for (;;) {
        if (this.ended) return undefined;
        const running = this.claimSlot();
        if (running) return running;
        const asleep = this.pickAsleep();
        if (!asleep) {
          // Every running instance is busy (or none runs): add one where the app may, then wait
          // for an instance with room (a new one, or an exchange ending).
          this.events.scaleOut(this);
          const left = deadline - Date.now();
          if (left <= 0) return undefined;
          await this.waitForChange(left);
          continue;
        }
        try {
          await asleep.wake();
        } catch (error) {
          this.log.warn({ err: error, app: this.app.name }, 'waking an app instance failed');
          this.system(this.serving?.version ?? this.app.version, asleep.instance?.id ?? '', `waking an instance failed: ${(error as Error).message}`);
          if (Date.now() >= deadline) return undefined;
          await this.waitForChange(Math.max(0, deadline - Date.now()));
        }
      }
    } finally {
      this.waiting -= 1;
    }
  }

  /** Waits until something changes (an instance starts, traffic moves, an exchange ends), up to `timeoutMs`. */
  private waitForChange(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiters = this.waiters;
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }

  /** The app's status as its instances make it. */
  liveStatus(): 'running' | 'crashing' | 'deploying' {
    const slots = this.serving?.slots ?? [];
    const healthy = (slot: InstanceSlot) => slot.state === 'running' || slot.asleep;
    if (slots.length > 0 && slots.every(healthy)) return 'running';
    if (slots.some((slot) => slot.state === 'backoff' || (slot.state === 'starting' && slot.restarts > 0))) return 'crashing';
    // An instance added for load is starting while the others serve.
    if (slots.some(healthy) && slots.every((slot) => healthy(slot) || slot.state === 'starting' || slot.state === 'stopping')) return 'running';
    return 'deploying';
  }
}

export function describeExit(exit: InstanceExit): string {
  return exit.code === null ? exit.reason : `${exit.reason} with code ${exit.code}`;
}
