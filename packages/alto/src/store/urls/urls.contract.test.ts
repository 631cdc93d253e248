/**
 * Runs the short-URL contract against every adapter: SQLite (a temporary file) and PostgreSQL
 * (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite } from '../sqlite/database.js';
import { runUrlStoreContract } from './contract.js';
import { PostgresUrlStore } from './postgres.js';
import { SqliteUrlStore } from './sqlite.js';

runUrlStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-urls-'));
  const db = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteUrlStore(db),
    async dispose() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runUrlStoreContract('postgres', async () => {
  const database = await createTestDatabase('urls');
  const pool = new pg.Pool({ connectionString: database.url, max: 10 });
  const store = await PostgresUrlStore.open(pool);
  // A second open runs the migrations again: they must be idempotent.
  await PostgresUrlStore.open(pool);
  return {
    store,
    async dispose() {
      await pool.end();
      await database.drop();
    },
  };
});
