/**
 * @module store/nodes/sqlite
 * The embedded adapter of the nodes port: one table in the node's SQLite file. On the embedded
 * store there is one node (the processes sharing its data folder share its node id), so the
 * table holds that node's row, and any other ones the folder had under earlier names. A
 * heartbeat is one IMMEDIATE transaction, so a name is never taken twice.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { nameTaken, type ListedNode, type NodeHeartbeat, type NodeRemoval, type NodeStore, type StoredNode } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE alto_nodes (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     advertise_url TEXT NOT NULL,
     version TEXT NOT NULL,
     started_at INTEGER NOT NULL,
     heartbeat_at INTEGER NOT NULL,
     lease_expires_at INTEGER NOT NULL,
     left_at INTEGER,
     draining INTEGER NOT NULL DEFAULT 0,
     memory_total_mib INTEGER NOT NULL,
     memory_free_mib INTEGER NOT NULL,
     cpus INTEGER NOT NULL,
     driver TEXT NOT NULL,
     accelerator TEXT NOT NULL,
     instances TEXT NOT NULL) WITHOUT ROWID;`,
  'ALTER TABLE alto_nodes ADD COLUMN sandboxes INTEGER NOT NULL DEFAULT 0;',
  'ALTER TABLE alto_nodes ADD COLUMN max_instances INTEGER NOT NULL DEFAULT 0;',
];

interface NodeRow {
  id: string;
  name: string;
  advertise_url: string;
  version: string;
  started_at: number;
  heartbeat_at: number;
  lease_expires_at: number;
  left_at: number | null;
  draining: number;
  memory_total_mib: number;
  memory_free_mib: number;
  cpus: number;
  driver: string;
  accelerator: string;
  instances: string;
  sandboxes: number;
  max_instances: number;
}

const COLUMNS =
  'id, name, advertise_url, version, started_at, heartbeat_at, lease_expires_at, left_at, draining, memory_total_mib, memory_free_mib, cpus, driver, accelerator, instances, sandboxes, max_instances';

function nodeFromRow(row: NodeRow): StoredNode {
  return {
    id: row.id,
    name: row.name,
    advertiseUrl: row.advertise_url,
    version: row.version,
    startedAt: row.started_at,
    heartbeatAt: row.heartbeat_at,
    leaseExpiresAt: row.lease_expires_at,
    ...(row.left_at === null ? {} : { leftAt: row.left_at }),
    draining: row.draining === 1,
    capacity: {
      memoryTotalMiB: row.memory_total_mib,
      memoryFreeMiB: row.memory_free_mib,
      cpus: row.cpus,
      driver: row.driver,
      accelerator: row.accelerator,
      instances: JSON.parse(row.instances) as Record<string, number>,
      sandboxes: Number(row.sandboxes),
      maxInstances: Number(row.max_instances),
    },
  };
}

const listed = (row: NodeRow, now: number): ListedNode => ({ ...nodeFromRow(row), live: row.lease_expires_at > now });

function prepareStatements(db: SqliteDatabase) {
  return {
    byName: db.prepare(`SELECT ${COLUMNS} FROM alto_nodes WHERE name = ?`),
    byId: db.prepare(`SELECT ${COLUMNS} FROM alto_nodes WHERE id = ?`),
    deleteById: db.prepare('DELETE FROM alto_nodes WHERE id = ?'),
    upsert: db.prepare(
      `INSERT INTO alto_nodes (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, advertise_url = excluded.advertise_url, version = excluded.version,
         started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, lease_expires_at = excluded.lease_expires_at,
         left_at = NULL, memory_total_mib = excluded.memory_total_mib, memory_free_mib = excluded.memory_free_mib,
         cpus = excluded.cpus, driver = excluded.driver, accelerator = excluded.accelerator, instances = excluded.instances,
           sandboxes = excluded.sandboxes, max_instances = excluded.max_instances`,
    ),
    list: db.prepare(`SELECT ${COLUMNS} FROM alto_nodes ORDER BY name`),
    setDraining: db.prepare('UPDATE alto_nodes SET draining = ? WHERE name = ?'),
    leave: db.prepare('UPDATE alto_nodes SET lease_expires_at = MIN(lease_expires_at, ?), left_at = ? WHERE id = ?'),
    removeLapsed: db.prepare('DELETE FROM alto_nodes WHERE name = ? AND lease_expires_at <= ?'),
  };
}

export class SqliteNodeStore implements NodeStore {
  readonly backend = 'sqlite';
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'nodes', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  async heartbeat(node: NodeHeartbeat, now: number, leaseMs: number): Promise<StoredNode> {
    return this.db
      .transaction(() => {
        const holder = this.statements.byName.get(node.name) as NodeRow | undefined;
        if (holder && holder.id !== node.id) {
          if (holder.lease_expires_at > now) throw nameTaken(node.name, nodeFromRow(holder), now);
          this.statements.deleteById.run(holder.id);
        }
        const { capacity } = node;
        this.statements.upsert.run(
          node.id,
          node.name,
          node.advertiseUrl,
          node.version,
          node.startedAt,
          now,
          now + leaseMs,
          capacity.memoryTotalMiB,
          capacity.memoryFreeMiB,
          capacity.cpus,
          capacity.driver,
          capacity.accelerator,
          JSON.stringify(capacity.instances),
          capacity.sandboxes ?? 0,
          capacity.maxInstances ?? 0,
        );
        return nodeFromRow(this.statements.byId.get(node.id) as NodeRow);
      })
      .immediate();
  }

  async list(now: number): Promise<ListedNode[]> {
    return (this.statements.list.all() as NodeRow[]).map((row) => listed(row, now));
  }

  async find(name: string, now: number): Promise<ListedNode | undefined> {
    const row = this.statements.byName.get(name) as NodeRow | undefined;
    return row && listed(row, now);
  }

  async setDraining(name: string, draining: boolean, now: number): Promise<ListedNode | undefined> {
    this.statements.setDraining.run(draining ? 1 : 0, name);
    return this.find(name, now);
  }

  async leave(id: string, now: number): Promise<void> {
    this.statements.leave.run(now, now, id);
  }

  async remove(name: string, now: number): Promise<NodeRemoval> {
    return this.db
      .transaction((): NodeRemoval => {
        if (this.statements.removeLapsed.run(name, now).changes > 0) return 'removed';
        return this.statements.byName.get(name) ? 'live' : 'missing';
      })
      .immediate();
  }
}
