/**
 * Runs the search contract against every adapter: SQLite (a temporary file) and PostgreSQL
 * (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite } from '../sqlite/database.js';
import { runSearchStoreContract } from './contract.js';
import { PostgresSearchStore } from './postgres.js';
import { SqliteSearchStore } from './sqlite.js';

runSearchStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-search-'));
  const db = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteSearchStore(db),
    async dispose() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runSearchStoreContract('postgres', async () => {
  const database = await createTestDatabase('search');
  const pool = new pg.Pool({ connectionString: database.url, max: 10 });
  const store = await PostgresSearchStore.open(pool);
  // A second open runs the migrations again: they must be idempotent.
  await PostgresSearchStore.open(pool);
  return {
    store,
    async dispose() {
      await pool.end();
      await database.drop();
    },
  };
});
