/**
 * @module store/domains/port
 * The HTTPS names port: the ACME account of each directory, the certificate of each host Alto
 * serves with its renewal state, the challenges being answered (so whichever node an ACME server
 * reaches answers them), and the custom domains of apps. Private keys reach the store sealed with
 * the master key (the caller seals and opens; the store keeps text). Shared by every node with
 * `--store postgres://`, else in the SQLite file. Times are milliseconds since the epoch.
 * Adapters: `sqlite.ts` and `postgres.ts`.
 */

export interface StoredAccount {
  /** The ACME directory URL: one account per directory. */
  directory: string;
  email: string;
  /** The account's private key, PEM, sealed. */
  keySealed: string;
  /** The account URL the directory gave, once it gave one. */
  url?: string;
}

/** A host's certificate and the state of its issuance or renewal. */
export interface StoredCertificate {
  host: string;
  /** PEM: the leaf, then its chain; absent until one was issued. */
  certificate?: string;
  /** The private key, PEM, sealed; with `certificate`. */
  keySealed?: string;
  notBefore?: number;
  notAfter?: number;
  /** The last failed attempt's reason, until an attempt succeeds. */
  error?: string;
  /** Attempts failed in a row: the back-off grows with it. */
  failures: number;
  /** When to try next (issue, retry or renew); undefined: at renewal time. */
  attemptAt?: number;
  updatedAt: number;
}

/** A challenge being answered: an HTTP-01 token's key authorization, or a TLS-ALPN-01 certificate. */
export interface StoredChallenge {
  kind: 'http-01' | 'tls-alpn-01';
  /** The token (http-01) or the host (tls-alpn-01). */
  name: string;
  /** The key authorization (http-01), or the certificate and sealed key as JSON (tls-alpn-01). */
  value: string;
  expiresAt: number;
}

/** A custom domain of an app. */
export interface StoredDomain {
  domain: string;
  projectId: string;
  app: string;
  createdAt: number;
}

/** What claiming a domain found: claimed now, already this app's, or another app's (`owner`). */
export type DomainClaim = { outcome: 'claimed' | 'unchanged' } | { outcome: 'taken'; owner: StoredDomain };

export interface DomainStore {
  readonly backend: 'sqlite' | 'postgres';
  account(directory: string): Promise<StoredAccount | undefined>;
  /** Records the account unless one exists for its directory; returns the one that stands. */
  claimAccount(account: StoredAccount): Promise<StoredAccount>;
  setAccountUrl(directory: string, url: string): Promise<void>;

  certificate(host: string): Promise<StoredCertificate | undefined>;
  listCertificates(): Promise<StoredCertificate[]>;
  /** Asks for a certificate for `host` (no change when it has a row): true when the row is new. */
  requestCertificate(host: string, at: number): Promise<boolean>;
  /** An issued certificate: replaces the one before, clears the failures. */
  saveCertificate(host: string, certificate: { certificate: string; keySealed: string; notBefore: number; notAfter: number }, at: number): Promise<void>;
  /** A failed attempt: the certificate held (if any) stays. */
  recordFailure(host: string, error: string, attemptAt: number, at: number): Promise<void>;
  removeCertificate(host: string): Promise<void>;

  putChallenge(challenge: StoredChallenge): Promise<void>;
  challenge(kind: StoredChallenge['kind'], name: string, now: number): Promise<StoredChallenge | undefined>;
  removeChallenge(kind: StoredChallenge['kind'], name: string): Promise<void>;

  /** Gives `domain` to the app unless another app (of any project) has it. */
  claimDomain(domain: StoredDomain): Promise<DomainClaim>;
  /**
   * Makes `domains` the app's whole list in one transaction: its other domains go, the new ones
   * are claimed. When another app has one of them nothing changes and that one comes back.
   */
  replaceAppDomains(projectId: string, app: string, domains: string[], at: number): Promise<{ taken?: StoredDomain }>;
  domain(domain: string): Promise<StoredDomain | undefined>;
  /** Every custom domain, or those of one project. */
  listDomains(projectId?: string): Promise<StoredDomain[]>;
  /** Removes `domain` if the project has it; false otherwise. */
  removeDomain(projectId: string, domain: string): Promise<boolean>;
  close(): Promise<void>;
}
