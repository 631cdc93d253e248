/**
 * Runs the request-log contract against every adapter: SQLite (a temporary file, written in
 * process and from the writer thread the running instance uses) and PostgreSQL
 * (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite } from '../sqlite/database.js';
import { runRequestLogStoreContract } from './contract.js';
import { PostgresRequestLogStore } from './postgres.js';
import { SqliteRequestLogStore } from './sqlite.js';

runRequestLogStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-request-log-'));
  const db = openSqlite(join(dir, 'alto.db'));
  const store = new SqliteRequestLogStore(db);
  // A second open runs the migrations again: they are recorded, so applied once.
  new SqliteRequestLogStore(db);
  return {
    store,
    async dispose() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runRequestLogStoreContract('sqlite, written from its own thread', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-request-log-'));
  const db = openSqlite(join(dir, 'alto.db'));
  const store = new SqliteRequestLogStore(db, { writerThread: true });
  return {
    store,
    async dispose() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runRequestLogStoreContract('postgres', async () => {
  const database = await createTestDatabase('request_log');
  const pool = new pg.Pool({ connectionString: database.url, max: 10 });
  const store = await PostgresRequestLogStore.open(pool);
  // A second open runs the migrations again: they must be idempotent.
  await PostgresRequestLogStore.open(pool);
  return {
    store,
    async dispose() {
      await pool.end();
      await database.drop();
    },
  };
});
