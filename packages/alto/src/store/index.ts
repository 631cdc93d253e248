/**
 * @module store
 * The factory that picks storage adapters by configuration. Today: the embedded adapters, one
 * SQLite file (WAL) in the data folder. Scale-out adapters plug in here behind the same ports.
 */
import { join } from 'node:path';
import type { ControlStore } from './control.js';
import type { UsageStore } from './usage.js';
import { openSqlite, type SqliteDatabase } from './sqlite/database.js';
import { SqliteControlStore } from './sqlite/control.js';
import { SqliteUsageStore } from './sqlite/usage.js';

export * from './control.js';
export * from './usage.js';
export { openSqlite, migrate, type SqliteDatabase } from './sqlite/database.js';

export interface Stores {
  /** What backs the stores, for `alto status`. */
  description: string;
  control: ControlStore;
  usage: UsageStore;
  /** The embedded SQLite database, for blocks that keep their data beside the control state. */
  sqlite: SqliteDatabase;
  close(): Promise<void>;
}

export function openEmbeddedStores(dataDir: string): Stores {
  const path = join(dataDir, 'alto.db');
  const sqlite = openSqlite(path);
  return {
    description: `sqlite (WAL) at ${path}`,
    control: new SqliteControlStore(sqlite),
    usage: new SqliteUsageStore(sqlite),
    sqlite,
    async close() {
      sqlite.close();
    },
  };
}
