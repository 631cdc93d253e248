/**
 * @module store/otp/postgres
 * The PostgreSQL adapter of the otp port, for Alto running with `--store postgres://`: the
 * replay record and the failure counters are shared by every process of one cloud. `update`
 * runs in one transaction holding an advisory lock on the id, which also serialises the first
 * Generate of an id that has no row to lock yet.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
import type { OtpChange, OtpRecord, OtpStore } from './port.js';

/** Applied in order, each once; see `PostgresOtpStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_otp_secrets (
     namespace TEXT COLLATE "C" NOT NULL,
     id TEXT COLLATE "C" NOT NULL,
     secret BYTEA NOT NULL,
     algorithm TEXT NOT NULL,
     digits INTEGER NOT NULL,
     period INTEGER NOT NULL,
     last_step BIGINT NOT NULL DEFAULT -1,
     failures INTEGER NOT NULL DEFAULT 0,
     failures_since BIGINT NOT NULL DEFAULT 0,
     created_at BIGINT NOT NULL,
     PRIMARY KEY (namespace, id))`,
];

/** BIGINT arrives as a string from pg, BYTEA as a Buffer. */
interface Row {
  secret: Buffer;
  algorithm: string;
  digits: number;
  period: number;
  last_step: string;
  failures: number;
  failures_since: string;
  created_at: string;
}

function recordFromRow(row: Row): OtpRecord {
  return {
    secret: row.secret,
    algorithm: row.algorithm,
    digits: row.digits,
    periodSeconds: row.period,
    lastStep: Number(row.last_step),
    failures: row.failures,
    failuresSince: Number(row.failures_since),
    createdAt: Number(row.created_at),
  };
}

export class PostgresOtpStore implements OtpStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresOtpStore> {
    await migratePostgres(pool, 'otp', MIGRATIONS);
    return new PostgresOtpStore(pool);
  }

  async update<T>(namespace: string, id: string, change: (current: OtpRecord | undefined) => OtpChange<T>): Promise<T> {
    return inTransaction(this.pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('alto.otp'), hashtext($1 || E'\\n' || $2))", [namespace, id]);
      const { rows } = await client.query<Row>(
        `SELECT secret, algorithm, digits, period, last_step, failures, failures_since, created_at
         FROM alto_otp_secrets WHERE namespace = $1 AND id = $2`,
        [namespace, id],
      );
      const { result, save } = change(rows[0] && recordFromRow(rows[0]));
      if (save) {
        await client.query(
          `INSERT INTO alto_otp_secrets (namespace, id, secret, algorithm, digits, period, last_step, failures, failures_since, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (namespace, id) DO UPDATE SET secret = excluded.secret, algorithm = excluded.algorithm,
             digits = excluded.digits, period = excluded.period, last_step = excluded.last_step,
             failures = excluded.failures, failures_since = excluded.failures_since`,
          [
            namespace,
            id,
            save.secret,
            save.algorithm,
            save.digits,
            save.periodSeconds,
            save.lastStep,
            save.failures,
            save.failuresSince,
            save.createdAt,
          ],
        );
      }
      return result;
    });
  }

  async rewriteSecrets(rewrite: (namespace: string, id: string, stored: Buffer) => Buffer | undefined): Promise<number> {
    const { rows } = await this.pool.query<{ namespace: string; id: string; secret: Buffer }>('SELECT namespace, id, secret FROM alto_otp_secrets');
    let replaced = 0;
    for (const row of rows) {
      const replacement = rewrite(row.namespace, row.id, row.secret);
      if (replacement === undefined) continue;
      const result = await this.pool.query('UPDATE alto_otp_secrets SET secret = $1 WHERE namespace = $2 AND id = $3 AND secret = $4', [
        replacement,
        row.namespace,
        row.id,
        row.secret,
      ]);
      replaced += result.rowCount ?? 0;
    }
    return replaced;
  }

  async deleteProject(projectId: string): Promise<number> {
    const result = await this.pool.query('DELETE FROM alto_otp_secrets WHERE starts_with(namespace, $1)', [`${projectId}/`]);
    return result.rowCount ?? 0;
  }
}
