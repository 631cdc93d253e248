/**
 * @module store/otp/sqlite
 * The embedded adapter of the otp port: the `otp_secrets` table the otp block created before it
 * had a port (existing data folders keep their ids). `update` runs in one IMMEDIATE
 * transaction, so a read and its write cannot interleave with another change, in this process
 * or another sharing the file.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { OtpChange, OtpRecord, OtpStore } from './port.js';

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

interface Row {
  secret: Buffer;
  algorithm: string;
  digits: number;
  period: number;
  last_step: number;
  failures: number;
  failures_since: number;
  created_at: number;
}

function recordFromRow(row: Row): OtpRecord {
  return {
    secret: row.secret,
    algorithm: row.algorithm,
    digits: row.digits,
    periodSeconds: row.period,
    lastStep: row.last_step,
    failures: row.failures,
    failuresSince: row.failures_since,
    createdAt: row.created_at,
  };
}

function prepareStatements(db: SqliteDatabase) {
  return {
    get: db.prepare(
      `SELECT secret, algorithm, digits, period, last_step, failures, failures_since, created_at
       FROM otp_secrets WHERE namespace = ? AND id = ?`,
    ),
    save: db.prepare(
      `INSERT INTO otp_secrets (namespace, id, secret, algorithm, digits, period, last_step, failures, failures_since, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (namespace, id) DO UPDATE SET secret = excluded.secret, algorithm = excluded.algorithm,
         digits = excluded.digits, period = excluded.period, last_step = excluded.last_step,
         failures = excluded.failures, failures_since = excluded.failures_since`,
    ),
    deleteProject: db.prepare('DELETE FROM otp_secrets WHERE substr(namespace, 1, ?) = ?'),
    allSecrets: db.prepare('SELECT namespace, id, secret FROM otp_secrets'),
    replaceSecret: db.prepare('UPDATE otp_secrets SET secret = ? WHERE namespace = ? AND id = ? AND secret = ?'),
  };
}

export class SqliteOtpStore implements OtpStore {
  readonly backend = 'sqlite';
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'otp', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  async update<T>(namespace: string, id: string, change: (current: OtpRecord | undefined) => OtpChange<T>): Promise<T> {
    return this.db
      .transaction(() => {
        const row = this.statements.get.get(namespace, id) as Row | undefined;
        const { result, save } = change(row && recordFromRow(row));
        if (save) {
          this.statements.save.run(
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
          );
        }
        return result;
      })
      .immediate();
  }

  async rewriteSecrets(rewrite: (namespace: string, id: string, stored: Buffer) => Buffer | undefined): Promise<number> {
    return this.db
      .transaction(() => {
        let replaced = 0;
        for (const row of this.statements.allSecrets.all() as { namespace: string; id: string; secret: Buffer }[]) {
          const replacement = rewrite(row.namespace, row.id, row.secret);
          if (replacement !== undefined) replaced += this.statements.replaceSecret.run(replacement, row.namespace, row.id, row.secret).changes;
        }
        return replaced;
      })
      .immediate();
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    return this.statements.deleteProject.run(prefix.length, prefix).changes;
  }
}
