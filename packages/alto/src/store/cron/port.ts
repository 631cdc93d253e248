/**
 * @module store/cron/port
 * The cron storage port: per tenant namespace, the jobs with their next run time, the last runs
 * of each job, and the namespace's signing secret. The store keeps the secret as it is given
 * (the block seals it with the master key first). Claiming a due run is a compare-and-set of
 * `nextRun`, so among every process sharing the store exactly one fires each run. The claim is
 * kept, with an expiry its owner renews while it delivers, until the run is recorded: a run
 * whose claimer died before delivering is taken again by another process once the claim runs
 * out, so no run is lost with the process that claimed it. Adapters: `sqlite.ts` (embedded)
 * and `postgres.ts` (with `--store postgres://`).
 */

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
  /** When the run was due: unique per run of a job. */
  scheduledAt: number;
  finishedAt: number;
  status: 'succeeded' | 'failed' | 'refused';
  httpCode: number;
  attempts: number;
  error: string;
}

/** Who holds a claimed run, and until when the claim holds unless renewed (ms since the epoch). */
export interface RunClaim {
  owner: string;
  until: number;
}

/** A claimed run whose claim ran out before it was recorded: its claimer stopped or died. */
export interface AbandonedRun {
  job: JobRecord;
  scheduledAt: number;
}

export interface CronStore {
  readonly backend: 'sqlite' | 'postgres';
  /** Creates or replaces a job; `now` orders the namespace's jobs by first creation. */
  save(job: JobRecord, now: number): Promise<void>;
  /** The namespace's jobs, oldest first. */
  list(namespace: string): Promise<JobRecord[]>;
  /** Deletes a job with its runs and claims; false when there was no such job. */
  delete(namespace: string, id: string): Promise<boolean>;
  /** Jobs of every namespace whose next run is at or before `now`, earliest first. */
  due(now: number, limit: number): Promise<JobRecord[]>;
  /**
   * Moves a job's next run from `expected` to `next` and records `claim` on the run due at
   * `expected`, in one step; true only for the one caller (in any process) whose update found
   * `expected` still there: that caller fires the run.
   */
  claim(job: JobRecord, expected: number, next: number | null, claim: RunClaim): Promise<boolean>;
  /** Extends every claim `owner` holds to `until`; returns how many it holds. */
  renewClaims(owner: string, until: number): Promise<number>;
  /** Claimed runs not recorded whose claim ran out at or before `now`, earliest first, with their jobs. */
  abandonedRuns(now: number, limit: number): Promise<AbandonedRun[]>;
  /**
   * Takes over the claim on a job's run due at `scheduledAt` if it ran out at or before `now`;
   * true only for the one caller (in any process) that took it: that caller fires the run.
   */
  reclaim(namespace: string, jobId: string, scheduledAt: number, now: number, claim: RunClaim): Promise<boolean>;
  /** Lets go of every claim `owner` holds (it is stopping), so another process takes them at once. */
  releaseClaims(owner: string): Promise<void>;
  /**
   * Records a finished run (replacing one with the same `scheduledAt`), ends its claim, and
   * drops all but the newest RUNS_KEPT; nothing when the job was deleted meanwhile.
   */
  recordRun(namespace: string, jobId: string, run: RunRecord): Promise<void>;
  /** The job's kept runs, newest first. */
  runs(namespace: string, jobId: string): Promise<RunRecord[]>;
  /**
   * The namespace's stored signing secret; when there is none, `create()`'s value is stored
   * first. Callers racing in several processes all get the one value that was stored.
   */
  signingSecret(namespace: string, create: () => string): Promise<string>;
  /**
   * Offers every stored signing secret to `rewrite`; where it answers a value, that value
   * replaces the secret unless the secret changed meanwhile. Returns how many were replaced.
   */
  rewriteSigningSecrets(rewrite: (namespace: string, stored: string) => string | undefined): Promise<number>;
  /** Forgets the jobs, runs, claims and secrets of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<void>;
}
