/**
 * Runs the usage store contract against every adapter: SQLite (a temporary file; its migration
 * of older records is tested in `sqlite/usage.test.ts`) and PostgreSQL (a database of its own,
 * created from ALTO_TEST_POSTGRES_URL and dropped at the end), plus what only a shared database
 * promises: batches written by two processes at once add up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { PostgresUsageStore } from './postgres/usage.js';
import { createTestDatabase } from './postgres/test-database.js';
import { openSqlite } from './sqlite/database.js';
import { SqliteUsageStore } from './sqlite/usage.js';
import { runUsageContract } from './usage.contract.js';
import type { UsageRecord } from './usage.js';

runUsageContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-usage-'));
  const db = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteUsageStore(db),
    async cleanup() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runUsageContract('postgres', async () => {
  const database = await createTestDatabase('usage');
  const pool = new pg.Pool({ connectionString: database.url, max: 4 });
  const store = await PostgresUsageStore.open(pool);
  // A second open runs the migrations again: they must be idempotent.
  await PostgresUsageStore.open(pool);
  return {
    store,
    async cleanup() {
      await pool.end();
      await database.drop();
    },
  };
});

test('postgres: batches written by two processes at once add up in the daily totals', async () => {
  const database = await createTestDatabase('usage_shared');
  const pools = [new pg.Pool({ connectionString: database.url, max: 4 }), new pg.Pool({ connectionString: database.url, max: 4 })];
  try {
    const [first, second] = await Promise.all(pools.map((pool) => PostgresUsageStore.open(pool)));
    const at = Date.UTC(2025, 2, 10, 12);
    const batch = (keys: string[]): UsageRecord[] =>
      keys.flatMap((keyId) =>
        Array.from({ length: 25 }, () => ({ at, projectId: 'p', keyId, service: 'db', endpoint: 'Read', status: 200, bytesIn: 1, bytesOut: 2, priceMicros: 3 })),
      );
    // The same daily rows in opposite orders from the two processes: neither deadlocks nor loses a call.
    const writes = [];
    for (let round = 0; round < 10; round++) {
      writes.push(first.appendUsage(batch(['k1', 'k2', 'k3'])), second.appendUsage(batch(['k3', 'k2', 'k1'])));
    }
    await Promise.all(writes);
    const rows = await second.readUsage({ projectId: 'p', fromDay: '2025-03-10', toDay: '2025-03-10' });
    assert.deepEqual(
      rows.map((row) => [row.keyId, row.calls, row.priceMicros]),
      [
        ['k1', 500, 1500],
        ['k2', 500, 1500],
        ['k3', 500, 1500],
      ],
    );
  } finally {
    for (const pool of pools) await pool.end();
    await database.drop();
  }
});
