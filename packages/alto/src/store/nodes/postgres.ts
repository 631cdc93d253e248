/**
 * @module store/nodes/postgres
 * The PostgreSQL adapter of the nodes port, for Alto running with `--store postgres://`: the
 * nodes of one cloud are the rows of one table. A heartbeat is one transaction under an advisory
 * lock on the name it claims, so of nodes racing for one name exactly one gets it (the UNIQUE
 * index on the name stands behind it). Times are BIGINT milliseconds from the nodes' clocks.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
import { nameTaken, type ListedNode, type NodeHeartbeat, type NodeRemoval, type NodeStore, type StoredNode } from './port.js';

/** Applied in order, each once; see `PostgresNodeStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_nodes (
     id TEXT COLLATE "C" PRIMARY KEY,
     name TEXT COLLATE "C" NOT NULL UNIQUE,
     advertise_url TEXT NOT NULL,
     version TEXT NOT NULL,
     started_at BIGINT NOT NULL,
     heartbeat_at BIGINT NOT NULL,
     lease_expires_at BIGINT NOT NULL,
     left_at BIGINT,
     draining BOOLEAN NOT NULL DEFAULT FALSE,
     memory_total_mib INTEGER NOT NULL,
     memory_free_mib INTEGER NOT NULL,
     cpus INTEGER NOT NULL,
     driver TEXT NOT NULL,
     accelerator TEXT NOT NULL,
     instances TEXT NOT NULL);`,
  'ALTER TABLE alto_nodes ADD COLUMN IF NOT EXISTS sandboxes INTEGER NOT NULL DEFAULT 0, ADD COLUMN IF NOT EXISTS max_instances INTEGER NOT NULL DEFAULT 0;',
];

/** BIGINT arrives as a string from pg. */
interface NodeRow {
  id: string;
  name: string;
  advertise_url: string;
  version: string;
  started_at: string;
  heartbeat_at: string;
  lease_expires_at: string;
  left_at: string | null;
  draining: boolean;
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
    startedAt: Number(row.started_at),
    heartbeatAt: Number(row.heartbeat_at),
    leaseExpiresAt: Number(row.lease_expires_at),
    ...(row.left_at === null ? {} : { leftAt: Number(row.left_at) }),
    draining: row.draining,
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

const listed = (row: NodeRow, now: number): ListedNode => ({ ...nodeFromRow(row), live: Number(row.lease_expires_at) > now });

export class PostgresNodeStore implements NodeStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresNodeStore> {
    await migratePostgres(pool, 'nodes', MIGRATIONS);
    return new PostgresNodeStore(pool);
  }

  async heartbeat(node: NodeHeartbeat, now: number, leaseMs: number): Promise<StoredNode> {
    return inTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`alto.nodes.name:${node.name}`]);
      const holder = (await client.query<NodeRow>(`SELECT ${COLUMNS} FROM alto_nodes WHERE name = $1`, [node.name])).rows[0];
      if (holder && holder.id !== node.id) {
        if (Number(holder.lease_expires_at) > now) throw nameTaken(node.name, nodeFromRow(holder), now);
        await client.query('DELETE FROM alto_nodes WHERE id = $1', [holder.id]);
      }
      const { capacity } = node;
      const result = await client.query<NodeRow>(
        `INSERT INTO alto_nodes (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, FALSE, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, advertise_url = excluded.advertise_url, version = excluded.version,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, lease_expires_at = excluded.lease_expires_at,
           left_at = NULL, memory_total_mib = excluded.memory_total_mib, memory_free_mib = excluded.memory_free_mib,
           cpus = excluded.cpus, driver = excluded.driver, accelerator = excluded.accelerator, instances = excluded.instances,
           sandboxes = excluded.sandboxes, max_instances = excluded.max_instances
         RETURNING ${COLUMNS}`,
        [
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
        ],
      );
      return nodeFromRow(result.rows[0]);
    });
  }

  async list(now: number): Promise<ListedNode[]> {
    const result = await this.pool.query<NodeRow>(`SELECT ${COLUMNS} FROM alto_nodes ORDER BY name`);
    return result.rows.map((row) => listed(row, now));
  }

  async find(name: string, now: number): Promise<ListedNode | undefined> {
    const row = (await this.pool.query<NodeRow>(`SELECT ${COLUMNS} FROM alto_nodes WHERE name = $1`, [name])).rows[0];
    return row && listed(row, now);
  }

  async setDraining(name: string, draining: boolean, now: number): Promise<ListedNode | undefined> {
    const result = await this.pool.query<NodeRow>(`UPDATE alto_nodes SET draining = $1 WHERE name = $2 RETURNING ${COLUMNS}`, [draining, name]);
    return result.rows[0] && listed(result.rows[0], now);
  }

  async leave(id: string, now: number): Promise<void> {
    await this.pool.query('UPDATE alto_nodes SET lease_expires_at = LEAST(lease_expires_at, $1), left_at = $1 WHERE id = $2', [now, id]);
  }

  async remove(name: string, now: number): Promise<NodeRemoval> {
    const removed = await this.pool.query('DELETE FROM alto_nodes WHERE name = $1 AND lease_expires_at <= $2', [name, now]);
    if ((removed.rowCount ?? 0) > 0) return 'removed';
    const exists = await this.pool.query('SELECT 1 FROM alto_nodes WHERE name = $1', [name]);
    return exists.rowCount ? 'live' : 'missing';
  }
}
