/**
 * The PostgreSQL half of a backup, against the test PostgreSQL: `backupInstance` with the store's
 * URL puts a pg_dump in the backup with its checksum in the manifest; `restoreInstance` with
 * `postgresUrl` loads it into an empty database (every row back), refuses a database that holds
 * tables, and refuses a damaged dump before writing anything.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../postgres/test-database.js';
import { backupInstance } from './backup-instance.js';
import { blobPath } from './blobs.js';
import { restoreInstance } from './restore-instance.js';
import { openBackupTarget } from './target.js';

const folders: string[] = [];
const databases: TestDatabase[] = [];
after(async () => {
  for (const database of databases) await database.drop();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

function folder(): string {
  const path = mkdtempSync(join(tmpdir(), 'alto-backup-pg-'));
  folders.push(path);
  return path;
}

async function query<Row extends pg.QueryResultRow>(url: string, text: string): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<Row>(text)).rows;
  } finally {
    await client.end();
  }
}

test('a PostgreSQL instance: pg_dump into the backup, pg_restore into an empty database only, checked first', async () => {
  const source = await createTestDatabase('backup_source');
  const empty = await createTestDatabase('backup_target');
  const taken = await createTestDatabase('backup_taken');
  databases.push(source, empty, taken);
  await query(source.url, "CREATE TABLE records (id text PRIMARY KEY, body jsonb NOT NULL); INSERT INTO records SELECT 'r' || n, jsonb_build_object('n', n) FROM generate_series(1, 1000) AS n");
  await query(taken.url, 'CREATE TABLE other (id int)');

  const dataDir = folder();
  const backups = folder();
  const lines: string[] = [];
  const to = await openBackupTarget(backups, { create: true });
  const { manifest } = await backupInstance({ dataDir, to, postgres: true, postgresUrl: source.url, report: (line) => lines.push(line) }).finally(() => to.close());
  assert.ok(manifest.postgresDump, 'the manifest names the dump');
  assert.match(manifest.postgresDump.pgDumpVersion, /pg_dump \(PostgreSQL\) \d+/);
  assert.ok(lines.some((line) => /database: PostgreSQL, .* \(pg_dump, custom format\)/.test(line)), lines.join('\n'));
  assert.ok(!manifest.skipped.some((part) => part.what === 'database'));

  const restore = async (url: string, into: string) => {
    const from = await openBackupTarget(backups, { create: false });
    return restoreInstance({ from, dataDir: into, postgresUrl: url, report: () => {} }).finally(() => from.close());
  };
  await assert.rejects(restore(taken.url, join(folder(), 'a')), /holds 1 tables already: restore into a new, empty database/);
  await restore(empty.url, join(folder(), 'b'));
  const rows = await query<{ count: string; total: string }>(empty.url, "SELECT count(*) AS count, sum((body->>'n')::int) AS total FROM records");
  assert.deepEqual(rows[0], { count: '1000', total: String((1000 * 1001) / 2) });

  // A damaged dump is found before anything is written or loaded.
  const again = await createTestDatabase('backup_again');
  databases.push(again);
  writeFileSync(blobPath(backups, manifest.postgresDump.sha256), 'not a dump');
  const into = join(folder(), 'c');
  await assert.rejects(restore(again.url, into), /PostgreSQL dump: \d+ bytes, the manifest says/);
  assert.equal((await query<{ count: string }>(again.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))[0].count, '0');
});
