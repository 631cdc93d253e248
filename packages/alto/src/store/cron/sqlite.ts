/**
 * @module store/cron/sqlite
 * The embedded adapter of the cron port: three tables in the shared SQLite file (the ones the
 * cron block created before it had a port, so existing data folders keep their jobs). Claims
 * are a conditional UPDATE of `next_run`, so processes sharing the file fire each run once; the
 * same transaction records the claim in `cron_claims`, which a recorded run ends and which,
 * once run out, another process takes over with a conditional UPDATE of its expiry.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { RUNS_KEPT, type AbandonedRun, type CronStore, type JobRecord, type RunClaim, type RunRecord } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE cron_jobs (
     namespace TEXT NOT NULL,
     id TEXT NOT NULL,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     interval TEXT NOT NULL,
     callback TEXT NOT NULL,
     next_run INTEGER,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, id)) WITHOUT ROWID;
   CREATE INDEX cron_jobs_next_run ON cron_jobs (next_run);
   CREATE TABLE cron_runs (
     namespace TEXT NOT NULL,
     job_id TEXT NOT NULL,
     scheduled_at INTEGER NOT NULL,
     finished_at INTEGER NOT NULL,
     status TEXT NOT NULL,
     http_code INTEGER NOT NULL,
     attempts INTEGER NOT NULL,
     error TEXT NOT NULL,
     PRIMARY KEY (namespace, job_id, scheduled_at));
   CREATE TABLE cron_signing_secrets (
     namespace TEXT PRIMARY KEY,
     secret TEXT NOT NULL,
     created_at INTEGER NOT NULL);`,
  `CREATE TABLE cron_claims (
     namespace TEXT NOT NULL,
     job_id TEXT NOT NULL,
     scheduled_at INTEGER NOT NULL,
     claimed_by TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, job_id, scheduled_at)) WITHOUT ROWID;
   CREATE INDEX cron_claims_expires_at ON cron_claims (expires_at);
   CREATE INDEX cron_claims_claimed_by ON cron_claims (claimed_by);`,
];

interface JobRow {
  namespace: string;
  id: string;
  name: string;
  description: string;
  interval: string;
  callback: string;
  next_run: number | null;
}

interface RunRow {
  scheduled_at: number;
  finished_at: number;
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
    nextRun: row.next_run,
  };
}

function runFromRow(row: RunRow): RunRecord {
  return {
    scheduledAt: row.scheduled_at,
    finishedAt: row.finished_at,
    status: row.status,
    httpCode: row.http_code,
    attempts: row.attempts,
    error: row.error,
  };
}

const JOB_COLUMNS = 'namespace, id, name, description, interval, callback, next_run';

function prepareStatements(db: SqliteDatabase) {
  return {
    upsert: db.prepare(
      `INSERT INTO cron_jobs (${JOB_COLUMNS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (namespace, id) DO UPDATE SET name = excluded.name, description = excluded.description,
         interval = excluded.interval, callback = excluded.callback, next_run = excluded.next_run`,
    ),
    list: db.prepare(`SELECT ${JOB_COLUMNS} FROM cron_jobs WHERE namespace = ? ORDER BY created_at, id`),
    delete: db.prepare('DELETE FROM cron_jobs WHERE namespace = ? AND id = ?'),
    deleteRuns: db.prepare('DELETE FROM cron_runs WHERE namespace = ? AND job_id = ?'),
    due: db.prepare(`SELECT ${JOB_COLUMNS} FROM cron_jobs WHERE next_run <= ? ORDER BY next_run LIMIT ?`),
    claim: db.prepare('UPDATE cron_jobs SET next_run = ? WHERE namespace = ? AND id = ? AND next_run = ?'),
    recordClaim: db.prepare(
      'INSERT OR REPLACE INTO cron_claims (namespace, job_id, scheduled_at, claimed_by, expires_at) VALUES (?, ?, ?, ?, ?)',
    ),
    renewClaims: db.prepare('UPDATE cron_claims SET expires_at = ? WHERE claimed_by = ?'),
    abandoned: db.prepare(
      `SELECT ${JOB_COLUMNS.split(', ').map((column) => `j.${column}`).join(', ')}, c.scheduled_at
       FROM cron_claims c JOIN cron_jobs j ON j.namespace = c.namespace AND j.id = c.job_id
       WHERE c.expires_at <= ? ORDER BY c.scheduled_at LIMIT ?`,
    ),
    reclaim: db.prepare(
      'UPDATE cron_claims SET claimed_by = ?, expires_at = ? WHERE namespace = ? AND job_id = ? AND scheduled_at = ? AND expires_at <= ?',
    ),
    releaseClaims: db.prepare('UPDATE cron_claims SET expires_at = 0 WHERE claimed_by = ?'),
    endClaim: db.prepare('DELETE FROM cron_claims WHERE namespace = ? AND job_id = ? AND scheduled_at = ?'),
    deleteClaims: db.prepare('DELETE FROM cron_claims WHERE namespace = ? AND job_id = ?'),
    deleteProjectClaims: db.prepare('DELETE FROM cron_claims WHERE substr(namespace, 1, ?) = ?'),
    jobExists: db.prepare('SELECT 1 FROM cron_jobs WHERE namespace = ? AND id = ?'),
    insertRun: db.prepare(
      `INSERT OR REPLACE INTO cron_runs (namespace, job_id, scheduled_at, finished_at, status, http_code, attempts, error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    trimRuns: db.prepare(
      `DELETE FROM cron_runs WHERE namespace = ? AND job_id = ? AND scheduled_at NOT IN
         (SELECT scheduled_at FROM cron_runs WHERE namespace = ? AND job_id = ? ORDER BY scheduled_at DESC LIMIT ${RUNS_KEPT})`,
    ),
    runs: db.prepare(
      `SELECT scheduled_at, finished_at, status, http_code, attempts, error FROM cron_runs
       WHERE namespace = ? AND job_id = ? ORDER BY scheduled_at DESC LIMIT ${RUNS_KEPT}`,
    ),
    insertSecret: db.prepare('INSERT OR IGNORE INTO cron_signing_secrets (namespace, secret, created_at) VALUES (?, ?, ?)'),
    secret: db.prepare('SELECT secret FROM cron_signing_secrets WHERE namespace = ?'),
    allSecrets: db.prepare('SELECT namespace, secret FROM cron_signing_secrets'),
    replaceSecret: db.prepare('UPDATE cron_signing_secrets SET secret = ? WHERE namespace = ? AND secret = ?'),
    deleteProjectJobs: db.prepare('DELETE FROM cron_jobs WHERE substr(namespace, 1, ?) = ?'),
    deleteProjectRuns: db.prepare('DELETE FROM cron_runs WHERE substr(namespace, 1, ?) = ?'),
    deleteProjectSecrets: db.prepare('DELETE FROM cron_signing_secrets WHERE substr(namespace, 1, ?) = ?'),
  };
}

export class SqliteCronStore implements CronStore {
  readonly backend = 'sqlite';
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'cron', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  async save(job: JobRecord, now: number): Promise<void> {
    const { namespace, id, name, description, interval, callback, nextRun } = job;
    this.statements.upsert.run(namespace, id, name, description, interval, callback, nextRun, now);
  }

  async list(namespace: string): Promise<JobRecord[]> {
    return (this.statements.list.all(namespace) as JobRow[]).map(jobFromRow);
  }

  async delete(namespace: string, id: string): Promise<boolean> {
    return this.db.transaction(() => {
      this.statements.deleteRuns.run(namespace, id);
      this.statements.deleteClaims.run(namespace, id);
      return this.statements.delete.run(namespace, id).changes > 0;
    })();
  }

  async due(now: number, limit: number): Promise<JobRecord[]> {
    return (this.statements.due.all(now, limit) as JobRow[]).map(jobFromRow);
  }

  async claim(job: JobRecord, expected: number, next: number | null, claim: RunClaim): Promise<boolean> {
    return this.db.transaction(() => {
      if (this.statements.claim.run(next, job.namespace, job.id, expected).changes !== 1) return false;
      this.statements.recordClaim.run(job.namespace, job.id, expected, claim.owner, claim.until);
      return true;
    })();
  }

  async renewClaims(owner: string, until: number): Promise<number> {
    return this.statements.renewClaims.run(until, owner).changes;
  }

  async abandonedRuns(now: number, limit: number): Promise<AbandonedRun[]> {
    return (this.statements.abandoned.all(now, limit) as (JobRow & { scheduled_at: number })[]).map((row) => ({
      job: jobFromRow(row),
      scheduledAt: row.scheduled_at,
    }));
  }

  async reclaim(namespace: string, jobId: string, scheduledAt: number, now: number, claim: RunClaim): Promise<boolean> {
    return this.statements.reclaim.run(claim.owner, claim.until, namespace, jobId, scheduledAt, now).changes === 1;
  }

  async releaseClaims(owner: string): Promise<void> {
    this.statements.releaseClaims.run(owner);
  }

  async recordRun(namespace: string, jobId: string, run: RunRecord): Promise<void> {
    this.db.transaction(() => {
      if (!this.statements.jobExists.get(namespace, jobId)) return;
      this.statements.insertRun.run(namespace, jobId, run.scheduledAt, run.finishedAt, run.status, run.httpCode, run.attempts, run.error);
      this.statements.endClaim.run(namespace, jobId, run.scheduledAt);
      this.statements.trimRuns.run(namespace, jobId, namespace, jobId);
    })();
  }

  async runs(namespace: string, jobId: string): Promise<RunRecord[]> {
    return (this.statements.runs.all(namespace, jobId) as RunRow[]).map(runFromRow);
  }

  async signingSecret(namespace: string, create: () => string): Promise<string> {
    const existing = this.statements.secret.get(namespace) as { secret: string } | undefined;
    if (existing) return existing.secret;
    this.statements.insertSecret.run(namespace, create(), Date.now());
    return (this.statements.secret.get(namespace) as { secret: string }).secret;
  }

  async rewriteSigningSecrets(rewrite: (namespace: string, stored: string) => string | undefined): Promise<number> {
    return this.db
      .transaction(() => {
        let replaced = 0;
        for (const row of this.statements.allSecrets.all() as { namespace: string; secret: string }[]) {
          const replacement = rewrite(row.namespace, row.secret);
          if (replacement !== undefined) replaced += this.statements.replaceSecret.run(replacement, row.namespace, row.secret).changes;
        }
        return replaced;
      })
      .immediate();
  }

  async deleteProject(projectId: string): Promise<void> {
    const prefix = `${projectId}/`;
    this.db.transaction(() => {
      this.statements.deleteProjectRuns.run(prefix.length, prefix);
      this.statements.deleteProjectJobs.run(prefix.length, prefix);
      this.statements.deleteProjectClaims.run(prefix.length, prefix);
      this.statements.deleteProjectSecrets.run(prefix.length, prefix);
    })();
  }
}
