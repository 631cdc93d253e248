/**
 * @module compute/apps/metering
 * Compute metering and caps of apps: one meter per running instance (its running time, memory
 * and requests, standing still while the instance is suspended, since suspended time is free),
 * reported to the platform's usage once a minute (`usageSliceMs`) and when the instance ends;
 * and the project's compute caps: apps (compute_apps), instances at once (compute_instances) and
 * running time this calendar month (compute_gb_seconds), whose excess suspends the project's
 * running instances. The scheduler tells it of instances; it never touches one itself.
 */
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { LimitSet } from '../../platform/limit-names.js';
import type { ComputeUsage } from '../../platform/metering.js';

/** Compute usage of running instances is reported this often unless told otherwise. */
const USAGE_SLICE_MS = 60_000;
/** How often projects past compute_gb_seconds have their running instances suspended. */
const COMPUTE_CAP_CHECK_MS = 1_000;
/** A project's stored running time is read again at most this often (usage records are written in batches). */
const COMPUTE_USED_FRESH_MS = 1_000;
const MIB_MS_PER_GB_SECOND = 1024 * 1000;

/** Who asks for a cap check: the project, and whether the key is the admin's (held to no cap). */
export interface MeteredOwner {
  projectId: string;
  projectName: string;
  admin: boolean;
}

export interface ComputeMeteringOptions {
  log: Logger;
  /** Compute caps of a project (compute_apps, compute_instances, compute_gb_seconds); none without it. */
  projectLimits?: (projectId: string) => Promise<LimitSet>;
  /** Running time of instances, for usage and spend caps. */
  recordCompute?: (usage: ComputeUsage) => void;
  /** MiB-milliseconds of running time a project's usage records hold for this calendar month (compute_gb_seconds). */
  computeUsedThisMonth?: (projectId: string) => Promise<number>;
  /** How often running instances' time is reported (default once a minute; an instance's end always is). */
  usageSliceMs?: number;
  /** Apps the project has, wherever they run (compute_apps). */
  appsOfProject(projectId: string): Promise<number>;
  /** Instances the project runs on this node now (compute_instances). */
  instancesOfProject(projectId: string): number;
  /** The project used its compute_gb_seconds: suspend its running instances once idle. */
  suspendProject(projectId: string): void;
}

/** Where an instance's exchanges are counted: its slot, which counts each one it takes. */
export interface ExchangeCounter {
  readonly exchanges: number;
}

interface UsageMeter {
  projectId: string;
  app: string;
  memoryMiB: number;
  since: number;
  counter: ExchangeCounter;
  /** The counter's value at the last report. */
  counted: number;
  /** Suspended: the meter stands still (suspended time is free). */
  paused: boolean;
}

export class ComputeMeter {
  private readonly usage = new Map<string, UsageMeter>();
  private readonly usageTimer: NodeJS.Timeout;
  private readonly capTimer: NodeJS.Timeout;
  private stopped = false;
  /** Per project: its stored running time this month (MiB·ms), when read, and the read in flight. */
  private readonly computeUsed = new Map<string, { month: string; at: number; mibMs: number; reading?: Promise<number> }>();

  constructor(private readonly options: ComputeMeteringOptions) {
    this.usageTimer = setInterval(() => this.reportAll(false), options.usageSliceMs ?? USAGE_SLICE_MS);
    this.usageTimer.unref();
    this.capTimer = setInterval(() => void this.suspendOverComputeCap(), COMPUTE_CAP_CHECK_MS);
    this.capTimer.unref();
  }

  // ---- meters --------------------------------------------------------------------------------

  /**
   * An instance became ready: its meter runs from now. Its exchanges (requests and connections)
   * are counted where they are taken, on `counter` (its slot), and read here at each report, so
   * a request never visits the meter on its way to an instance.
   */
  started(instanceId: string, of: { projectId: string; app: string; memoryMiB: number; counter: ExchangeCounter }): void {
    this.usage.set(instanceId, { ...of, since: Date.now(), counted: of.counter.exchanges, paused: false });
  }

  /** The instance was suspended: what ran until now is billed; the meter then stands still. */
  paused(instanceId: string): void {
    this.report(instanceId, false);
    const meter = this.usage.get(instanceId);
    if (meter) meter.paused = true;
  }

  /** The instance runs again (resumed or restored): its meter runs from now. */
  resumed(instanceId: string): void {
    const meter = this.usage.get(instanceId);
    if (!meter) return;
    meter.paused = false;
    meter.since = Date.now();
  }

  /** The instance ended: its last time is reported and its meter gone. */
  ended(instanceId: string): void {
    this.report(instanceId, true);
  }

  /** Stops the clocks (Alto is stopping); instances' ends are still reported. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.usageTimer);
    clearInterval(this.capTimer);
  }

  /** Reports every meter's time since its last report (`final`: and forgets them). */
  reportAll(final: boolean): void {
    for (const id of [...this.usage.keys()]) this.report(id, final);
  }

  private report(instanceId: string, final: boolean): void {
    const meter = this.usage.get(instanceId);
    if (!meter) return;
    const now = Date.now();
    const runningMs = meter.paused ? 0 : now - meter.since;
    const exchanges = meter.counter.exchanges;
    const requests = exchanges - meter.counted;
    if (runningMs > 0 || requests > 0) {
      this.options.recordCompute?.({ projectId: meter.projectId, app: meter.app, instance: instanceId, runningMs, memoryMiB: meter.memoryMiB, requests, at: now });
    }
    meter.since = now;
    meter.counted = exchanges;
    if (final) this.usage.delete(instanceId);
  }

  // ---- caps ----------------------------------------------------------------------------------

  private async limitsOf(owner: MeteredOwner): Promise<LimitSet | undefined> {
    if (owner.admin || !this.options.projectLimits) return undefined;
    return this.options.projectLimits(owner.projectId);
  }

  /** Refuses with 402 what would take the project past its compute caps (admin keys have none). */
  async assertCaps(owner: MeteredOwner, adding: { apps: number; instances: number }): Promise<void> {
    const limits = await this.limitsOf(owner);
    if (!limits) return;
    await this.assertComputeTime(owner.projectId, owner.projectName, limits);
    if (adding.apps > 0 && limits.compute_apps > 0) {
      const apps = await this.options.appsOfProject(owner.projectId);
      if (apps + adding.apps > limits.compute_apps)
        throw errors.paymentRequired(
          `compute cap reached: project "${owner.projectName}" may have ${limits.compute_apps} apps (compute_apps) and has ${apps}; delete one or raise compute_apps with projects/Update`,
        );
    }
    if (adding.instances > 0 && limits.compute_instances > 0) {
      const running = this.options.instancesOfProject(owner.projectId);
      if (running + adding.instances > limits.compute_instances)
        throw errors.paymentRequired(
          `compute cap reached: project "${owner.projectName}" may run ${limits.compute_instances} instances at once (compute_instances), runs ${running} and this needs ${adding.instances} more; raise compute_instances with projects/Update`,
        );
    }
  }

  /** Whether the project may run one more instance (compute_instances; 0 means no cap). */
  async withinInstanceCap(projectId: string): Promise<boolean> {
    if (!this.options.projectLimits) return true;
    const limits = await this.options.projectLimits(projectId);
    return limits.compute_instances <= 0 || this.options.instancesOfProject(projectId) < limits.compute_instances;
  }

  /**
   * GB-seconds of running time the project used this calendar month: its usage records (read
   * at most once a second) plus what its running instances ran since their last report.
   * Records still waiting in the meter's batch when read are missed until the next read.
   */
  async computeGbSecondsUsed(projectId: string): Promise<number> {
    const now = Date.now();
    const month = new Date(now).toISOString().slice(0, 7);
    let entry = this.computeUsed.get(projectId);
    if (!entry || entry.month !== month) {
      entry = { month, at: 0, mibMs: 0 };
      this.computeUsed.set(projectId, entry);
    }
    if (this.options.computeUsedThisMonth && now - entry.at >= COMPUTE_USED_FRESH_MS) {
      const current = entry;
      current.reading ??= this.options.computeUsedThisMonth(projectId).finally(() => (current.reading = undefined));
      current.mibMs = await current.reading;
      current.at = Date.now();
    }
    let mibMs = entry.mibMs;
    for (const meter of this.usage.values()) {
      if (meter.projectId === projectId && !meter.paused) mibMs += Math.max(0, Date.now() - meter.since) * meter.memoryMiB;
    }
    return mibMs / MIB_MS_PER_GB_SECOND;
  }

  /** Refuses with 402 when the project used its monthly compute_gb_seconds (0: no cap). */
  async assertComputeTime(projectId: string, projectName: string, known?: LimitSet): Promise<void> {
    if (!this.options.projectLimits) return;
    const cap = (known ?? (await this.options.projectLimits(projectId))).compute_gb_seconds;
    if (!cap || cap <= 0) return;
    const used = await this.computeGbSecondsUsed(projectId);
    if (used < cap) return;
    throw errors.paymentRequired(
      `compute cap reached: project "${projectName}" ran ${used.toFixed(1)} GB-seconds this month and may run ${cap} (compute_gb_seconds); ` +
        'its instances are suspended, their data kept; raise compute_gb_seconds with projects/Update, or wait for next month',
    );
  }

  /** Has the running instances of projects past compute_gb_seconds suspended (each once its exchanges in flight end). */
  private async suspendOverComputeCap(): Promise<void> {
    if (this.stopped || !this.options.projectLimits) return;
    const projects = new Set<string>();
    for (const meter of this.usage.values()) if (!meter.paused) projects.add(meter.projectId);
    for (const projectId of projects) {
      try {
        const cap = (await this.options.projectLimits(projectId)).compute_gb_seconds;
        if (!cap || cap <= 0 || (await this.computeGbSecondsUsed(projectId)) < cap) continue;
        this.options.suspendProject(projectId);
      } catch (error) {
        this.options.log.warn({ err: error, project: projectId }, 'checking compute_gb_seconds failed');
      }
    }
  }
}
