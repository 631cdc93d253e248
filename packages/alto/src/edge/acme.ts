/**
 * @module edge/acme
 * Certificates from an ACME directory (RFC 8555; Let's Encrypt by default) for the hosts Alto
 * serves, and only those: the console's domain, each app's host, each custom domain of an app.
 * A host is asked for when a TLS handshake or a plain request names it and `serves(host)` says
 * it is Alto's; a name Alto does not serve is never sent to the directory.
 *
 * Issuance and renewal run on one process of the cloud at a time (the `tls.certificates` role of
 * store/leader): it answers HTTP-01 on the plain port or TLS-ALPN-01 on the HTTPS port, keeping
 * each challenge in the store so whichever node the directory reaches answers it. A certificate
 * is renewed at two thirds of its lifetime. A failed attempt keeps the certificate held (if any),
 * records its reason (shown by `alto status` and `/metrics`) and is tried again after a back-off
 * that doubles per failure, up to a day. Every node reads the certificates from the store (the
 * private keys sealed with the master key) and serves them.
 */
import { X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import type { Authorization, Client } from 'acme-client';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../kit/logger.js';
import type { SecretCipher } from '../kit/master-key.js';
import type { DomainStore, StoredCertificate } from '../store/domains/port.js';
import type { SingletonLock } from '../store/leader/port.js';
import { SingletonJob } from '../store/leader/singleton.js';
import { loadPair, type CertificateBook } from './certificates.js';

type AcmeLibrary = typeof import('acme-client');
let library: Promise<AcmeLibrary> | undefined;

/** acme-client, loaded on first use: it takes seconds to load, which no start without ACME (nor the CLI) should pay. */
function acmeLibrary(): Promise<AcmeLibrary> {
  library ??= import('acme-client').then((loaded) => ((loaded as { default?: AcmeLibrary }).default ?? (loaded as unknown as AcmeLibrary)));
  return library;
}

export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
export type ChallengeKind = 'http-01' | 'tls-alpn-01';
export const CHALLENGE_KINDS: readonly ChallengeKind[] = ['http-01', 'tls-alpn-01'];
export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

export interface AcmeOptions {
  directoryUrl: string;
  email: string;
  /** The challenges to answer, in order of preference. */
  challenges: readonly ChallengeKind[];
  store: DomainStore;
  lock: SingletonLock;
  cipher: SecretCipher;
  book: CertificateBook;
  /** Whether Alto serves `host` (and may ask a certificate for it); a reason to wait when not yet. */
  serves(host: string): Promise<boolean>;
  log: Logger;
  /** How often the holder of the role looks for certificates due (default 60 s). */
  checkEveryMs?: number;
  /** How often each node reads the certificates from the store (default 5 s). */
  syncEveryMs?: number;
  /** The first retry's delay after a failure; doubled per failure in a row (default 60 s). */
  retryBaseMs?: number;
  /** How long a handshake for a host without a certificate waits for one (default 10 s). */
  handshakeWaitMs?: number;
}

/** One host's certificate as `alto status` shows it. */
export interface CertificateStatus {
  host: string;
  status: 'issuing' | 'active' | 'failed';
  not_after?: string;
  renew_at?: string;
  error?: string;
  failures: number;
  next_attempt?: string;
}

const ROLE = 'tls.certificates';
const MAX_RETRY_MS = 24 * 60 * 60 * 1000;
/** How long a challenge stays answerable: one validation. */
const CHALLENGE_TTL_MS = 10 * 60 * 1000;
/** A name a certificate may be asked for: letters, digits, dashes and dots, at most 253 characters. */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;
const NOT_SERVED_TTL_MS = 10_000;
const MAX_NOT_SERVED = 10_000;
/** Each failure reason kept is cut to this. */
const MAX_ERROR_LENGTH = 500;

/** When a certificate should be renewed: two thirds into its lifetime. */
export function renewalTime(notBefore: number, notAfter: number): number {
  return notBefore + Math.floor(((notAfter - notBefore) * 2) / 3);
}

export class AcmeCertificates {
  private readonly job: SingletonJob;
  private readonly known = new Map<string, StoredCertificate>();
  private readonly waiting = new Map<string, ((context: SecureContext | undefined) => void)[]>();
  private readonly alpnContexts = new Map<string, SecureContext>();
  private client: Client | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Set when a host is asked for while a run goes on: the run looks again before it ends. */
  private demanded = false;
  /** Names found not served, until when: a client repeating a name Alto does not serve costs one look per 10 s. */
  private readonly notServed = new Map<string, number>();

  constructor(private readonly options: AcmeOptions) {
    this.job = new SingletonJob(options.lock, { name: ROLE, everyMs: options.checkEveryMs ?? 60_000, run: () => this.renewDue(), log: options.log });
  }

  /** Loads the stored certificates into the book, then keeps them in step and renews on one node. */
  async start(): Promise<void> {
    await this.sync();
    this.job.start();
    this.syncTimer = setInterval(() => void this.sync().catch((error) => this.options.log.warn({ err: error }, 'reading the certificates failed')), this.options.syncEveryMs ?? 5_000);
    this.syncTimer.unref();
    void this.job.runIfHolder();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    await this.job.close();
    for (const waiters of this.waiting.values()) for (const wake of waiters) wake(undefined);
    this.waiting.clear();
  }

  /** Whether the store has a row for `host` (a certificate, or one being asked for). */
  tracks(host: string): boolean {
    return this.known.has(host);
  }

  /**
   * A handshake named `host` and no certificate is served for it: asks for one if Alto serves
   * the host, and waits a little for it, so the first visitor is answered.
   */
  contextOnDemand(host: string): Promise<SecureContext | undefined> {
    // A host whose last attempt failed is not waited for: the next attempt is after a back-off.
    if (this.known.get(host)?.error !== undefined) return Promise.resolve(this.options.book.servedContext(host));
    return new Promise((resolve) => {
      const waiters = this.waiting.get(host) ?? [];
      waiters.push(resolve);
      this.waiting.set(host, waiters);
      const timer = setTimeout(() => this.wake(host, resolve), this.options.handshakeWaitMs ?? 10_000);
      timer.unref();
      void this.demand(host).then((asked) => {
        if (!asked) this.wake(host, resolve);
      });
    });
  }

  /** Asks for a certificate for `host` when Alto serves it and none is asked for yet; true when one is (or was). */
  async demand(host: string): Promise<boolean> {
    if (this.closed) return false;
    if (this.known.has(host)) return true;
    if (!HOST_NAME.test(host) || (this.notServed.get(host) ?? 0) > Date.now()) return false;
    try {
      if (!(await this.options.serves(host))) {
        if (this.notServed.size >= MAX_NOT_SERVED) this.notServed.clear();
        this.notServed.set(host, Date.now() + NOT_SERVED_TTL_MS);
        return false;
      }
      this.notServed.delete(host);
      const now = Date.now();
      if (await this.options.store.requestCertificate(host, now)) this.options.log.info({ host }, 'certificate asked for');
      this.known.set(host, (await this.options.store.certificate(host)) ?? { host, failures: 0, attemptAt: now, updatedAt: now });
      this.demanded = true;
      void this.job.runIfHolder();
      return true;
    } catch (error) {
      this.options.log.warn({ err: error, host }, 'asking for a certificate failed');
      return false;
    }
  }

  /** The key authorization for an HTTP-01 token, from whichever node stored it. */
  async httpChallenge(token: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9_-]{1,256}$/.test(token)) return undefined;
    return (await this.options.store.challenge('http-01', token, Date.now()))?.value;
  }

  /** The TLS-ALPN-01 certificate for `host`, from whichever node stored it. */
  async tlsChallenge(host: string): Promise<SecureContext | undefined> {
    const cached = this.alpnContexts.get(host);
    if (cached) return cached;
    const stored = await this.options.store.challenge('tls-alpn-01', host, Date.now());
    if (!stored) return undefined;
    const { certificate, keySealed } = JSON.parse(stored.value) as { certificate: string; keySealed: string };
    return loadPair({ certificate, key: this.options.cipher.openText(keySealed, ['acme.challenge', host]) }).context;
  }

  /** Every host's certificate state, for `alto status`. */
  statuses(): CertificateStatus[] {
    return [...this.known.values()].sort((a, b) => a.host.localeCompare(b.host)).map(statusOf);
  }

  /** Gauges for `/metrics`: each certificate's expiry and failures in a row. */
  registerMetrics(registry: Registry): void {
    const certificates = () => [...this.known.values()];
    new Gauge({
      name: 'alto_tls_certificate_expiry_seconds',
      help: 'When each host certificate expires (Unix time; absent while none was issued)',
      labelNames: ['host'],
      registers: [registry],
      collect() {
        this.reset();
        for (const row of certificates()) if (row.notAfter !== undefined) this.set({ host: row.host }, Math.round(row.notAfter / 1000));
      },
    });
    new Gauge({
      name: 'alto_tls_certificate_failures',
      help: 'Failed issuance or renewal attempts in a row per host (0 once one succeeds)',
      labelNames: ['host'],
      registers: [registry],
      collect() {
        this.reset();
        for (const row of certificates()) this.set({ host: row.host }, row.failures);
      },
    });
  }

  /** Reads the certificates from the store: new or renewed ones are served, waiting handshakes woken. */
  private async sync(): Promise<void> {
    const rows = await this.options.store.listCertificates();
    const seen = new Set<string>();
    for (const row of rows) {
      seen.add(row.host);
      const before = this.known.get(row.host);
      this.known.set(row.host, row);
      if (!row.certificate || !row.keySealed || before?.certificate === row.certificate) continue;
      this.serve(row);
    }
    for (const host of this.known.keys()) {
      if (seen.has(host)) continue;
      this.known.delete(host);
      this.options.book.removeIssued(host);
    }
  }

  private serve(row: StoredCertificate): void {
    try {
      this.options.book.setIssued(row.host, { certificate: row.certificate!, key: this.options.cipher.openText(row.keySealed!, ['tls.certificate', row.host]) });
    } catch (error) {
      this.options.log.error({ err: error, host: row.host }, 'a stored certificate does not load');
      return;
    }
    const context = this.options.book.servedContext(row.host);
    for (const wake of this.waiting.get(row.host) ?? []) wake(context);
    this.waiting.delete(row.host);
  }

  private wake(host: string, resolve: (context: SecureContext | undefined) => void): void {
    const waiters = this.waiting.get(host)?.filter((waiter) => waiter !== resolve) ?? [];
    if (waiters.length > 0) this.waiting.set(host, waiters);
    else this.waiting.delete(host);
    resolve(this.options.book.servedContext(host));
  }

  /** On the role's holder: every host due (asked for, failed and waited, or at renewal time) is issued, one at a time. */
  private async renewDue(): Promise<void> {
    do {
      this.demanded = false;
      const now = Date.now();
      for (const row of await this.options.store.listCertificates()) {
        if (this.closed) return;
        if (!isDue(row, now)) continue;
        if (!(await this.options.serves(row.host))) {
          // An app deleted, a domain removed: its certificate is let go rather than renewed.
          this.options.log.info({ host: row.host }, 'no longer served: its certificate is dropped');
          await this.options.store.removeCertificate(row.host);
          continue;
        }
        await this.issue(row);
      }
      await this.sync();
    } while (this.demanded && !this.closed);
  }

  private async issue(row: StoredCertificate): Promise<void> {
    const { host } = row;
    const log = this.options.log.child({ host });
    const started = Date.now();
    const answered = new Set<string>();
    try {
      await probeDirectory(this.options.directoryUrl);
      const client = await this.accountClient();
      const acme = await acmeLibrary();
      const [key, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] }, await acme.crypto.createPrivateEcdsaKey());
      const chain = await client.auto({
        csr,
        email: this.options.email,
        termsOfServiceAgreed: true,
        challengePriority: [...this.options.challenges],
        // Alto's own check would ask the public DNS; the directory's validation is the proof.
        skipChallengeVerification: true,
        challengeCreateFn: (authz, challenge, keyAuthorization) => {
          answered.add(challenge.type);
          return this.answerChallenge(authz, challenge, keyAuthorization);
        },
        challengeRemoveFn: (authz, challenge) => this.withdrawChallenge(authz, challenge),
      });
      const leaf = new X509Certificate(chain);
      const notBefore = Date.parse(leaf.validFrom);
      const notAfter = Date.parse(leaf.validTo);
      await this.options.store.saveCertificate(host, { certificate: chain, keySealed: this.options.cipher.sealText(key.toString(), ['tls.certificate', host]), notBefore, notAfter }, Date.now());
      log.info({ not_after: leaf.validTo, challenge: [...answered].join(','), ms: Date.now() - started }, row.certificate ? 'certificate renewed' : 'certificate issued');
    } catch (error) {
      const reason = describeFailure(error, this.options.directoryUrl);
      const delay = Math.min(MAX_RETRY_MS, (this.options.retryBaseMs ?? 60_000) * 2 ** Math.min(row.failures, 20));
      await this.options.store.recordFailure(host, reason, Date.now() + delay, Date.now());
      log.warn({ reason, retry_in_ms: delay, failures: row.failures + 1 }, row.certificate ? 'certificate renewal failed; the current one is still served' : 'certificate issuance failed');
    }
  }

  /** The ACME client under the directory's account, made (and stored, its key sealed) on first use. */
  private async accountClient(): Promise<Client> {
    if (this.client) return this.client;
    const acme = await acmeLibrary();
    const { store, cipher, directoryUrl, email } = this.options;
    const where = ['acme.account', directoryUrl];
    let account = await store.account(directoryUrl);
    if (!account) {
      const key = await acme.crypto.createPrivateEcdsaKey();
      account = await store.claimAccount({ directory: directoryUrl, email, keySealed: cipher.sealText(key.toString(), where) });
    }
    const client = new acme.Client({
      directoryUrl,
      accountKey: cipher.openText(account.keySealed, where),
      ...(account.url ? { accountUrl: account.url } : {}),
      // An order or challenge is polled from 1 s on (the library's default starts at 5 s), backing off to 30 s.
      backoffMin: 1_000,
      backoffMax: 30_000,
      backoffAttempts: 12,
    });
    if (!account.url) {
      await client.createAccount({ termsOfServiceAgreed: true, contact: [`mailto:${email}`] });
      await store.setAccountUrl(directoryUrl, client.getAccountUrl());
    }
    this.client = client;
    return client;
  }

  private async answerChallenge(authz: Authorization, challenge: { type: string; token: string }, keyAuthorization: string): Promise<void> {
    const expiresAt = Date.now() + CHALLENGE_TTL_MS;
    const host = authz.identifier.value;
    if (challenge.type === 'http-01') {
      await this.options.store.putChallenge({ kind: 'http-01', name: challenge.token, value: keyAuthorization, expiresAt });
      return;
    }
    if (challenge.type === 'tls-alpn-01') {
      const [key, certificate] = await (await acmeLibrary()).crypto.createAlpnCertificate(authz, keyAuthorization);
      this.alpnContexts.set(host, loadPair({ certificate: certificate.toString(), key: key.toString() }).context);
      const value = JSON.stringify({ certificate: certificate.toString(), keySealed: this.options.cipher.sealText(key.toString(), ['acme.challenge', host]) });
      await this.options.store.putChallenge({ kind: 'tls-alpn-01', name: host, value, expiresAt });
      return;
    }
    throw new Error(`the directory offers no challenge Alto answers here (${this.options.challenges.join(', ')}) for ${host}`);
  }

  private async withdrawChallenge(authz: Authorization, challenge: { type: string; token: string }): Promise<void> {
    if (challenge.type === 'http-01') await this.options.store.removeChallenge('http-01', challenge.token);
    if (challenge.type === 'tls-alpn-01') {
      this.alpnContexts.delete(authz.identifier.value);
      await this.options.store.removeChallenge('tls-alpn-01', authz.identifier.value);
    }
  }
}

function isDue(row: StoredCertificate, now: number): boolean {
  if (row.attemptAt !== undefined && row.attemptAt > now) return false;
  if (!row.certificate || row.error !== undefined) return true;
  return now >= renewalTime(row.notBefore!, row.notAfter!);
}

function statusOf(row: StoredCertificate): CertificateStatus {
  const iso = (time: number | undefined) => (time === undefined ? undefined : new Date(time).toISOString());
  const status = row.error !== undefined ? 'failed' : row.certificate ? 'active' : 'issuing';
  return {
    host: row.host,
    status,
    ...(row.notAfter !== undefined ? { not_after: iso(row.notAfter), renew_at: iso(renewalTime(row.notBefore!, row.notAfter)) } : {}),
    ...(row.error !== undefined ? { error: row.error } : {}),
    failures: row.failures,
    ...(row.attemptAt !== undefined ? { next_attempt: iso(row.attemptAt) } : {}),
  };
}

/** How long the directory has to answer the check before an attempt. */
const DIRECTORY_PROBE_MS = 10_000;

/**
 * Fails with a sentence when the directory does not answer: the ACME library retries a refused
 * connection for over a minute and then fails without saying why.
 */
async function probeDirectory(directoryUrl: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(directoryUrl, { signal: AbortSignal.timeout(DIRECTORY_PROBE_MS) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach the ACME directory at ${directoryUrl} (${cause?.code ?? cause?.message ?? (error as Error).message})`);
  }
  await response.body?.cancel();
  if (!response.ok) throw new Error(`the ACME directory at ${directoryUrl} answered ${response.status}`);
}

/** A failure as one sentence: the directory's problem detail, or why it could not be reached. */
function describeFailure(error: unknown, directoryUrl: string): string {
  const failure = error as { code?: string; message?: string; isAxiosError?: boolean };
  const lost = error instanceof TypeError && /reading 'config'/.test(String(failure.message));
  const text =
    failure.code && /^E[A-Z]+$/.test(failure.code)
      ? `cannot reach the ACME directory at ${directoryUrl} (${failure.code})`
      : lost
        ? `the ACME directory at ${directoryUrl} stopped answering`
        : String(failure.message ?? error);
  return text.length > MAX_ERROR_LENGTH ? text.slice(0, MAX_ERROR_LENGTH) + '…' : text;
}
