/**
 * @module store/domains/sqlite
 * The embedded adapter of the HTTPS names port: four tables in the SQLite file. A domain's owner
 * is its primary key, so two apps never both claim one; an app's list is replaced in one
 * IMMEDIATE transaction.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { DomainClaim, DomainStore, StoredAccount, StoredCertificate, StoredChallenge, StoredDomain } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE acme_accounts (
     directory TEXT PRIMARY KEY,
     email TEXT NOT NULL,
     key_sealed TEXT NOT NULL,
     url TEXT) WITHOUT ROWID;
   CREATE TABLE tls_certificates (
     host TEXT PRIMARY KEY,
     certificate TEXT,
     key_sealed TEXT,
     not_before INTEGER,
     not_after INTEGER,
     error TEXT,
     failures INTEGER NOT NULL DEFAULT 0,
     attempt_at INTEGER,
     updated_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE TABLE acme_challenges (
     kind TEXT NOT NULL,
     name TEXT NOT NULL,
     value TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (kind, name)) WITHOUT ROWID;
   CREATE TABLE custom_domains (
     domain TEXT PRIMARY KEY,
     project_id TEXT NOT NULL,
     app TEXT NOT NULL,
     created_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE INDEX custom_domains_by_app ON custom_domains (project_id, app);`,
];

interface AccountRow {
  directory: string;
  email: string;
  key_sealed: string;
  url: string | null;
}

interface CertificateRow {
  host: string;
  certificate: string | null;
  key_sealed: string | null;
  not_before: number | null;
  not_after: number | null;
  error: string | null;
  failures: number;
  attempt_at: number | null;
  updated_at: number;
}

interface DomainRow {
  domain: string;
  project_id: string;
  app: string;
  created_at: number;
}

export function accountFromRow(row: AccountRow): StoredAccount {
  return { directory: row.directory, email: row.email, keySealed: row.key_sealed, ...(row.url ? { url: row.url } : {}) };
}

export function certificateFromRow(row: { [K in keyof CertificateRow]: CertificateRow[K] | string }): StoredCertificate {
  const number = (value: unknown) => (value === null ? undefined : Number(value));
  return {
    host: String(row.host),
    ...(row.certificate !== null ? { certificate: String(row.certificate), keySealed: String(row.key_sealed) } : {}),
    ...(row.not_before !== null ? { notBefore: number(row.not_before), notAfter: number(row.not_after) } : {}),
    ...(row.error !== null ? { error: String(row.error) } : {}),
    failures: Number(row.failures),
    ...(row.attempt_at !== null ? { attemptAt: number(row.attempt_at) } : {}),
    updatedAt: Number(row.updated_at),
  };
}

export function domainFromRow(row: { domain: string; project_id: string; app: string; created_at: number | string }): StoredDomain {
  return { domain: row.domain, projectId: row.project_id, app: row.app, createdAt: Number(row.created_at) };
}

export class SqliteDomainStore implements DomainStore {
  readonly backend = 'sqlite';

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'domains', MIGRATIONS);
  }

  async account(directory: string): Promise<StoredAccount | undefined> {
    const row = this.db.prepare('SELECT * FROM acme_accounts WHERE directory = ?').get(directory) as AccountRow | undefined;
    return row && accountFromRow(row);
  }

  async claimAccount(account: StoredAccount): Promise<StoredAccount> {
    this.db.prepare('INSERT INTO acme_accounts (directory, email, key_sealed, url) VALUES (?, ?, ?, ?) ON CONFLICT (directory) DO NOTHING').run(account.directory, account.email, account.keySealed, account.url ?? null);
    return (await this.account(account.directory))!;
  }

  async setAccountUrl(directory: string, url: string): Promise<void> {
    this.db.prepare('UPDATE acme_accounts SET url = ? WHERE directory = ?').run(url, directory);
  }

  async certificate(host: string): Promise<StoredCertificate | undefined> {
    const row = this.db.prepare('SELECT * FROM tls_certificates WHERE host = ?').get(host) as CertificateRow | undefined;
    return row && certificateFromRow(row);
  }

  async listCertificates(): Promise<StoredCertificate[]> {
    return (this.db.prepare('SELECT * FROM tls_certificates ORDER BY host').all() as CertificateRow[]).map(certificateFromRow);
  }

  async requestCertificate(host: string, at: number): Promise<boolean> {
    return this.db.prepare('INSERT INTO tls_certificates (host, failures, attempt_at, updated_at) VALUES (?, 0, ?, ?) ON CONFLICT (host) DO NOTHING').run(host, at, at).changes === 1;
  }

  async saveCertificate(host: string, issued: { certificate: string; keySealed: string; notBefore: number; notAfter: number }, at: number): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO tls_certificates (host, certificate, key_sealed, not_before, not_after, error, failures, attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, NULL, 0, NULL, ?)
         ON CONFLICT (host) DO UPDATE SET certificate = excluded.certificate, key_sealed = excluded.key_sealed, not_before = excluded.not_before,
           not_after = excluded.not_after, error = NULL, failures = 0, attempt_at = NULL, updated_at = excluded.updated_at`,
      )
      .run(host, issued.certificate, issued.keySealed, issued.notBefore, issued.notAfter, at);
  }

  async recordFailure(host: string, error: string, attemptAt: number, at: number): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO tls_certificates (host, error, failures, attempt_at, updated_at) VALUES (?, ?, 1, ?, ?)
         ON CONFLICT (host) DO UPDATE SET error = excluded.error, failures = tls_certificates.failures + 1, attempt_at = excluded.attempt_at, updated_at = excluded.updated_at`,
      )
      .run(host, error, attemptAt, at);
  }

  async removeCertificate(host: string): Promise<void> {
    this.db.prepare('DELETE FROM tls_certificates WHERE host = ?').run(host);
  }

  async putChallenge(challenge: StoredChallenge): Promise<void> {
    this.db
      .prepare('INSERT INTO acme_challenges (kind, name, value, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at')
      .run(challenge.kind, challenge.name, challenge.value, challenge.expiresAt);
  }

  async challenge(kind: StoredChallenge['kind'], name: string, now: number): Promise<StoredChallenge | undefined> {
    const row = this.db.prepare('SELECT kind, name, value, expires_at FROM acme_challenges WHERE kind = ? AND name = ? AND expires_at > ?').get(kind, name, now) as
      | { kind: StoredChallenge['kind']; name: string; value: string; expires_at: number }
      | undefined;
    return row && { kind: row.kind, name: row.name, value: row.value, expiresAt: row.expires_at };
  }

  async removeChallenge(kind: StoredChallenge['kind'], name: string): Promise<void> {
    this.db.prepare('DELETE FROM acme_challenges WHERE kind = ? AND name = ?').run(kind, name);
  }

  async claimDomain(domain: StoredDomain): Promise<DomainClaim> {
    return this.db.transaction((): DomainClaim => {
      const inserted = this.db.prepare('INSERT INTO custom_domains (domain, project_id, app, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (domain) DO NOTHING').run(domain.domain, domain.projectId, domain.app, domain.createdAt);
      if (inserted.changes === 1) return { outcome: 'claimed' };
      const owner = domainFromRow(this.db.prepare('SELECT * FROM custom_domains WHERE domain = ?').get(domain.domain) as DomainRow);
      return owner.projectId === domain.projectId && owner.app === domain.app ? { outcome: 'unchanged' } : { outcome: 'taken', owner };
    }).immediate();
  }

  async replaceAppDomains(projectId: string, app: string, domains: string[], at: number): Promise<{ taken?: StoredDomain }> {
    return this.db.transaction((): { taken?: StoredDomain } => {
      for (const domain of domains) {
        const row = this.db.prepare('SELECT * FROM custom_domains WHERE domain = ?').get(domain) as DomainRow | undefined;
        if (row && (row.project_id !== projectId || row.app !== app)) return { taken: domainFromRow(row) };
      }
      const kept = new Set(domains);
      for (const row of this.db.prepare('SELECT domain FROM custom_domains WHERE project_id = ? AND app = ?').all(projectId, app) as { domain: string }[]) {
        if (!kept.has(row.domain)) this.db.prepare('DELETE FROM custom_domains WHERE domain = ?').run(row.domain);
      }
      for (const domain of domains) this.db.prepare('INSERT INTO custom_domains (domain, project_id, app, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (domain) DO NOTHING').run(domain, projectId, app, at);
      return {};
    }).immediate();
  }

  async domain(domain: string): Promise<StoredDomain | undefined> {
    const row = this.db.prepare('SELECT * FROM custom_domains WHERE domain = ?').get(domain) as DomainRow | undefined;
    return row && domainFromRow(row);
  }

  async listDomains(projectId?: string): Promise<StoredDomain[]> {
    const rows = (projectId === undefined
      ? this.db.prepare('SELECT * FROM custom_domains ORDER BY domain').all()
      : this.db.prepare('SELECT * FROM custom_domains WHERE project_id = ? ORDER BY domain').all(projectId)) as DomainRow[];
    return rows.map(domainFromRow);
  }

  async removeDomain(projectId: string, domain: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM custom_domains WHERE domain = ? AND project_id = ?').run(domain, projectId).changes === 1;
  }

  async close(): Promise<void> {}
}
