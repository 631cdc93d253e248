/**
 * @module compute/apps/records
 * What Alto remembers about apps, as the app manager uses it. The apps store (store/apps) holds
 * every app of the cloud with the node that runs it; this node keeps in memory the apps it runs
 * (by id, by name in their project and by `<app>.<project>` address, hidden env already open,
 * with their latest instances), loaded once at start and changed by every write it makes, so
 * resolving a request reads no database and opens no sealed value. Writes about one app reach
 * the store in the order they were made; those nobody has to wait for (status, TCP port,
 * instance lifecycle, snapshots) are logged when they fail. Hidden env values (named secrets, a
 * function's key) are sealed with the master key before they reach the store, so no copy of it
 * (the SQLite file, the PostgreSQL database) holds them in plaintext.
 */
import type { Logger } from '../../kit/logger.js';
import type { SecretCipher } from '../../kit/master-key.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import type {
  AppStatus,
  AppStore,
  InstanceExit,
  InstanceRecord,
  InstanceRecordState,
  ReservationRecord,
  SnapshotRecord,
  StoredApp,
} from '../../store/apps/port.js';
import type { HiddenEnv } from './secrets.js';

export type { AppStatus, InstanceRecord, InstanceRecordState, ReservationRecord, SnapshotRecord } from '../../store/apps/port.js';

/** A volume of an app: a folder kept under the data folder, mounted at `path`. */
export interface AppVolume {
  name: string;
  path: string;
}

/** Everything an app runs with besides its image. */
export interface AppSettings {
  /** Port the app serves HTTP on inside its sandbox (the readiness port too). */
  port: number;
  env_vars: Record<string, string>;
  /** MiB. */
  memory: number;
  cpus: number;
  min_instances: number;
  max_instances: number;
  concurrency: number;
  /** Seconds without a request before an instance is suspended (issue 8). */
  idle_timeout: number;
  /** Spare instances kept started and suspended beyond min_instances (issue 8's pool). */
  pool: number;
  volumes: AppVolume[];
  /** Container port exposed as a TCP port on the edge; 0 when the app speaks HTTP only. */
  tcp: number;
  /** The edge port asked for the TCP app (0: any free port). */
  tcp_port: number;
  outbound: boolean;
  /** Apps of the same project this app reaches by name (links.ts); absent in older records. */
  links: string[];
  /** Env whose values are never shown: named secrets, a function's key (secrets.ts); absent in older records. */
  hidden_env?: HiddenEnv;
  /** Updated whenever a new image is pushed to its tag in Alto's registry; absent when not. */
  follow_tag?: boolean;
  /** The signal a stop sends the app (`SIGINT`...); absent: the image's STOPSIGNAL, else SIGTERM. */
  stop_signal?: string;
  /** Seconds the app has to shut down after its stop signal; absent: the node's grace (5 s). */
  stop_timeout?: number;
  /** Replaces the image's ENTRYPOINT (and, as Docker does, its CMD unless `command` is given too); absent: the image's. */
  entrypoint?: string[];
  /** Replaces the image's CMD; absent: the image's. */
  command?: string[];
  /** A command whose success makes an instance ready (after its port listens); absent: the port alone. */
  health_check?: { test: string[]; interval: number; timeout: number; start_period: number; retries?: number };
  /** More host names for linked apps (alias -> linked app), in the instances' /etc/hosts. */
  link_aliases?: Record<string, string>;
  /** The template stack the app is a service of (compute/templates); absent for an app of its own. */
  stack?: { name: string; service: string; digest?: string };
}

export interface AppRecord {
  id: string;
  projectId: string;
  projectName: string;
  /** The project's environment it belongs to. */
  environment: string;
  name: string;
  /** The node that runs it (store/apps: UNOWNED until one adopts it). */
  node: string;
  image: string;
  digest: string;
  settings: AppSettings;
  version: number;
  status: AppStatus;
  error?: string;
  /** The edge TCP port the app had (kept across restarts of Alto). */
  tcpPort?: number;
  createdAt: number;
  updatedAt: number;
}

/** Instances Get, Status and List show per app (the store keeps more). */
const SHOWN_INSTANCES = 20;

/** An app this node runs, as memory holds it. */
interface LocalApp {
  record: AppRecord;
  /** Newest first, at most SHOWN_INSTANCES. */
  instances: InstanceRecord[];
}

/**
 * Where a hidden env value is sealed: its app and variable, so a sealed value copied to another
 * row or variable does not open.
 */
function hiddenEnvField(appId: string, variable: string): string[] {
  return ['apps.hidden_env', appId, variable];
}

const nameKey = (projectId: string, environment: string, name: string) => `${projectId}\n${environment}\n${name}`;
const addressKey = (projectName: string, environment: string, name: string) => `${name}.${environment}.${projectName}`;

export class AppRecords {
  private readonly byId = new Map<string, LocalApp>();
  private readonly byName = new Map<string, LocalApp>();
  private readonly byAddress = new Map<string, LocalApp>();
  /** Per app: the end of its queue of writes. */
  private readonly pending = new Map<string, Promise<void>>();

  /** `cipher` seals the hidden env at rest; without one it is kept as given. */
  constructor(
    private readonly store: AppStore,
    /** This node's id: the apps it runs are recorded under it. */
    readonly node: string,
    private readonly cipher: SecretCipher | undefined,
    private readonly log: Logger,
  ) {}

  /**
   * At start: takes the apps no node runs yet (from before nodes were recorded, or copied by
   * `alto migrate`), ends the instances this node's last run left open, and loads its apps.
   */
  async load(): Promise<AppRecord[]> {
    const adopted = await this.store.adoptUnowned(this.node);
    if (adopted > 0) this.log.info({ node: this.node, apps: adopted }, 'this node runs the apps no node ran yet');
    await this.store.endOpenInstances(this.node, 'Alto stopped', Date.now());
    for (const stored of await this.store.listOfNode(this.node)) {
      this.remember(this.open(stored), await this.store.instancesOf(stored.id, SHOWN_INSTANCES));
    }
    return this.here();
  }

  /** The ids of the apps the store says this node runs (compute/cluster: reconciling after a pause). */
  async recordedHere(): Promise<Set<string>> {
    return new Set((await this.store.listOfNode(this.node)).map((stored) => stored.id));
  }

  /** Forgets an app this node no longer runs (moved to another node), keeping its record in the store. */
  letGo(id: string): void {
    this.forget(id);
  }

  /**
   * An app just moved to this node: loaded as `load` loads its own. From a lost node
   * (compute/cluster/failover.ts), its instances there are recorded ended; handed off by a live
   * node (compute/cluster/drain.ts), that node still serves with them until this one is ready and
   * records their ends itself, so only the ended ones are shown here.
   */
  async adopt(id: string, from: 'lost' | 'handed-off' = 'lost'): Promise<AppRecord | undefined> {
    const stored = await this.store.get(id);
    if (!stored || stored.node !== this.node) return undefined;
    const record = this.open(stored);
    const instances = await this.store.instancesOf(stored.id, SHOWN_INSTANCES);
    const ended = (instance: InstanceRecord) => instance.endedAt !== undefined || instance.state === 'exited' || instance.state === 'failed' || instance.state === 'snapshotted';
    if (from === 'handed-off') {
      this.remember(record, instances.filter(ended));
      return record;
    }
    // Its instances on the lost node are recorded ended: that node no longer answers for them (if
    // it comes back, it stops them and records how they ended).
    const at = Date.now();
    const exit = { code: null, reason: 'its node was lost; the app moved to another node' };
    for (const instance of instances) {
      if (ended(instance)) continue;
      await this.store.endInstance(instance.id, 'failed', exit, at);
      Object.assign(instance, { state: 'failed', endedAt: at, exitCode: exit.code, exitReason: exit.reason });
    }
    this.remember(record, instances);
    return record;
  }

  // ---- this node's apps, from memory ----------------------------------------------------------

  /** The apps this node runs, oldest first. */
  here(): AppRecord[] {
    return [...this.byId.values()].map((local) => local.record);
  }

  hereById(id: string): AppRecord | undefined {
    return this.byId.get(id)?.record;
  }

  /** The app of this name in the project's environment (the default one when not named), if this node runs it. */
  hereByName(projectId: string, name: string, environment = DEFAULT_ENVIRONMENT): AppRecord | undefined {
    return this.byName.get(nameKey(projectId, environment, name))?.record;
  }

  /** The app at `<name>.<projectName>` (or `<name>.<environment>.<projectName>`) on the edge, if this node runs it. */
  hereByAddress(projectName: string, name: string, environment = DEFAULT_ENVIRONMENT): AppRecord | undefined {
    return this.byAddress.get(addressKey(projectName, environment, name))?.record;
  }

  /** Whether an app of this node still runs this image (its root filesystem is on this node). */
  isDigestUsedHere(digest: string): boolean {
    for (const { record } of this.byId.values()) if (record.digest === digest) return true;
    return false;
  }

  /** The latest instances of an app this node runs, newest first. */
  instancesHere(appId: string): InstanceRecord[] {
    return this.byId.get(appId)?.instances ?? [];
  }

  // ---- every app of the cloud -----------------------------------------------------------------

  async findById(id: string): Promise<AppRecord | undefined> {
    return this.hereById(id) ?? this.openIfAny(await this.store.get(id));
  }

  async findByName(projectId: string, name: string, environment = DEFAULT_ENVIRONMENT): Promise<AppRecord | undefined> {
    return this.hereByName(projectId, name, environment) ?? this.openIfAny(await this.store.findByName(projectId, environment, name));
  }

  async findByAddress(projectName: string, name: string, environment = DEFAULT_ENVIRONMENT): Promise<AppRecord | undefined> {
    return this.hereByAddress(projectName, name, environment) ?? this.openIfAny(await this.store.findByAddress(projectName, environment, name));
  }

  /** The apps of the project's environment by name, wherever they run (this node's as it holds them). */
  async listOfProject(projectId: string, environment = DEFAULT_ENVIRONMENT): Promise<AppRecord[]> {
    return (await this.store.listOfProject(projectId, environment)).map((stored) => this.hereById(stored.id) ?? this.open(stored));
  }

  countOfProject(projectId: string): Promise<number> {
    return this.store.countOfProject(projectId);
  }

  /** The latest instances of any app, newest first. */
  async instancesOf(appId: string): Promise<InstanceRecord[]> {
    const local = this.byId.get(appId);
    return local ? local.instances : this.store.instancesOf(appId, SHOWN_INSTANCES);
  }

  reservation(projectName: string, name: string): Promise<ReservationRecord | undefined> {
    return this.store.reservation(projectName, name);
  }

  reserve(reservation: ReservationRecord): Promise<void> {
    return this.store.reserve(reservation);
  }

  // ---- writes about this node's apps ----------------------------------------------------------

  /** Records a new app run by this node; false when its name or address was taken meanwhile. */
  async insert(app: AppRecord): Promise<boolean> {
    const inserted = await this.inOrder(app.id, () => this.store.insert(this.seal(app)));
    if (inserted) this.remember(app, []);
    return inserted;
  }

  /** Replaces the app (same id) with its next version. */
  async save(app: AppRecord): Promise<void> {
    const local = this.byId.get(app.id);
    if (local) this.remember(app, local.instances);
    await this.inOrder(app.id, () => this.store.save(this.seal(app)));
  }

  setStatus(app: AppRecord, status: AppStatus, error: string | undefined): Promise<void> {
    app.status = status;
    app.error = error;
    app.updatedAt = Date.now();
    return this.inBackground(app.id, 'the status of an app', () => this.store.setStatus(app.id, status, error, app.updatedAt));
  }

  setTcpPort(app: AppRecord, port: number): Promise<void> {
    app.tcpPort = port;
    return this.inBackground(app.id, 'the TCP port of an app', () => this.store.setTcpPort(app.id, port));
  }

  /** Forgets an app with its instances and snapshot records. */
  async remove(app: AppRecord): Promise<void> {
    this.forget(app.id);
    await this.inOrder(app.id, () => this.store.remove(app.id));
  }

  /** Forgets every app of a project, on every node, and its reservations. */
  async removeProject(projectId: string): Promise<void> {
    for (const app of this.here()) if (app.projectId === projectId) this.forget(app.id);
    await this.store.removeProject(projectId);
  }

  addInstance(instance: InstanceRecord): Promise<void> {
    const local = this.byId.get(instance.appId);
    if (local) local.instances = [{ ...instance }, ...local.instances].slice(0, SHOWN_INSTANCES);
    return this.inBackground(instance.appId, 'an instance start', () => this.store.addInstance(instance));
  }

  setInstanceState(appId: string, id: string, state: InstanceRecordState): Promise<void> {
    const shown = this.byId.get(appId)?.instances.find((instance) => instance.id === id);
    if (shown) shown.state = state;
    return this.inBackground(appId, 'an instance state', () => this.store.setInstanceState(id, state));
  }

  endInstance(appId: string, id: string, state: 'exited' | 'failed' | 'snapshotted', exit: InstanceExit): Promise<void> {
    const at = Date.now();
    const shown = this.byId.get(appId)?.instances.find((instance) => instance.id === id);
    if (shown) Object.assign(shown, { state, endedAt: at, exitCode: exit.code, exitReason: exit.reason });
    return this.inBackground(appId, 'an instance exit', () => this.store.endInstance(id, state, exit, at));
  }

  saveSnapshot(snapshot: SnapshotRecord): Promise<void> {
    return this.inBackground(snapshot.appId, 'a snapshot', () => this.store.saveSnapshot(snapshot));
  }

  /** The app's snapshots, once its earlier writes are in. */
  snapshotsOf(appId: string): Promise<SnapshotRecord[]> {
    return this.inOrder(appId, () => this.store.snapshotsOf(appId));
  }

  /** Forgets the snapshots of one version (or, without it, of every version) of an app. */
  removeSnapshots(appId: string, version?: number): Promise<void> {
    return this.inOrder(appId, () => this.store.removeSnapshots(appId, version));
  }

  /** Resolves once every write made so far (and any they led to) reached the store or failed. */
  async flushed(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending.values());
  }

  // ---- memory, order, sealing -----------------------------------------------------------------

  private remember(record: AppRecord, instances: InstanceRecord[]): void {
    const local: LocalApp = { record, instances };
    this.byId.set(record.id, local);
    this.byName.set(nameKey(record.projectId, record.environment, record.name), local);
    this.byAddress.set(addressKey(record.projectName, record.environment, record.name), local);
  }

  private forget(id: string): void {
    const local = this.byId.get(id);
    if (!local) return;
    this.byId.delete(id);
    this.byName.delete(nameKey(local.record.projectId, local.record.environment, local.record.name));
    this.byAddress.delete(addressKey(local.record.projectName, local.record.environment, local.record.name));
  }

  /** Runs `write` after the app's earlier writes; the answer is its own (its failure included). */
  private inOrder<T>(appId: string, write: () => Promise<T>): Promise<T> {
    const result = (this.pending.get(appId) ?? Promise.resolve()).then(write);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.pending.set(appId, settled);
    void settled.then(() => {
      if (this.pending.get(appId) === settled) this.pending.delete(appId);
    });
    return result;
  }

  /** A write in the app's order whose failure is logged: the answer never fails. */
  private inBackground(appId: string, what: string, write: () => Promise<void>): Promise<void> {
    return this.inOrder(appId, write).catch((error: Error) => this.log.warn({ err: error, app: appId }, `recording ${what} failed`));
  }

  /** The app as the store keeps it: hidden env values sealed with the master key. */
  private seal(app: AppRecord): StoredApp {
    const hidden = app.settings.hidden_env;
    let settings = app.settings;
    if (hidden && this.cipher) {
      const cipher = this.cipher;
      const env = Object.fromEntries(Object.entries(hidden.env).map(([name, value]) => [name, cipher.sealText(value, hiddenEnvField(app.id, name))]));
      // A file's field names its target, which no variable name can be.
      const files = hidden.files?.map((file) => ({ ...file, value: cipher.sealText(file.value, hiddenEnvField(app.id, `file:${file.target}`)) }));
      settings = { ...app.settings, hidden_env: { ...hidden, env, ...(files ? { files } : {}) } };
    }
    return { ...app, settings: JSON.stringify(settings) };
  }

  private open(stored: StoredApp): AppRecord {
    const settings = { pool: 0, links: [], ...(JSON.parse(stored.settings) as Partial<AppSettings>) } as AppSettings;
    const hidden = settings.hidden_env;
    if (hidden && this.cipher) {
      const cipher = this.cipher;
      // Values written before sealing come back as they are (and are sealed at the next save).
      hidden.env = Object.fromEntries(Object.entries(hidden.env).map(([name, value]) => [name, cipher.openText(value, hiddenEnvField(stored.id, name))]));
      if (hidden.files) hidden.files = hidden.files.map((file) => ({ ...file, value: cipher.openText(file.value, hiddenEnvField(stored.id, `file:${file.target}`)) }));
    }
    return { ...stored, settings };
  }

  private openIfAny(stored: StoredApp | undefined): AppRecord | undefined {
    return stored && this.open(stored);
  }
}
