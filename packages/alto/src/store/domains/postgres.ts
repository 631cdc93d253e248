/**
 * @module store/domains/postgres
 * The PostgreSQL adapter of the HTTPS names port, for Alto running with `--store postgres://`:
 * every node reads the same accounts, certificates, challenges and custom domains. A domain's
 * owner is its primary key, so of two apps racing for one exactly one gets it; an app's list is
 * replaced in one transaction, rolled back whole when another app has one of the domains.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
import type { DomainClaim, DomainStore, StoredAccount, StoredCertificate, StoredChallenge, StoredDomain } from './port.js';
import { accountFromRow, certificateFromRow, domainFromRow } from './sqlite.js';

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_acme_accounts (
     directory TEXT PRIMARY KEY,
     email TEXT NOT NULL,
     key_sealed TEXT NOT NULL,
     url TEXT);
   CREATE TABLE IF NOT EXISTS alto_tls_certificates (
     host TEXT COLLATE "C" PRIMARY KEY,
     certificate TEXT,
     key_sealed TEXT,
     not_before BIGINT,
     not_after BIGINT,
     error TEXT,
     failures INTEGER NOT NULL DEFAULT 0,
     attempt_at BIGINT,
     updated_at BIGINT NOT NULL);
   CREATE TABLE IF NOT EXISTS alto_acme_challenges (
     kind TEXT NOT NULL,
     name TEXT COLLATE "C" NOT NULL,
     value TEXT NOT NULL,
     expires_at BIGINT NOT NULL,
     PRIMARY KEY (kind, name));
   CREATE TABLE IF NOT EXISTS alto_custom_domains (
     domain TEXT COLLATE "C" PRIMARY KEY,
     project_id TEXT NOT NULL,
     app TEXT NOT NULL,
     created_at BIGINT NOT NULL);
   CREATE INDEX IF NOT EXISTS alto_custom_domains_by_app ON alto_custom_domains (project_id, app);`,
];

/** Thrown inside a transaction to roll it back when a domain is another app's. */
class DomainTaken extends Error {
  constructor(readonly owner: StoredDomain) {
    super('taken');
  }
}

export class PostgresDomainStore implements DomainStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  static async open(pool: pg.Pool): Promise<PostgresDomainStore> {
    await migratePostgres(pool, 'domains', MIGRATIONS);
    return new PostgresDomainStore(pool);
  }

  async account(directory: string): Promise<StoredAccount | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM alto_acme_accounts WHERE directory = $1', [directory]);
    return rows[0] && accountFromRow(rows[0]);
  }

  async claimAccount(account: StoredAccount): Promise<StoredAccount> {
    await this.pool.query('INSERT INTO alto_acme_accounts (directory, email, key_sealed, url) VALUES ($1, $2, $3, $4) ON CONFLICT (directory) DO NOTHING', [
      account.directory,
      account.email,
      account.keySealed,
      account.url ?? null,
    ]);
    return (await this.account(account.directory))!;
  }

  async setAccountUrl(directory: string, url: string): Promise<void> {
    await this.pool.query('UPDATE alto_acme_accounts SET url = $2 WHERE directory = $1', [directory, url]);
  }

  async certificate(host: string): Promise<StoredCertificate | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM alto_tls_certificates WHERE host = $1', [host]);
    return rows[0] && certificateFromRow(rows[0]);
  }

  async listCertificates(): Promise<StoredCertificate[]> {
    const { rows } = await this.pool.query('SELECT * FROM alto_tls_certificates ORDER BY host');
    return rows.map(certificateFromRow);
  }

  async requestCertificate(host: string, at: number): Promise<boolean> {
    const result = await this.pool.query('INSERT INTO alto_tls_certificates (host, failures, attempt_at, updated_at) VALUES ($1, 0, $2, $2) ON CONFLICT (host) DO NOTHING', [host, at]);
    return result.rowCount === 1;
  }

  async saveCertificate(host: string, issued: { certificate: string; keySealed: string; notBefore: number; notAfter: number }, at: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_tls_certificates (host, certificate, key_sealed, not_before, not_after, error, failures, attempt_at, updated_at) VALUES ($1, $2, $3, $4, $5, NULL, 0, NULL, $6)
       ON CONFLICT (host) DO UPDATE SET certificate = EXCLUDED.certificate, key_sealed = EXCLUDED.key_sealed, not_before = EXCLUDED.not_before,
         not_after = EXCLUDED.not_after, error = NULL, failures = 0, attempt_at = NULL, updated_at = EXCLUDED.updated_at`,
      [host, issued.certificate, issued.keySealed, issued.notBefore, issued.notAfter, at],
    );
  }

  async recordFailure(host: string, error: string, attemptAt: number, at: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_tls_certificates (host, error, failures, attempt_at, updated_at) VALUES ($1, $2, 1, $3, $4)
       ON CONFLICT (host) DO UPDATE SET error = EXCLUDED.error, failures = alto_tls_certificates.failures + 1, attempt_at = EXCLUDED.attempt_at, updated_at = EXCLUDED.updated_at`,
      [host, error, attemptAt, at],
    );
  }

  async removeCertificate(host: string): Promise<void> {
    await this.pool.query('DELETE FROM alto_tls_certificates WHERE host = $1', [host]);
  }

  async putChallenge(challenge: StoredChallenge): Promise<void> {
    await this.pool.query(
      'INSERT INTO alto_acme_challenges (kind, name, value, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, name) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at',
      [challenge.kind, challenge.name, challenge.value, challenge.expiresAt],
    );
  }

  async challenge(kind: StoredChallenge['kind'], name: string, now: number): Promise<StoredChallenge | undefined> {
    const { rows } = await this.pool.query('SELECT kind, name, value, expires_at FROM alto_acme_challenges WHERE kind = $1 AND name = $2 AND expires_at > $3', [kind, name, now]);
    return rows[0] && { kind: rows[0].kind, name: rows[0].name, value: rows[0].value, expiresAt: Number(rows[0].expires_at) };
  }

  async removeChallenge(kind: StoredChallenge['kind'], name: string): Promise<void> {
    await this.pool.query('DELETE FROM alto_acme_challenges WHERE kind = $1 AND name = $2', [kind, name]);
  }

  async claimDomain(domain: StoredDomain): Promise<DomainClaim> {
    const inserted = await this.pool.query('INSERT INTO alto_custom_domains (domain, project_id, app, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (domain) DO NOTHING', [
      domain.domain,
      domain.projectId,
      domain.app,
      domain.createdAt,
    ]);
    if (inserted.rowCount === 1) return { outcome: 'claimed' };
    const owner = await this.domain(domain.domain);
    if (!owner) return this.claimDomain(domain);
    return owner.projectId === domain.projectId && owner.app === domain.app ? { outcome: 'unchanged' } : { outcome: 'taken', owner };
  }

  async replaceAppDomains(projectId: string, app: string, domains: string[], at: number): Promise<{ taken?: StoredDomain }> {
    try {
      await inTransaction(this.pool, async (client) => {
        await client.query('DELETE FROM alto_custom_domains WHERE project_id = $1 AND app = $2 AND NOT (domain = ANY($3::text[]))', [projectId, app, domains]);
        for (const domain of domains) {
          await client.query('INSERT INTO alto_custom_domains (domain, project_id, app, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (domain) DO NOTHING', [domain, projectId, app, at]);
          const { rows } = await client.query('SELECT * FROM alto_custom_domains WHERE domain = $1', [domain]);
          const owner = domainFromRow(rows[0]);
          if (owner.projectId !== projectId || owner.app !== app) throw new DomainTaken(owner);
        }
      });
      return {};
    } catch (error) {
      if (error instanceof DomainTaken) return { taken: error.owner };
      throw error;
    }
  }

  async domain(domain: string): Promise<StoredDomain | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM alto_custom_domains WHERE domain = $1', [domain]);
    return rows[0] && domainFromRow(rows[0]);
  }

  async listDomains(projectId?: string): Promise<StoredDomain[]> {
    const { rows } =
      projectId === undefined
        ? await this.pool.query('SELECT * FROM alto_custom_domains ORDER BY domain')
        : await this.pool.query('SELECT * FROM alto_custom_domains WHERE project_id = $1 ORDER BY domain', [projectId]);
    return rows.map(domainFromRow);
  }

  async removeDomain(projectId: string, domain: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_custom_domains WHERE domain = $1 AND project_id = $2', [domain, projectId]);
    return result.rowCount === 1;
  }

  async close(): Promise<void> {}
}
