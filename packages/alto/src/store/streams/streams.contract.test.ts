/**
 * Runs the stream store contract against every adapter: SQLite (a temporary file, opened twice
 * as two processes would) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end, with two pools).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite } from '../sqlite/database.js';
import { runStreamStoreContract } from './contract.js';
import { PostgresStreamStore } from './postgres.js';
import { SqliteStreamStore } from './sqlite.js';

runStreamStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-streams-'));
  const first = openSqlite(join(dir, 'alto.db'));
  const second = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteStreamStore(first),
    // Its migrations find the tables there: applied once.
    other: new SqliteStreamStore(second),
    async dispose() {
      first.close();
      second.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runStreamStoreContract('postgres', async () => {
  const database = await createTestDatabase('streams');
  const pools = [new pg.Pool({ connectionString: database.url, max: 10 }), new pg.Pool({ connectionString: database.url, max: 10 })];
  // Both open at once, as two processes starting together: the migrations apply once.
  const [store, other] = await Promise.all(pools.map((pool) => PostgresStreamStore.open(pool)));
  return {
    store,
    other,
    async dispose() {
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
});
