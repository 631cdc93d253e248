/**
 * What only the embedded usage adapter has: the migration that sums records written before
 * daily totals existed, and the writer thread. The usage contract runs on it in `../usage.contract.test.ts`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsageWriteError, type CallColumns } from '../usage.js';
import { openSqlite } from './database.js';
import { SqliteUsageStore } from './usage.js';

test('sqlite: records written before daily totals existed are summed by the migration', async () => {
  const db = openSqlite(':memory:');
  // The first migration's schema, as an instance of the previous version left it.
  db.exec(`CREATE TABLE alto_migrations (module TEXT NOT NULL, version INTEGER NOT NULL, applied_at INTEGER NOT NULL,
             PRIMARY KEY (module, version));
           INSERT INTO alto_migrations VALUES ('usage', 0, 0);
           CREATE TABLE usage_records (at INTEGER NOT NULL, project_id TEXT NOT NULL, key_id TEXT NOT NULL,
             service TEXT NOT NULL, endpoint TEXT NOT NULL, status INTEGER NOT NULL, bytes_in INTEGER NOT NULL,
             bytes_out INTEGER NOT NULL, price_micros INTEGER NOT NULL);
           CREATE INDEX usage_records_project ON usage_records(project_id, at);`);
  const at = Date.UTC(2025, 0, 31, 23, 59);
  const insert = db.prepare('INSERT INTO usage_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  insert.run(at, 'p', 'k', 'id', 'Generate', 200, 1, 2, 1);
  insert.run(at, 'p', 'k', 'id', 'Generate', 500, 1, 2, 0);
  insert.run(at + 60_000, 'p', 'k', 'id', 'Generate', 200, 1, 2, 1);
  const store = new SqliteUsageStore(db);
  assert.deepEqual(await store.readUsage({ projectId: 'p', fromDay: '2025-01-01', toDay: '2025-02-28' }), [
    { day: '2025-01-31', keyId: 'k', service: 'id', endpoint: 'Generate', calls: 2, errors: 1, bytesIn: 2, bytesOut: 4, priceMicros: 1 },
    { day: '2025-02-01', keyId: 'k', service: 'id', endpoint: 'Generate', calls: 1, errors: 0, bytesIn: 1, bytesOut: 2, priceMicros: 1 },
  ]);
  db.close();
});

test('the writer thread writes batches of columns with their daily totals, and says how far a failed batch got', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-usage-writer-'));
  const db = openSqlite(join(dir, 'alto.db'));
  const store = new SqliteUsageStore(db, { writerThread: true });
  const at = Date.UTC(2026, 5, 1, 12);
  const length = 1200;
  const batch: CallColumns = {
    length,
    at: new Float64Array(length).fill(at),
    status: new Uint16Array(length).map((_, i) => (i % 4 === 0 ? 500 : 200)),
    bytesIn: new Float64Array(length).fill(10),
    bytesOut: new Float64Array(length).fill(20),
    priceMicros: new Float64Array(length).fill(3),
    caller: new Uint32Array(length).map((_, i) => i % 2),
    callers: [
      { projectId: 'p', keyId: 'k1', service: 'id', endpoint: 'Generate' },
      { projectId: 'p', keyId: 'k2', service: 'db', endpoint: 'Read' },
    ],
  };
  await store.appendCallColumns(batch);
  const days = await store.readUsage({ projectId: 'p', fromDay: '2026-06-01', toDay: '2026-06-01' });
  assert.deepEqual(days.map(({ keyId, calls, errors, bytesIn, priceMicros }) => ({ keyId, calls, errors, bytesIn, priceMicros })), [
    { keyId: 'k2', calls: 600, errors: 0, bytesIn: 6000, priceMicros: 1800 },
    { keyId: 'k1', calls: 600, errors: 300, bytesIn: 6000, priceMicros: 1800 },
  ]);
  // A row per second, caller and status in each transaction of 500 calls: 3 transactions of 3 rows.
  assert.deepEqual(db.prepare('SELECT COUNT(*) AS n, SUM(calls) AS calls FROM usage_records').get(), { n: 9, calls: length });

  // A batch the database refuses (its table gone) fails, naming how many rows were written: none.
  db.exec('ALTER TABLE usage_records RENAME TO usage_records_away');
  await assert.rejects(store.appendCallColumns(batch), (error) => error instanceof UsageWriteError && error.written === 0 && /usage_records/.test(error.message));
  await store.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

test('an idle writer thread does not keep the process alive, even when its store was never closed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-usage-writer-'));
  // As when Alto fails to start after opening its stores: a writer that never wrote, never closed.
  const script = `
    import { openSqlite } from ${JSON.stringify(new URL('./database.ts', import.meta.url).pathname)};
    import { SqliteUsageStore } from ${JSON.stringify(new URL('./usage.ts', import.meta.url).pathname)};
    new SqliteUsageStore(openSqlite(${JSON.stringify(join(dir, 'alto.db'))}), { writerThread: true });
    console.log('opened');`;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(run.signal, null, 'the process ended on its own, not killed at the timeout');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'opened');
});
