/**
 * @module store/sqlite/usage
 * The embedded adapter of the usage port: usage rows appended in one transaction per batch.
 */
import type { UsageRecord, UsageStore, UsageTotal } from '../usage.js';
import { migrate, type SqliteDatabase } from './database.js';

const MIGRATIONS = [
  `CREATE TABLE usage_records (
     at INTEGER NOT NULL,
     project_id TEXT NOT NULL,
     key_id TEXT NOT NULL,
     service TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     status INTEGER NOT NULL,
     bytes_in INTEGER NOT NULL,
     bytes_out INTEGER NOT NULL,
     price_micros INTEGER NOT NULL);
   CREATE INDEX usage_records_project ON usage_records(project_id, at);`,
];

export class SqliteUsageStore implements UsageStore {
  private readonly insertBatch: (records: UsageRecord[]) => void;
  private readonly totals;

  constructor(db: SqliteDatabase) {
    migrate(db, 'usage', MIGRATIONS);
    const insert = db.prepare(`INSERT INTO usage_records
      (at, project_id, key_id, service, endpoint, status, bytes_in, bytes_out, price_micros)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.insertBatch = db.transaction((records: UsageRecord[]) => {
      for (const r of records) {
        insert.run(r.at, r.projectId, r.keyId, r.service, r.endpoint, r.status, r.bytesIn, r.bytesOut, r.priceMicros);
      }
    });
    this.totals = db.prepare(`SELECT service, endpoint, COUNT(*) AS calls, SUM(price_micros) AS priceMicros
      FROM usage_records WHERE project_id = ? AND at >= ? GROUP BY service, endpoint ORDER BY service, endpoint`);
  }

  async appendUsage(records: UsageRecord[]): Promise<void> {
    if (records.length > 0) this.insertBatch(records);
  }

  async totalUsage(projectId: string, since: number): Promise<UsageTotal[]> {
    return this.totals.all(projectId, since) as UsageTotal[];
  }
}
