/**
 * Runs the search contract against every adapter: SQLite (a temporary file) and PostgreSQL
 * (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
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
  const adminSearch = process.env.ALTO_TEST_POSTGRES_URL;
  if (!adminSearch) {
    throw new Error('ALTO_TEST_POSTGRES_URL is not set: run `. scripts/test-services.sh` first to start the test PostgreSQL');
  }
  const database = `alto_test_search_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminSearch });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(adminSearch);
  url.pathname = `/${database}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10 });
  const store = await PostgresSearchStore.open(pool);
  // A second open runs the migrations again: they must be idempotent.
  await PostgresSearchStore.open(pool);
  return {
    store,
    async dispose() {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${database}`);
      await admin.end();
    },
  };
});
