/**
 * Runs the quota store contract against every adapter: SQLite (two connections to one temporary
 * file) and PostgreSQL (two pools on a database of its own, created from ALTO_TEST_POSTGRES_URL
 * and dropped at the end), each pair standing for two Alto processes; plus, on PostgreSQL, many
 * takes and reservations at once from both, which must never hand out more than there is.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { PostgresQuotaStore } from './postgres/quota.js';
import { createTestDatabase } from './postgres/test-database.js';
import { runQuotaContract } from './quota.contract.js';
import { openSqlite } from './sqlite/database.js';
import { SqliteQuotaStore } from './sqlite/quota.js';

runQuotaContract('sqlite, two connections to one file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-quota-'));
  const first = openSqlite(join(dir, 'alto.db'));
  const second = openSqlite(join(dir, 'alto.db'));
  return {
    stores: [new SqliteQuotaStore(first), new SqliteQuotaStore(second)],
    async cleanup() {
      first.close();
      second.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runQuotaContract('postgres, two pools on one database', async () => {
  const database = await createTestDatabase('quota');
  const pools = [new pg.Pool({ connectionString: database.url, max: 4 }), new pg.Pool({ connectionString: database.url, max: 4 })];
  const stores = await Promise.all(pools.map((pool) => PostgresQuotaStore.open(pool)));
  return {
    stores: [stores[0], stores[1]],
    async cleanup() {
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
});

test('postgres: concurrent takes, reservations and limit changes from two processes never overspend or lose a change', async () => {
  const database = await createTestDatabase('quota_race');
  const pools = [new pg.Pool({ connectionString: database.url, max: 8 }), new pg.Pool({ connectionString: database.url, max: 8 })];
  try {
    const [first, second] = await Promise.all(pools.map((pool) => PostgresQuotaStore.open(pool)));
    const now = 5_000_000;
    const takes = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? second : first).takeTokens('race', 1, 10, 40, now)));
    assert.equal(takes.reduce((total, grant) => total + grant.granted, 0), 40, 'a full bucket of 40 gives 40 tokens, not more');

    const reservations = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? second : first).reserve('calls', '2025-03', 3, 100)));
    assert.equal(reservations.reduce((total, grant) => total + grant.granted, 0), 100);
    assert.equal(await second.counterValue('calls', '2025-03'), 100);

    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? second : first).updateLimits('project:p', { [`limit_${i}`]: i })));
    assert.equal(Object.keys(await first.getLimits('project:p')).length, 20, 'no change lost to another made at the same time');
  } finally {
    for (const pool of pools) await pool.end();
    await database.drop();
  }
});
