/**
 * Runs the singleton contract against both adapters: SQLite (handles on one temporary file, each
 * with its own connection and a short lease) and PostgreSQL (handles on a database of its own
 * from ALTO_TEST_POSTGRES_URL, a crash being the server ending the holder's session).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite, type SqliteDatabase } from '../sqlite/database.js';
import { runSingletonContract } from './contract.js';
import type { SingletonLock } from './port.js';
import { PostgresSingletonLock } from './postgres.js';
import { SqliteSingletonLock } from './sqlite.js';

runSingletonContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-singletons-'));
  const files = new Map<SingletonLock, SqliteDatabase>();
  const leaseMs = 300;
  return {
    async open() {
      const db = openSqlite(join(dir, 'alto.db'));
      const lock = new SqliteSingletonLock(db, { leaseMs });
      files.set(lock, db);
      return lock;
    },
    async kill(lock) {
      files.get(lock)!.close();
    },
    watchMs: 3 * leaseMs,
    async dispose() {
      for (const db of files.values()) if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runSingletonContract('postgres', async () => {
  const database = await createTestDatabase('singletons');
  const admin = new pg.Pool({ connectionString: database.url, max: 1 });
  const sessions = new Map<SingletonLock, string>();
  return {
    async open() {
      const applicationName = `alto-singleton-test-${sessions.size}`;
      const lock = new PostgresSingletonLock(database.url, { applicationName });
      sessions.set(lock, applicationName);
      return lock;
    },
    async kill(lock) {
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [sessions.get(lock)]);
    },
    watchMs: 500,
    async dispose() {
      await admin.end();
      await database.drop();
    },
  };
});
