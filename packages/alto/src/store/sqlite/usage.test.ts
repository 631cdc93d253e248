/**
 * What only the embedded usage adapter has: the migration that sums records written before
 * daily totals existed. The usage contract runs on it in `../usage.contract.test.ts`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
