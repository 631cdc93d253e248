/**
 * Runs the document store contract against every adapter: SQLite (a temporary file) and
 * PostgreSQL (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped at the end),
 * plus what only PostgreSQL promises: changes made by one process reach another's watchers.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { openSqlite, type SqliteDatabase } from '../sqlite/database.js';
import { runDocumentStoreContract } from './contract.js';
import { DEFAULT_DOCUMENT_LIMITS, type Change } from './port.js';
import { PostgresDocumentStore } from './postgres.js';
import { SqliteDocumentStore } from './sqlite.js';

let sqliteDir: string;
let sqlite: SqliteDatabase;
let admin: pg.Client | undefined;
let database: string;
let databaseUrl: string;
const pools: pg.Pool[] = [];

before(async () => {
  sqliteDir = mkdtempSync(join(tmpdir(), 'alto-documents-'));
  sqlite = openSqlite(join(sqliteDir, 'alto.db'));
  const adminUrl = process.env.ALTO_TEST_POSTGRES_URL;
  if (!adminUrl) return;
  database = `alto_test_documents_${randomBytes(6).toString('hex')}`;
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  databaseUrl = url.toString();
});

after(async () => {
  sqlite.close();
  rmSync(sqliteDir, { recursive: true, force: true });
  for (const pool of pools) await pool.end();
  if (admin) {
    // pool.end() resolves before the server has seen every connection close: wait for them, so
    // the DROP below does not cut a connection a pool still considers its own.
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [database]);
      if (rows[0].n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  }
});

function postgresPool(): pg.Pool {
  if (!databaseUrl) {
    throw new Error('ALTO_TEST_POSTGRES_URL is not set: run `. scripts/test-services.sh` first to start the test PostgreSQL');
  }
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  pools.push(pool);
  return pool;
}

let sharedPool: pg.Pool | undefined;

runDocumentStoreContract('sqlite', {
  async open(limits) {
    return new SqliteDocumentStore(sqlite, { ...DEFAULT_DOCUMENT_LIMITS, ...limits });
  },
});

runDocumentStoreContract('postgres', {
  async open(limits) {
    sharedPool ??= postgresPool();
    return PostgresDocumentStore.open(sharedPool, { ...DEFAULT_DOCUMENT_LIMITS, ...limits });
  },
});

test('postgres: a change made by one process reaches the watchers of another', async () => {
  // Two pools stand for two Alto processes sharing the database.
  const first = await PostgresDocumentStore.open(postgresPool());
  const second = await PostgresDocumentStore.open(postgresPool());
  try {
    const namespace = `p${randomBytes(4).toString('hex')}/dev`;
    const seen: Change[] = [];
    const watch = await first.watch(namespace, 'orders', (change) => seen.push(change));
    await second.create(namespace, 'orders', [{ id: 'o1', data: { id: 'o1', total: 12.5 } }]);
    assert.equal((await first.get(namespace, 'orders', 'o1'))?.revision, 1); // caches the table's id
    await second.update(namespace, 'orders', 'o1', { total: 13 });
    await second.renameTable(namespace, 'orders', 'archive');
    // The first process had the table's id cached: its write must not land in the renamed table.
    await first.create(namespace, 'orders', [{ id: 'o2', data: { id: 'o2' } }]);
    await second.delete(namespace, 'archive', 'o1');
    const deadline = Date.now() + 10_000;
    while (seen.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(
      seen.map(({ type, id, record }) => ({ type, id, record })),
      [
        { type: 'create', id: 'o1', record: { id: 'o1', total: 12.5 } },
        { type: 'update', id: 'o1', record: { id: 'o1', total: 13 } },
        { type: 'create', id: 'o2', record: { id: 'o2' } },
      ],
    );
    assert.equal(await second.count(namespace, 'archive'), 0);
    assert.equal(await first.count(namespace, 'orders'), 1);
    assert.deepEqual(await second.listTables(namespace), ['archive', 'orders']);
    watch.stop();
  } finally {
    await first.close();
    await second.close();
  }
});

test('postgres: dropping, truncating or indexing a table while others write to it never deadlocks a write', async () => {
  // Writes lock the records table, then the catalog row (their row count's foreign key); a drop,
  // truncate or index build that took them the other way round made PostgreSQL fail a write.
  const writer = await PostgresDocumentStore.open(postgresPool());
  const dropper = await PostgresDocumentStore.open(postgresPool());
  try {
    const namespace = `p${randomBytes(4).toString('hex')}/dev`;
    const failures: unknown[] = [];
    /** A write may find the table gone or changed (a 404 or the 503 that says to retry): never a fault. */
    const settle = (promise: Promise<unknown>) =>
      promise.catch((error: { status?: number }) => {
        if (!(typeof error.status === 'number' && error.status < 500) && error.status !== 503) failures.push(error);
      });
    for (let round = 0; round < 30; round++) {
      const writes = Array.from({ length: 8 }, (_, i) => {
        const id = `r${round}-${i}`;
        return settle(
          writer
            .create(namespace, 'busy', [{ id, data: { id, n: i } }])
            .then(() => writer.update(namespace, 'busy', id, { n: i + 1 }))
            .then(() => writer.delete(namespace, 'busy', id)),
        );
      });
      const ddl = [
        round % 3 === 0 ? dropper.dropTable(namespace, 'busy') : round % 3 === 1 ? dropper.truncate(namespace, 'busy') : dropper.createIndex(namespace, 'busy', ['n']),
      ].map(settle);
      await Promise.all([...writes, ...ddl]);
    }
    assert.deepEqual(failures.map((error) => String((error as Error).message ?? error)), []);
  } finally {
    await writer.close();
    await dropper.close();
  }
});
