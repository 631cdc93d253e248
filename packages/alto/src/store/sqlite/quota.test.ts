/**
 * Runs the quota store contract against the embedded SQLite adapter, with two connections to
 * one database file standing for two Alto processes sharing a data folder.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runQuotaContract } from '../quota.contract.js';
import { openSqlite } from './database.js';
import { SqliteQuotaStore } from './quota.js';

runQuotaContract('sqlite, two connections to one file', async () => {
  const path = join(tmpdir(), `alto-quota-${randomBytes(4).toString('hex')}.db`);
  const first = openSqlite(path);
  const second = openSqlite(path);
  return {
    stores: [new SqliteQuotaStore(first), new SqliteQuotaStore(second)],
    async cleanup() {
      first.close();
      second.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
    },
  };
});
