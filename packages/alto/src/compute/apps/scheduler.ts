/**
 * @module compute/apps/scheduler
 * The scheduler of this node's app instances, and the one listener of every app's slots (each
 * slot, slot.ts, reports its starts, exits and lifecycle changes here, and nowhere else): it
 * records instances and meters them (metering.ts), writes what the app must remember into its
 * runtime (its log, last exit, restarts; requests waiting look again), keeps the fair share of the host's starts between apps
 * (start-gate.ts), suspends idle instances (every one of a scale-to-zero app, and pool spares)
 * after `idle_timeout`, snapshots those suspended for `snapshotAfterMs` to disk (drivers with
 * snapshots), and sooner under memory pressure (the host's MemAvailable below the reserve), the
 * longest suspended first, one at a time; it adds an instance when every running one is at its
 * concurrency (within max_instances and compute_instances) and removes it once idle again, and
 * suspends the instances of a project past compute_gb_seconds.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, freemem, totalmem } from 'node:os';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { Instance, InstanceExit } from '../sandbox/index.js';
import type { ComputeMeter } from './metering.js';
import type { AppRecord, AppRecords, AppSettings } from './records.js';
import { describeExit, type AppRuntime, type RuntimeScheduler, type VersionSlot } from './runtime.js';
import type { LifecycleChange, SlotState } from './slot.js';
import { StartGate } from './start-gate.js';

/** An idle app woken by a request: from which state, and how long the wake took. */
export interface Activation {
  app: string;
  project: string;
  from: 'suspended' | 'snapshotted';
  ms: number;
}

/** Default for how long an instance stays suspended before it is snapshotted (zero memory). */
export const DEFAULT_SNAPSHOT_AFTER_MS = 10 * 60_000;
/** How long an instance moved off a draining node has to finish its exchanges in flight. */
const RETIRE_DRAIN_MS = 10_000;
/** How often idle instances are looked for (idle → suspended within idle_timeout + this). */
const IDLE_CHECK_MS = 100;
/** How often the host's available memory is read for memory pressure. */
const MEMORY_CHECK_MS = 1_000;
/** The memory reserve unless told otherwise: a tenth of the machine's memory, at most this. */
const MAX_DEFAULT_MEMORY_RESERVE = 2 * 1024 ** 3;

export interface AppSchedulerOptions {
  dataDir: string;
  log: Logger;
  records: AppRecords;
  /** The live apps of this node, by app id. */
  runtimes: ReadonlyMap<string, AppRuntime>;
  meter: ComputeMeter;
  /** Whether the driver instances are placed on can snapshot them. */
  canSnapshot(): boolean;
  /** Alto is stopping: nothing new starts, sleeps or grows. */
  closing(): boolean;
  graceMs: number;
  /** Suspended this long, an instance is snapshotted to disk and its process ended (drivers with snapshots). Default 10 min. */
  snapshotAfterMs?: number;
  /** Below this much available memory (bytes), suspended instances are snapshotted at once. Default a tenth of the memory, at most 2 GiB; 0 turns it off. */
  memoryReserveBytes?: number;
  /** The host's available memory in bytes; default MemAvailable of /proc/meminfo (os.freemem() without it). */
  availableMemory?: () => number;
  /** Instance starts (boots, restores) at once on this machine; default twice the CPUs, at least 4. One app gets half. */
  maxConcurrentStarts?: number;
}

export class AppScheduler implements RuntimeScheduler {
  private readonly idleTimer: NodeJS.Timeout;
  private readonly snapshotAfterMs: number;
  private readonly memoryTimer: NodeJS.Timeout;
  private readonly memoryReserve: number;
  /** Slots being snapshotted because memory is short (their records say so); one at a time. */
  private readonly pressureSnapshots = new Set<VersionSlot>();
  private readonly activationListeners = new Set<(activation: Activation) => void>();
  /** Apps whose scale-out is being decided (a cap check in flight). */
  private readonly scalingOut = new Set<string>();
  /** Fair share of the host's instance starts between apps. */
  private readonly starts: StartGate;

  constructor(private readonly options: AppSchedulerOptions) {
    const hostStarts = options.maxConcurrentStarts ?? Math.max(4, 2 * availableParallelism());
    this.starts = new StartGate(hostStarts, Math.max(1, Math.ceil(hostStarts / 2)));
    this.snapshotAfterMs = options.snapshotAfterMs ?? DEFAULT_SNAPSHOT_AFTER_MS;
    this.idleTimer = setInterval(() => this.putIdleToSleep(), IDLE_CHECK_MS);
    this.idleTimer.unref();
    this.memoryReserve = options.memoryReserveBytes ?? Math.min(MAX_DEFAULT_MEMORY_RESERVE, Math.floor(totalmem() / 10));
    this.memoryTimer = setInterval(() => this.relieveMemoryPressure(), MEMORY_CHECK_MS);
    this.memoryTimer.unref();
  }

  /** Stops the clocks (Alto is stopping). */
  stop(): void {
    clearInterval(this.idleTimer);
    clearInterval(this.memoryTimer);
  }

  // ---- what the slots report and ask (RuntimeScheduler) ----------------------------------------

  /** The app's turn among the host's starts (fair share); none while Alto stops. */
  startTurn(runtime: AppRuntime): Promise<() => void> {
    if (this.options.closing()) return Promise.reject(errors.unavailable('Alto is stopping'));
    return this.starts.admit(runtime.app.id);
  }

  /** An instance is ready: recorded, metered from now, put to sleep at once when nobody waits for it, and the app told. */
  slotStarted(slot: VersionSlot, instance: Instance): void {
    const version = slot.host;
    const { runtime } = version;
    void this.options.records.addInstance({
      id: instance.id,
      appId: runtime.app.id,
      version: version.version,
      state: 'running',
      driver: instance.driver,
      startedAt: Date.now(),
    });
    this.options.meter.started(instance.id, { projectId: runtime.app.projectId, app: runtime.app.name, memoryMiB: version.spec.memoryMiB, counter: slot });
    // Scale to zero: a new instance nobody waits for is suspended as soon as it is ready.
    const index = version.slots.indexOf(slot);
    if (index >= 0 && this.sleepsWhenIdleAt(runtime.app, index) && runtime.waiting === 0 && slot.inFlight === 0) void this.suspendSlot(runtime, slot, () => true);
    runtime.instanceReady(version, instance);
    // An instance on another node (compute/cluster/remote-instances.ts) moves when that node drains.
    instance.events.once('retire', () => this.replace(slot, instance));
    this.statusChanged(runtime);
  }

  /**
   * The node that runs `instance` for this one drains: another instance starts in its place
   * (placed anywhere but there), and only once it is ready does the old one take no new
   * exchanges, finish those in flight and stop. If none can start, the old one keeps serving.
   */
  private replace(slot: VersionSlot, instance: Instance): void {
    const version = slot.host;
    const { runtime } = version;
    if (slot.instance !== instance || !version.slots.includes(slot) || this.options.closing()) return;
    runtime.system(version, instance.id, `instance ${instance.id} runs on a node that drains (${instance.node ?? 'another node'}): starting one in its place`);
    const next = version.addSlot();
    next.startFirst().then(
      async () => {
        const index = version.slots.indexOf(slot);
        if (index >= 0) version.slots.splice(index, 1);
        (instance as Instance & { retiring?: () => void }).retiring?.();
        await slot.drain(RETIRE_DRAIN_MS);
        await slot.stop(version.stopGraceMs(this.options.graceMs));
        runtime.system(version, instance.id, `instance ${instance.id} stopped: instance ${next.instance?.id ?? ''} serves in its place`);
        this.statusChanged(runtime);
      },
      (error: Error) => {
        const index = version.slots.indexOf(next);
        if (index >= 0) version.slots.splice(index, 1);
        runtime.system(version, instance.id, `no instance could start in place of ${instance.id}, which keeps serving: ${error.message}`);
      },
    );
  }

  slotExited(slot: VersionSlot, instance: Instance, exit: InstanceExit, expected: boolean): void {
    const version = slot.host;
    const { runtime } = version;
    void this.options.records.endInstance(runtime.app.id, instance.id, expected ? 'exited' : 'failed', exit);
    this.options.meter.ended(instance.id);
    runtime.instanceExited(version, instance, exit, expected);
    this.statusChanged(runtime);
  }

  slotStartFailed(slot: VersionSlot, error: Error): void {
    slot.host.runtime.startFailed(slot.host, error);
    this.statusChanged(slot.host.runtime);
  }

  slotRestarting(slot: VersionSlot, delayMs: number): void {
    slot.host.runtime.restartScheduled(slot.host, slot, delayMs);
    this.statusChanged(slot.host.runtime);
  }

  snapshotUnusable(slot: VersionSlot, snapshotDir: string, error: Error): void {
    slot.host.runtime.system(slot.host, '', `the instance's snapshot cannot be restored, booting instead (what its memory held is lost): ${error.message} (${snapshotDir})`);
  }

  /** Where a slot keeps its next snapshot: a new folder each time (a restored copy still maps the memory of the snapshot it came from). */
  snapshotDirOf(slot: VersionSlot): string {
    const version = slot.host;
    return join(this.options.dataDir, 'apps', 'snapshots', version.runtime.app.id, `v${version.version}-${version.slots.indexOf(slot)}-${Date.now().toString(36)}`);
  }

  /** Records the app's status as its instances make it (not while Run, Update or Delete works on it). */
  statusChanged(runtime: AppRuntime): void {
    if (runtime.busy || this.options.closing() || !this.options.runtimes.has(runtime.app.id)) return;
    const status = runtime.liveStatus();
    const error = status === 'crashing' && runtime.lastExit ? `last instance ${describeExit(runtime.lastExit)}` : undefined;
    if ((status !== runtime.app.status || error !== runtime.app.error) && this.options.records.hereById(runtime.app.id)) {
      void this.options.records.setStatus(runtime.app, status, error);
    }
  }

  // ---- counts and caps ----------------------------------------------------------------------

  /** Instances the project runs on this node now (compute_instances). */
  instancesOfProject(projectId: string): number {
    let count = 0;
    for (const runtime of this.options.runtimes.values()) {
      if (runtime.app.projectId !== projectId) continue;
      for (const version of [runtime.serving, runtime.candidate]) {
        count += version?.slots.filter((slot) => slot.state !== 'stopped' && slot.state !== 'stopping').length ?? 0;
      }
    }
    return count;
  }

  /** The project used its compute_gb_seconds: its running instances are suspended, each once its exchanges in flight end. */
  suspendProject(projectId: string): void {
    for (const runtime of this.options.runtimes.values()) {
      if (runtime.app.projectId !== projectId || runtime.busy) continue;
      for (const slot of runtime.serving?.slots ?? []) {
        if (slot.state !== 'running' || slot.inFlight > 0) continue;
        runtime.system(runtime.app.version, slot.instance?.id ?? '', 'suspending the instance: the project used its compute_gb_seconds for this month (its data is kept)');
        void this.suspendSlot(runtime, slot, (candidate) => candidate.inFlight === 0);
      }
    }
  }

  /** Instances an app version starts with: one per min_instances, at least one (with min 0 it sleeps when idle). */
  private instanceCount(settings: AppSettings): number {
    return Math.max(1, settings.min_instances);
  }

  /** Instance positions an app version keeps: its instances plus the pool's suspended spares. */
  positions(settings: AppSettings): number {
    return this.instanceCount(settings) + settings.pool;
  }

  /** Whether slot `index` of the app sleeps when idle: every one of a scale-to-zero app, and the pool's spares. */
  sleepsWhenIdleAt(app: AppRecord, index: number): boolean {
    return this.sleepsWhenIdle(app) || index >= this.instanceCount(app.settings);
  }

  /** Hears every activation (for /metrics). */
  onActivation(listener: (activation: Activation) => void): () => void {
    this.activationListeners.add(listener);
    return () => this.activationListeners.delete(listener);
  }

  /** Instance positions of serving versions, by lifecycle state (for /metrics). */
  instanceStates(): Partial<Record<SlotState, number>> {
    const counts: Partial<Record<SlotState, number>> = {};
    for (const runtime of this.options.runtimes.values()) for (const slot of runtime.serving?.slots ?? []) counts[slot.state] = (counts[slot.state] ?? 0) + 1;
    return counts;
  }

  /** Requests held by the edge now, waiting for an instance to wake, start or free up. */
  queueDepth(): number {
    let depth = 0;
    for (const runtime of this.options.runtimes.values()) depth += runtime.waiting;
    return depth;
  }

  /**
   * Autoscale up: one more instance for the serving version when every running one is at its
   * concurrency, none is starting already, and max_instances allows (apps with volumes run one).
   */
  scaleOut(runtime: AppRuntime): boolean {
    const version = runtime.serving;
    const { settings } = runtime.app;
    if (!version || this.options.closing() || runtime.busy || settings.volumes.length > 0) return false;
    if (version.slots.length >= settings.max_instances) return false;
    if (version.slots.some((slot) => slot.state === 'starting' || slot.state === 'restoring' || slot.state === 'resuming')) return false;
    if (this.scalingOut.has(runtime.app.id)) return false;
    this.scalingOut.add(runtime.app.id);
    void this.options.meter.withinInstanceCap(runtime.app.projectId)
      .then((allowed) => {
        if (!allowed) {
          runtime.system(version, '', `not adding an instance under load: the project runs as many instances as compute_instances allows`);
          return;
        }
        if (runtime.serving !== version || this.options.closing() || version.slots.length >= settings.max_instances) return;
        const slot = version.addSlot();
        runtime.system(version, '', `adding instance ${version.slots.length} of at most ${settings.max_instances}: every running one serves as many requests as it may (the app's concurrency, ${settings.concurrency}, or its instance's own limit)`);
        slot.startSupervised();
      })
      .catch((error: Error) => runtime.log.warn({ err: error, app: runtime.app.name }, 'adding an instance under load failed'))
      .finally(() => this.scalingOut.delete(runtime.app.id));
    return true;
  }

  /** Autoscale down: an instance added for load that has been idle for idle_timeout stops. */
  private scaleIn(runtime: AppRuntime, isIdle: (slot: VersionSlot) => boolean): void {
    const version = runtime.serving;
    if (!version) return;
    const base = this.positions(runtime.app.settings);
    for (const slot of version.slots.slice(base)) {
      const idle = (slot.state === 'running' && isIdle(slot)) || slot.state === 'suspended' || slot.state === 'backoff';
      // An open TCP connection, quiet or not, keeps its instance.
      if (!idle || slot.parked > 0) continue;
      version.slots.splice(version.slots.indexOf(slot), 1);
      runtime.system(version, slot.instance?.id ?? '', `removing an instance added for load (idle); ${version.slots.length} remain`);
      void slot.stop(version.stopGraceMs(this.options.graceMs)).then(() => this.statusChanged(runtime));
    }
  }

  /** Apps with min_instances 0 sleep when idle; others keep their instances running. */
  private sleepsWhenIdle(app: AppRecord): boolean {
    return app.settings.min_instances === 0;
  }

  private suspendSlot(runtime: AppRuntime, slot: VersionSlot, isIdle: (slot: VersionSlot) => boolean): Promise<void> {
    return slot.suspendIfIdle(isIdle).catch((error: Error) => {
      runtime.log.warn({ err: error, app: runtime.app.name }, 'suspending an app instance failed');
      runtime.system(runtime.app.version, slot.instance?.id ?? '', `suspending the instance failed: ${error.message}`);
    });
  }

  /** The idle clock: suspends instances idle for idle_timeout, snapshots those suspended long. */
  private putIdleToSleep(): void {
    if (this.options.closing()) return;
    const now = Date.now();
    for (const runtime of this.options.runtimes.values()) {
      const { app } = runtime;
      if (runtime.busy) continue;
      const idleMs = app.settings.idle_timeout * 1000;
      const isIdle = (slot: VersionSlot) => slot.inFlight === 0 && Date.now() - slot.lastActivity >= idleMs;
      this.scaleIn(runtime, isIdle);
      for (const [index, slot] of (runtime.serving?.slots ?? []).entries()) {
        if (!this.sleepsWhenIdleAt(app, index)) continue;
        if (slot.state === 'running' && isIdle(slot)) void this.suspendSlot(runtime, slot, isIdle);
      }
    }
    for (const { runtime, slot } of this.snapshotCandidates()) {
      if (now - slot.stateSince >= this.snapshotAfterMs) this.snapshotSlot(runtime, slot, (candidate) => Date.now() - candidate.stateSince >= this.snapshotAfterMs);
    }
  }

  /**
   * Suspended instances the driver may snapshot: sleepers not refused before. An app's volumes
   * stay out of its snapshots (microvm.ts: the restore attaches the same disks, as left).
   */
  private *snapshotCandidates(): Generator<{ runtime: AppRuntime; slot: VersionSlot }> {
    if (!this.options.canSnapshot()) return;
    for (const runtime of this.options.runtimes.values()) {
      const { app } = runtime;
      if (runtime.busy) continue;
      for (const [index, slot] of (runtime.serving?.slots ?? []).entries()) {
        if (slot.state === 'suspended' && !slot.snapshotRefused && slot.parked === 0 && this.sleepsWhenIdleAt(app, index)) yield { runtime, slot };
      }
    }
  }

  private snapshotSlot(runtime: AppRuntime, slot: VersionSlot, isStillIdle: (slot: VersionSlot) => boolean): Promise<void> {
    return slot.snapshotIfSuspended(isStillIdle).catch((error: Error) => {
      slot.snapshotRefused = true;
      runtime.log.warn({ err: error, app: runtime.app.name }, 'snapshotting an app instance failed; it stays suspended');
      runtime.system(runtime.app.version, slot.instance?.id ?? '', `snapshotting the instance failed (it stays suspended): ${error.message}`);
    });
  }

  /**
   * Memory pressure: while the host's available memory is under the reserve, the instance
   * suspended longest is snapshotted (its memory freed), then the memory is read again.
   */
  private relieveMemoryPressure(): void {
    if (this.options.closing() || this.memoryReserve <= 0 || this.pressureSnapshots.size > 0 || !this.options.canSnapshot()) return;
    const available = (this.options.availableMemory ?? hostAvailableMemory)();
    if (available >= this.memoryReserve) return;
    let oldest: { runtime: AppRuntime; slot: VersionSlot } | undefined;
    for (const candidate of this.snapshotCandidates()) {
      if (!oldest || candidate.slot.stateSince < oldest.slot.stateSince) oldest = candidate;
    }
    if (!oldest) return;
    const { runtime, slot } = oldest;
    const mib = (bytes: number) => Math.round(bytes / 1024 ** 2);
    runtime.log.info({ app: runtime.app.name, availableMiB: mib(available), reserveMiB: mib(this.memoryReserve) }, 'memory pressure: snapshotting the instance suspended longest');
    this.pressureSnapshots.add(slot);
    void this.snapshotSlot(runtime, slot, () => true).finally(() => this.pressureSnapshots.delete(slot));
  }

  /** Records, meters and reports a slot's transition. */
  lifecycleChanged(slot: VersionSlot, change: LifecycleChange): void {
    const version = slot.host;
    const { runtime } = version;
    const { instance } = change;
    if (change.to === 'suspended' && instance) {
      // What ran until now is billed; the meter then stands still.
      this.options.meter.paused(instance.id);
      void this.options.records.setInstanceState(runtime.app.id, instance.id, 'suspended');
    } else if (change.to === 'snapshotted' && instance) {
      const why = this.pressureSnapshots.has(slot) ? 'under memory pressure' : 'after a long idle';
      void this.options.records.endInstance(runtime.app.id, instance.id, 'snapshotted', { code: null, reason: `snapshotted to disk ${why} (zero memory)` });
      if (slot.snapshotDir) void this.options.records.saveSnapshot({ appId: runtime.app.id, version: version.version, slot: version.slots.indexOf(slot), dir: slot.snapshotDir, createdAt: Date.now() });
      runtime.system(version, instance.id, `instance ${instance.id} snapshotted to disk ${why}; the next request restores it`);
    } else if (change.to === 'running' && (change.from === 'suspended' || change.from === 'snapshotted')) {
      if (instance) {
        this.options.meter.resumed(instance.id);
        void this.options.records.setInstanceState(runtime.app.id, instance.id, 'running');
      }
      const activation: Activation = { app: runtime.app.name, project: runtime.app.projectName, from: change.from, ms: change.ms };
      for (const listener of this.activationListeners) listener(activation);
    }
    this.statusChanged(runtime);
  }
}

/** The host's available memory in bytes: MemAvailable (page cache and reclaimable memory included) where Linux tells it. */
function hostAvailableMemory(): number {
  try {
    const match = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // Not Linux: the free memory is the nearest figure.
  }
  return freemem();
}
