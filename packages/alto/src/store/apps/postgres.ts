/**
 * @module store/apps/postgres
 * The PostgreSQL adapter of the apps port, for Alto running with `--store postgres://`: every
 * process of one cloud sees every app, and the unique constraints keep a name unique per project
 * and an address unique cloud-wide whichever process records it. Adopting unowned apps is one
 * conditional UPDATE, so under READ COMMITTED a second adopter finds them taken. Instances carry
 * a serial `seq` for the order SQLite gets from its rowid. Text uses the "C" collation so lists
 * come in the same order as on SQLite; times are BIGINT milliseconds.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
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

/** Applied in order, each once; see `PostgresAppStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_apps (
     id TEXT COLLATE "C" PRIMARY KEY,
     project_id TEXT COLLATE "C" NOT NULL,
     project_name TEXT COLLATE "C" NOT NULL,
     name TEXT COLLATE "C" NOT NULL,
     node TEXT COLLATE "C" NOT NULL,
     image TEXT NOT NULL,
     digest TEXT NOT NULL,
     settings TEXT NOT NULL,
     version INTEGER NOT NULL,
     status TEXT NOT NULL,
     error TEXT,
     tcp_port INTEGER,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     UNIQUE (project_id, name),
     UNIQUE (project_name, name));
   CREATE INDEX IF NOT EXISTS alto_apps_node ON alto_apps (node);
   CREATE TABLE IF NOT EXISTS alto_app_instances (
     id TEXT COLLATE "C" PRIMARY KEY,
     seq BIGSERIAL NOT NULL,
     app_id TEXT COLLATE "C" NOT NULL REFERENCES alto_apps(id) ON DELETE CASCADE,
     version INTEGER NOT NULL,
     state TEXT NOT NULL,
     driver TEXT NOT NULL,
     started_at BIGINT NOT NULL,
     ended_at BIGINT,
     exit_code INTEGER,
     exit_reason TEXT);
   CREATE INDEX IF NOT EXISTS alto_app_instances_app ON alto_app_instances (app_id, started_at);
   CREATE TABLE IF NOT EXISTS alto_app_snapshots (
     app_id TEXT COLLATE "C" NOT NULL,
     version INTEGER NOT NULL,
     slot INTEGER NOT NULL,
     dir TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     PRIMARY KEY (app_id, version, slot));
   CREATE TABLE IF NOT EXISTS alto_app_reservations (
     project_name TEXT COLLATE "C" NOT NULL,
     name TEXT COLLATE "C" NOT NULL,
     project_id TEXT COLLATE "C" NOT NULL,
     created_at BIGINT NOT NULL,
     expires_at BIGINT NOT NULL,
     PRIMARY KEY (project_name, name));`,
  // Issue 27: apps belong to an environment (those before: the default one, 'dev'); names are
  // unique per project and environment (the first migration's constraints have PostgreSQL's names).
  `ALTER TABLE alto_apps ADD COLUMN IF NOT EXISTS environment TEXT COLLATE "C" NOT NULL DEFAULT 'dev';
   ALTER TABLE alto_apps DROP CONSTRAINT IF EXISTS alto_apps_project_id_name_key;
   ALTER TABLE alto_apps DROP CONSTRAINT IF EXISTS alto_apps_project_name_name_key;
   ALTER TABLE alto_apps ADD CONSTRAINT alto_apps_name_in_environment UNIQUE (project_id, environment, name);
   ALTER TABLE alto_apps ADD CONSTRAINT alto_apps_address UNIQUE (project_name, environment, name);`,
];

/** BIGINT arrives as a string from pg. */
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
  created_at: string;
  updated_at: string;
}

interface InstanceRow {
  id: string;
  app_id: string;
  version: number;
  state: string;
  driver: string;
  started_at: string;
  ended_at: string | null;
  exit_code: number | null;
  exit_reason: string | null;
}

interface SnapshotRow {
  app_id: string;
  version: number;
  slot: number;
  dir: string;
  created_at: string;
}

interface ReservationRow {
  project_name: string;
  name: string;
  project_id: string;
  created_at: string;
  expires_at: string;
}

const APP_COLUMNS = 'id, project_id, project_name, environment, name, node, image, digest, settings, version, status, error, tcp_port, created_at, updated_at';
const INSTANCE_COLUMNS = 'id, app_id, version, state, driver, started_at, ended_at, exit_code, exit_reason';

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
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function instanceFromRow(row: InstanceRow): InstanceRecord {
  return {
    id: row.id,
    appId: row.app_id,
    version: row.version,
    state: row.state as InstanceRecordState,
    driver: row.driver,
    startedAt: Number(row.started_at),
    ...(row.ended_at !== null ? { endedAt: Number(row.ended_at) } : {}),
    ...(row.exit_reason !== null ? { exitCode: row.exit_code, exitReason: row.exit_reason } : {}),
  };
}

export class PostgresAppStore implements AppStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresAppStore> {
    await migratePostgres(pool, 'apps', MIGRATIONS);
    return new PostgresAppStore(pool);
  }

  async insert(app: StoredApp): Promise<boolean> {
    const result = await this.pool.query(
      `INSERT INTO alto_apps (${APP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING`,
      [app.id, app.projectId, app.projectName, app.environment, app.name, app.node, app.image, app.digest, app.settings, app.version, app.status, app.error ?? null, app.tcpPort ?? null, app.createdAt, app.updatedAt],
    );
    return result.rowCount === 1;
  }

  async save(app: StoredApp): Promise<void> {
    await this.pool.query(
      `UPDATE alto_apps SET image = $2, digest = $3, settings = $4, version = $5, status = $6, error = $7, tcp_port = $8, updated_at = $9 WHERE id = $1`,
      [app.id, app.image, app.digest, app.settings, app.version, app.status, app.error ?? null, app.tcpPort ?? null, app.updatedAt],
    );
  }

  async setStatus(id: string, status: AppStatus, error: string | undefined, at: number): Promise<void> {
    await this.pool.query('UPDATE alto_apps SET status = $2, error = $3, updated_at = $4 WHERE id = $1', [id, status, error ?? null, at]);
  }

  async setTcpPort(id: string, port: number): Promise<void> {
    await this.pool.query('UPDATE alto_apps SET tcp_port = $2 WHERE id = $1', [id, port]);
  }

  private async apps(where: string, params: unknown[]): Promise<StoredApp[]> {
    const result = await this.pool.query<AppRow>(`SELECT ${APP_COLUMNS} FROM alto_apps WHERE ${where}`, params);
    return result.rows.map(appFromRow);
  }

  async get(id: string): Promise<StoredApp | undefined> {
    return (await this.apps('id = $1', [id]))[0];
  }

  async findByName(projectId: string, environment: string, name: string): Promise<StoredApp | undefined> {
    return (await this.apps('project_id = $1 AND environment = $2 AND name = $3', [projectId, environment, name]))[0];
  }

  async findByAddress(projectName: string, environment: string, name: string): Promise<StoredApp | undefined> {
    return (await this.apps('project_name = $1 AND environment = $2 AND name = $3', [projectName, environment, name]))[0];
  }

  async listOfProject(projectId: string, environment?: string): Promise<StoredApp[]> {
    if (environment === undefined) return this.apps('project_id = $1 ORDER BY name, environment', [projectId]);
    return this.apps('project_id = $1 AND environment = $2 ORDER BY name', [projectId, environment]);
  }

  async listOfNode(node: string): Promise<StoredApp[]> {
    return this.apps('node = $1 ORDER BY created_at, id', [node]);
  }

  async adoptUnowned(node: string): Promise<number> {
    const result = await this.pool.query("UPDATE alto_apps SET node = $1 WHERE node = ''", [node]);
    return result.rowCount ?? 0;
  }

  async move(id: string, from: string, to: string): Promise<boolean> {
    // One conditional UPDATE: a second mover waits for the first's row lock, then finds the node changed.
    const result = await this.pool.query('UPDATE alto_apps SET node = $3 WHERE id = $1 AND node = $2', [id, from, to]);
    return result.rowCount === 1;
  }

  async countOfProject(projectId: string): Promise<number> {
    const result = await this.pool.query<{ count: string }>('SELECT count(*) FROM alto_apps WHERE project_id = $1', [projectId]);
    return Number(result.rows[0].count);
  }

  async remove(id: string): Promise<void> {
    // Instances go with the app (ON DELETE CASCADE).
    await inTransaction(this.pool, async (client) => {
      await client.query('DELETE FROM alto_app_snapshots WHERE app_id = $1', [id]);
      await client.query('DELETE FROM alto_apps WHERE id = $1', [id]);
    });
  }

  async removeProject(projectId: string): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await client.query('DELETE FROM alto_app_snapshots WHERE app_id IN (SELECT id FROM alto_apps WHERE project_id = $1)', [projectId]);
      await client.query('DELETE FROM alto_apps WHERE project_id = $1', [projectId]);
      await client.query('DELETE FROM alto_app_reservations WHERE project_id = $1', [projectId]);
    });
  }

  async addInstance(instance: InstanceRecord): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      // FOR SHARE holds off a delete of the app until the instance is in, so the delete takes it too.
      const inserted = await client.query(
        `INSERT INTO alto_app_instances (id, app_id, version, state, driver, started_at)
         SELECT $1, id, $2, $3, $4, $5 FROM alto_apps WHERE id = $6 FOR SHARE`,
        [instance.id, instance.version, instance.state, instance.driver, instance.startedAt, instance.appId],
      );
      if (inserted.rowCount === 0) return;
      await client.query(
        `DELETE FROM alto_app_instances WHERE app_id = $1 AND id NOT IN
           (SELECT id FROM alto_app_instances WHERE app_id = $1 ORDER BY started_at DESC, seq DESC LIMIT ${KEPT_INSTANCE_ROWS})`,
        [instance.appId],
      );
    });
  }

  async setInstanceState(id: string, state: InstanceRecordState): Promise<void> {
    await this.pool.query('UPDATE alto_app_instances SET state = $2 WHERE id = $1', [id, state]);
  }

  async endInstance(id: string, state: 'exited' | 'failed' | 'snapshotted', exit: InstanceExit, at: number): Promise<void> {
    await this.pool.query('UPDATE alto_app_instances SET state = $2, ended_at = $3, exit_code = $4, exit_reason = $5 WHERE id = $1', [
      id,
      state,
      at,
      exit.code,
      exit.reason,
    ]);
  }

  async instancesOf(appId: string, limit: number): Promise<InstanceRecord[]> {
    const result = await this.pool.query<InstanceRow>(
      `SELECT ${INSTANCE_COLUMNS} FROM alto_app_instances WHERE app_id = $1 ORDER BY started_at DESC, seq DESC LIMIT $2`,
      [appId, limit],
    );
    return result.rows.map(instanceFromRow);
  }

  async endOpenInstances(node: string, reason: string, at: number): Promise<void> {
    await this.pool.query(
      `UPDATE alto_app_instances SET state = 'exited', ended_at = $2, exit_reason = COALESCE(exit_reason, $3)
       WHERE state IN ('starting', 'running', 'suspended', 'stopping') AND app_id IN (SELECT id FROM alto_apps WHERE node = $1)`,
      [node, at, reason],
    );
  }

  async saveSnapshot(snapshot: SnapshotRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_app_snapshots (app_id, version, slot, dir, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (app_id, version, slot) DO UPDATE SET dir = excluded.dir, created_at = excluded.created_at`,
      [snapshot.appId, snapshot.version, snapshot.slot, snapshot.dir, snapshot.createdAt],
    );
  }

  async snapshotsOf(appId: string): Promise<SnapshotRecord[]> {
    const result = await this.pool.query<SnapshotRow>(
      'SELECT app_id, version, slot, dir, created_at FROM alto_app_snapshots WHERE app_id = $1 ORDER BY version, slot',
      [appId],
    );
    return result.rows.map((row) => ({ appId: row.app_id, version: row.version, slot: row.slot, dir: row.dir, createdAt: Number(row.created_at) }));
  }

  async removeSnapshots(appId: string, version?: number): Promise<void> {
    if (version === undefined) await this.pool.query('DELETE FROM alto_app_snapshots WHERE app_id = $1', [appId]);
    else await this.pool.query('DELETE FROM alto_app_snapshots WHERE app_id = $1 AND version = $2', [appId, version]);
  }

  async reservation(projectName: string, name: string): Promise<ReservationRecord | undefined> {
    const result = await this.pool.query<ReservationRow>(
      'SELECT project_name, name, project_id, created_at, expires_at FROM alto_app_reservations WHERE project_name = $1 AND name = $2',
      [projectName, name],
    );
    const row = result.rows[0];
    if (!row) return undefined;
    return { projectName: row.project_name, name: row.name, projectId: row.project_id, createdAt: Number(row.created_at), expiresAt: Number(row.expires_at) };
  }

  async reserve(reservation: ReservationRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_app_reservations (project_name, name, project_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (project_name, name) DO UPDATE SET project_id = excluded.project_id, created_at = excluded.created_at, expires_at = excluded.expires_at`,
      [reservation.projectName, reservation.name, reservation.projectId, reservation.createdAt, reservation.expiresAt],
    );
  }
}
