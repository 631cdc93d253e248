/**
 * @module compute/apps/status
 * What app/Get, Status, List and Resolve answer: an app this node runs as its runtime makes it
 * (status, a ready instance's address, its slots and their lifecycle states, restarts, last exit),
 * one another node runs as the store last heard it, and the raw address of a ready instance.
 * It only reads: the records, the runtimes and the app's URL.
 */
import { errors, type AltoError } from '../../kit/errors.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import type { AppRecord, AppRecords, InstanceRecord } from './records.js';
import type { AppRuntime } from './runtime.js';
import type { SlotOrigin, SlotState } from './slot.js';

/** One instance position of an app as Status shows it. */
export interface SlotView {
  state: SlotState;
  instance: string;
  inFlight: number;
  /** What the app's health check said last, when it has one. */
  health?: 'healthy' | 'unhealthy';
  /** The node whose sandbox runs the instance, when it is not this one. */
  node?: string;
  since: number;
  /** How its instance came to be: booted, or restored from the version's ready snapshot or its own. */
  origin: SlotOrigin;
  /** The kernel's or VMM's answer (Status only). */
  frozen?: boolean;
}

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

/** Who asks: the project whose apps are shown. */
export interface ViewOwner {
  projectId: string;
  projectName: string;
  /** Absent: the default environment. */
  environment?: string;
}

export interface AppViewsOptions {
  records: AppRecords;
  /** The live apps of this node, by app id. */
  runtimes: ReadonlyMap<string, AppRuntime>;
  appUrl(app: Pick<AppRecord, 'name' | 'projectName' | 'environment'>): string;
  /** The answer for an app another node runs. */
  runElsewhere(app: AppRecord): AltoError;
}

export class AppViews {
  constructor(private readonly options: AppViewsOptions) {}

  /** An app this node runs, as Get shows it (from memory). */
  get(owner: ViewOwner, name: string): AppState {
    const app = this.options.records.hereByName(owner.projectId, name, owner.environment);
    if (!app) throw errors.notFound(`no app "${name}" in project "${owner.projectName}" on this node; app/List shows them`);
    return this.stateOf(app);
  }

  /** An app of the project wherever it runs: this node's live state, or another node's recorded one. */
  async describe(owner: ViewOwner, name: string): Promise<AppState> {
    const here = this.options.records.hereByName(owner.projectId, name, owner.environment);
    if (here) return this.stateOf(here);
    const app = await this.options.records.findByName(owner.projectId, name, owner.environment);
    if (!app) throw errors.notFound(`no app "${name}" in project "${owner.projectName}"; app/List shows them`);
    return this.recordedStateOf(app);
  }

  /** The apps of the project's environment, wherever they run. */
  async list(owner: ViewOwner): Promise<AppState[]> {
    const apps = await this.options.records.listOfProject(owner.projectId, owner.environment);
    return Promise.all(apps.map((app) => (this.options.records.hereById(app.id) ? this.stateOf(app) : this.recordedStateOf(app))));
  }

  /** The state of an app this node runs. */
  stateOf(stored: AppRecord): AppState {
    const runtime = this.options.runtimes.get(stored.id);
    const app = runtime?.app ?? stored;
    const slot = runtime?.pickSlot();
    const instance = slot?.instance;
    const status = runtime?.busy === 'updating' ? 'updating' : runtime?.busy === 'deleting' ? 'deleting' : runtime ? (runtime.busy ? app.status : runtime.liveStatus()) : app.status;
    return {
      record: app,
      status,
      url: this.options.appUrl(app),
      backend: instance ? `http://${instance.host}:${instance.port}` : '',
      ...(runtime?.tcp.port ? { tcpPort: runtime.tcp.port } : {}),
      instances: this.options.records.instancesHere(app.id),
      slots: (runtime?.serving?.slots ?? []).map((candidate) => ({
        state: candidate.state,
        instance: candidate.instance?.id ?? '',
        inFlight: candidate.inFlight,
        ...(candidate.instance?.health ? { health: candidate.instance.health } : {}),
        ...(candidate.instance?.node ? { node: candidate.instance.node } : {}),
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
      url: this.options.appUrl(app),
      backend: '',
      ...(app.tcpPort ? { tcpPort: app.tcpPort } : {}),
      instances: await this.options.records.instancesOf(app.id),
      slots: [],
      restarts: 0,
    };
  }

  /** The state with each slot's instance asked whether it is frozen (cgroup freezer, QEMU run state). */
  async withFrozen(state: AppState): Promise<AppState> {
    const slots = this.options.runtimes.get(state.record.id)?.serving?.slots ?? [];
    const frozen = await Promise.all(slots.map((slot) => slot.instance?.isFrozen().catch(() => undefined)));
    return { ...state, slots: state.slots.map((view, index) => (frozen[index] === undefined ? view : { ...view, frozen: frozen[index] })) };
  }

  /** The raw address of a ready instance (M3O's Resolve), by app id or name; the app must run on this node. */
  async resolve(owner: ViewOwner, idOrName: string): Promise<{ url: string; app: AppRecord; publicUrl: string }> {
    const { records } = this.options;
    const environment = owner.environment ?? DEFAULT_ENVIRONMENT;
    const mine = (app: AppRecord | undefined) => (app?.projectId === owner.projectId && app.environment === environment ? app : undefined);
    const app = mine(records.hereById(idOrName)) ?? records.hereByName(owner.projectId, idOrName, environment);
    if (!app) {
      const elsewhere = mine(await records.findById(idOrName)) ?? (await records.findByName(owner.projectId, idOrName, environment));
      throw elsewhere ? this.options.runElsewhere(elsewhere) : errors.notFound(`no app "${idOrName}" in project "${owner.projectName}"`);
    }
    const slot = this.options.runtimes.get(app.id)?.pickSlot();
    if (!slot?.instance) throw errors.unavailable(`app "${app.name}" has no instance ready`).withHeaders({ 'retry-after': '2' });
    return { url: `http://${slot.instance.host}:${slot.instance.port}`, app, publicUrl: this.options.appUrl(app) };
  }
}
