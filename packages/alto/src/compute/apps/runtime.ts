/**
 * @module compute/apps/runtime
 * The live side of one app: its versions (`AppVersion`: the spec its instances run with, their
 * slots, slot.ts, and its ready snapshot), which one serves traffic, the log lines of every
 * instance it ran (kept across restarts, so a crash's output stays visible), and how a request
 * gets an instance (`AppRuntime.acquire`: one with room at once, its exchange counted on the
 * instance's meter; else, while the project is within compute_gb_seconds, one woken or started
 * while the request waits in the app's bounded queue). Slots report to the scheduler, their one
 * listener, which writes what the app must remember here (`instanceReady` ...). `AppManager`
 * owns one `AppRuntime` per app that runs.
 */
import { EventEmitter } from 'node:events';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { isSandboxStartError, type Instance, type InstanceExit, type SandboxDriver, type SandboxSpec } from '../sandbox/index.js';
import { BoundedLog } from '../sandbox/log-capture.js';
import { droppedMarker, LogThrottle, type AppLogWriter } from './log-store.js';
import type { ComputeMeter } from './metering.js';
import type { AppRecord } from './records.js';
import { InstanceSlot, type SlotListener, type SlotHost, type SlotState } from './slot.js';

/** How many log lines, and bytes of them, an app keeps (all instances together). */
const KEPT_LOG_LINES = 5_000;
const KEPT_LOG_BYTES = 4 * 1024 * 1024;
/** The most one read of the log (app/Logs, function/Logs) answers with. */
export const MAX_LOG_ANSWER_BYTES = 1024 * 1024;
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

/**
 * One version of an app: the spec its instances run with and their slots. Where the driver can
 * snapshot, the version may hold a ready snapshot (its first instance, just ready, written to
 * disk): instances it starts after that (scale-out, pool spares, restarts) are private copies of
 * it, restored in a fraction of a boot and sharing its unchanged memory pages.
 */
export class AppVersion implements SlotHost {
  readonly slots: VersionSlot[] = [];
  readySnapshot: string | undefined;
  private readonly fromReadySnapshot = new WeakMap<Instance, string>();

  constructor(
    readonly version: number,
    readonly spec: SandboxSpec,
    readonly runtime: AppRuntime,
    private readonly driver: () => Promise<SandboxDriver>,
  ) {}

  /** A new instance position of this version (not started), reporting to the app's scheduler. */
  addSlot(): VersionSlot {
    const slot = new InstanceSlot(this, this.runtime.scheduler);
    this.slots.push(slot);
    return slot;
  }

  /** Runs one start (boot or restore) in the app's turn of the host's starts. */
  private async inStartTurn(work: (driver: SandboxDriver) => Promise<Instance>): Promise<Instance> {
    const release = await this.runtime.scheduler.startTurn(this.runtime);
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

  restore(snapshotDir: string, ownMemory: boolean): Promise<Instance> {
    return this.inStartTurn((driver) => driver.restore(snapshotDir, { links: this.spec.links, ownMemory }));
  }

  /** Slots whose instance is ready for traffic. */
  runningSlots(): VersionSlot[] {
    return this.slots.filter((slot) => slot.state === 'running' && slot.instance?.state === 'running');
  }

  /** How long a stopped instance's app has to end: the app's stop_timeout when it set one, else `graceMs` (the node's). */
  stopGraceMs(graceMs: number): number {
    const timeout = this.runtime.app.settings.stop_timeout;
    return timeout ? timeout * 1000 : graceMs;
  }

  async stop(graceMs: number, drainMs = 0): Promise<void> {
    await Promise.all(
      this.slots.map(async (slot) => {
        if (drainMs > 0) await slot.drain(drainMs);
        await slot.stop(this.stopGraceMs(graceMs));
      }),
    );
  }
}

/** A slot of an app's version. */
export type VersionSlot = InstanceSlot<AppVersion>;

/**
 * The scheduler as an app's runtime sees it: the one listener of its slots, the app's turns among
 * the host's instance starts, and another instance when every running one is at its concurrency.
 */
export interface RuntimeScheduler extends SlotListener<AppVersion> {
  /** Waits for the app's fair share of the host's starts (boots and restores), refusing when none may begin; call the result when the start ended. */
  startTurn(runtime: AppRuntime): Promise<() => void>;
  /** Every running instance is at its concurrency: add one if the app may (true when it did). */
  scaleOut(runtime: AppRuntime): boolean;
}

/** What a request that must wait for an instance asks first: whether the project has compute time left. (Its exchange is counted by the slot that takes it.) */
export type ExchangeMeter = Pick<ComputeMeter, 'assertComputeTime'>;

/** Where an app's lines go besides its memory: its log on disk and the rate they are kept at (log-store.ts). */
export interface RuntimeLogs {
  writer: AppLogWriter;
  linesPerSecond?: number;
  bytesPerSecond?: number;
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
  /** Numbers the lines pushed, so a follower tells those already on disk from new ones. */
  private pushed = 0;
  /** Past this rate an instance's output is dropped, counted in a system line. */
  private readonly throttle: LogThrottle;
  private readonly waiters = new Set<() => void>();
  /** Requests waiting now for an instance (activation, start, or capacity): the queue depth. */
  waiting = 0;

  constructor(
    public app: AppRecord,
    /** The one listener of this app's slots, which also turns its starts and scales it out. */
    readonly scheduler: RuntimeScheduler,
    readonly log: Logger,
    private readonly meter: ExchangeMeter,
    private readonly logs?: RuntimeLogs,
  ) {
    this.emitter.setMaxListeners(0);
    this.throttle = new LogThrottle((count) => this.system(this.serving?.version ?? this.app.version, '', droppedMarker(count)), logs?.linesPerSecond, logs?.bytesPerSecond);
  }

  // ---- what the scheduler writes here as it hears the slots ------------------------------------

  /** An instance became ready: its output joins the app's log, and requests waiting look again. */
  instanceReady(version: AppVersion, instance: Instance): void {
    void this.pipeLogs(version, instance);
    this.system(version, instance.id, `instance ${instance.id} of version ${version.version} is ready (${instance.driver})`);
    for (const wake of [...this.waiters]) wake();
  }

  instanceExited(version: AppVersion, instance: Instance, exit: InstanceExit, expected: boolean): void {
    if (!expected) {
      this.lastExit = { instance: instance.id, version: version.version, code: exit.code, reason: exit.reason, at: Date.now() };
      this.system(version, instance.id, `instance ${instance.id} exited unexpectedly: ${describeExit(exit)}`);
      this.log.warn({ app: this.app.name, project: this.app.projectName, instance: instance.id, exit }, 'app instance exited');
    }
  }

  startFailed(version: AppVersion, error: Error): void {
    this.recordFailedStart(version, error);
    this.lastExit = { instance: '', version: version.version, code: null, reason: error.message, at: Date.now() };
    this.system(version, '', `an instance of version ${version.version} failed to start: ${error.message}`);
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

  restartScheduled(version: AppVersion, slot: VersionSlot, delayMs: number): void {
    this.restarts += 1;
    this.system(version, slot.instance?.id ?? '', `restarting in ${delayMs / 1000} s`);
  }

  // ---- the app's log ---------------------------------------------------------------------------

  /** Copies an instance's output into the app's log, from its first line until it ends. */
  private async pipeLogs(version: AppVersion, instance: Instance): Promise<void> {
    try {
      for await (const entry of instance.logs({ follow: true })) {
        if (!this.throttle.admit(Buffer.byteLength(entry.line))) continue;
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
    this.logs?.writer.append(entry);
    this.pushed += 1;
    this.emitter.emit('line', entry, this.pushed);
  }

  /** The last `count` lines kept in memory (of one stream, when given), no more than MAX_LOG_ANSWER_BYTES of them. */
  tail(count: number, stream?: AppLogStream): AppLogLine[] {
    return this.lines.newest(count, MAX_LOG_ANSWER_BYTES, stream ? (entry) => entry.stream === stream : undefined);
  }

  /**
   * The lines `history` reads (the log on disk, which holds every line pushed before it is
   * called), then every new line `include` accepts until `signal` aborts or the app ends.
   */
  async *follow<Line extends AppLogLine>(history: () => Promise<Line[]>, include: (entry: AppLogLine) => boolean, signal: AbortSignal): AsyncGenerator<AppLogLine> {
    const live: AppLogLine[] = [];
    // Lines pushed up to now are on disk once `history` flushed them; later ones reach `live`.
    const onDisk = this.pushed;
    let wake: (() => void) | undefined;
    const onLine = (entry: AppLogLine, number: number) => {
      if (number <= onDisk || !include(entry)) return;
      // Bounded like the ring: a follower that does not read loses its oldest unread lines.
      if (live.length >= KEPT_LOG_LINES) live.shift();
      live.push(entry);
      wake?.();
    };
    const onEnd = () => wake?.();
    this.emitter.on('line', onLine);
    this.emitter.on('end', onEnd);
    signal.addEventListener('abort', onEnd);
    try {
      for (const line of await history()) yield line;
      for (;;) {
        while (live.length > 0) yield live.shift()!;
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
    this.throttle.stop();
    this.emitter.emit('end');
    for (const wake of [...this.waiters]) wake();
  }

  // ---- requests: traffic, room, the bounded queue and activation ------------------------------

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
  pickSlot(limit = Infinity): VersionSlot | undefined {
    const running = this.serving?.runningSlots() ?? [];
    let best: VersionSlot | undefined;
    for (const slot of running) if (slot.inFlight < this.roomOf(slot, limit) && (!best || slot.inFlight < best.inFlight)) best = slot;
    return best;
  }

  /** Exchanges `slot` may hold at once under `limit` (Instance.exchangeLimit; a TCP app's connections are not capped by it). */
  private roomOf(slot: VersionSlot, limit: number): number {
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
  pickAsleep(): VersionSlot | undefined {
    const asleep = this.serving?.slots.filter((slot) => slot.asleep) ?? [];
    const order: SlotState[] = ['resuming', 'suspending', 'suspended', 'restoring', 'snapshotting', 'snapshotted'];
    asleep.sort((a, b) => order.indexOf(a.state) - order.indexOf(b.state));
    return asleep[0];
  }

  /**
   * A running instance with room for one more exchange, claimed for it (`acquire`d, which counts
   * the exchange for the meter) in the same turn it was picked, so callers woken together do not
   * all see the room one release made.
   */
  claimSlot(): VersionSlot | undefined {
    const slot = this.pickSlot(this.app.settings.concurrency);
    if (!slot) return undefined;
    slot.acquire();
    return slot;
  }

  /**
   * A claimed instance for one exchange (the caller releases it). The common case, an instance
   * with room at once, is answered at once, no promise made; else the wait for one
   * (`acquireWaiting`). Undefined when none came in `timeoutMs`.
   */
  acquire(timeoutMs: number): VersionSlot | Promise<VersionSlot | undefined> {
    return this.claimSlot() ?? this.acquireWaiting(timeoutMs);
  }

  /**
   * A request finds no room: it may wait while the project is within its compute time (a wake or
   * start runs time the project pays for: not past compute_gb_seconds), and then activation, up
   * to `timeoutMs`. Only a busy app turns requests away, past its bounded queue, with a 503 at
   * once: an idle one holds every request while it wakes.
   */
  private async acquireWaiting(timeoutMs: number): Promise<VersionSlot | undefined> {
    await this.meter.assertComputeTime(this.app.projectId, this.app.projectName);
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
  async activate(timeoutMs: number): Promise<VersionSlot | undefined> {
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
          this.scheduler.scaleOut(this);
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
    const healthy = (slot: VersionSlot) => slot.state === 'running' || slot.asleep;
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
