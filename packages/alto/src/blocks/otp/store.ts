/**
 * @module blocks/otp/store
 * The otp block's own SQLite table: per namespace and id, the TOTP secret and settings, the
 * last time step a code was accepted for (replay protection) and the failed-validation window
 * (rate limiting). Kept in SQLite so all of it holds across calls, restarts and processes.
 */
import { migrate, type SqliteDatabase } from '../../store/sqlite/database.js';
import type { OtpAlgorithm } from './totp.js';

const MIGRATIONS = [
  `CREATE TABLE otp_secrets (
     namespace TEXT NOT NULL,
     id TEXT NOT NULL,
     secret BLOB NOT NULL,
     algorithm TEXT NOT NULL,
     digits INTEGER NOT NULL,
     period INTEGER NOT NULL,
     last_step INTEGER NOT NULL DEFAULT -1,
     failures INTEGER NOT NULL DEFAULT 0,
     failures_since INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, id)) WITHOUT ROWID;`,
];

export interface OtpRecord {
  secret: Buffer;
  algorithm: OtpAlgorithm;
  digits: number;
  periodSeconds: number;
  /** The highest time step a code was accepted for; -1 before the first. */
  lastStep: number;
  /** Failed validations since `failuresSince` (milliseconds since the epoch). */
  failures: number;
  failuresSince: number;
}

interface Row {
  secret: Buffer;
  algorithm: OtpAlgorithm;
  digits: number;
  period: number;
  last_step: number;
  failures: number;
  failures_since: number;
}

function prepareStatements(db: SqliteDatabase) {
  return {
    get: db.prepare(
      `SELECT secret, algorithm, digits, period, last_step, failures, failures_since
       FROM otp_secrets WHERE namespace = ? AND id = ?`,
    ),
    insert: db.prepare(
      `INSERT INTO otp_secrets (namespace, id, secret, algorithm, digits, period, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    saveSettings: db.prepare('UPDATE otp_secrets SET algorithm = ?, digits = ?, period = ? WHERE namespace = ? AND id = ?'),
    saveState: db.prepare(
      'UPDATE otp_secrets SET last_step = ?, failures = ?, failures_since = ? WHERE namespace = ? AND id = ?',
    ),
    deleteProject: db.prepare('DELETE FROM otp_secrets WHERE substr(namespace, 1, ?) = ?'),
  };
}

export class OtpStore {
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'otp', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  /**
   * Runs `work` in one IMMEDIATE transaction: reading a record and writing its new state cannot
   * interleave with another call, in this process or another sharing the file.
   */
  atomically<T>(work: () => T): T {
    return this.db.transaction(work).immediate();
  }

  get(namespace: string, id: string): OtpRecord | undefined {
    const row = this.statements.get.get(namespace, id) as Row | undefined;
    if (!row) return undefined;
    return {
      secret: row.secret,
      algorithm: row.algorithm,
      digits: row.digits,
      periodSeconds: row.period,
      lastStep: row.last_step,
      failures: row.failures,
      failuresSince: row.failures_since,
    };
  }

  insert(namespace: string, id: string, record: Pick<OtpRecord, 'secret' | 'algorithm' | 'digits' | 'periodSeconds'>, now: number): void {
    this.statements.insert.run(namespace, id, record.secret, record.algorithm, record.digits, record.periodSeconds, now);
  }

  saveSettings(namespace: string, id: string, settings: Pick<OtpRecord, 'algorithm' | 'digits' | 'periodSeconds'>): void {
    this.statements.saveSettings.run(settings.algorithm, settings.digits, settings.periodSeconds, namespace, id);
  }

  saveState(namespace: string, id: string, state: Pick<OtpRecord, 'lastStep' | 'failures' | 'failuresSince'>): void {
    this.statements.saveState.run(state.lastStep, state.failures, state.failuresSince, namespace, id);
  }

  /** Forgets the ids of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): number {
    const prefix = `${projectId}/`;
    return this.statements.deleteProject.run(prefix.length, prefix).changes;
  }
}
