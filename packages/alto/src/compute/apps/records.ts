/**
 * @module compute/apps/records
 * What Alto remembers about apps, in the embedded SQLite database beside the images: each app
 * (per project; its name also unique per project name machine-wide, since `<app>.<project>` is
 * its address on the edge) with its image, resolved digest, settings, version and status; the
 * instances it ran (state, driver, start, exit code and reason); and names reserved for later.
 * A restart of Alto reads the apps back and starts those that were running.
 */
import type { SecretCipher } from '../../kit/master-key.js';
import { migrate, type SqliteDatabase } from '../../store/sqlite/database.js';
import type { HiddenEnv } from './secrets.js';

const MIGRATIONS = [
  `CREATE TABLE apps (
     id TEXT PRIMARY KEY,
     project_id TEXT NOT NULL,
     project_name TEXT NOT NULL,
     name TEXT NOT NULL,
     image TEXT NOT NULL,
     digest TEXT NOT NULL,
     settings TEXT NOT NULL,
     version INTEGER NOT NULL,
     status TEXT NOT NULL,
     error TEXT,
     tcp_port INTEGER,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     UNIQUE (project_id, name),
     UNIQUE (project_name, name));
   CREATE TABLE app_instances (
     id TEXT PRIMARY KEY,
     app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     version INTEGER NOT NULL,
     state TEXT NOT NULL,
     driver TEXT NOT NULL,
     started_at INTEGER NOT NULL,
     ended_at INTEGER,
     exit_code INTEGER,
     exit_reason TEXT);
   CREATE INDEX app_instances_app ON app_instances(app_id, started_at);
   CREATE TABLE app_reservations (
     project_name TEXT NOT NULL,
     name TEXT NOT NULL,
     project_id TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (project_name, name));`,
  // Issue 8: where a snapshotted (zero-memory) instance slot keeps its snapshot, so a restart of
  // Alto brings it back on the next request.
  `CREATE TABLE app_snapshots (
     app_id TEXT NOT NULL,
     version INTEGER NOT NULL,
     slot INTEGER NOT NULL,
     dir TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (app_id, version, slot));`,
];

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
}

export type AppStatus = 'deploying' | 'running' | 'crashing' | 'updating' | 'failed';

export interface AppRecord {
  id: string;
  projectId: string;
  projectName: string;
  name: string;
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

export type InstanceRecordState = 'starting' | 'running' | 'suspended' | 'snapshotted' | 'stopping' | 'exited' | 'failed';

/** A slot's snapshot on disk (issue 8: zero memory). */
export interface SnapshotRecord {
  appId: string;
  version: number;
  slot: number;
  dir: string;
  createdAt: number;
}

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

export interface ReservationRecord {
  projectName: string;
  name: string;
  projectId: string;
  createdAt: number;
  expiresAt: number;
}

interface AppRow {
  id: string;
  project_id: string;
  project_name: string;
  name: string;
  image: string;
  digest: string;
  settings: string;
  version: number;
  status: string;
  error: string | null;
  tcp_port: number | null;
  created_at: number;
  updated_at: number;
}

interface InstanceRow {
  id: string;
  app_id: string;
  version: number;
  state: string;
  driver: string;
  started_at: number;
  ended_at: number | null;
  exit_code: number | null;
  exit_reason: string | null;
}

/** Instance rows kept per app (the newest); older ones go as new ones are added. */
const KEPT_INSTANCE_ROWS = 50;

/**
 * Where a hidden env value is sealed: its app and variable, so a sealed value copied to another
 * row or variable does not open.
 */
function hiddenEnvField(appId: string, variable: string): string[] {
  return ['apps.hidden_env', appId, variable];
}

/** The app's settings as stored: hidden env values (secrets, a function's key) sealed with the master key. */
function storedSettings(app: AppRecord, cipher: SecretCipher | undefined): string {
  const hidden = app.settings.hidden_env;
  if (!hidden || !cipher) return JSON.stringify(app.settings);
  const env = Object.fromEntries(Object.entries(hidden.env).map(([name, value]) => [name, cipher.sealText(value, hiddenEnvField(app.id, name))]));
  return JSON.stringify({ ...app.settings, hidden_env: { ...hidden, env } });
}

function appOf(row: AppRow, cipher: SecretCipher | undefined): AppRecord {
  const settings = { pool: 0, links: [], ...(JSON.parse(row.settings) as Partial<AppSettings>) } as AppSettings;
  const hidden = settings.hidden_env;
  if (hidden && cipher) {
    // Values written before sealing come back as they are (and are sealed at the next save).
    hidden.env = Object.fromEntries(Object.entries(hidden.env).map(([name, value]) => [name, cipher.openText(value, hiddenEnvField(row.id, name))]));
  }
  return {
    id: row.id,
    projectId: row.project_id,
    projectName: row.project_name,
    name: row.name,
    image: row.image,
    digest: row.digest,
    settings,
    version: row.version,
    status: row.status as AppStatus,
    ...(row.error ? { error: row.error } : {}),
    ...(row.tcp_port ? { tcpPort: row.tcp_port } : {}),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function instanceOf(row: InstanceRow): InstanceRecord {
  return {
    id: row.id,
    appId: row.app_id,
    version: row.version,
    state: row.state as InstanceRecordState,
    driver: row.driver,
    startedAt: row.started_at,
    ...(row.ended_at !== null ? { endedAt: row.ended_at } : {}),
    ...(row.exit_reason !== null ? { exitCode: row.exit_code, exitReason: row.exit_reason } : {}),
  };
}

export class AppRecords {
  private readonly statements;

  /** `cipher` seals the hidden env (secrets, a function's key) at rest; without one it is kept as given. */
  constructor(
    db: SqliteDatabase,
    private readonly cipher?: SecretCipher,
  ) {
    migrate(db, 'apps', MIGRATIONS);
    this.statements = {
      insert: db.prepare(`INSERT INTO apps (id, project_id, project_name, name, image, digest, settings, version, status, error, tcp_port, created_at, updated_at)
        VALUES (@id, @project_id, @project_name, @name, @image, @digest, @settings, @version, @status, @error, @tcp_port, @created_at, @updated_at)`),
      update: db.prepare(`UPDATE apps SET image = @image, digest = @digest, settings = @settings, version = @version, status = @status,
        error = @error, tcp_port = @tcp_port, updated_at = @updated_at WHERE id = @id`),
      setStatus: db.prepare('UPDATE apps SET status = ?, error = ?, updated_at = ? WHERE id = ?'),
      setTcpPort: db.prepare('UPDATE apps SET tcp_port = ? WHERE id = ?'),
      get: db.prepare('SELECT * FROM apps WHERE id = ?'),
      byName: db.prepare('SELECT * FROM apps WHERE project_id = ? AND name = ?'),
      byAddress: db.prepare('SELECT * FROM apps WHERE project_name = ? AND name = ?'),
      ofProject: db.prepare('SELECT * FROM apps WHERE project_id = ? ORDER BY name'),
      all: db.prepare('SELECT * FROM apps ORDER BY created_at'),
      countOfProject: db.prepare('SELECT COUNT(*) AS count FROM apps WHERE project_id = ?'),
      usingDigest: db.prepare('SELECT COUNT(*) AS count FROM apps WHERE digest = ?'),
      remove: db.prepare('DELETE FROM apps WHERE id = ?'),
      insertInstance: db.prepare(`INSERT INTO app_instances (id, app_id, version, state, driver, started_at)
        VALUES (?, ?, ?, ?, ?, ?)`),
      updateInstance: db.prepare('UPDATE app_instances SET state = ?, ended_at = ?, exit_code = ?, exit_reason = ? WHERE id = ?'),
      setInstanceState: db.prepare('UPDATE app_instances SET state = ? WHERE id = ?'),
      instancesOf: db.prepare('SELECT * FROM app_instances WHERE app_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?'),
      trimInstances: db.prepare(`DELETE FROM app_instances WHERE app_id = ? AND id NOT IN
        (SELECT id FROM app_instances WHERE app_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ${KEPT_INSTANCE_ROWS})`),
      endOpenInstances: db.prepare(`UPDATE app_instances SET state = 'exited', ended_at = ?, exit_reason = COALESCE(exit_reason, ?)
        WHERE state IN ('starting', 'running', 'suspended', 'stopping')`),
      saveSnapshot: db.prepare(`INSERT INTO app_snapshots (app_id, version, slot, dir, created_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (app_id, version, slot) DO UPDATE SET dir = excluded.dir, created_at = excluded.created_at`),
      snapshotsOf: db.prepare('SELECT * FROM app_snapshots WHERE app_id = ? ORDER BY version, slot'),
      removeSnapshots: db.prepare('DELETE FROM app_snapshots WHERE app_id = ? AND version = ?'),
      removeAllSnapshots: db.prepare('DELETE FROM app_snapshots WHERE app_id = ?'),
      reservation: db.prepare('SELECT * FROM app_reservations WHERE project_name = ? AND name = ?'),
      upsertReservation: db.prepare(`INSERT INTO app_reservations (project_name, name, project_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (project_name, name) DO UPDATE SET project_id = excluded.project_id, created_at = excluded.created_at, expires_at = excluded.expires_at`),
      removeReservation: db.prepare('DELETE FROM app_reservations WHERE project_name = ? AND name = ?'),
      removeProject: db.prepare('DELETE FROM apps WHERE project_id = ?'),
      removeProjectReservations: db.prepare('DELETE FROM app_reservations WHERE project_id = ?'),
    };
  }

  insert(app: AppRecord): void {
    this.statements.insert.run(this.rowOf(app));
  }

  save(app: AppRecord): void {
    this.statements.update.run(this.rowOf(app));
  }

  private rowOf(app: AppRecord): AppRow {
    return {
      id: app.id,
      project_id: app.projectId,
      project_name: app.projectName,
      name: app.name,
      image: app.image,
      digest: app.digest,
      settings: storedSettings(app, this.cipher),
      version: app.version,
      status: app.status,
      error: app.error ?? null,
      tcp_port: app.tcpPort ?? null,
      created_at: app.createdAt,
      updated_at: app.updatedAt,
    };
  }

  setStatus(id: string, status: AppStatus, error: string | undefined, at = Date.now()): void {
    this.statements.setStatus.run(status, error ?? null, at, id);
  }

  setTcpPort(id: string, port: number): void {
    this.statements.setTcpPort.run(port, id);
  }

  get(id: string): AppRecord | undefined {
    const row = this.statements.get.get(id) as AppRow | undefined;
    return row ? appOf(row, this.cipher) : undefined;
  }

  findByName(projectId: string, name: string): AppRecord | undefined {
    const row = this.statements.byName.get(projectId, name) as AppRow | undefined;
    return row ? appOf(row, this.cipher) : undefined;
  }

  /** The app at `<name>.<projectName>` on the edge. */
  findByAddress(projectName: string, name: string): AppRecord | undefined {
    const row = this.statements.byAddress.get(projectName, name) as AppRow | undefined;
    return row ? appOf(row, this.cipher) : undefined;
  }

  listOfProject(projectId: string): AppRecord[] {
    return (this.statements.ofProject.all(projectId) as AppRow[]).map((row) => appOf(row, this.cipher));
  }

  list(): AppRecord[] {
    return (this.statements.all.all() as AppRow[]).map((row) => appOf(row, this.cipher));
  }

  countOfProject(projectId: string): number {
    return (this.statements.countOfProject.get(projectId) as { count: number }).count;
  }

  /** Whether any app still runs this image. */
  isDigestUsed(digest: string): boolean {
    return (this.statements.usingDigest.get(digest) as { count: number }).count > 0;
  }

  remove(id: string): void {
    this.statements.remove.run(id);
  }

  removeProject(projectId: string): void {
    this.statements.removeProject.run(projectId);
    this.statements.removeProjectReservations.run(projectId);
  }

  addInstance(instance: InstanceRecord): void {
    this.statements.insertInstance.run(instance.id, instance.appId, instance.version, instance.state, instance.driver, instance.startedAt);
    this.statements.trimInstances.run(instance.appId, instance.appId);
  }

  setInstanceState(id: string, state: InstanceRecordState): void {
    this.statements.setInstanceState.run(state, id);
  }

  endInstance(id: string, state: 'exited' | 'failed' | 'snapshotted', exit: { code: number | null; reason: string }, at = Date.now()): void {
    this.statements.updateInstance.run(state, at, exit.code, exit.reason, id);
  }

  /** The newest instances of an app first. */
  instancesOf(appId: string, limit = 20): InstanceRecord[] {
    return (this.statements.instancesOf.all(appId, limit) as InstanceRow[]).map(instanceOf);
  }

  /** At start: instances a previous run left marked as running ended with it. */
  endOpenInstances(reason: string, at = Date.now()): void {
    this.statements.endOpenInstances.run(at, reason);
  }

  saveSnapshot(snapshot: SnapshotRecord): void {
    this.statements.saveSnapshot.run(snapshot.appId, snapshot.version, snapshot.slot, snapshot.dir, snapshot.createdAt);
  }

  snapshotsOf(appId: string): SnapshotRecord[] {
    const rows = this.statements.snapshotsOf.all(appId) as { app_id: string; version: number; slot: number; dir: string; created_at: number }[];
    return rows.map((row) => ({ appId: row.app_id, version: row.version, slot: row.slot, dir: row.dir, createdAt: row.created_at }));
  }

  /** Forgets the snapshots of one version (or, without it, of every version) of an app. */
  removeSnapshots(appId: string, version?: number): void {
    if (version === undefined) this.statements.removeAllSnapshots.run(appId);
    else this.statements.removeSnapshots.run(appId, version);
  }

  reservation(projectName: string, name: string): ReservationRecord | undefined {
    const row = this.statements.reservation.get(projectName, name) as
      | { project_name: string; name: string; project_id: string; created_at: number; expires_at: number }
      | undefined;
    if (!row) return undefined;
    return { projectName: row.project_name, name: row.name, projectId: row.project_id, createdAt: row.created_at, expiresAt: row.expires_at };
  }

  reserve(reservation: ReservationRecord): void {
    this.statements.upsertReservation.run(reservation.projectName, reservation.name, reservation.projectId, reservation.createdAt, reservation.expiresAt);
  }

  removeReservation(projectName: string, name: string): void {
    this.statements.removeReservation.run(projectName, name);
  }
}
