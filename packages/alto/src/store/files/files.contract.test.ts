/**
 * Runs the file store contract against every adapter: SQLite (a temporary file) and PostgreSQL
 * (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openSqlite } from '../sqlite/database.js';
import { runFileStoreContract } from './contract.js';
import { PostgresFileStore } from './postgres.js';
import { SqliteFileStore } from './sqlite.js';

runFileStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-files-'));
  const db = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteFileStore(db),
    async dispose() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runFileStoreContract('postgres', async () => {
  const adminUrl = process.env.ALTO_TEST_POSTGRES_URL;
  if (!adminUrl) {
    throw new Error('ALTO_TEST_POSTGRES_URL is not set: run `. scripts/test-services.sh` first to start the test PostgreSQL');
  }
  const database = `alto_test_files_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10 });
  const store = await PostgresFileStore.open(pool);
  // A second open runs the migrations again: they must be idempotent.
  await PostgresFileStore.open(pool);
  return {
    store,
    async dispose() {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${database}`);
      await admin.end();
    },
  };
});
