/**
 * Runs the otp store contract against every adapter: SQLite (a temporary file, opened twice
 * as two processes would) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end, with two pools).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite } from '../sqlite/database.js';
import { runOtpStoreContract } from './contract.js';
import { PostgresOtpStore } from './postgres.js';
import { SqliteOtpStore } from './sqlite.js';

runOtpStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-otp-'));
  const first = openSqlite(join(dir, 'alto.db'));
  const second = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteOtpStore(first),
    // Its migrations find the tables there: applied once.
    other: new SqliteOtpStore(second),
    async dispose() {
      first.close();
      second.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runOtpStoreContract('postgres', async () => {
  const database = await createTestDatabase('otp');
  const pools = [new pg.Pool({ connectionString: database.url, max: 10 }), new pg.Pool({ connectionString: database.url, max: 10 })];
  // Both open at once, as two processes starting together: the migrations apply once.
  const [store, other] = await Promise.all(pools.map((pool) => PostgresOtpStore.open(pool)));
  return {
    store,
    other,
    async dispose() {
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
});
