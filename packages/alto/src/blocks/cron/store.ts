/**
 * @module blocks/cron/store
 * The cron block's own SQLite tables: jobs with their next run time, the last runs of each job,
 * and each namespace's signing secret (sealed with the master key). The scheduler claims a due run with a conditional UPDATE
 * of `next_run`, so several processes sharing the data folder fire each run exactly once.
 */
import { randomBytes } from 'node:crypto';
import { isSealedText, type SecretCipher } from '../../kit/master-key.js';
import { migrate, type SqliteDatabase } from '../../store/sqlite/database.js';

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
];

/** Runs kept per job; older ones are dropped as new ones are recorded. */
export const RUNS_KEPT = 20;

export interface JobRecord {
  namespace: string;
  id: string;
  name: string;
  description: string;
  interval: string;
  callback: string;
  /** Milliseconds since the epoch; null when the expression never fires again. */
  nextRun: number | null;
}

export interface RunRecord {
  scheduledAt: number;
  finishedAt: number;
  status: 'succeeded' | 'failed' | 'refused';
  httpCode: number;
  attempts: number;
  error: string;
}

interface JobRow {
  namespace: string;
  id: string;
  name: string;
  description: string;
  interval: string;
  callback: string;
  next_run: number | null;
}

function toJob(row: JobRow): JobRecord {
  return { ...row, nextRun: row.next_run };
}

function prepareStatements(db: SqliteDatabase) {
  const columns = 'namespace, id, name, description, interval, callback, next_run';
  return {
    upsert: db.prepare(
      `INSERT INTO cron_jobs (${columns}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (namespace, id) DO UPDATE SET name = excluded.name, description = excluded.description,
         interval = excluded.interval, callback = excluded.callback, next_run = excluded.next_run`,
    ),
    list: db.prepare(`SELECT ${columns} FROM cron_jobs WHERE namespace = ? ORDER BY created_at, id`),
    delete: db.prepare('DELETE FROM cron_jobs WHERE namespace = ? AND id = ?'),
    deleteRuns: db.prepare('DELETE FROM cron_runs WHERE namespace = ? AND job_id = ?'),
    due: db.prepare(`SELECT ${columns} FROM cron_jobs WHERE next_run <= ? ORDER BY next_run LIMIT ?`),
    claim: db.prepare('UPDATE cron_jobs SET next_run = ? WHERE namespace = ? AND id = ? AND next_run = ?'),
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

export class CronStore {
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(
    private readonly db: SqliteDatabase,
    /** Seals the signing secrets at rest (the platform's master key); without one they are kept as they are. */
    private readonly cipher?: SecretCipher,
  ) {
    migrate(db, 'cron', MIGRATIONS);
    this.statements = prepareStatements(db);
    this.sealPlainSecrets();
  }

  save(job: JobRecord, now: number): void {
    const { namespace, id, name, description, interval, callback, nextRun } = job;
    this.statements.upsert.run(namespace, id, name, description, interval, callback, nextRun, now);
  }

  list(namespace: string): JobRecord[] {
    return (this.statements.list.all(namespace) as JobRow[]).map(toJob);
  }

  delete(namespace: string, id: string): boolean {
    return this.db.transaction(() => {
      this.statements.deleteRuns.run(namespace, id);
      return this.statements.delete.run(namespace, id).changes > 0;
    })();
  }

  /** Jobs whose next run is at or before `now`, earliest first. */
  due(now: number, limit = 100): JobRecord[] {
    return (this.statements.due.all(now, limit) as JobRow[]).map(toJob);
  }

  /**
   * Moves a job's next run from `expected` to `next`; true only for the one caller (in any
   * process) whose update found `expected` still there: that caller fires the run.
   */
  claim(job: JobRecord, expected: number, next: number | null): boolean {
    return this.statements.claim.run(next, job.namespace, job.id, expected).changes === 1;
  }

  /** Records a finished run and drops all but the newest RUNS_KEPT (unless the job was deleted meanwhile). */
  recordRun(namespace: string, jobId: string, run: RunRecord): void {
    this.db.transaction(() => {
      if (!this.statements.jobExists.get(namespace, jobId)) return;
      this.statements.insertRun.run(namespace, jobId, run.scheduledAt, run.finishedAt, run.status, run.httpCode, run.attempts, run.error);
      this.statements.trimRuns.run(namespace, jobId, namespace, jobId);
    })();
  }

  runs(namespace: string, jobId: string): RunRecord[] {
    const rows = this.statements.runs.all(namespace, jobId) as {
      scheduled_at: number;
      finished_at: number;
      status: RunRecord['status'];
      http_code: number;
      attempts: number;
      error: string;
    }[];
    return rows.map((row) => ({
      scheduledAt: row.scheduled_at,
      finishedAt: row.finished_at,
      status: row.status,
      httpCode: row.http_code,
      attempts: row.attempts,
      error: row.error,
    }));
  }

  /** The namespace's signing secret, made on first use (the same one in every process). */
  signingSecret(namespace: string): string {
    const existing = this.statements.secret.get(namespace) as { secret: string } | undefined;
    if (existing) return this.open(namespace, existing.secret);
    this.statements.insertSecret.run(namespace, this.seal(namespace, `whsec_${randomBytes(32).toString('hex')}`), Date.now());
    return this.open(namespace, (this.statements.secret.get(namespace) as { secret: string }).secret);
  }

  /** Seals the signing secrets stored in plain text before they were sealed; once, at start. */
  private sealPlainSecrets(): void {
    if (!this.cipher) return;
    this.db.transaction(() => {
      for (const row of this.statements.allSecrets.all() as { namespace: string; secret: string }[]) {
        if (!isSealedText(row.secret)) this.statements.replaceSecret.run(this.seal(row.namespace, row.secret), row.namespace, row.secret);
      }
    }).immediate();
  }

  private seal(namespace: string, secret: string): string {
    return this.cipher ? this.cipher.sealText(secret, ['cron.signing_secret', namespace]) : secret;
  }

  private open(namespace: string, stored: string): string {
    return this.cipher ? this.cipher.openText(stored, ['cron.signing_secret', namespace]) : stored;
  }

  /** Forgets the jobs, runs and secrets of every environment of a project. */
  deleteProject(projectId: string): void {
    const prefix = `${projectId}/`;
    this.db.transaction(() => {
      this.statements.deleteProjectRuns.run(prefix.length, prefix);
      this.statements.deleteProjectJobs.run(prefix.length, prefix);
      this.statements.deleteProjectSecrets.run(prefix.length, prefix);
    })();
  }
}
