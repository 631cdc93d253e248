/**
 * @module platform/failed-logins
 * Failed logins limited per account and per client address, and password checks that cost the
 * same whether or not the account exists: what `user/Login` (a project's own users) and
 * `accounts/Login` (Alto's accounts) share. The counts live in a store's attempts (the users
 * port), so they hold across restarts and across processes sharing the data.
 */
import { hash, verify } from '@node-rs/argon2';
import { randomBytes } from 'node:crypto';
import { errors } from '../kit/errors.js';

/** Where attempts are counted: the users store port offers exactly this. */
export interface AttemptCounter {
  recordAttempt(namespace: string, subject: string, at: number): Promise<void>;
  countAttempts(namespace: string, subject: string, since: number): Promise<number>;
  clearAttempts(namespace: string, subject: string): Promise<void>;
}

export interface FailedLoginLimits {
  /** Failed logins for one email or username (and for one account) within the window before 429. */
  perAccount: number;
  /** Failed logins from one client address within the window before 429. */
  perAddress: number;
  windowMs: number;
}

/** Who a login attempt is counted against: what was typed, where it came from, and the account when there is one. */
export interface LoginSubjects {
  /** `login:email:ada@example.com`: counted even when no such account exists. */
  identifier: string;
  /** `address:203.0.113.7` */
  address: string;
  /** `account:<id>`, when the identifier names an account. */
  account?: string;
}

/** A 429 whose Retry-After is the whole window: the longest the caller may have to wait. */
export function tooManyRequests(detail: string, windowMs: number) {
  return errors.tooManyRequests(detail).withHeaders({ 'retry-after': String(Math.ceil(windowMs / 1000)) });
}

let decoyHash: Promise<string> | undefined;

/**
 * Verifies a password against an argon2 hash, or against a decoy hash when there is none (an
 * unknown account): both cost one argon2 verification, so the time taken does not tell whether
 * the account exists. Never throws: a malformed hash is a wrong password.
 */
export async function verifyPasswordEvenIfUnknown(passwordHash: string | null | undefined, password: string): Promise<boolean> {
  decoyHash ??= hash(randomBytes(16).toString('hex'));
  const valid = await verify(passwordHash || (await decoyHash), password).catch(() => false);
  return Boolean(passwordHash) && valid;
}

/**
 * The account's subject; for an unknown account a stand-in, so that an unknown email reads and
 * writes as many counts as a wrong password does (each write can cost a disk sync: one fewer
 * made unknown emails measurably faster).
 */
function accountSubject(subjects: LoginSubjects): string {
  return subjects.account ?? `no-account:${subjects.identifier}`;
}

export class FailedLoginLimiter {
  constructor(
    private readonly counter: AttemptCounter,
    private readonly limits: FailedLoginLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws 429 when the account (or what was typed) or the address has failed too often within the window. */
  async check(namespace: string, subjects: LoginSubjects): Promise<void> {
    // An attempt counts for exactly the window: one made at T no longer counts at T + window.
    const since = this.now() - this.limits.windowMs + 1;
    const [byIdentifier, byAddress, byAccount] = await Promise.all([
      this.counter.countAttempts(namespace, subjects.identifier, since),
      this.counter.countAttempts(namespace, subjects.address, since),
      this.counter.countAttempts(namespace, accountSubject(subjects), since),
    ]);
    const minutes = Math.round(this.limits.windowMs / 60_000);
    if (Math.max(byIdentifier, byAccount) >= this.limits.perAccount) {
      throw tooManyRequests(`too many failed logins for this account; try again in up to ${minutes} minutes, or reset the password`, this.limits.windowMs);
    }
    if (byAddress >= this.limits.perAddress) {
      throw tooManyRequests(`too many failed logins from this address; try again in up to ${minutes} minutes`, this.limits.windowMs);
    }
  }

  async recordFailure(namespace: string, subjects: LoginSubjects): Promise<void> {
    const at = this.now();
    await Promise.all(
      [subjects.identifier, subjects.address, accountSubject(subjects)].map((subject) => this.counter.recordAttempt(namespace, subject, at)),
    );
  }

  /** After a good login: the account's failures are forgotten (the address's are not). */
  async recordSuccess(namespace: string, subjects: LoginSubjects): Promise<void> {
    await Promise.all(
      [subjects.identifier, subjects.account]
        .filter((subject): subject is string => Boolean(subject))
        .map((subject) => this.counter.clearAttempts(namespace, subject)),
    );
  }
}
