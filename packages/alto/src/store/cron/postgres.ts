/**
 * @module store/cron/postgres
 * The PostgreSQL adapter of the cron port, for Alto running with `--store postgres://`: every
 * process of one cloud sees the same jobs and fires each run once. A claim is one conditional
 * UPDATE of `next_run`: under READ COMMITTED a second claimer waits for the first, then finds
 * the value moved and updates nothing; the same statement records the claim in
 * `alto_cron_claims`, which a recorded run ends and which, once run out, another process takes
 * over with a conditional UPDATE of its expiry. Ids use the "C" collation so jobs list in the same order
 * as on SQLite; times are BIGINT milliseconds.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
import { RUNS_KEPT, type AbandonedRun, type CronStore, type JobRecord, type RunClaim, type RunRecord } from './port.js';

/** Applied in order, each once; see `PostgresCronStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_cron_jobs (
     namespace TEXT COLLATE "C" NOT NULL,
     id TEXT COLLATE "C" NOT NULL,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     interval TEXT NOT NULL,
     callback TEXT NOT NULL,
     next_run BIGINT,
     created_at BIGINT NOT NULL,
     PRIMARY KEY (namespace, id));
   CREATE INDEX IF NOT EXISTS alto_cron_jobs_next_run ON alto_cron_jobs (next_run);
   CREATE TABLE IF NOT EXISTS alto_cron_runs (
     namespace TEXT COLLATE "C" NOT NULL,
     job_id TEXT COLLATE "C" NOT NULL,
     scheduled_at BIGINT NOT NULL,
     finished_at BIGINT NOT NULL,
     status TEXT NOT NULL,
     http_code INTEGER NOT NULL,
     attempts INTEGER NOT NULL,
     error TEXT NOT NULL,
     PRIMARY KEY (namespace, job_id, scheduled_at));
   CREATE TABLE IF NOT EXISTS alto_cron_signing_secrets (
     namespace TEXT COLLATE "C" PRIMARY KEY,
     secret TEXT NOT NULL,
     created_at BIGINT NOT NULL);`,
  `CREATE TABLE IF NOT EXISTS alto_cron_claims (
     namespace TEXT COLLATE "C" NOT NULL,
     job_id TEXT COLLATE "C" NOT NULL,
     scheduled_at BIGINT NOT NULL,
     claimed_by TEXT NOT NULL,
     expires_at BIGINT NOT NULL,
     PRIMARY KEY (namespace, job_id, scheduled_at));
   CREATE INDEX IF NOT EXISTS alto_cron_claims_expires_at ON alto_cron_claims (expires_at);
   CREATE INDEX IF NOT EXISTS alto_cron_claims_claimed_by ON alto_cron_claims (claimed_by);`,
];

/** BIGINT arrives as a string from pg. */
interface JobRow {
  namespace: string;
  id: string;
  name: string;
  description: string;
  interval: string;
  callback: string;
  next_run: string | null;
}

interface RunRow {
  scheduled_at: string;
  finished_at: string;
  status: RunRecord['status'];
  http_code: number;
  attempts: number;
  error: string;
}

function jobFromRow(row: JobRow): JobRecord {
  return {
    namespace: row.namespace,
    id: row.id,
    name: row.name,
    description: row.description,
    interval: row.interval,
    callback: row.callback,
    nextRun: row.next_run === null ? null : Number(row.next_run),
  };
}

function runFromRow(row: RunRow): RunRecord {
  return {
    scheduledAt: Number(row.scheduled_at),
    finishedAt: Number(row.finished_at),
    status: row.status,
    httpCode: row.http_code,
    attempts: row.attempts,
    error: row.error,
  };
}

const JOB_COLUMNS = 'namespace, id, name, description, interval, callback, next_run';

export class PostgresCronStore implements CronStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresCronStore> {
    await migratePostgres(pool, 'cron', MIGRATIONS);
    return new PostgresCronStore(pool);
  }

  async save(job: JobRecord, now: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_cron_jobs (${JOB_COLUMNS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (namespace, id) DO UPDATE SET name = excluded.name, description = excluded.description,
         interval = excluded.interval, callback = excluded.callback, next_run = excluded.next_run`,
      [job.namespace, job.id, job.name, job.description, job.interval, job.callback, job.nextRun, now],
    );
  }

  async list(namespace: string): Promise<JobRecord[]> {
    const result = await this.pool.query<JobRow>(
      `SELECT ${JOB_COLUMNS} FROM alto_cron_jobs WHERE namespace = $1 ORDER BY created_at, id`,
      [namespace],
    );
    return result.rows.map(jobFromRow);
  }

  async delete(namespace: string, id: string): Promise<boolean> {
    return inTransaction(this.pool, async (client) => {
      // The job first: its row lock orders this delete with a run being recorded (see recordRun).
      const deleted = await client.query('DELETE FROM alto_cron_jobs WHERE namespace = $1 AND id = $2', [namespace, id]);
      await client.query('DELETE FROM alto_cron_runs WHERE namespace = $1 AND job_id = $2', [namespace, id]);
      await client.query('DELETE FROM alto_cron_claims WHERE namespace = $1 AND job_id = $2', [namespace, id]);
      return deleted.rowCount === 1;
    });
  }

  async due(now: number, limit: number): Promise<JobRecord[]> {
    const result = await this.pool.query<JobRow>(
      `SELECT ${JOB_COLUMNS} FROM alto_cron_jobs WHERE next_run <= $1 ORDER BY next_run LIMIT $2`,
      [now, limit],
    );
    return result.rows.map(jobFromRow);
  }

  async claim(job: JobRecord, expected: number, next: number | null, claim: RunClaim): Promise<boolean> {
    const result = await this.pool.query(
      `WITH moved AS (
         UPDATE alto_cron_jobs SET next_run = $1 WHERE namespace = $2 AND id = $3 AND next_run = $4 RETURNING namespace, id)
       INSERT INTO alto_cron_claims (namespace, job_id, scheduled_at, claimed_by, expires_at) SELECT namespace, id, $4, $5, $6 FROM moved
       ON CONFLICT (namespace, job_id, scheduled_at) DO UPDATE SET claimed_by = excluded.claimed_by, expires_at = excluded.expires_at`,
      [next, job.namespace, job.id, expected, claim.owner, claim.until],
    );
    return result.rowCount === 1;
  }

  async renewClaims(owner: string, until: number): Promise<number> {
    const result = await this.pool.query('UPDATE alto_cron_claims SET expires_at = $1 WHERE claimed_by = $2', [until, owner]);
    return result.rowCount ?? 0;
  }

  async abandonedRuns(now: number, limit: number): Promise<AbandonedRun[]> {
    const result = await this.pool.query<JobRow & { scheduled_at: string }>(
      `SELECT ${JOB_COLUMNS.split(', ').map((column) => `j.${column}`).join(', ')}, c.scheduled_at
       FROM alto_cron_claims c JOIN alto_cron_jobs j ON j.namespace = c.namespace AND j.id = c.job_id
       WHERE c.expires_at <= $1 ORDER BY c.scheduled_at LIMIT $2`,
      [now, limit],
    );
    return result.rows.map((row) => ({ job: jobFromRow(row), scheduledAt: Number(row.scheduled_at) }));
  }

  async reclaim(namespace: string, jobId: string, scheduledAt: number, now: number, claim: RunClaim): Promise<boolean> {
    // Under READ COMMITTED a second taker waits for the first, then finds the expiry moved.
    const result = await this.pool.query(
      `UPDATE alto_cron_claims SET claimed_by = $1, expires_at = $2
       WHERE namespace = $3 AND job_id = $4 AND scheduled_at = $5 AND expires_at <= $6`,
      [claim.owner, claim.until, namespace, jobId, scheduledAt, now],
    );
    return result.rowCount === 1;
  }

  async releaseClaims(owner: string): Promise<void> {
    await this.pool.query('UPDATE alto_cron_claims SET expires_at = 0 WHERE claimed_by = $1', [owner]);
  }

  async recordRun(namespace: string, jobId: string, run: RunRecord): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      // FOR SHARE holds off a concurrent delete of the job until this run is in, so the delete
      // removes it too; once the job is gone, nothing is recorded.
      const job = await client.query('SELECT 1 FROM alto_cron_jobs WHERE namespace = $1 AND id = $2 FOR SHARE', [namespace, jobId]);
      if (job.rowCount === 0) return;
      await client.query(
        `INSERT INTO alto_cron_runs (namespace, job_id, scheduled_at, finished_at, status, http_code, attempts, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (namespace, job_id, scheduled_at) DO UPDATE SET finished_at = excluded.finished_at,
           status = excluded.status, http_code = excluded.http_code, attempts = excluded.attempts, error = excluded.error`,
        [namespace, jobId, run.scheduledAt, run.finishedAt, run.status, run.httpCode, run.attempts, run.error],
      );
      await client.query('DELETE FROM alto_cron_claims WHERE namespace = $1 AND job_id = $2 AND scheduled_at = $3', [
        namespace,
        jobId,
        run.scheduledAt,
      ]);
      await client.query(
        `DELETE FROM alto_cron_runs WHERE namespace = $1 AND job_id = $2 AND scheduled_at NOT IN
           (SELECT scheduled_at FROM alto_cron_runs WHERE namespace = $1 AND job_id = $2 ORDER BY scheduled_at DESC LIMIT ${RUNS_KEPT})`,
        [namespace, jobId],
      );
    });
  }

  async runs(namespace: string, jobId: string): Promise<RunRecord[]> {
    const result = await this.pool.query<RunRow>(
      `SELECT scheduled_at, finished_at, status, http_code, attempts, error FROM alto_cron_runs
       WHERE namespace = $1 AND job_id = $2 ORDER BY scheduled_at DESC LIMIT ${RUNS_KEPT}`,
      [namespace, jobId],
    );
    return result.rows.map(runFromRow);
  }

  async signingSecret(namespace: string, create: () => string): Promise<string> {
    const read = () =>
      this.pool.query<{ secret: string }>('SELECT secret FROM alto_cron_signing_secrets WHERE namespace = $1', [namespace]);
    const existing = await read();
    if (existing.rows[0]) return existing.rows[0].secret;
    await this.pool.query(
      'INSERT INTO alto_cron_signing_secrets (namespace, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (namespace) DO NOTHING',
      [namespace, create(), Date.now()],
    );
    return (await read()).rows[0].secret;
  }

  async rewriteSigningSecrets(rewrite: (namespace: string, stored: string) => string | undefined): Promise<number> {
    const { rows } = await this.pool.query<{ namespace: string; secret: string }>('SELECT namespace, secret FROM alto_cron_signing_secrets');
    let replaced = 0;
    for (const row of rows) {
      const replacement = rewrite(row.namespace, row.secret);
      if (replacement === undefined) continue;
      const result = await this.pool.query('UPDATE alto_cron_signing_secrets SET secret = $1 WHERE namespace = $2 AND secret = $3', [
        replacement,
        row.namespace,
        row.secret,
      ]);
      replaced += result.rowCount ?? 0;
    }
    return replaced;
  }

  async deleteProject(projectId: string): Promise<void> {
    const prefix = `${projectId}/`;
    await inTransaction(this.pool, async (client) => {
      await client.query('DELETE FROM alto_cron_jobs WHERE starts_with(namespace, $1)', [prefix]);
      await client.query('DELETE FROM alto_cron_runs WHERE starts_with(namespace, $1)', [prefix]);
      await client.query('DELETE FROM alto_cron_claims WHERE starts_with(namespace, $1)', [prefix]);
      await client.query('DELETE FROM alto_cron_signing_secrets WHERE starts_with(namespace, $1)', [prefix]);
    });
  }
}
