/**
 * @module compute/apps/runtime
 * The live side of one app: its instances (one `InstanceSlot` per instance it should have,
 * each restarting its instance with back-off when it exits unexpectedly), the log lines of
 * every instance it ran (kept across restarts, so a crash's output stays visible), and which
 * version serves traffic. `AppManager` owns one `AppRuntime` per app that runs.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../../kit/logger.js';
import { isSandboxStartError, type Instance, type InstanceExit, type SandboxDriver, type SandboxSpec } from '../sandbox/index.js';
import type { AppRecord } from './records.js';

/** How many log lines an app keeps (all instances together). */
const KEPT_LOG_LINES = 5_000;
/** First pause before restarting an instance that exited, doubled each time up to the most. */
export const RESTART_FIRST_DELAY_MS = 1_000;
export const RESTART_MAX_DELAY_MS = 30_000;
/** An instance that ran this long before exiting restarts after the first delay again. */
const STABLE_AFTER_MS = 30_000;

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
}

export type SlotState = 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped';

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

  private adopt(instance: Instance): void {
    this.instance = instance;
    this.state = 'running';
    this.startedAt = Date.now();
    this.host.onStarted(this, instance);
    void instance.exited.then((exit) => this.onExit(instance, exit));
  }

  private async tryStart(): Promise<void> {
    if (this.stopRequested) return;
    this.state = 'starting';
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
    const expected = this.stopRequested;
    this.host.onExited(this, instance, exit, expected);
    if (expected) return;
    if (Date.now() - this.startedAt >= STABLE_AFTER_MS) this.delayMs = RESTART_FIRST_DELAY_MS;
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    this.state = 'backoff';
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
  }

  release(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
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
    this.state = 'stopping';
    const instance = this.instance;
    if (instance) await instance.stop(graceMs).catch(() => undefined);
    this.state = 'stopped';
  }
}

/** One version of an app: the spec its instances run with and their slots. */
export class AppVersion implements SlotHost {
  readonly slots: InstanceSlot[] = [];

  constructor(
    readonly version: number,
    readonly spec: SandboxSpec,
    private readonly runtime: AppRuntime,
    private readonly driver: () => Promise<SandboxDriver>,
  ) {}

  async start(): Promise<Instance> {
    this.runtime.beforeStart(this);
    const driver = await this.driver();
    return driver.start(this.spec);
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
  instanceStarted(runtime: AppRuntime, version: AppVersion, instance: Instance): void;
  instanceExited(runtime: AppRuntime, version: AppVersion, instance: Instance, exit: InstanceExit, expected: boolean): void;
  statusChanged(runtime: AppRuntime): void;
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
  private readonly lines: AppLogLine[] = [];
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
    if (this.lines.length > KEPT_LOG_LINES) this.lines.shift();
    this.emitter.emit('line', entry);
  }

  /** The last `count` lines (of one stream, when given). */
  tail(count: number, stream?: AppLogStream): AppLogLine[] {
    const lines = stream ? this.lines.filter((entry) => entry.stream === stream) : this.lines;
    return lines.slice(-count);
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

  /** A running instance of the serving version: the one with the fewest requests in flight. */
  pickSlot(): InstanceSlot | undefined {
    const running = this.serving?.runningSlots() ?? [];
    let best: InstanceSlot | undefined;
    for (const slot of running) if (!best || slot.inFlight < best.inFlight) best = slot;
    return best;
  }

  /** Waits until an instance of the serving version runs, up to `timeoutMs`. */
  async waitForSlot(timeoutMs: number): Promise<InstanceSlot | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const slot = this.pickSlot();
      if (slot || this.ended) return slot;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        const waiters = this.waiters;
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  /** The app's status as its instances make it. */
  liveStatus(): 'running' | 'crashing' | 'deploying' {
    const slots = this.serving?.slots ?? [];
    if (slots.length > 0 && slots.every((slot) => slot.state === 'running')) return 'running';
    if (slots.some((slot) => slot.state === 'backoff' || (slot.state === 'starting' && slot.restarts > 0))) return 'crashing';
    return 'deploying';
  }
}

export function describeExit(exit: InstanceExit): string {
  return exit.code === null ? exit.reason : `${exit.reason} with code ${exit.code}`;
}
