/**
 * @module compute/apps/manager
 * `AppManager`: runs apps. Run, Update (rolled out without downtime: the new version must be
 * ready before traffic moves; with volumes, old first, since a volume has one user at a time),
 * Delete, Get, Status, List and Logs; it starts recorded apps again when Alto starts and stops
 * them gracefully when it stops. It keeps one `AppRuntime` per app that runs (runtime.ts: its
 * slots, which restart crashed instances with back-off, and its waiting requests) and leaves each
 * other job to a part of its own:
 * - gateway.ts: the edge's port (resolve the host's app, admit, acquire a ready instance, release);
 * - scheduler.ts: the one listener of every app's slots, which records and meters instances,
 *   suspends idle ones, snapshots long-suspended ones (sooner under memory pressure), scales out
 *   and in, and shares the host's starts fairly between apps (start-gate.ts);
 * - metering.ts: instances' running time for usage, and the projects' compute caps;
 * - rootfs.ts: the image an app runs (pulled when missing) and its root filesystem, unpacked once;
 * - placement.ts: where an instance start runs (this node's sandbox driver, chosen at first need);
 * - source-builder.ts: source deploys, built by whoever registers a builder (the functions).
 *
 * Nodes: every process sharing one store (`--store postgres://`) sees every app (List, Get), but
 * an app runs on the node that deployed it (its record names the node, records.ts), and only that
 * node starts it again, updates, deletes it or serves its requests; another node answers 503
 * naming the node that runs it.
 *
 * Serverless lifecycle (issue 8; scheduler.ts): an app with `min_instances: 0` has its instance
 * suspended as soon as it is ready and again after `idle_timeout` seconds with nothing in flight
 * (open connections and websockets hold it running); the gateway's `acquire` wakes it (a shared
 * resume) and holds the request meanwhile. Where the driver can snapshot (microvm), a slot
 * suspended for `snapshotAfterMs` (ALTO_SNAPSHOT_AFTER_MS, default 10 min) is snapshotted to disk
 * and its process ended; the next request restores it, also after a restart of Alto (the records
 * say where each snapshot is). Under memory pressure (the host's MemAvailable below
 * `memoryReserveBytes`, ALTO_MEMORY_RESERVE_MB) suspended instances are snapshotted sooner, the
 * longest suspended first, one at a time until the reserve is back. The process driver keeps idle
 * instances frozen. Suspended time is not billed: the compute meter stops while an instance is
 * suspended.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { SecretCipher } from '../../kit/master-key.js';
import type { AppEndpoint, AppGateway } from '../../platform/app-gateway.js';
import type { LimitSet } from '../../platform/limit-names.js';
import type { ComputeUsage } from '../../platform/metering.js';
import type { AppStore } from '../../store/apps/port.js';
import type { ImageManager } from '../images/manager.js';
import type { ImageSpec } from '../images/spec.js';
import type { SandboxChoice, SandboxLink, SandboxSpec, SandboxStatus } from '../sandbox/index.js';
import { DEFAULT_STOP_GRACE_MS } from '../sandbox/port.js';
import { AppsGateway, type AppAddress } from './gateway.js';
import { ComputeMeter } from './metering.js';
import { LocalPlacement, type Placement, type StartRequest } from './placement.js';
import { AppRecords, type AppRecord, type AppSettings, type AppVolume, type InstanceRecord, type ReservationRecord } from './records.js';
import { AppRuntime, AppVersion, type AppLogLine, type AppLogStream } from './runtime.js';
import type { SlotOrigin, SlotState } from './slot.js';
import { RootFilesystems } from './rootfs.js';
import { AppScheduler, type Activation } from './scheduler.js';
import { AppSources } from './source-builder.js';

export type { AppAddress, AppResolver, ProxyTarget } from './gateway.js';
export { MAX_QUEUED_PER_APP } from './gateway.js';
export { DEFAULT_SNAPSHOT_AFTER_MS, type Activation } from './scheduler.js';

/** Who asks: the project of the key making the call. */
export interface AppOwner {
  projectId: string;
  projectName: string;
  /** Admin keys are not held to the project's compute caps. */
  admin: boolean;
}

/** Settings as a request gives them; what is missing takes its default (Run) or stays (Update). */
export type AppSettingsInput = Partial<AppSettings>;

export interface RunInput extends AppSettingsInput {
  name: string;
  image: string;
  /** Allow plain HTTP for this image's registry (loopback registries always may). */
  insecure?: boolean;
}

export interface UpdateInput extends AppSettingsInput {
  name: string;
  image?: string;
  insecure?: boolean;
  /** env_vars replace the app's instead of adding to them (functions give their whole set). */
  replaceEnvVars?: boolean;
}

/** The edge, once it listens: its port (for app URLs) and how to open TCP ports for TCP apps. */
export interface EdgeAttachment {
  port: number;
  openTcpPort?(address: AppAddress, requestedPort: number): Promise<{ port: number; close(): Promise<void> }>;
}

export interface AppManagerOptions {
  dataDir: string;
  /** Every app of the cloud (store/apps: SQLite, or PostgreSQL with --store). */
  store: AppStore;
  /** This node's id (the data folder's node-id): it runs the apps recorded under it, and only those. */
  node: string;
  /** Seals what the records keep that a copy of the database must not reveal (apps' hidden env). */
  cipher?: SecretCipher;
  log: Logger;
  images: ImageManager;
  /** `alto up --sandbox` (ALTO_SANDBOX). */
  sandbox: SandboxChoice;
  /** Kernel, tools and disk images shared across runs (default: the sandbox module's). */
  sandboxCacheDir?: string;
  /** Base domain of app URLs (`--apps-domain`, ALTO_APPS_DOMAIN): `<app>.<project>.<domain>`. */
  appsDomain: string;
  /** Compute caps of a project (compute_apps, compute_instances). */
  projectLimits?: (projectId: string) => Promise<LimitSet>;
  /** Running time of instances, for usage and spend caps. */
  recordCompute?: (usage: ComputeUsage) => void;
  /** MiB-milliseconds of running time a project's usage records hold for this calendar month (compute_gb_seconds). */
  computeUsedThisMonth?: (projectId: string) => Promise<number>;
  /** How often running instances' time is reported (default once a minute; an instance's end always is). */
  usageSliceMs?: number;
  stopGraceMs?: number;
  /** Suspended this long, an instance is snapshotted to disk and its process ended (drivers with snapshots). Default 10 min. */
  snapshotAfterMs?: number;
  /**
   * Memory pressure: while the host's available memory is below this many bytes, suspended
   * instances are snapshotted without waiting for `snapshotAfterMs`, the longest suspended first,
   * one at a time (drivers with snapshots). Default a tenth of the machine's memory, at most
   * 2 GiB; 0 turns it off.
   */
  memoryReserveBytes?: number;
  /** The host's available memory in bytes; default MemAvailable of /proc/meminfo (os.freemem() without it). */
  availableMemory?: () => number;
  /** Instance starts (boots, restores) at once on this machine; default twice the CPUs, at least 4. One app gets half. */
  maxConcurrentStarts?: number;
}

/** One instance position of an app as Status shows it. */
export interface SlotView {
  state: SlotState;
  instance: string;
  inFlight: number;
  since: number;
  /** How its instance came to be: booted, or restored from the version's ready snapshot or its own. */
  origin: SlotOrigin;
  /** The kernel's or VMM's answer (Status only). */
  frozen?: boolean;
}

export const APP_DEFAULTS = {
  port: 8080,
  memory: 256,
  cpus: 1,
  min_instances: 1,
  max_instances: 1,
  concurrency: 50,
  idle_timeout: 5,
  pool: 0,
} as const;

/** The port a link shows a microVM guest when the linked app does not exist yet (any port reaches it). */
const LINK_DEFAULT_PORT = 80;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** How long an update waits for requests in flight on the old version before stopping it. */
const DRAIN_MS = 10_000;
/** The slot number under which a version's ready snapshot is recorded. */
const READY_SNAPSHOT_SLOT = -1;
/** Log lines an error about a failed start carries. */
const FAILURE_LOG_LINES = 10;
const RESERVATION_DAYS = 365;

/** What Get, Status and List show of one app. */
export interface AppState {
  record: AppRecord;
  status: string;
  url: string;
  backend: string;
  tcpPort?: number;
  instances: InstanceRecord[];
  /** The serving version's instance positions and their lifecycle states. */
  slots: SlotView[];
  restarts: number;
  lastExit?: { code: number | null; reason: string; at: number; instance: string; version: number };
}

export class AppManager implements AppGateway {
  /** The edge's way in to this node's apps: resolve, admit, acquire, release. */
  readonly gateway: AppsGateway;
  /** Builds apps' images from source (repo or files); the functions register the builder. */
  readonly sources = new AppSources();
  private readonly runtimes = new Map<string, AppRuntime>();
  /** Where instance starts run (this node's sandbox driver). */
  private readonly placement: Placement;
  /** Images and their unpacked root filesystems. */
  private readonly rootfs: RootFilesystems;
  /** Running time of instances, and the projects' compute caps. */
  private readonly meter: ComputeMeter;
  /** The one listener of every app's slots: records, meters, sleeps, snapshots and scales instances. */
  private readonly scheduler: AppScheduler;
  private edge: EdgeAttachment | undefined;
  private closing = false;
  private readonly restoring: Promise<void>;
  private readonly graceMs: number;

  /** Loads this node's apps from the store, then starts them again in the background. */
  static async open(options: AppManagerOptions): Promise<AppManager> {
    const records = new AppRecords(options.store, options.node, options.cipher, options.log);
    const apps = await records.load();
    return new AppManager(options, records, apps);
  }

  private constructor(
    private readonly options: AppManagerOptions,
    private readonly records: AppRecords,
    recorded: AppRecord[],
  ) {
    this.graceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    this.placement = new LocalPlacement({ sandbox: options.sandbox, dataDir: options.dataDir, sandboxCacheDir: options.sandboxCacheDir, log: options.log });
    this.rootfs = new RootFilesystems({
      dataDir: options.dataDir,
      images: options.images,
      log: options.log,
      inUse: (digest) => this.records.isDigestUsedHere(digest) || [...this.runtimes.values()].some((runtime) => runtime.app.digest === digest),
    });
    this.meter = new ComputeMeter({
      log: options.log,
      projectLimits: options.projectLimits,
      recordCompute: options.recordCompute,
      computeUsedThisMonth: options.computeUsedThisMonth,
      usageSliceMs: options.usageSliceMs,
      appsOfProject: (projectId) => this.records.countOfProject(projectId),
      instancesOfProject: (projectId) => this.scheduler.instancesOfProject(projectId),
      suspendProject: (projectId) => this.scheduler.suspendProject(projectId),
    });
    this.scheduler = new AppScheduler({
      dataDir: options.dataDir,
      log: options.log,
      records,
      runtimes: this.runtimes,
      meter: this.meter,
      canSnapshot: () => this.placement.canSnapshot,
      closing: () => this.closing,
      graceMs: this.graceMs,
      snapshotAfterMs: options.snapshotAfterMs,
      memoryReserveBytes: options.memoryReserveBytes,
      availableMemory: options.availableMemory,
      maxConcurrentStarts: options.maxConcurrentStarts,
    });
    this.gateway = new AppsGateway({
      node: options.node,
      appsDomain: options.appsDomain,
      records,
      runtimes: this.runtimes,
      edgePort: () => this.edge?.port,
      closing: () => this.closing,
    });
    this.restoring = this.restore(recorded).catch((error) => options.log.error({ err: error }, 'starting recorded apps failed'));
  }

  // ---- sandbox -------------------------------------------------------------------------------

  /** For `/v1/status`: the chosen driver and why, or that it is chosen when the first app starts. */
  sandboxStatus(): { choice: SandboxChoice; probed: boolean } & Partial<SandboxStatus> {
    return this.placement.status();
  }

  // ---- edge ----------------------------------------------------------------------------------

  /** Called by the edge once it listens: app URLs get its port, TCP apps their edge ports. */
  attachEdge(edge: EdgeAttachment): void {
    this.edge = edge;
    for (const runtime of this.runtimes.values()) void this.openTcp(runtime);
  }

  /** Whether the project has an app of this name that this node runs. */
  hasApp(projectId: string, name: string): boolean {
    return this.gateway.hasApp(projectId, name);
  }

  /** A ready instance of the project's app for one request from inside Alto (cron callbacks). */
  openApp(projectId: string, name: string): Promise<AppEndpoint> {
    return this.gateway.openApp(projectId, name);
  }

  appUrl(app: Pick<AppRecord, 'name' | 'projectName'>): string {
    return this.gateway.appUrl(app);
  }

  /** Opens the app's edge TCP port once, however many callers ask at the same time. */
  private openTcp(runtime: AppRuntime): Promise<void> {
    runtime.tcp.opening ??= this.openTcpPort(runtime).finally(() => (runtime.tcp.opening = undefined));
    return runtime.tcp.opening;
  }

  private async openTcpPort(runtime: AppRuntime): Promise<void> {
    const { app } = runtime;
    if (!app.settings.tcp || !this.edge?.openTcpPort || runtime.tcp.close) return;
    const requested = app.settings.tcp_port || app.tcpPort || 0;
    try {
      const opened = await this.edge.openTcpPort({ app: app.name, project: app.projectName }, requested);
      runtime.tcp.port = opened.port;
      runtime.tcp.close = opened.close;
      if (opened.port !== app.tcpPort) void this.records.setTcpPort(app, opened.port);
    } catch (error) {
      if (requested && !app.settings.tcp_port) {
        // The port it had before is taken now: any free one will do.
        const opened = await this.edge.openTcpPort({ app: app.name, project: app.projectName }, 0);
        runtime.tcp.port = opened.port;
        runtime.tcp.close = opened.close;
        void this.records.setTcpPort(app, opened.port);
        return;
      }
      runtime.log.error({ err: error, app: app.name }, 'opening the TCP port of an app failed');
      runtime.system(app.version, '', `the edge could not open TCP port ${requested}: ${(error as Error).message}`);
      throw error;
    }
  }

  private async closeTcp(runtime: AppRuntime): Promise<void> {
    await runtime.tcp.opening?.catch(() => undefined);
    const close = runtime.tcp.close;
    runtime.tcp.close = undefined;
    runtime.tcp.port = undefined;
    await close?.().catch(() => undefined);
  }


  // ---- images and volumes --------------------------------------------------------------------

  private get images(): ImageManager {
    return this.options.images;
  }

  private volumeDir(app: Pick<AppRecord, 'projectId' | 'name'>, volume: AppVolume): string {
    return join(this.options.dataDir, 'apps', 'volumes', app.projectId, app.name, volume.name);
  }

  // ---- specs ---------------------------------------------------------------------------------

  /** Fills defaults and checks the settings against each other and the image. */
  private settingsOf(input: AppSettingsInput, base: AppSettings | undefined, image: ImageSpec): AppSettings {
    const exposed = image.exposedPorts.find((port) => port.protocol === 'tcp')?.port;
    const tcp = input.tcp ?? base?.tcp ?? 0;
    let port = input.port ?? base?.port ?? (tcp || exposed || APP_DEFAULTS.port);
    if (input.tcp !== undefined && input.port === undefined && input.tcp) port = input.tcp;
    if (tcp && port !== tcp)
      throw errors.badRequest(`port ${port} and tcp ${tcp} differ: an app serves either HTTP on port or TCP on tcp; give one of them (or the same number)`);
    const minInstances = input.min_instances ?? base?.min_instances ?? APP_DEFAULTS.min_instances;
    const pool = input.pool ?? base?.pool ?? APP_DEFAULTS.pool;
    const maxInstances = input.max_instances ?? base?.max_instances ?? Math.max(APP_DEFAULTS.max_instances, minInstances) + pool;
    if (maxInstances < Math.max(1, minInstances))
      throw errors.badRequest(`max_instances ${maxInstances} is below min_instances ${minInstances} (or below 1)`);
    if (maxInstances < Math.max(1, minInstances) + pool)
      throw errors.badRequest(`pool ${pool} does not fit: max_instances ${maxInstances} must hold min_instances (at least 1) plus the pool's spares, ${Math.max(1, minInstances) + pool}`);
    const volumes = input.volumes ?? base?.volumes ?? [];
    const settings: AppSettings = {
      port,
      env_vars: input.env_vars ? { ...(base?.env_vars ?? {}), ...input.env_vars } : { ...(base?.env_vars ?? {}) },
      memory: input.memory ?? base?.memory ?? APP_DEFAULTS.memory,
      cpus: input.cpus ?? base?.cpus ?? APP_DEFAULTS.cpus,
      min_instances: minInstances,
      max_instances: maxInstances,
      concurrency: input.concurrency ?? base?.concurrency ?? APP_DEFAULTS.concurrency,
      idle_timeout: input.idle_timeout ?? base?.idle_timeout ?? APP_DEFAULTS.idle_timeout,
      pool,
      volumes,
      tcp,
      tcp_port: input.tcp_port ?? base?.tcp_port ?? 0,
      outbound: input.outbound ?? base?.outbound ?? false,
      links: input.links ?? base?.links ?? [],
      ...hiddenEnvOf(input, base),
    };
    // A hidden value is not kept among env_vars too (older functions had their key and secrets there).
    for (const [name, value] of Object.entries(settings.hidden_env?.env ?? {})) if (settings.env_vars[name] === value) delete settings.env_vars[name];
    if (volumes.length > 0 && settings.min_instances > 1)
      throw errors.badRequest('an app with volumes runs one instance (a volume has one user at a time); set min_instances to 1');
    if (volumes.length > 0 && pool > 0) throw errors.badRequest('an app with volumes runs one instance (a volume has one user at a time); set pool to 0');
    return settings;
  }

  /**
   * Refuses, before anything is pulled or started, a setting the chosen driver cannot honour
   * (today: outbound access on a driver without it), so the caller hears why at once.
   */
  private async assertDriverSupports(start: StartRequest, settings: Pick<AppSettings, 'outbound'>): Promise<void> {
    if (!settings.outbound) return;
    const driver = await this.placement.place(start);
    const { capabilities, driver: name } = await driver.describe();
    if (!capabilities.outbound)
      throw errors.badRequest(
        `outbound: true is not available here: the ${name} sandbox cannot give apps internet access${name === 'microvm' ? ' without opening the host\'s loopback to them' : ' (nftables is missing)'}; set outbound to false${name === 'microvm' ? ' or run Alto with --sandbox process' : ''}`,
      );
  }

  private specOf(app: AppRecord, image: ImageSpec, rootfs: string): SandboxSpec {
    const { settings } = app;
    const env: Record<string, string> = { ...image.env, ...settings.hidden_env?.env, ...settings.env_vars, PORT: String(settings.port) };
    if (!env.PATH) env.PATH = DEFAULT_PATH;
    const volumes = settings.volumes.map((volume) => {
      const dir = this.volumeDir(app, volume);
      mkdirSync(dir, { recursive: true });
      return { dir, path: volume.path };
    });
    const spec: SandboxSpec & { volumes?: { dir: string; path: string; sizeMiB?: number }[] } = {
      rootfs,
      entrypoint: image.entrypoint,
      cmd: image.cmd,
      env,
      workdir: image.workingDir,
      user: image.user,
      port: settings.port,
      memoryMiB: settings.memory,
      cpus: settings.cpus,
      allowOutbound: settings.outbound,
      // Every instance may call Alto's API through the edge (ALTO_URL), and nothing else on the host.
      ...(this.edge ? { platform: { port: this.edge.port } } : {}),
      name: app.name,
      // The process driver gives each project a host id range of its own (compute/sandbox/id-ranges.ts).
      tenant: app.projectId,
      ...(volumes.length > 0 ? { volumes } : {}),
      ...(settings.links.length > 0 ? { links: settings.links.map((name) => this.linkOf(app, name)) } : {}),
    };
    return spec;
  }

  /**
   * One link of an app's instances: each connection finds the linked app by name in the app's
   * own project (never another's), wakes it and holds it until the connection ends, like a
   * connection to its edge port. It may be deployed after the linking app; until it exists its
   * connections are closed. Its port for the guest is the linked app's own when it exists now.
   * Linked apps run on this node (apps stay on the node that deployed them).
   */
  private linkOf(app: AppRecord, name: string): SandboxLink {
    const linked = this.records.hereByName(app.projectId, name);
    return {
      name,
      port: linked ? linked.settings.tcp || linked.settings.port : LINK_DEFAULT_PORT,
      connect: async () => {
        const target = this.records.hereByName(app.projectId, name);
        if (!target) {
          const elsewhere = await this.records.findByName(app.projectId, name);
          throw elsewhere ? this.gateway.runElsewhere(elsewhere) : errors.notFound(`no app "${name}" in project "${app.projectName}" (linked from "${app.name}")`);
        }
        return this.gateway.acquire({ project: target.projectName, app: target.name }, target.settings.tcp ? 'tcp' : 'http');
      },
    };
  }

  /** Links name other apps of the project (names, count and repeats are the schema's, see schema.ts), never the app itself. */
  private assertLinks(name: string, links: string[] | undefined): void {
    if (links?.includes(name)) throw errors.badRequest(`links: an app cannot link to itself ("${name}"); name other apps of the project`);
  }

  // ---- the serverless lifecycle (scheduler.ts) ----------------------------------------------

  /** Hears every activation (for /metrics). */
  onActivation(listener: (activation: Activation) => void): () => void {
    return this.scheduler.onActivation(listener);
  }

  /** Instance positions of serving versions, by lifecycle state (for /metrics). */
  instanceStates(): Partial<Record<SlotState, number>> {
    return this.scheduler.instanceStates();
  }

  /** Requests held by the edge now, waiting for an instance to wake, start or free up. */
  queueDepth(): number {
    return this.scheduler.queueDepth();
  }

  /** Removes the snapshots of one version of an app (or of all its versions). */
  private async dropSnapshots(app: AppRecord, version?: number): Promise<void> {
    const snapshots = (await this.records.snapshotsOf(app.id)).filter((snapshot) => version === undefined || snapshot.version === version);
    await this.records.removeSnapshots(app.id, version);
    await Promise.all(snapshots.map((snapshot) => rm(snapshot.dir, { recursive: true, force: true })));
    if (version === undefined) await rm(join(this.options.dataDir, 'apps', 'snapshots', app.id), { recursive: true, force: true });
  }

  private newVersion(runtime: AppRuntime, app: AppRecord, image: ImageSpec, rootfs: string): AppVersion {
    const version = new AppVersion(app.version, this.specOf(app, image, rootfs), runtime, () => this.placement.place(startOf(app)));
    for (let i = 0; i < this.scheduler.positions(app.settings); i++) version.addSlot();
    return version;
  }

  /** Where a version's ready snapshot is kept (recorded as slot -1). */
  private readySnapshotDir(app: AppRecord, version: number): string {
    return join(this.options.dataDir, 'apps', 'snapshots', app.id, `v${version}-ready`);
  }

  /**
   * Whether a version takes a ready snapshot: the driver can snapshot, the app has no volumes (a
   * copy would be a second writer) and may run more than one instance (scale-out, pool spares).
   */
  private takesReadySnapshot(app: AppRecord): boolean {
    return this.placement.canSnapshot && app.settings.volumes.length === 0 && app.settings.max_instances > 1;
  }

  /**
   * Writes the version's ready snapshot from its first instance, just ready and not serving yet;
   * the version's later instances are restored from it. A failure only costs their speed: they boot.
   */
  private async captureReadySnapshot(runtime: AppRuntime, version: AppVersion): Promise<void> {
    const slot = version.slots[0];
    const dir = this.readySnapshotDir(runtime.app, version.version);
    const began = performance.now();
    try {
      if (!(await slot.captureReadySnapshot(dir))) return;
      version.readySnapshot = dir;
      void this.records.saveSnapshot({ appId: runtime.app.id, version: version.version, slot: READY_SNAPSHOT_SLOT, dir, createdAt: Date.now() });
      runtime.system(version, slot.instance?.id ?? '', `ready snapshot written in ${Math.round(performance.now() - began)} ms: more instances of version ${version.version} are restored from it`);
    } catch (error) {
      runtime.log.warn({ err: error, app: runtime.app.name }, 'writing the ready snapshot failed; instances will boot');
      runtime.system(version, slot.instance?.id ?? '', `writing the ready snapshot failed (more instances will boot): ${(error as Error).message}`);
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Starts every instance of a version; rejects with what went wrong when one never becomes ready. */
  private async startVersion(runtime: AppRuntime, version: AppVersion): Promise<void> {
    // With a ready snapshot, the first instance boots and the others are copies of it.
    await this.placement.place(startOf({ ...runtime.app, version: version.version })).catch(() => undefined);
    const first = this.takesReadySnapshot(runtime.app) && version.slots.length > 1 ? version.slots.slice(0, 1) : version.slots;
    const results = await Promise.allSettled(first.map((slot) => slot.startFirst()));
    if (first !== version.slots && results[0].status === 'fulfilled') {
      await this.captureReadySnapshot(runtime, version);
      results.push(...(await Promise.allSettled(version.slots.slice(1).map((slot) => slot.startFirst()))));
    }
    const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failures.length === 0) return;
    await version.stop(this.graceMs);
    const error = failures[0].reason as Error;
    if (isAltoError(error) && error.status < 500 && error.status !== 400) throw error;
    // What the failed instances wrote goes to the app's log; the first one's last lines into the answer.
    const written = failures.map((failed) => runtime.recordFailedStart(version, failed.reason));
    const fallback = runtime.tail(FAILURE_LOG_LINES * 4).filter((line) => line.version === version.version && line.stream !== 'system');
    const lines = (written[0].length > 0 ? written[0] : fallback).slice(-FAILURE_LOG_LINES).map((line) => line.line);
    const detail = isAltoError(error) ? error.detail : error.message;
    const logs = lines.length > 0 ? `; its last log lines:\n${lines.join('\n')}` : '';
    const status = isAltoError(error) && error.status === 503 ? 503 : 400;
    throw new AltoError(status === 503 ? 'unavailable' : 'bad_request', status, `version ${version.version} of app "${runtime.app.name}" did not become ready: ${detail}${logs}`);
  }

  // ---- start and stop with Alto --------------------------------------------------------------

  /** Starts again the apps of this node a previous run of Alto left running (in the background). */
  private async restore(recorded: AppRecord[]): Promise<void> {
    const apps = recorded.filter((app) => app.status !== 'failed');
    if (apps.length === 0) return;
    this.options.log.info({ apps: apps.length, node: this.options.node }, 'starting the apps this node runs');
    for (const app of apps) {
      if (this.closing) return;
      const runtime = new AppRuntime(app, this.scheduler, this.options.log, this.meter);
      this.runtimes.set(app.id, runtime);
      try {
        const image = this.images.inspect(app.digest);
        const rootfs = await this.rootfs.ensure(app.digest);
        const version = this.newVersion(runtime, app, image.spec, rootfs);
        runtime.serve(version);
        // Slots snapshotted before the restart come back on their next request; the rest start
        // (restored from the version's ready snapshot when it has one).
        const snapshots = await this.records.snapshotsOf(app.id);
        const ready = snapshots.find((candidate) => candidate.version === app.version && candidate.slot === READY_SNAPSHOT_SLOT);
        if (ready && existsSync(join(ready.dir, 'snapshot.json'))) version.readySnapshot = ready.dir;
        for (const [index, slot] of version.slots.entries()) {
          const snapshot = snapshots.find((candidate) => candidate.version === app.version && candidate.slot === index);
          if (snapshot && this.scheduler.sleepsWhenIdleAt(app, index) && existsSync(join(snapshot.dir, 'snapshot.json'))) {
            slot.startSnapshotted(snapshot.dir, snapshot.dir !== ready?.dir);
            runtime.system(app.version, '', `instance ${index + 1} stays snapshotted until its next request (${snapshot.dir})`);
          } else slot.startSupervised();
        }
        if (this.edge) void this.openTcp(runtime).catch(() => undefined);
      } catch (error) {
        this.options.log.error({ err: error, app: app.name, project: app.projectName }, 'an app could not be started again');
        runtime.system(app.version, '', `could not start again after a restart of Alto: ${(error as Error).message}`);
        void this.records.setStatus(app, 'failed', (error as Error).message);
      }
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    this.meter.stop();
    this.scheduler.stop();
    await this.restoring;
    await Promise.all(
      [...this.runtimes.values()].map(async (runtime) => {
        await this.closeTcp(runtime);
        await Promise.all([runtime.candidate?.stop(this.graceMs), runtime.serving?.stop(this.graceMs)]);
        runtime.end();
      }),
    );
    this.meter.reportAll(true);
    // The instances' ends and the apps' last states reach the store before it closes.
    await this.records.flushed();
    await this.placement.close();
  }

  // ---- the app service's operations ----------------------------------------------------------

  private runtimeOf(app: AppRecord): AppRuntime {
    let runtime = this.runtimes.get(app.id);
    if (!runtime) {
      runtime = new AppRuntime(app, this.scheduler, this.options.log, this.meter);
      this.runtimes.set(app.id, runtime);
    }
    return runtime;
  }

  /** The project's app that this node runs; 404 otherwise (for callers that only ask this node). */
  private findHere(owner: AppOwner, name: string): AppRecord {
    const app = this.records.hereByName(owner.projectId, name);
    if (!app) throw errors.notFound(`no app "${name}" in project "${owner.projectName}" on this node; app/List shows them`);
    return app;
  }

  /**
   * The project's app, which this node must run to do what is asked: 404 when the project has
   * no such app, 503 naming the node when another node runs it.
   */
  async runningHere(owner: AppOwner, name: string): Promise<AppRecord> {
    const here = this.records.hereByName(owner.projectId, name);
    if (here) return here;
    const elsewhere = await this.records.findByName(owner.projectId, name);
    if (elsewhere) throw this.gateway.runElsewhere(elsewhere);
    throw errors.notFound(`no app "${name}" in project "${owner.projectName}"; app/List shows them`);
  }

  private claim(runtime: AppRuntime, what: string): void {
    if (runtime.busy) throw errors.conflict(`app "${runtime.app.name}" is busy (${runtime.busy}); try again when that is done`);
    runtime.busy = what;
  }

  /** The name is free cloud-wide: no app of the project has it, no other project has its address or reserved it. */
  private async assertNameFree(owner: AppOwner, name: string): Promise<void> {
    if (await this.records.findByName(owner.projectId, name)) throw errors.conflict(`app "${name}" already exists in project "${owner.projectName}"; use app/Update to change it`);
    const taken = await this.records.findByAddress(owner.projectName, name);
    if (taken) throw errors.conflict(`the address ${name}.${owner.projectName}.${this.options.appsDomain} belongs to another account's project; choose another name`);
    const reservation = await this.records.reservation(owner.projectName, name);
    if (reservation && reservation.projectId !== owner.projectId && reservation.expiresAt > Date.now())
      throw errors.conflict(`the name "${name}" is reserved by another project until ${new Date(reservation.expiresAt).toISOString()}`);
  }

  async run(owner: AppOwner, input: RunInput): Promise<AppState> {
    if (this.closing) throw errors.unavailable('Alto is stopping');
    await this.assertNameFree(owner, input.name);
    this.assertLinks(input.name, input.links);
    await this.assertDriverSupports({ projectId: owner.projectId, app: input.name, version: 1 }, { outbound: input.outbound ?? false });
    const image = await this.rootfs.imageFor(owner, input.image, Boolean(input.insecure), 'missing');
    const settings = this.settingsOf(input, undefined, image.spec);
    await this.meter.assertCaps(owner, { apps: 1, instances: this.scheduler.positions(settings) });
    const rootfs = await this.rootfs.ensure(image.digest);
    await this.assertNameFree(owner, input.name);
    const now = Date.now();
    const app: AppRecord = {
      id: randomBytes(8).toString('hex'),
      projectId: owner.projectId,
      projectName: owner.projectName,
      name: input.name,
      node: this.options.node,
      image: input.image.trim(),
      digest: image.digest,
      settings,
      version: 1,
      status: 'deploying',
      createdAt: now,
      updatedAt: now,
    };
    // The store's unique constraints settle a race with another Run here or on another node.
    if (!(await this.records.insert(app))) throw errors.conflict(`app "${input.name}" already exists in project "${owner.projectName}", or its address is taken`);
    this.images.addUser(image.digest, `app:${app.id}`);
    const runtime = this.runtimeOf(app);
    runtime.busy = 'deploying';
    try {
      const version = this.newVersion(runtime, app, image.spec, rootfs);
      runtime.candidate = version;
      await this.startVersion(runtime, version);
      runtime.candidate = undefined;
      runtime.serve(version);
      await this.openTcp(runtime);
    } catch (error) {
      runtime.busy = undefined;
      await this.discard(runtime, false);
      throw error;
    }
    runtime.busy = undefined;
    await this.records.setStatus(app, 'running', undefined);
    this.options.log.info({ app: app.name, project: app.projectName, image: app.image, digest: app.digest }, 'app deployed');
    return this.stateOf(app);
  }

  async update(owner: AppOwner, input: UpdateInput): Promise<AppState> {
    if (this.closing) throw errors.unavailable('Alto is stopping');
    const current = await this.runningHere(owner, input.name);
    const runtime = this.runtimeOf(current);
    this.claim(runtime, 'updating');
    try {
      return await this.rollOut(owner, runtime, current, input);
    } finally {
      runtime.busy = undefined;
      this.scheduler.statusChanged(runtime);
    }
  }

  private async rollOut(owner: AppOwner, runtime: AppRuntime, current: AppRecord, input: UpdateInput): Promise<AppState> {
    this.assertLinks(current.name, input.links);
    await this.assertDriverSupports(startOf({ ...current, version: current.version + 1 }), { outbound: input.outbound ?? current.settings.outbound });
    const image = input.image ? await this.rootfs.imageFor(owner, input.image, Boolean(input.insecure), 'always') : this.images.inspect(current.digest);
    const settings = this.settingsOf(input, input.replaceEnvVars ? { ...current.settings, env_vars: {} } : current.settings, image.spec);
    const rootfs = await this.rootfs.ensure(image.digest);
    const next: AppRecord = {
      ...current,
      image: input.image?.trim() ?? current.image,
      digest: image.digest,
      settings,
      version: current.version + 1,
      updatedAt: Date.now(),
    };
    this.images.addUser(image.digest, `app:${current.id}`);
    const version = this.newVersion(runtime, next, image.spec, rootfs);
    const old = runtime.serving;
    const oneUserAtATime = current.settings.volumes.length > 0 || settings.volumes.length > 0;
    try {
      if (oneUserAtATime) {
        // A volume has one user at a time: the old version stops before the new one starts.
        runtime.serve(undefined);
        runtime.system(current.version, '', `stopping version ${current.version} before version ${next.version} starts (the app has volumes)`);
        await old?.stop(this.graceMs, DRAIN_MS);
        runtime.candidate = version;
        try {
          await this.startVersion(runtime, version);
        } catch (error) {
          runtime.candidate = undefined;
          // Put the working version back.
          const previousImage = this.images.inspect(current.digest);
          const restored = this.newVersion(runtime, current, previousImage.spec, await this.rootfs.ensure(current.digest));
          runtime.serve(restored);
          for (const slot of restored.slots) slot.startSupervised();
          throw error;
        }
      } else {
        await this.meter.assertCaps(owner, { apps: 0, instances: 0 });
        runtime.candidate = version;
        await this.startVersion(runtime, version);
      }
    } catch (error) {
      runtime.candidate = undefined;
      if (image.digest !== current.digest) {
        this.images.removeUser(image.digest, `app:${current.id}`);
        await this.rootfs.dropIfUnused(image.digest);
      }
      runtime.system(next.version, '', `update to version ${next.version} failed; version ${current.version} keeps serving: ${(error as Error).message.split('\n')[0]}`);
      throw error;
    }
    // The new version is ready: traffic moves to it, then the old one drains and stops.
    runtime.candidate = undefined;
    runtime.serve(version);
    runtime.app = next;
    runtime.lastExit = undefined;
    next.status = 'running';
    next.error = undefined;
    await this.records.save(next);
    runtime.system(next.version, '', `version ${next.version} serves; version ${current.version} stops`);
    if (!oneUserAtATime) await old?.stop(this.graceMs, DRAIN_MS);
    await this.dropSnapshots(next, current.version);
    if (current.settings.tcp !== settings.tcp || current.settings.tcp_port !== settings.tcp_port) {
      await this.closeTcp(runtime);
      await this.openTcp(runtime);
    }
    if (image.digest !== current.digest) {
      this.images.removeUser(current.digest, `app:${current.id}`);
      await this.rootfs.dropIfUnused(current.digest);
    }
    this.options.log.info({ app: next.name, project: next.projectName, version: next.version, digest: next.digest }, 'app updated');
    return this.stateOf(next);
  }

  async delete(owner: AppOwner, name: string, options: { keepVolumes?: boolean } = {}): Promise<void> {
    const app = await this.runningHere(owner, name);
    const runtime = this.runtimeOf(app);
    this.claim(runtime, 'deleting');
    await this.discard(runtime, !options.keepVolumes);
    this.options.log.info({ app: app.name, project: app.projectName }, 'app deleted');
  }

  /** Stops an app's instances and forgets it. */
  private async discard(runtime: AppRuntime, dropVolumes: boolean): Promise<void> {
    const { app } = runtime;
    await this.closeTcp(runtime);
    await Promise.all([runtime.candidate?.stop(this.graceMs), runtime.serving?.stop(this.graceMs, DRAIN_MS)]);
    runtime.end();
    this.runtimes.delete(app.id);
    await this.dropSnapshots(app);
    await this.records.remove(app);
    this.images.removeUser(app.digest, `app:${app.id}`);
    await this.rootfs.dropIfUnused(app.digest);
    if (dropVolumes) rmSync(join(this.options.dataDir, 'apps', 'volumes', app.projectId, app.name), { recursive: true, force: true });
  }

  /**
   * Deletes every app of a project (the project was deleted): this node's are stopped first; the
   * records of every node's go (another node stops its own when it next starts).
   */
  async deleteProject(projectId: string): Promise<void> {
    for (const app of this.records.here().filter((candidate) => candidate.projectId === projectId)) {
      const runtime = this.runtimeOf(app);
      runtime.busy = 'deleting';
      await this.discard(runtime, true);
    }
    await this.records.removeProject(projectId);
  }

  /** An app this node runs, as Get shows it (from memory). */
  get(owner: AppOwner, name: string): AppState {
    return this.stateOf(this.findHere(owner, name));
  }

  /** An app of the project wherever it runs: this node's live state, or another node's recorded one. */
  async describe(owner: AppOwner, name: string): Promise<AppState> {
    const here = this.records.hereByName(owner.projectId, name);
    if (here) return this.stateOf(here);
    const app = await this.records.findByName(owner.projectId, name);
    if (!app) throw errors.notFound(`no app "${name}" in project "${owner.projectName}"; app/List shows them`);
    return this.recordedStateOf(app);
  }

  /** The project's apps, wherever they run. */
  async list(owner: AppOwner): Promise<AppState[]> {
    const apps = await this.records.listOfProject(owner.projectId);
    return Promise.all(apps.map((app) => (this.records.hereById(app.id) ? this.stateOf(app) : this.recordedStateOf(app))));
  }

  /** The state of an app this node runs. */
  private stateOf(stored: AppRecord): AppState {
    const runtime = this.runtimes.get(stored.id);
    const app = runtime?.app ?? stored;
    const slot = runtime?.pickSlot();
    const instance = slot?.instance;
    const status = runtime?.busy === 'updating' ? 'updating' : runtime?.busy === 'deleting' ? 'deleting' : runtime ? (runtime.busy ? app.status : runtime.liveStatus()) : app.status;
    return {
      record: app,
      status,
      url: this.appUrl(app),
      backend: instance ? `http://${instance.host}:${instance.port}` : '',
      ...(runtime?.tcp.port ? { tcpPort: runtime.tcp.port } : {}),
      instances: this.records.instancesHere(app.id),
      slots: (runtime?.serving?.slots ?? []).map((candidate) => ({
        state: candidate.state,
        instance: candidate.instance?.id ?? '',
        inFlight: candidate.inFlight,
        since: candidate.stateSince,
        origin: candidate.origin,
      })),
      restarts: runtime?.restarts ?? 0,
      ...(runtime?.lastExit ? { lastExit: runtime.lastExit } : {}),
    };
  }

  /** The state of an app another node runs, as the store last heard it. */
  private async recordedStateOf(app: AppRecord): Promise<AppState> {
    return {
      record: app,
      status: app.status,
      url: this.appUrl(app),
      backend: '',
      ...(app.tcpPort ? { tcpPort: app.tcpPort } : {}),
      instances: await this.records.instancesOf(app.id),
      slots: [],
      restarts: 0,
    };
  }

  /** The state with each slot's instance asked whether it is frozen (cgroup freezer, QEMU run state). */
  async withFrozen(state: AppState): Promise<AppState> {
    const slots = this.runtimes.get(state.record.id)?.serving?.slots ?? [];
    const frozen = await Promise.all(slots.map((slot) => slot.instance?.isFrozen().catch(() => undefined)));
    return { ...state, slots: state.slots.map((view, index) => (frozen[index] === undefined ? view : { ...view, frozen: frozen[index] })) };
  }

  /** The raw address of a ready instance (M3O's Resolve), by app id or name; the app must run on this node. */
  async resolve(owner: AppOwner, idOrName: string): Promise<{ url: string; app: AppRecord; publicUrl: string }> {
    const mine = (app: AppRecord | undefined) => (app?.projectId === owner.projectId ? app : undefined);
    const app = mine(this.records.hereById(idOrName)) ?? this.records.hereByName(owner.projectId, idOrName);
    if (!app) {
      const elsewhere = mine(await this.records.findById(idOrName)) ?? (await this.records.findByName(owner.projectId, idOrName));
      throw elsewhere ? this.gateway.runElsewhere(elsewhere) : errors.notFound(`no app "${idOrName}" in project "${owner.projectName}"`);
    }
    const slot = this.runtimes.get(app.id)?.pickSlot();
    if (!slot?.instance) throw errors.unavailable(`app "${app.name}" has no instance ready`).withHeaders({ 'retry-after': '2' });
    return { url: `http://${slot.instance.host}:${slot.instance.port}`, app, publicUrl: this.appUrl(app) };
  }

  /** The latest lines of an app this node runs (`runningHere` says why another is not). */
  logs(owner: AppOwner, name: string, lines: number, stream?: AppLogStream): AppLogLine[] {
    const app = this.findHere(owner, name);
    return this.runtimes.get(app.id)?.tail(lines, stream) ?? [];
  }

  follow(owner: AppOwner, name: string, lines: number, signal: AbortSignal, stream?: AppLogStream): AsyncGenerator<AppLogLine> {
    const app = this.findHere(owner, name);
    const runtime = this.runtimes.get(app.id);
    if (!runtime) throw errors.unavailable(`app "${name}" is not running on this machine`);
    return runtime.follow(lines, signal, stream);
  }

  async reserve(owner: AppOwner, name: string): Promise<ReservationRecord> {
    const existing = await this.records.findByAddress(owner.projectName, name);
    if (existing && existing.projectId !== owner.projectId) throw errors.conflict(`the name "${name}" is taken by another account's project`);
    const reservation = await this.records.reservation(owner.projectName, name);
    if (reservation && reservation.projectId !== owner.projectId && reservation.expiresAt > Date.now())
      throw errors.conflict(`the name "${name}" is reserved by another project`);
    const now = Date.now();
    const record: ReservationRecord = { projectName: owner.projectName, name, projectId: owner.projectId, createdAt: now, expiresAt: now + RESERVATION_DAYS * 86_400_000 };
    await this.records.reserve(record);
    return record;
  }
}

/** The hidden env settings keep: the one given, else the one they had; none when emptied. */
function hiddenEnvOf(input: AppSettingsInput, base: AppSettings | undefined): Pick<AppSettings, 'hidden_env'> {
  const hidden = input.hidden_env ?? base?.hidden_env;
  return hidden && Object.keys(hidden.env).length > 0 ? { hidden_env: hidden } : {};
}

/** The start of an instance of this version of the app, as placement sees it. */
function startOf(app: Pick<AppRecord, 'projectId' | 'name' | 'version'>): StartRequest {
  return { projectId: app.projectId, app: app.name, version: app.version };
}
