/**
 * @module store/apps/sqlite
 * The embedded adapter of the apps port: the tables compute kept in the shared SQLite file before
 * it had a port (same migrations, so existing data folders keep their apps), plus each app's
 * node. Apps recorded before nodes were have none (UNOWNED) until a node adopts them.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import {
  KEPT_INSTANCE_ROWS,
  type AppStatus,
  type AppStore,
  type InstanceExit,
  type InstanceRecord,
  type InstanceRecordState,
  type ReservationRecord,
  type SnapshotRecord,
  type StoredApp,
} from './port.js';

/** Applied in order, each once (exported for the upgrade test beside this file). */
export const MIGRATIONS = [
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
  // The node that runs each app; '' (UNOWNED) for those recorded before.
  `ALTER TABLE apps ADD COLUMN node TEXT NOT NULL DEFAULT '';
   CREATE INDEX apps_node ON apps(node);`,
  // Issue 27: apps belong to an environment (those before: the default one, 'dev'); names are
  // unique per project and environment. SQLite cannot change a table's UNIQUE constraints, so
  // the table is made again; app_instances points at it, so it is kept aside and made again
  // after (dropping apps first would delete its instances through ON DELETE CASCADE).
  `CREATE TABLE apps_with_environment (
     id TEXT PRIMARY KEY,
     project_id TEXT NOT NULL,
     project_name TEXT NOT NULL,
     environment TEXT NOT NULL,
     name TEXT NOT NULL,
     node TEXT NOT NULL DEFAULT '',
     image TEXT NOT NULL,
     digest TEXT NOT NULL,
     settings TEXT NOT NULL,
     version INTEGER NOT NULL,
     status TEXT NOT NULL,
     error TEXT,
     tcp_port INTEGER,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     UNIQUE (project_id, environment, name),
     UNIQUE (project_name, environment, name));
   INSERT INTO apps_with_environment (id, project_id, project_name, environment, name, node, image, digest, settings, version, status, error, tcp_port, created_at, updated_at)
     SELECT id, project_id, project_name, 'dev', name, node, image, digest, settings, version, status, error, tcp_port, created_at, updated_at FROM apps;
   CREATE TABLE app_instances_kept AS SELECT rowid AS kept_rowid, * FROM app_instances;
   DROP TABLE app_instances;
   DROP TABLE apps;
   ALTER TABLE apps_with_environment RENAME TO apps;
   CREATE INDEX apps_node ON apps(node);
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
   INSERT INTO app_instances (rowid, id, app_id, version, state, driver, started_at, ended_at, exit_code, exit_reason)
     SELECT kept_rowid, id, app_id, version, state, driver, started_at, ended_at, exit_code, exit_reason FROM app_instances_kept;
   DROP TABLE app_instances_kept;
   CREATE INDEX app_instances_app ON app_instances(app_id, started_at);`,
];

interface AppRow {
  id: string;
  project_id: string;
  project_name: string;
  environment: string;
  name: string;
  node: string;
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

interface SnapshotRow {
  app_id: string;
  version: number;
  slot: number;
  dir: string;
  created_at: number;
}

interface ReservationRow {
  project_name: string;
  name: string;
  project_id: string;
  created_at: number;
  expires_at: number;
}

function appFromRow(row: AppRow): StoredApp {
  return {
    id: row.id,
    projectId: row.project_id,
    projectName: row.project_name,
    environment: row.environment,
    name: row.name,
    node: row.node,
    image: row.image,
    digest: row.digest,
    settings: row.settings,
    version: row.version,
    status: row.status as AppStatus,
    ...(row.error ? { error: row.error } : {}),
    ...(row.tcp_port ? { tcpPort: row.tcp_port } : {}),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function rowOf(app: StoredApp): AppRow {
  return {
    id: app.id,
    project_id: app.projectId,
    project_name: app.projectName,
    environment: app.environment,
    name: app.name,
    node: app.node,
    image: app.image,
    digest: app.digest,
    settings: app.settings,
    version: app.version,
    status: app.status,
    error: app.error ?? null,
    tcp_port: app.tcpPort ?? null,
    created_at: app.createdAt,
    updated_at: app.updatedAt,
  };
}

function instanceFromRow(row: InstanceRow): InstanceRecord {
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

function snapshotFromRow(row: SnapshotRow): SnapshotRecord {
  return { appId: row.app_id, version: row.version, slot: row.slot, dir: row.dir, createdAt: row.created_at };
}

const OPEN_STATES = "('starting', 'running', 'suspended', 'stopping')";

function prepareStatements(db: SqliteDatabase) {
  return {
    insert: db.prepare(`INSERT INTO apps (id, project_id, project_name, environment, name, node, image, digest, settings, version, status, error, tcp_port, created_at, updated_at)
      VALUES (@id, @project_id, @project_name, @environment, @name, @node, @image, @digest, @settings, @version, @status, @error, @tcp_port, @created_at, @updated_at)
      ON CONFLICT DO NOTHING`),
    update: db.prepare(`UPDATE apps SET image = @image, digest = @digest, settings = @settings, version = @version, status = @status,
      error = @error, tcp_port = @tcp_port, updated_at = @updated_at WHERE id = @id`),
    setStatus: db.prepare('UPDATE apps SET status = ?, error = ?, updated_at = ? WHERE id = ?'),
    setTcpPort: db.prepare('UPDATE apps SET tcp_port = ? WHERE id = ?'),
    get: db.prepare('SELECT * FROM apps WHERE id = ?'),
    byName: db.prepare('SELECT * FROM apps WHERE project_id = ? AND environment = ? AND name = ?'),
    byAddress: db.prepare('SELECT * FROM apps WHERE project_name = ? AND environment = ? AND name = ?'),
    ofProject: db.prepare('SELECT * FROM apps WHERE project_id = ? ORDER BY name, environment'),
    ofEnvironment: db.prepare('SELECT * FROM apps WHERE project_id = ? AND environment = ? ORDER BY name'),
    ofNode: db.prepare('SELECT * FROM apps WHERE node = ? ORDER BY created_at, id'),
    adopt: db.prepare("UPDATE apps SET node = ? WHERE node = ''"),
    move: db.prepare('UPDATE apps SET node = ? WHERE id = ? AND node = ?'),
    countOfProject: db.prepare('SELECT COUNT(*) FROM apps WHERE project_id = ?').pluck(),
    remove: db.prepare('DELETE FROM apps WHERE id = ?'),
    removeSnapshotsOfApp: db.prepare('DELETE FROM app_snapshots WHERE app_id = ?'),
    removeProjectSnapshots: db.prepare('DELETE FROM app_snapshots WHERE app_id IN (SELECT id FROM apps WHERE project_id = ?)'),
    removeProject: db.prepare('DELETE FROM apps WHERE project_id = ?'),
    removeProjectReservations: db.prepare('DELETE FROM app_reservations WHERE project_id = ?'),
    insertInstance: db.prepare(`INSERT INTO app_instances (id, app_id, version, state, driver, started_at)
      SELECT ?, id, ?, ?, ?, ? FROM apps WHERE id = ?`),
    trimInstances: db.prepare(`DELETE FROM app_instances WHERE app_id = ? AND id NOT IN
      (SELECT id FROM app_instances WHERE app_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ${KEPT_INSTANCE_ROWS})`),
    setInstanceState: db.prepare('UPDATE app_instances SET state = ? WHERE id = ?'),
    endInstance: db.prepare('UPDATE app_instances SET state = ?, ended_at = ?, exit_code = ?, exit_reason = ? WHERE id = ?'),
    instancesOf: db.prepare('SELECT * FROM app_instances WHERE app_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?'),
    endOpenInstances: db.prepare(`UPDATE app_instances SET state = 'exited', ended_at = ?, exit_reason = COALESCE(exit_reason, ?)
      WHERE state IN ${OPEN_STATES} AND app_id IN (SELECT id FROM apps WHERE node = ?)`),
    saveSnapshot: db.prepare(`INSERT INTO app_snapshots (app_id, version, slot, dir, created_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (app_id, version, slot) DO UPDATE SET dir = excluded.dir, created_at = excluded.created_at`),
    snapshotsOf: db.prepare('SELECT * FROM app_snapshots WHERE app_id = ? ORDER BY version, slot'),
    removeSnapshotsOfVersion: db.prepare('DELETE FROM app_snapshots WHERE app_id = ? AND version = ?'),
    reservation: db.prepare('SELECT * FROM app_reservations WHERE project_name = ? AND name = ?'),
    reserve: db.prepare(`INSERT INTO app_reservations (project_name, name, project_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (project_name, name) DO UPDATE SET project_id = excluded.project_id, created_at = excluded.created_at, expires_at = excluded.expires_at`),
  };
}

export class SqliteAppStore implements AppStore {
  readonly backend = 'sqlite';
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'apps', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  async insert(app: StoredApp): Promise<boolean> {
    return this.statements.insert.run(rowOf(app)).changes === 1;
  }

  async save(app: StoredApp): Promise<void> {
    this.statements.update.run(rowOf(app));
  }

  async setStatus(id: string, status: AppStatus, error: string | undefined, at: number): Promise<void> {
    this.statements.setStatus.run(status, error ?? null, at, id);
  }

  async setTcpPort(id: string, port: number): Promise<void> {
    this.statements.setTcpPort.run(port, id);
  }

  async get(id: string): Promise<StoredApp | undefined> {
    const row = this.statements.get.get(id) as AppRow | undefined;
    return row && appFromRow(row);
  }

  async findByName(projectId: string, environment: string, name: string): Promise<StoredApp | undefined> {
    const row = this.statements.byName.get(projectId, environment, name) as AppRow | undefined;
    return row && appFromRow(row);
  }

  async findByAddress(projectName: string, environment: string, name: string): Promise<StoredApp | undefined> {
    const row = this.statements.byAddress.get(projectName, environment, name) as AppRow | undefined;
    return row && appFromRow(row);
  }

  async listOfProject(projectId: string, environment?: string): Promise<StoredApp[]> {
    const rows = environment === undefined ? this.statements.ofProject.all(projectId) : this.statements.ofEnvironment.all(projectId, environment);
    return (rows as AppRow[]).map(appFromRow);
  }

  async listOfNode(node: string): Promise<StoredApp[]> {
    return (this.statements.ofNode.all(node) as AppRow[]).map(appFromRow);
  }

  async adoptUnowned(node: string): Promise<number> {
    return this.statements.adopt.run(node).changes;
  }

  async move(id: string, from: string, to: string): Promise<boolean> {
    return this.statements.move.run(to, id, from).changes === 1;
  }

  async countOfProject(projectId: string): Promise<number> {
    return this.statements.countOfProject.get(projectId) as number;
  }

  async remove(id: string): Promise<void> {
    // Instances go with the app (ON DELETE CASCADE).
    this.db.transaction(() => {
      this.statements.removeSnapshotsOfApp.run(id);
      this.statements.remove.run(id);
    })();
  }

  async removeProject(projectId: string): Promise<void> {
    this.db.transaction(() => {
      this.statements.removeProjectSnapshots.run(projectId);
      this.statements.removeProject.run(projectId);
      this.statements.removeProjectReservations.run(projectId);
    })();
  }

  async addInstance(instance: InstanceRecord): Promise<void> {
    this.db.transaction(() => {
      const { id, appId, version, state, driver, startedAt } = instance;
      if (this.statements.insertInstance.run(id, version, state, driver, startedAt, appId).changes === 0) return;
      this.statements.trimInstances.run(appId, appId);
    })();
  }

  async setInstanceState(id: string, state: InstanceRecordState): Promise<void> {
    this.statements.setInstanceState.run(state, id);
  }

  async endInstance(id: string, state: 'exited' | 'failed' | 'snapshotted', exit: InstanceExit, at: number): Promise<void> {
    this.statements.endInstance.run(state, at, exit.code, exit.reason, id);
  }

  async instancesOf(appId: string, limit: number): Promise<InstanceRecord[]> {
    return (this.statements.instancesOf.all(appId, limit) as InstanceRow[]).map(instanceFromRow);
  }

  async endOpenInstances(node: string, reason: string, at: number): Promise<void> {
    this.statements.endOpenInstances.run(at, reason, node);
  }

  async saveSnapshot(snapshot: SnapshotRecord): Promise<void> {
    this.statements.saveSnapshot.run(snapshot.appId, snapshot.version, snapshot.slot, snapshot.dir, snapshot.createdAt);
  }

  async snapshotsOf(appId: string): Promise<SnapshotRecord[]> {
    return (this.statements.snapshotsOf.all(appId) as SnapshotRow[]).map(snapshotFromRow);
  }

  async removeSnapshots(appId: string, version?: number): Promise<void> {
    if (version === undefined) this.statements.removeSnapshotsOfApp.run(appId);
    else this.statements.removeSnapshotsOfVersion.run(appId, version);
  }

  async reservation(projectName: string, name: string): Promise<ReservationRecord | undefined> {
    const row = this.statements.reservation.get(projectName, name) as ReservationRow | undefined;
    if (!row) return undefined;
    return { projectName: row.project_name, name: row.name, projectId: row.project_id, createdAt: row.created_at, expiresAt: row.expires_at };
  }

  async reserve(reservation: ReservationRecord): Promise<void> {
    const { projectName, name, projectId, createdAt, expiresAt } = reservation;
    this.statements.reserve.run(projectName, name, projectId, createdAt, expiresAt);
  }
}
