/**
 * @module blocks/otp/store
 * The otp block's own SQLite table: per namespace and id, the TOTP secret (sealed with the
 * master key) and settings, the
 * last time step a code was accepted for (replay protection) and the failed-validation window
 * (rate limiting). Kept in SQLite so all of it holds across calls, restarts and processes.
 */
import { isSealedBytes, type SecretCipher } from '../../kit/master-key.js';
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
    allSecrets: db.prepare('SELECT namespace, id, secret FROM otp_secrets'),
    replaceSecret: db.prepare('UPDATE otp_secrets SET secret = ? WHERE namespace = ? AND id = ?'),
  };
}

export class OtpStore {
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(
    private readonly db: SqliteDatabase,
    /** Seals the TOTP secrets at rest (the platform's master key); without one they are kept as they are. */
    private readonly cipher?: SecretCipher,
  ) {
    migrate(db, 'otp', MIGRATIONS);
    this.statements = prepareStatements(db);
    this.sealPlainSecrets();
  }

  /** Seals the secrets stored in plain before they were sealed; once, at start. */
  private sealPlainSecrets(): void {
    if (!this.cipher) return;
    this.db.transaction(() => {
      for (const row of this.statements.allSecrets.all() as { namespace: string; id: string; secret: Buffer }[]) {
        if (!isSealedBytes(row.secret)) this.statements.replaceSecret.run(this.seal(row.namespace, row.id, row.secret), row.namespace, row.id);
      }
    }).immediate();
  }

  private seal(namespace: string, id: string, secret: Buffer): Buffer {
    return this.cipher ? this.cipher.sealBytes(secret, ['otp.secret', namespace, id]) : secret;
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
      secret: this.cipher ? this.cipher.openBytes(row.secret, ['otp.secret', namespace, id]) : row.secret,
      algorithm: row.algorithm,
      digits: row.digits,
      periodSeconds: row.period,
      lastStep: row.last_step,
      failures: row.failures,
      failuresSince: row.failures_since,
    };
  }

  insert(namespace: string, id: string, record: Pick<OtpRecord, 'secret' | 'algorithm' | 'digits' | 'periodSeconds'>, now: number): void {
    this.statements.insert.run(namespace, id, this.seal(namespace, id, record.secret), record.algorithm, record.digits, record.periodSeconds, now);
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
