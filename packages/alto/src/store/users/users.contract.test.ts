/**
 * Runs the user store contract against the embedded SQLite adapter and the PostgreSQL adapter
 * (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../postgres/test-database.js';
import { openSqlite, type SqliteDatabase } from '../sqlite/database.js';
import { runUserStoreContract } from './contract.js';
import { PostgresUserStore } from './postgres.js';
import { SqliteUserStore } from './sqlite.js';

runUserStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-users-'));
  const path = join(dir, 'alto.db');
  const db = openSqlite(path);
  const reopened: SqliteDatabase[] = [];
  return {
    store: new SqliteUserStore(db),
    async reopen() {
      const again = openSqlite(path);
      reopened.push(again);
      return new SqliteUserStore(again);
    },
    async cleanup() {
      for (const handle of [db, ...reopened]) handle.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runUserStoreContract('postgres', async () => {
  const database = await createTestDatabase('users');
  const pools = [new pg.Pool({ connectionString: database.url, max: 5 })];
  return {
    store: await PostgresUserStore.open(pools[0]),
    async reopen() {
      const pool = new pg.Pool({ connectionString: database.url, max: 2 });
      pools.push(pool);
      return PostgresUserStore.open(pool); // migrations run again: they must be idempotent
    },
    async cleanup() {
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
});
