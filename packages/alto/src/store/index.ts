/**
 * @module store
 * The factory that opens the storage backends by configuration: always the embedded SQLite
 * file (WAL) in the data folder; a PostgreSQL pool when `--store postgres://...` is given; a
 * Redis client when `--cache redis://...` is given. Each block's component picks its adapter
 * from what is open here, so every port has one interface and one adapter per backend.
 */
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { ControlStore } from './control.js';
import type { UsageStore } from './usage.js';
import { openSqlite, type SqliteDatabase } from './sqlite/database.js';
import { SqliteControlStore } from './sqlite/control.js';
import { SqliteUsageStore } from './sqlite/usage.js';

export * from './control.js';
export * from './usage.js';
export { openSqlite, migrate, type SqliteDatabase } from './sqlite/database.js';

export interface StoreOptions {
  dataDir: string;
  /** `postgres://...`: db and secret data on PostgreSQL. */
  postgresUrl?: string;
  /** `redis://...`: the cache on Redis. */
  redisUrl?: string;
}

export interface Stores {
  /** What backs the stores, for `alto status`. */
  description: string;
  control: ControlStore;
  usage: UsageStore;
  /** The embedded SQLite database, for blocks that keep their data beside the control state. */
  sqlite: SqliteDatabase;
  /** Open when Alto runs with `--store postgres://...`. */
  postgres?: pg.Pool;
  /** Open when Alto runs with `--cache redis://...`. */
  redis?: Redis;
  close(): Promise<void>;
}

/** Hides the password in a connection URL, for logs and status. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}

export async function openStores(options: StoreOptions): Promise<Stores> {
  const path = join(options.dataDir, 'alto.db');
  const sqlite = openSqlite(path);
  const parts = [`sqlite (WAL) at ${path}`];
  let postgres: pg.Pool | undefined;
  let redis: Redis | undefined;
  try {
    if (options.postgresUrl) {
      postgres = new pg.Pool({ connectionString: options.postgresUrl, max: 20 });
      // An idle client cut off by the server (a PostgreSQL restart) must not crash Alto: the
      // pool drops it and the next query opens a new connection.
      postgres.on('error', (error) => process.emitWarning(`postgres pool: ${error.message}`));
      await postgres.query('SELECT 1');
      parts.push(`postgres at ${redactUrl(options.postgresUrl)}`);
    }
    if (options.redisUrl) {
      redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
      await redis.connect();
      await redis.ping();
      parts.push(`redis at ${redactUrl(options.redisUrl)}`);
    }
  } catch (error) {
    sqlite.close();
    await postgres?.end();
    redis?.disconnect();
    throw new Error(`cannot open the configured store: ${(error as Error).message}`);
  }
  return {
    description: parts.join(', '),
    control: new SqliteControlStore(sqlite),
    usage: new SqliteUsageStore(sqlite),
    sqlite,
    postgres,
    redis,
    async close() {
      await postgres?.end();
      if (redis) await redis.quit().catch(() => redis?.disconnect());
      sqlite.close();
    },
  };
}
