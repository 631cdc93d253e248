/**
 * Runs the control store contract against every adapter: SQLite (two connections to one
 * temporary file) and PostgreSQL (two pools on a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end), each pair standing for two Alto processes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { runControlContract } from './control.contract.js';
import { PostgresControlStore } from './postgres/control.js';
import { createTestDatabase } from './postgres/test-database.js';
import { SqliteControlStore } from './sqlite/control.js';
import { openSqlite } from './sqlite/database.js';

runControlContract('sqlite, two connections to one file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-control-'));
  const first = openSqlite(join(dir, 'alto.db'));
  const second = openSqlite(join(dir, 'alto.db'));
  return {
    stores: [new SqliteControlStore(first), new SqliteControlStore(second)],
    async cleanup() {
      first.close();
      second.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runControlContract('postgres, two pools on one database', async () => {
  const database = await createTestDatabase('control');
  const pools = [new pg.Pool({ connectionString: database.url, max: 4 }), new pg.Pool({ connectionString: database.url, max: 4 })];
  // Both open at once: the migrations run once, under their advisory lock.
  const stores = await Promise.all(pools.map((pool) => PostgresControlStore.open(pool)));
  return {
    stores: [stores[0], stores[1]],
    async cleanup() {
      for (const store of stores) await store.close();
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
});
