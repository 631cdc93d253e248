/**
 * @module store/two-processes
 * For contract suites: one adapter opened twice on the same data, as two Alto processes would
 * open it, on SQLite (a temporary file opened by two connections) and on PostgreSQL (a database
 * of its own from ALTO_TEST_POSTGRES_URL with two pools, both stores opened at once so their
 * migrations race as they would at a cloud's start). `dispose()` closes both and removes the data.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from './postgres/test-database.js';
import { openSqlite, type SqliteDatabase } from './sqlite/database.js';

export interface TwoStores<Store> {
  store: Store;
  /** Another store on the same data, as a second process sees it. */
  other: Store;
  dispose(): Promise<void>;
}

export function twoSqliteStores<Store>(name: string, open: (db: SqliteDatabase) => Store): TwoStores<Store> {
  const dir = mkdtempSync(join(tmpdir(), `alto-${name}-`));
  const first = openSqlite(join(dir, 'alto.db'));
  const second = openSqlite(join(dir, 'alto.db'));
  return {
    store: open(first),
    // Its migrations find the tables there: applied once.
    other: open(second),
    async dispose() {
      first.close();
      second.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function twoPostgresStores<Store>(name: string, open: (pool: pg.Pool) => Promise<Store>): Promise<TwoStores<Store>> {
  const database = await createTestDatabase(name);
  const pools = [new pg.Pool({ connectionString: database.url, max: 10 }), new pg.Pool({ connectionString: database.url, max: 10 })];
  const [store, other] = await Promise.all(pools.map(open));
  return {
    store,
    other,
    async dispose() {
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
}
