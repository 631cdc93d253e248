/**
 * @module compute/apps/slot
 * One instance position of an app version (`InstanceSlot`): it starts its instance, restarts it
 * with back-off when it exits unexpectedly, and moves it through its lifecycle (running,
 * suspended, snapshotted, restored, stopped), one transition at a time. It asks the version it
 * belongs to for instances (`SlotHost`) and reports every start, exit and transition to one
 * listener (`SlotListener`, the scheduler), and nowhere else.
 */
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import { isAltoError } from '../../kit/errors.js';
import type { Instance, InstanceExit } from '../sandbox/index.js';

/** First pause before restarting an instance that exited, doubled each time up to the most. */
export const RESTART_FIRST_DELAY_MS = 1_000;
export const RESTART_MAX_DELAY_MS = 30_000;
/** An instance that ran this long before exiting restarts after the first delay again. */
const STABLE_AFTER_MS = 30_000;

/** What a slot asks of the version it belongs to: start an instance (booted, or a copy of a snapshot). */
export interface SlotHost {
  readonly version: number;
  start(): Promise<Instance>;
  /** Starts a private copy of a snapshot this slot took (the driver's restore); `ownMemory` as in RestoreOptions. */
  restore(snapshotDir: string, ownMemory: boolean): Promise<Instance>;
  /** The version's ready snapshot `instance` was restored from, if it was. */
  readySnapshotOf(instance: Instance): string | undefined;
}

/**
 * The one listener of slots (the scheduler): every start, exit, failure and lifecycle change of
 * a slot is reported here by the slot itself, and nowhere else; and where the slot keeps its
 * snapshot, which the listener decides since it decides when slots sleep.
 */
export interface SlotListener<Host extends SlotHost = SlotHost> {
  slotStarted(slot: InstanceSlot<Host>, instance: Instance): void;
  slotExited(slot: InstanceSlot<Host>, instance: Instance, exit: InstanceExit, expected: boolean): void;
  slotStartFailed(slot: InstanceSlot<Host>, error: Error): void;
  slotRestarting(slot: InstanceSlot<Host>, delayMs: number): void;
  /** The slot's snapshot cannot be restored, ever (`error` says why): it boots afresh instead. */
  snapshotUnusable(slot: InstanceSlot<Host>, snapshotDir: string, error: Error): void;
  /** A slot was suspended, resumed, snapshotted or restored. */
  lifecycleChanged(slot: InstanceSlot<Host>, change: LifecycleChange): void;
  /** Where the slot keeps its next snapshot. */
  snapshotDirOf(slot: InstanceSlot<Host>): string;
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
export class InstanceSlot<Host extends SlotHost = SlotHost> {
  state: SlotState = 'starting';
  instance: Instance | undefined;
  restarts = 0;
  /** Requests or connections in flight on the current instance. */
  inFlight = 0;
  /** Quiet TCP connections still open to this instance (`park`). */
  parked = 0;
  /** Exchanges taken since the slot was made, whatever its instance; the compute meter reads it (metering.ts). */
  exchanges = 0;
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

  constructor(
    readonly host: Host,
    private readonly listener: SlotListener<Host>,
  ) {}

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
    this.listener.slotStarted(this, instance);
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
    this.listener.lifecycleChanged(this, { from, to, instance, ms: performance.now() - began });
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
        this.listener.snapshotUnusable(this, dir, error);
        this.snapshotDir = undefined;
        try {
          instance = await this.host.start();
        } catch (bootError) {
          if (!this.stopRequested) {
            this.listener.slotStartFailed(this, bootError as Error);
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
      this.listener.lifecycleChanged(this, { from, to: 'running', instance, ms: performance.now() - began });
    }
  }

  /** Freezes the instance when it is still running and idle (checked when the step runs). */
  suspendIfIdle(isIdle: (slot: this) => boolean): Promise<void> {
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
  async snapshotIfSuspended(isStillIdle: (slot: this) => boolean): Promise<void> {
    let superseded: string | undefined;
    await this.enqueue(async () => {
      // A parked connection would lose its sockets with the process.
      if (this.state !== 'suspended' || this.waking || this.parked > 0 || !isStillIdle(this)) return;
      const instance = this.instance;
      if (!instance) return;
      await this.transition('snapshotting', 'snapshotted', 'suspended', async () => {
        if (this.restoredFrom && !this.served) {
          this.snapshotDir = this.restoredFrom;
        } else {
          const dir = this.listener.snapshotDirOf(this);
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
      this.listener.slotStartFailed(this, error as Error);
      this.scheduleRestart();
    }
  }

  private onExit(instance: Instance, exit: InstanceExit): void {
    if (this.instance === instance) this.instance = undefined;
    this.inFlight = 0;
    this.drained.emit('drained');
    if (this.parking) {
      this.parking = false;
      this.listener.slotExited(this, instance, exit, true);
      return;
    }
    const expected = this.stopRequested;
    this.listener.slotExited(this, instance, exit, expected);
    if (expected) return;
    if (Date.now() - this.startedAt >= STABLE_AFTER_MS) this.delayMs = RESTART_FIRST_DELAY_MS;
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    this.setState('backoff');
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, RESTART_MAX_DELAY_MS);
    this.listener.slotRestarting(this, delay);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.restarts += 1;
      void this.tryStart();
    }, delay);
  }

  /**
   * A TCP connection to this instance went quiet: it stops counting as an exchange (the instance
   * may suspend) but still holds the instance's sockets, so the instance is neither snapshotted
   * nor removed while any is parked. `unpark` when bytes move again (after `wake`).
   */
  park(): void {
    this.parked += 1;
    this.release();
  }

  unpark(): void {
    this.parked = Math.max(0, this.parked - 1);
    this.acquire();
  }

  /** A parked connection closed. */
  unparkClosed(): void {
    this.parked = Math.max(0, this.parked - 1);
  }

  acquire(): void {
    this.inFlight += 1;
    this.exchanges += 1;
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
