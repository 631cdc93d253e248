/**
 * @module store/apps/port
 * The apps storage port: every app of the cloud (per project and environment; its name also
 * unique per project name and environment, since `<app>.<project>` (the default environment) or
 * `<app>.<env>.<project>` is its address on the edge) with the node that runs it, its
 * image, settings, version and status; the instances it ran; where its snapshots are; and names
 * reserved for later. The store keeps an app's settings as the JSON text it is given (compute
 * seals the hidden env values in it with the master key first, compute/apps/records.ts). Apps
 * stay on the node that runs them: only that node writes their instances and snapshots.
 * Adapters: `sqlite.ts` (embedded) and `postgres.ts` (with `--store postgres://`).
 */

/** Instance rows kept per app (the newest); older ones go as new ones are added. */
export const KEPT_INSTANCE_ROWS = 50;

/** `node` of an app no node runs yet: recorded before nodes were, or copied by `alto migrate`. */
export const UNOWNED = '';

export type AppStatus = 'deploying' | 'running' | 'crashing' | 'updating' | 'failed';

/** An app as the store keeps it. */
export interface StoredApp {
  id: string;
  projectId: string;
  projectName: string;
  /** The environment of the project it belongs to (apps recorded before environments: the default one). */
  environment: string;
  name: string;
  /** The node that runs it (its `node-id`); UNOWNED until one adopts it. */
  node: string;
  image: string;
  digest: string;
  /** The app's settings as JSON, hidden env values already sealed. */
  settings: string;
  version: number;
  status: AppStatus;
  error?: string;
  /** The edge TCP port the app had (kept across restarts of Alto). */
  tcpPort?: number;
  createdAt: number;
  updatedAt: number;
}

export type InstanceRecordState = 'starting' | 'running' | 'suspended' | 'snapshotted' | 'stopping' | 'exited' | 'failed';

export interface InstanceRecord {
  id: string;
  appId: string;
  version: number;
  state: InstanceRecordState;
  driver: string;
  startedAt: number;
  endedAt?: number;
  exitCode?: number | null;
  exitReason?: string;
}

/** How an instance ended. */
export interface InstanceExit {
  code: number | null;
  reason: string;
}

/** A slot's snapshot on the disk of the app's node (issue 8: zero memory). */
export interface SnapshotRecord {
  appId: string;
  version: number;
  slot: number;
  dir: string;
  createdAt: number;
}

export interface ReservationRecord {
  projectName: string;
  name: string;
  projectId: string;
  createdAt: number;
  expiresAt: number;
}

export interface AppStore {
  readonly backend: 'sqlite' | 'postgres';
  /**
   * Records a new app; false (and nothing written) when its project's environment has an app of
   * that name or another app has its address, whichever process made that one.
   */
  insert(app: StoredApp): Promise<boolean>;
  /** Replaces an app's image, digest, settings, version, status, error, TCP port and update time. */
  save(app: StoredApp): Promise<void>;
  setStatus(id: string, status: AppStatus, error: string | undefined, at: number): Promise<void>;
  setTcpPort(id: string, port: number): Promise<void>;
  get(id: string): Promise<StoredApp | undefined>;
  findByName(projectId: string, environment: string, name: string): Promise<StoredApp | undefined>;
  /** The app at `<name>.<projectName>` (or `<name>.<environment>.<projectName>`) on the edge. */
  findByAddress(projectName: string, environment: string, name: string): Promise<StoredApp | undefined>;
  /** The apps of the project's environment (or, without one, of all its environments) by name (byte order), wherever they run. */
  listOfProject(projectId: string, environment?: string): Promise<StoredApp[]>;
  /** The apps a node runs, oldest first. */
  listOfNode(node: string): Promise<StoredApp[]>;
  /** Gives every UNOWNED app to `node`; each goes to one node however many ask at once. Returns how many it got. */
  adoptUnowned(node: string): Promise<number>;
  /**
   * Moves an app from the node that ran it (a lost node) to `to`, if `from` still runs it: of
   * any number of nodes asking at once, one gets it (true), the others false.
   */
  move(id: string, from: string, to: string): Promise<boolean>;
  /** Across all its environments (a project's limits count them all). */
  countOfProject(projectId: string): Promise<number>;
  /** Forgets an app with its instances and snapshot records. */
  remove(id: string): Promise<void>;
  /** Forgets every app of a project (with their instances and snapshot records) and its reservations. */
  removeProject(projectId: string): Promise<void>;

  /** Records an instance (nothing when its app is gone) and drops all but the app's newest KEPT_INSTANCE_ROWS. */
  addInstance(instance: InstanceRecord): Promise<void>;
  setInstanceState(id: string, state: InstanceRecordState): Promise<void>;
  endInstance(id: string, state: 'exited' | 'failed' | 'snapshotted', exit: InstanceExit, at: number): Promise<void>;
  /** The app's newest instances first (in the order they were added when they started at once). */
  instancesOf(appId: string, limit: number): Promise<InstanceRecord[]>;
  /** A node's start: the instances of its apps still marked starting, running, suspended or stopping ended with its last run. */
  endOpenInstances(node: string, reason: string, at: number): Promise<void>;

  /** Records a slot's snapshot, replacing the one that slot had. */
  saveSnapshot(snapshot: SnapshotRecord): Promise<void>;
  /** By version, then slot. */
  snapshotsOf(appId: string): Promise<SnapshotRecord[]>;
  /** Forgets the snapshots of one version (or, without it, of every version) of an app. */
  removeSnapshots(appId: string, version?: number): Promise<void>;

  reservation(projectName: string, name: string): Promise<ReservationRecord | undefined>;
  /** Creates or replaces the reservation of `<name>.<projectName>`. */
  reserve(reservation: ReservationRecord): Promise<void>;
}
