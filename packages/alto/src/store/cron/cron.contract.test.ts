/**
 * Runs the cron store contract against every adapter: SQLite (a temporary file, opened twice
 * as two processes would) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end, with two pools).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite } from '../sqlite/database.js';
import { runCronStoreContract } from './contract.js';
import { PostgresCronStore } from './postgres.js';
import { SqliteCronStore } from './sqlite.js';

runCronStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-cron-'));
  const first = openSqlite(join(dir, 'alto.db'));
  const second = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteCronStore(first),
    // Its migrations find the tables there: applied once.
    other: new SqliteCronStore(second),
    async dispose() {
      first.close();
      second.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runCronStoreContract('postgres', async () => {
  const database = await createTestDatabase('cron');
  const pools = [new pg.Pool({ connectionString: database.url, max: 10 }), new pg.Pool({ connectionString: database.url, max: 10 })];
  // Both open at once, as two processes starting together: the migrations apply once.
  const [store, other] = await Promise.all(pools.map((pool) => PostgresCronStore.open(pool)));
  return {
    store,
    other,
    async dispose() {
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
});
