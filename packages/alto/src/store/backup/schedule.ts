/**
 * @module store/backup/schedule
 * Scheduled backups inside the running Alto (`alto up --backup-to ... --backup-every 6h
 * --backup-keep 14`): one backup at a time, each followed by a prune to the newest `keep`. The
 * next one is due `every` after the newest finished backup in the target, so a restart neither
 * skips one nor makes an extra; a failed one is tried again after a tenth of the period (at most
 * 10 minutes later). The running Alto copies from its own database connection and claims volumes
 * as its instances do (both passed in by the edge). What happened is kept for `/v1/status` and
 * `/metrics`: the last success, the last failure with its reason, counts of each, the next time.
 */
import type { Logger } from '../../kit/logger.js';
import { backupInstance, type BackupInstanceOptions } from './backup-instance.js';
import { pruneBackups } from './prune.js';
import { openBackupTarget } from './target.js';

export interface BackupScheduleOptions extends Pick<BackupInstanceOptions, 'dataDir' | 'postgres' | 'postgresUrl' | 'objectsInBucket' | 'database' | 'claimVolume' | 'snapshotVolumeInUse'> {
  /** A folder or `s3://...`. */
  to: string;
  everyMs: number;
  keep: number;
  log: Logger;
  now?: () => number;
}

export interface BackupScheduleStatus {
  /** The target, without credentials (there are none in it). */
  to: string;
  every_seconds: number;
  keep: number;
  running: boolean;
  next_at?: string;
  successes: number;
  failures: number;
  last_success?: { id: string; finished_at: string; seconds: number; files: number; copied_blobs: number; copied_bytes: number; skipped: string[] };
  last_failure?: { at: string; reason: string };
}

const RETRY_MAX_MS = 10 * 60 * 1000;

export class BackupSchedule {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private readonly abort = new AbortController();
  private nextAt?: number;
  private successes = 0;
  private failures = 0;
  private lastSuccess?: BackupScheduleStatus['last_success'];
  private lastFailure?: BackupScheduleStatus['last_failure'];
  private lastSuccessAt?: number;
  private readonly now: () => number;

  constructor(private readonly options: BackupScheduleOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Reads when the newest backup finished, and sets the timer for the next one. */
  async start(): Promise<void> {
    let newest: number | undefined;
    try {
      const target = await openBackupTarget(this.options.to, { create: false });
      try {
        const ids = await target.finishedBackups();
        if (ids.length > 0) newest = Date.parse((await target.readManifest(ids[ids.length - 1])).finishedAt);
      } finally {
        await target.close();
      }
    } catch {
      // No target yet (a folder made by the first backup), or not reachable now: the first backup says why.
    }
    this.schedule(newest === undefined ? 0 : Math.max(0, newest + this.options.everyMs - this.now()));
  }

  private schedule(delayMs: number): void {
    if (this.abort.signal.aborted) return;
    this.nextAt = this.now() + delayMs;
    this.timer = setTimeout(() => {
      this.running = this.runOnce().finally(() => {
        this.running = undefined;
      });
    }, delayMs);
    this.timer.unref();
  }

  private async runOnce(): Promise<void> {
    const { log } = this.options;
    const started = this.now();
    this.nextAt = undefined;
    let delay = this.options.everyMs;
    try {
      const target = await openBackupTarget(this.options.to, { create: true });
      try {
        const result = await backupInstance({ ...this.options, to: target, signal: this.abort.signal, report: (line) => log.debug({ backup: line }, 'backup') });
        const pruned = await pruneBackups(target, this.options.keep);
        const { manifest } = result;
        this.successes++;
        this.lastSuccessAt = Date.parse(manifest.finishedAt);
        this.lastSuccess = {
          id: manifest.id,
          finished_at: manifest.finishedAt,
          seconds: (this.now() - started) / 1000,
          files: manifest.files.length,
          copied_blobs: result.copiedBlobs,
          copied_bytes: result.copiedBytes,
          skipped: manifest.skipped.filter((part) => part.what.startsWith('volume ')).map((part) => `${part.what}: ${part.reason}`),
        };
        log.info({ backup: manifest.id, files: manifest.files.length, copied_bytes: result.copiedBytes, pruned: pruned.removedBackups.length }, 'backup done');
      } finally {
        await target.close();
      }
    } catch (error) {
      if (this.abort.signal.aborted) return;
      this.failures++;
      this.lastFailure = { at: new Date(this.now()).toISOString(), reason: (error as Error).message };
      delay = Math.min(RETRY_MAX_MS, Math.ceil(this.options.everyMs / 10));
      log.error({ err: error }, 'backup failed');
    }
    this.schedule(delay);
  }

  status(): BackupScheduleStatus {
    return {
      to: this.options.to.startsWith('s3://') ? this.options.to.replace(/\?.*$/, '') : this.options.to,
      every_seconds: this.options.everyMs / 1000,
      keep: this.options.keep,
      running: this.running !== undefined,
      ...(this.nextAt !== undefined ? { next_at: new Date(this.nextAt).toISOString() } : {}),
      successes: this.successes,
      failures: this.failures,
      ...(this.lastSuccess ? { last_success: this.lastSuccess } : {}),
      ...(this.lastFailure ? { last_failure: this.lastFailure } : {}),
    };
  }

  /** When the last backup of this process finished (seconds since the epoch), for /metrics. */
  lastSuccessSeconds(): number | undefined {
    return this.lastSuccessAt === undefined ? undefined : this.lastSuccessAt / 1000;
  }

  /** Stops the timer; a backup under way stops at its next file, unfinished (no manifest). */
  async close(): Promise<void> {
    this.abort.abort();
    clearTimeout(this.timer);
    await this.running;
  }
}
