/**
 * @module compute/apps/manager
 * `AppManager`: runs apps. Run, Update (rolled out without downtime: the new version must be
 * ready before traffic moves; with volumes, old first, since a volume has one user at a time),
 * Delete, Get, Status, List and Logs; it starts recorded apps again when Alto starts and stops
 * them gracefully when it stops. It keeps one `AppRuntime` per app that runs (runtime.ts: its
 * versions, log and waiting requests; slot.ts: each instance position, restarting crashed
 * instances with back-off) and leaves each other job to a part of its own:
 * - gateway.ts: the edge's port (resolve the host's app, admit, acquire a ready instance, release);
 * - spec.ts: settings filled and checked, and the sandbox spec of instances, links included;
 * - rollout.ts: starting a version, and Update's rollout without downtime;
 * - status.ts: what Get, Status, List and Resolve answer;
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
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { SecretCipher } from '../../kit/master-key.js';
import type { AppEndpoint, AppGateway } from '../../platform/app-gateway.js';
import type { LimitSet } from '../../platform/limit-names.js';
import type { ComputeUsage } from '../../platform/metering.js';
import type { AppStore } from '../../store/apps/port.js';
import type { ImageManager } from '../images/manager.js';
import type { TagPushed } from '../images/repositories.js';
import type { Instance, SandboxChoice, SandboxSpec, SandboxStatus } from '../sandbox/index.js';
import { DEFAULT_STOP_GRACE_MS } from '../sandbox/port.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import { AppsGateway, type AppAddress } from './gateway.js';
import { ComputeMeter } from './metering.js';
import { AppLogStore, type LogQuery, type ProjectLogBounds, type StoredLogLine } from './log-store.js';
import { LocalPlacement, type RemotePlacer, type StartRequest } from './placement.js';
import { AppRecords, type AppRecord, type ReservationRecord } from './records.js';
import { DRAIN_MS, Rollouts, type UpdateInput } from './rollout.js';
import { AppRuntime, type AppLogLine, type AppLogStream } from './runtime.js';
import { RootFilesystems } from './rootfs.js';
import { AppScheduler, type Activation } from './scheduler.js';
import type { SlotState } from './slot.js';
import { AppSources } from './source-builder.js';
import { AppSpecs, assertLinks, settingsOf, startOf, type AppSettingsInput } from './spec.js';
import { AppViews, type AppState } from './status.js';

export type { AppAddress, AppResolver, ProxyTarget } from './gateway.js';
export { MAX_QUEUED_PER_APP } from './gateway.js';
export { DEFAULT_SNAPSHOT_AFTER_MS, type Activation } from './scheduler.js';
export type { AppState } from './status.js';

/** Who asks: the project of the key making the call. */
export interface AppOwner {
  projectId: string;
  projectName: string;
  /** The environment whose apps it acts on; absent: the default one. */
  environment?: string;
  /** Admin keys are not held to the project's compute caps. */
  admin: boolean;
}

export interface RunInput extends AppSettingsInput {
  name: string;
  image: string;
  /** Allow plain HTTP for this image's registry (loopback registries always may). */
  insecure?: boolean;
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
  /** Instances this node's sandboxes hold at once (ALTO_MAX_INSTANCES); past it, boots go to other nodes. 0 or none: no cap. */
  maxInstances?: number;
  /** Apps' logs on disk (log-store.ts): each app's size cap and retention, and the rate its output is kept at. */
  logs?: { maxBytesPerApp?: number; retentionMs?: number; linesPerSecond?: number; bytesPerSecond?: number };
  /** Projects' bounds of their apps' logs together (log_days, log_bytes), and a way to hear when one changes. */
  logBounds?: { boundsOf(projectId: string): Promise<ProjectLogBounds>; onChange(listener: (projectId: string) => void): void };
}

/** What an app being handed to another node is busy with (compute/cluster/drain.ts). */
const MOVING = 'moving to another node';

/** How long a reserved name stays the project's. */
const RESERVATION_DAYS = 365;

export class AppManager implements AppGateway {
  /** The edge's way in to this node's apps: resolve, admit, acquire, release. */
  readonly gateway: AppsGateway;
  /** Builds apps' images from source (repo or files); the functions register the builder. */
  readonly sources = new AppSources();
  private readonly runtimes = new Map<string, AppRuntime>();
  /** Stops listening for pushes to Alto's registry (apps that follow a tag). */
  private readonly unfollowTags: () => void;
  /** Where instance starts run (this node's sandbox driver). */
  private readonly placement: LocalPlacement;
  /** Images and their unpacked root filesystems. */
  private readonly rootfs: RootFilesystems;
  /** Running time of instances, and the projects' compute caps. */
  private readonly meter: ComputeMeter;
  /** The one listener of every app's slots: records, meters, sleeps, snapshots and scales instances. */
  private readonly scheduler: AppScheduler;
  /** Settings and the sandbox specs of instances. */
  private readonly specs: AppSpecs;
  /** Versions started, and traffic moved between them. */
  private readonly rollouts: Rollouts;
  /** What Get, Status, List and Resolve answer. */
  private readonly views: AppViews;
  private edge: EdgeAttachment | undefined;
  private closing = false;
  private readonly restoring: Promise<void>;
  private readonly graceMs: number;
  /** Apps' logs on disk, `<data>/logs/apps/<app id>/`. */
  private readonly logStore: AppLogStore;
  /** Images of instances this node hosts for other nodes' apps, with how many use each. */
  private readonly hostedDigests = new Map<string, number>();

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
    this.logStore = new AppLogStore({
      dir: join(options.dataDir, 'logs', 'apps'),
      node: options.node,
      ...options.logs,
      log: options.log,
      projectOf: async (appId) => (this.records.hereById(appId) ?? (await this.records.findById(appId)))?.projectId,
      boundsOf: options.logBounds ? (projectId) => options.logBounds!.boundsOf(projectId) : undefined,
    });
    if (options.logBounds) {
      options.logBounds.onChange((projectId) => void this.logStore.sweep(projectId));
      this.logStore.start();
    }
    this.placement = new LocalPlacement({ sandbox: options.sandbox, dataDir: options.dataDir, sandboxCacheDir: options.sandboxCacheDir, maxInstances: options.maxInstances, log: options.log });
    this.rootfs = new RootFilesystems({
      dataDir: options.dataDir,
      images: options.images,
      log: options.log,
      inUse: (digest) =>
        this.records.isDigestUsedHere(digest) || [...this.runtimes.values()].some((runtime) => runtime.app.digest === digest) || (this.hostedDigests.get(digest) ?? 0) > 0,
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
    this.specs = new AppSpecs({ dataDir: options.dataDir, records, placement: this.placement, gateway: this.gateway, platformPort: () => this.edge?.port });
    this.rollouts = new Rollouts({
      dataDir: options.dataDir,
      log: options.log,
      records,
      images: options.images,
      rootfs: this.rootfs,
      placement: this.placement,
      meter: this.meter,
      specs: this.specs,
      scheduler: this.scheduler,
      graceMs: this.graceMs,
      reopenTcp: async (runtime) => {
        await this.closeTcp(runtime);
        await this.openTcp(runtime);
      },
    });
    this.views = new AppViews({ records, runtimes: this.runtimes, appUrl: (app) => this.gateway.appUrl(app), runElsewhere: (app) => this.gateway.runElsewhere(app) });
    this.restoring = this.restore(recorded).catch((error) => options.log.error({ err: error }, 'starting recorded apps failed'));
    this.unfollowTags = options.images.repositories.onTagPushed((pushed) => void this.followTag(pushed));
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

  /** Whether the project's environment (the default one when not named) has an app of this name that this node runs. */
  hasApp(projectId: string, name: string, environment?: string): boolean {
    return this.gateway.hasApp(projectId, name, environment);
  }

  /** A ready instance of the project's app for one request from inside Alto (cron callbacks). */
  openApp(projectId: string, name: string, environment?: string): Promise<AppEndpoint> {
    return this.gateway.openApp(projectId, name, environment);
  }

  appUrl(app: Pick<AppRecord, 'name' | 'projectName'> & { environment?: string }): string {
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


  // ---- the serverless lifecycle (scheduler.ts) ----------------------------------------------

  /** Hears every activation (for /metrics). */
  onActivation(listener: (activation: Activation) => void): () => void {
    return this.scheduler.onActivation(listener);
  }

  /** Instance positions of serving versions, by lifecycle state (for /metrics). */
  /** Instances in this node's sandboxes (hosted ones included) and the node's cap, for its heartbeat. */
  sandboxCapacity(): { sandboxes: number; maxInstances: number } {
    return { sandboxes: this.placement.sandboxes, maxInstances: this.placement.maxInstances };
  }

  /** Boots past this node's cap go to other nodes through `remote` (compute/cluster/remote-instances.ts). */
  placeOnOtherNodes(remote: RemotePlacer | undefined): void {
    this.placement.placeOnOtherNodes(remote);
  }

  /**
   * Starts an instance of another node's app in this node's sandbox (compute/cluster/hosted-instances.ts,
   * which checked that node is the app's): the image pulled by digest when this node lacks it and
   * unpacked here, the spec's host paths made this node's (no volumes or links come this way).
   */
  async hostInstance(start: StartRequest, spec: SandboxSpec): Promise<Instance> {
    if (this.closing) throw errors.unavailable('Alto is stopping');
    const app = await this.records.findByName(start.projectId, start.app, start.environment);
    if (!app) throw errors.notFound(`no app "${start.app}" in project ${start.projectId}`);
    await this.imageHere({ ...app, digest: start.digest, image: start.image || app.image });
    const uses = (delta: number) => this.hostedDigests.set(start.digest, (this.hostedDigests.get(start.digest) ?? 0) + delta);
    uses(1);
    try {
      const rootfs = await this.rootfs.ensure(start.digest);
      const port = this.edge?.port;
      const { volumes: _volumes, links: _links, platform: _platform, ...rest } = spec;
      const instance = await this.placement.host({ ...rest, rootfs, ...(port !== undefined && _platform ? { platform: { port } } : {}) });
      void instance.exited.then(() => uses(-1));
      return instance;
    } catch (error) {
      uses(-1);
      throw error;
    }
  }

  instanceStates(): Partial<Record<SlotState, number>> {
    return this.scheduler.instanceStates();
  }

  /** Requests held by the edge now, waiting for an instance to wake, start or free up. */
  queueDepth(): number {
    return this.scheduler.queueDepth();
  }

  // ---- start and stop with Alto --------------------------------------------------------------

  /** Starts again the apps of this node a previous run of Alto left running (in the background). */
  private async restore(recorded: AppRecord[]): Promise<void> {
    const apps = recorded.filter((app) => app.status !== 'failed');
    if (apps.length === 0) return;
    this.options.log.info({ apps: apps.length, node: this.options.node }, 'starting the apps this node runs');
    for (const app of apps) {
      if (this.closing) return;
      await this.startRecorded(app);
    }
  }

  /**
   * Starts an app another node ran until it was lost (compute/cluster/failover.ts, which moved
   * its record here), as Alto's start starts its own: its image pulled by digest when this node
   * lacks it, its slots booted (snapshots stay on the node that took them).
   */
  async adopt(id: string): Promise<void> {
    if (this.closing || this.runtimes.has(id)) return;
    const app = await this.records.adopt(id);
    if (!app || app.status === 'failed') return;
    await this.imageHere(app);
    await this.startRecorded(app, false);
  }

  /**
   * Stops the apps this node runs that the store no longer records as this node's: while this
   * node did not heartbeat (a pause, a partition from the store), its lease lapsed and a live node
   * took them (compute/cluster/failover.ts), or another node deleted them with their project. Apps
   * being deployed, updated or deleted here, or recorded after the store was read, are left alone.
   */
  async reconcile(): Promise<string[]> {
    if (this.closing) return [];
    // Only apps known here before the read: their record was in the store by then (an app is
    // remembered once its insert succeeded), so missing from the read means moved or deleted.
    const known = this.records.here();
    const recorded = await this.records.recordedHere();
    const gone: string[] = [];
    for (const app of known) {
      if (recorded.has(app.id) || !this.records.hereById(app.id)) continue;
      const runtime = this.runtimes.get(app.id);
      if (runtime?.busy) continue;
      gone.push(app.id);
      this.options.log.warn({ app: app.name, project: app.projectName }, `app "${app.name}" is no longer this node's (another node runs it now): stopping it here`);
      await this.release(app.id);
    }
    return gone;
  }

  // ---- hand-offs between live nodes (compute/cluster/drain.ts) ---------------------------------

  /**
   * Holds an app this node runs for a move to another node: marked busy, so `reconcile` leaves
   * it alone once the store names its new node and Update and Delete answer 409 meanwhile, while
   * it keeps serving. False when this node does not run it or something else works on it.
   */
  holdForMove(id: string): boolean {
    const runtime = this.runtimes.get(id);
    if (this.closing || !runtime || !this.records.hereById(id) || runtime.busy) return false;
    runtime.busy = MOVING;
    return true;
  }

  /** The move did not happen: the app is this node's as before. */
  unhold(id: string): void {
    const runtime = this.runtimes.get(id);
    if (runtime?.busy !== MOVING) return;
    runtime.busy = undefined;
    this.scheduler.statusChanged(runtime);
  }

  /**
   * The app runs on its new node now: forgotten here first, so new requests for it go there
   * (compute/cluster/routing.ts), then its instances stop once the requests they hold ended
   * (each stop recorded, as reconcile does).
   */
  async release(id: string): Promise<void> {
    this.records.letGo(id);
    const runtime = this.runtimes.get(id);
    if (!runtime) return;
    await this.stopRuntime(runtime);
    this.options.images.removeUser(runtime.app.digest, `app:${id}`);
  }

  /** Closes the app's TCP port, stops its instances (the serving ones after their requests drain) and ends its runtime here. */
  private async stopRuntime(runtime: AppRuntime): Promise<void> {
    await this.closeTcp(runtime);
    await Promise.all([runtime.candidate?.stop(this.graceMs), runtime.serving?.stop(this.graceMs, DRAIN_MS)]);
    runtime.end();
    this.runtimes.delete(runtime.app.id);
  }

  /**
   * Starts an app a live node hands over (the store names this node already) and resolves once
   * its instances are ready. The gateway finds it at once, with no serving version yet, so its
   * requests wait meanwhile rather than fail. On failure it is forgotten here again and the error
   * thrown, for the caller to move it back.
   */
  async receive(id: string): Promise<void> {
    if (this.closing) throw errors.unavailable('Alto is stopping');
    if (this.runtimes.has(id)) throw errors.conflict(`app ${id} runs on this node already`);
    const app = await this.records.adopt(id, 'handed-off');
    if (!app) throw errors.conflict(`app ${id} is not recorded as this node's`);
    // A failed app has nothing to start: it is this node's now, as it is after a restart.
    if (app.status === 'failed') return;
    const runtime = this.runtimeOf(app);
    runtime.busy = 'arriving from another node';
    try {
      await this.imageHere(app);
      const rootfs = await this.rootfs.ensure(app.digest);
      const version = this.rollouts.newVersion(runtime, app, this.options.images.inspect(app.digest).spec, rootfs);
      runtime.candidate = version;
      await this.rollouts.startVersion(runtime, version);
      runtime.candidate = undefined;
      runtime.serve(version);
    } catch (error) {
      await runtime.candidate?.stop(this.graceMs);
      runtime.end();
      this.runtimes.delete(id);
      this.records.letGo(id);
      throw error;
    }
    this.options.images.addUser(app.digest, `app:${app.id}`);
    runtime.busy = undefined;
    this.scheduler.statusChanged(runtime);
    if (this.edge) void this.openTcp(runtime).catch(() => undefined);
  }

  /** The app's image on this node: pulled by digest from its registry when missing. */
  private async imageHere(app: AppRecord): Promise<void> {
    try {
      this.options.images.inspect(app.digest);
    } catch {
      const repository = app.image.replace(/@sha256:[a-f0-9]{64}$/, '').replace(/:[\w][\w.-]{0,127}$/, '');
      await this.rootfs.imageFor({ projectId: app.projectId, projectName: app.projectName, admin: false }, `${repository}@${app.digest}`, false, 'missing');
    }
  }

  /** Starts a recorded app of this node: its serving version, each slot booted or left snapshotted. */
  private async startRecorded(app: AppRecord, ownSnapshots = true): Promise<void> {
    const runtime = this.newRuntime(app);
    this.runtimes.set(app.id, runtime);
    try {
      // An app moved from a lost node boots afresh: its snapshots stayed on that node's disk.
      await this.rollouts.restart(runtime, ownSnapshots);
      if (this.edge) void this.openTcp(runtime).catch(() => undefined);
    } catch (error) {
      this.options.log.error({ err: error, app: app.name, project: app.projectName }, 'an app could not be started again');
      runtime.system(app.version, '', `could not start again after a restart of Alto: ${(error as Error).message}`);
      void this.records.setStatus(app, 'failed', (error as Error).message);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    this.unfollowTags();
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
    await this.logStore.close();
    // The instances' ends and the apps' last states reach the store before it closes.
    await this.records.flushed();
    await this.placement.close();
  }

  // ---- the app service's operations ----------------------------------------------------------

  /** A runtime for an app, writing its lines to its log on disk. */
  private newRuntime(app: AppRecord): AppRuntime {
    const { linesPerSecond, bytesPerSecond } = this.options.logs ?? {};
    return new AppRuntime(app, this.scheduler, this.options.log, this.meter, { writer: this.logStore.writer(app.id, app.projectId), linesPerSecond, bytesPerSecond });
  }

  private runtimeOf(app: AppRecord): AppRuntime {
    let runtime = this.runtimes.get(app.id);
    if (!runtime) {
      runtime = this.newRuntime(app);
      this.runtimes.set(app.id, runtime);
    }
    return runtime;
  }

  /** The project's app that this node runs; 404 otherwise (for callers that only ask this node). */
  private findHere(owner: AppOwner, name: string): AppRecord {
    const app = this.records.hereByName(owner.projectId, name, owner.environment);
    if (!app) throw errors.notFound(`no app "${name}" in ${placeOf(owner)} on this node; app/List shows them`);
    return app;
  }

  /**
   * The project's app, which this node must run to do what is asked: 404 when the project has
   * no such app, 503 naming the node when another node runs it.
   */
  async runningHere(owner: AppOwner, name: string): Promise<AppRecord> {
    const here = this.records.hereByName(owner.projectId, name, owner.environment);
    if (here) return here;
    const elsewhere = await this.records.findByName(owner.projectId, name, owner.environment);
    if (elsewhere) throw this.gateway.runElsewhere(elsewhere);
    throw errors.notFound(`no app "${name}" in ${placeOf(owner)}; app/List shows them`);
  }

  private claim(runtime: AppRuntime, what: string): void {
    if (runtime.busy) throw errors.conflict(`app "${runtime.app.name}" is busy (${runtime.busy}); try again when that is done`);
    runtime.busy = what;
  }

  /** The name is free cloud-wide: no app of the project has it, no other project has its address or reserved it. */
  private async assertNameFree(owner: AppOwner, name: string): Promise<void> {
    if (await this.records.findByName(owner.projectId, name, owner.environment)) throw errors.conflict(`app "${name}" already exists in ${placeOf(owner)}; use app/Update to change it`);
    const taken = await this.records.findByAddress(owner.projectName, name, owner.environment);
    if (taken) throw errors.conflict(`the address ${new URL(this.gateway.appUrl({ name, projectName: owner.projectName, environment: owner.environment })).hostname} belongs to another account's project; choose another name`);
    const reservation = await this.records.reservation(owner.projectName, name);
    if (reservation && reservation.projectId !== owner.projectId && reservation.expiresAt > Date.now())
      throw errors.conflict(`the name "${name}" is reserved by another project until ${new Date(reservation.expiresAt).toISOString()}`);
  }

  async run(owner: AppOwner, input: RunInput): Promise<AppState> {
    if (this.closing) throw errors.unavailable('Alto is stopping');
    await this.assertNameFree(owner, input.name);
    assertLinks(input.name, input.links);
    await this.specs.assertDriverSupports(startOf({ projectId: owner.projectId, name: input.name, version: 1 }), { outbound: input.outbound ?? false });
    const image = await this.rootfs.imageFor(owner, input.image, Boolean(input.insecure), 'missing');
    const settings = settingsOf(input, undefined, image.spec);
    await this.meter.assertCaps(owner, { apps: 1, instances: this.scheduler.positions(settings) });
    const rootfs = await this.rootfs.ensure(image.digest);
    await this.assertNameFree(owner, input.name);
    const now = Date.now();
    const app: AppRecord = {
      id: randomBytes(8).toString('hex'),
      projectId: owner.projectId,
      projectName: owner.projectName,
      environment: owner.environment ?? DEFAULT_ENVIRONMENT,
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
    if (!(await this.records.insert(app))) throw errors.conflict(`app "${input.name}" already exists in ${placeOf(owner)}, or its address is taken`);
    this.options.images.addUser(image.digest, `app:${app.id}`);
    const runtime = this.runtimeOf(app);
    runtime.busy = 'deploying';
    try {
      const version = this.rollouts.newVersion(runtime, app, image.spec, rootfs);
      runtime.candidate = version;
      await this.rollouts.startVersion(runtime, version);
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
    return this.views.stateOf(app);
  }

  /** Update, rolled out without downtime (rollout.ts); one change at a time per app. */
  async update(owner: AppOwner, input: UpdateInput): Promise<AppState> {
    if (this.closing) throw errors.unavailable('Alto is stopping');
    const current = await this.runningHere(owner, input.name);
    const runtime = this.runtimeOf(current);
    this.claim(runtime, 'updating');
    try {
      return this.views.stateOf(await this.rollouts.update(owner, runtime, current, input));
    } finally {
      runtime.busy = undefined;
      this.scheduler.statusChanged(runtime);
    }
  }

  /**
   * A push moved a tag of Alto's registry to a new image: this node's apps of that project that
   * follow the tag (`follow_tag`) update to it, rolled out as any Update (the old version serves
   * until the new one answers). An app busy with another change is left as it is, and says so.
   */
  private async followTag(pushed: TagPushed): Promise<void> {
    for (const runtime of this.runtimes.values()) {
      const app = runtime.app;
      if (app.projectId !== pushed.projectId || !app.settings.follow_tag || app.digest === pushed.digest || this.closing) continue;
      const owner: AppOwner = { projectId: app.projectId, projectName: app.projectName, environment: app.environment, admin: false };
      try {
        if (this.options.images.repositories.localReference(app.image, owner) !== pushed.reference) continue;
        this.options.log.info({ app: app.name, project: app.projectName, image: app.image, digest: pushed.digest }, 'a new image was pushed to the tag the app follows; updating');
        await this.update(owner, { name: app.name, image: app.image });
      } catch (error) {
        this.options.log.warn({ err: error, app: app.name, project: app.projectName, image: app.image }, 'updating an app to the image pushed to the tag it follows failed');
      }
    }
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
    await this.stopRuntime(runtime);
    await this.logStore.remove(app.id);
    await this.rollouts.dropSnapshots(app);
    await this.records.remove(app);
    this.options.images.removeUser(app.digest, `app:${app.id}`);
    await this.rootfs.dropIfUnused(app.digest);
    if (dropVolumes) rmSync(this.specs.volumesOf(app), { recursive: true, force: true });
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

  // ---- what Get, Status, List and Resolve answer (status.ts) ------------------------------------

  /** An app this node runs, as Get shows it (from memory). */
  get(owner: AppOwner, name: string): AppState {
    return this.views.get(owner, name);
  }

  /** An app of the project wherever it runs: this node's live state, or another node's recorded one. */
  describe(owner: AppOwner, name: string): Promise<AppState> {
    return this.views.describe(owner, name);
  }

  /** The project's apps, wherever they run. */
  list(owner: AppOwner): Promise<AppState[]> {
    return this.views.list(owner);
  }

  /** The state with each slot's instance asked whether it is frozen (cgroup freezer, QEMU run state). */
  withFrozen(state: AppState): Promise<AppState> {
    return this.views.withFrozen(state);
  }

  /** The raw address of a ready instance (M3O's Resolve), by app id or name; the app must run on this node. */
  resolve(owner: AppOwner, idOrName: string): Promise<{ url: string; app: AppRecord; publicUrl: string }> {
    return this.views.resolve(owner, idOrName);
  }

  /** The newest lines of an app this node runs that `query` accepts, from its log on disk (`runningHere` says why another is not). */
  logs(owner: AppOwner, name: string, query: LogQuery): Promise<StoredLogLine[]> {
    const app = this.findHere(owner, name);
    return this.logStore.read(app.id, query);
  }

  /** The lines `query` accepts from the app's log on disk, then each new one it accepts as it is written. */
  follow(owner: AppOwner, name: string, query: LogQuery, signal: AbortSignal): AsyncGenerator<AppLogLine> {
    const app = this.findHere(owner, name);
    const runtime = this.runtimes.get(app.id);
    if (!runtime) throw errors.unavailable(`app "${name}" is not running on this machine`);
    const text = query.text ?? ((line: string) => line);
    const include = (entry: AppLogLine) =>
      (!query.stream || entry.stream === query.stream) && (!query.instance || entry.instance === query.instance) && (!query.grep || text(entry.line).includes(query.grep)) && (query.until === undefined || entry.at <= query.until);
    return runtime.follow(() => this.logStore.read(app.id, query), include, signal);
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

/** How an answer names where an app is: its project, and its environment when not the default one. */
function placeOf(owner: AppOwner): string {
  const environment = owner.environment ?? DEFAULT_ENVIRONMENT;
  return environment === DEFAULT_ENVIRONMENT ? `project "${owner.projectName}"` : `environment "${environment}" of project "${owner.projectName}"`;
}
