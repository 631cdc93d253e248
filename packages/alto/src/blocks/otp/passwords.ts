/**
 * @module blocks/otp/passwords
 * One-time passwords per id: Generate makes (once) and keeps a TOTP secret for the id and
 * returns the current code; Validate accepts a code of the current time step or one step either
 * side (clock skew), never the same step twice (replay), and refuses with 429 once an id has
 * had too many wrong codes within its window (guessing). Each call reads and writes its id in
 * one atomic step of the otp port; the secrets are sealed with the master key at rest.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import { isSealedBytes, type SecretCipher } from '../../kit/master-key.js';
import type { OtpRecord, OtpStore } from '../../store/otp/port.js';
import { base32Encode, hotp, otpauthUri, SECRET_BYTES, timeStep, type OtpAlgorithm } from './totp.js';

/** M3O's defaults: 6 digits, codes valid for 60 seconds. */
export const DEFAULT_DIGITS = 6;
export const DEFAULT_PERIOD_SECONDS = 60;
export const MIN_DIGITS = 4;
export const MAX_DIGITS = 10;
export const MAX_PERIOD_SECONDS = 86_400;
/** Steps either side of the current one that Validate accepts (RFC 6238 §5.2 suggests one). */
const SKEW_STEPS = 1;

export interface OtpLimits {
  /** Wrong codes allowed for one id within the window; further validations get 429. */
  maxFailures: number;
  /** Length of that window in seconds; undefined: the id's period (its `expiry`). */
  failureWindowSeconds?: number;
}

export const DEFAULT_LIMITS: OtpLimits = { maxFailures: 5 };

function positiveInteger(name: string, value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(parsed) || parsed < 1) {
    throw new Error(`${name}=${JSON.stringify(value)} must be a whole number of 1 or more`);
  }
  return parsed;
}

/** ALTO_OTP_MAX_FAILURES and ALTO_OTP_FAILURE_WINDOW_SECONDS override the defaults. */
export function limitsFromEnvironment(env: NodeJS.ProcessEnv = process.env): OtpLimits {
  const limits: OtpLimits = { ...DEFAULT_LIMITS };
  if (env.ALTO_OTP_MAX_FAILURES) limits.maxFailures = positiveInteger('ALTO_OTP_MAX_FAILURES', env.ALTO_OTP_MAX_FAILURES);
  if (env.ALTO_OTP_FAILURE_WINDOW_SECONDS) {
    limits.failureWindowSeconds = positiveInteger('ALTO_OTP_FAILURE_WINDOW_SECONDS', env.ALTO_OTP_FAILURE_WINDOW_SECONDS);
  }
  return limits;
}

export interface GenerateOptions {
  /** Digits; 0 or undefined for the default. */
  size?: number;
  /** Period in seconds; 0 or undefined for the default. */
  expiry?: number;
  /** Kept from the first Generate when undefined. */
  algorithm?: OtpAlgorithm;
  /** Shown by authenticator apps beside the id. */
  issuer: string;
}

export interface GeneratedCode {
  code: string;
  /** The id's secret in base 32, for authenticator apps. */
  secret: string;
  /** `otpauth://totp/...`, the URI authenticator apps scan as a QR code. */
  uri: string;
}

function sameCode(given: string, expected: string): boolean {
  return given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
}

export interface OneTimePasswordsOptions {
  limits?: OtpLimits;
  now?: () => number;
  /** Seals the TOTP secrets at rest (the platform's master key); without one they are kept as they are. */
  cipher?: SecretCipher;
}

/** A stored record with its secret opened and its algorithm one this block knows. */
type OpenedRecord = Omit<OtpRecord, 'algorithm'> & { algorithm: OtpAlgorithm };

export class OneTimePasswords {
  private readonly limits: OtpLimits;
  private readonly now: () => number;
  private readonly cipher?: SecretCipher;

  constructor(
    private readonly store: OtpStore,
    options: OneTimePasswordsOptions = {},
  ) {
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.now = options.now ?? Date.now;
    this.cipher = options.cipher;
  }

  /** Seals the secrets stored in plain before they were sealed; once, at start. Returns how many. */
  async sealPlainSecrets(): Promise<number> {
    if (!this.cipher) return 0;
    return this.store.rewriteSecrets((namespace, id, stored) => (isSealedBytes(stored) ? undefined : this.seal(namespace, id, stored)));
  }

  async generate(namespace: string, id: string, options: GenerateOptions): Promise<GeneratedCode> {
    const digits = options.size || DEFAULT_DIGITS;
    if (!Number.isInteger(digits) || digits < MIN_DIGITS || digits > MAX_DIGITS) {
      throw errors.badRequest(`size: ${options.size} digits is not supported; use ${MIN_DIGITS} to ${MAX_DIGITS} (default ${DEFAULT_DIGITS})`);
    }
    const periodSeconds = options.expiry || DEFAULT_PERIOD_SECONDS;
    if (!Number.isInteger(periodSeconds) || periodSeconds < 1 || periodSeconds > MAX_PERIOD_SECONDS) {
      throw errors.badRequest(
        `expiry: ${options.expiry} is not supported; use a whole number of seconds from 1 to ${MAX_PERIOD_SECONDS} (default ${DEFAULT_PERIOD_SECONDS})`,
      );
    }
    return this.store.update(namespace, id, (stored) => {
      const now = this.now();
      let record: OpenedRecord;
      let save: OtpRecord | undefined;
      if (!stored) {
        const algorithm = options.algorithm ?? 'SHA1';
        record = { secret: randomBytes(SECRET_BYTES[algorithm]), algorithm, digits, periodSeconds, lastStep: -1, failures: 0, failuresSince: 0, createdAt: now };
        save = { ...record, secret: this.seal(namespace, id, record.secret) };
      } else {
        record = this.opened(namespace, id, stored);
        const algorithm = options.algorithm ?? record.algorithm;
        if (algorithm !== record.algorithm || digits !== record.digits || periodSeconds !== record.periodSeconds) {
          // Steps counted in another period mean nothing in the new one.
          const lastStep = periodSeconds !== record.periodSeconds ? -1 : record.lastStep;
          record = { ...record, algorithm, digits, periodSeconds, lastStep };
          save = { ...stored, algorithm, digits, periodSeconds, lastStep };
        }
      }
      const current = timeStep(now, periodSeconds);
      // The current step's code was already accepted once (a second sign-in within one
      // period): hand out the next step's code, which Validate accepts as clock skew.
      const step = [current, current + SKEW_STEPS].find((candidate) => candidate > record.lastStep);
      if (step === undefined) {
        const wait = (current + 1) * periodSeconds - Math.floor(now / 1000);
        throw errors.tooManyRequests(`id: the codes for "${id}" of this moment were already used; generate again in ${wait} s`);
      }
      const generated: GeneratedCode = {
        code: hotp(record.secret, step, digits, record.algorithm),
        secret: base32Encode(record.secret),
        uri: otpauthUri({ issuer: options.issuer, account: id, secret: record.secret, digits, periodSeconds, algorithm: record.algorithm }),
      };
      return { result: generated, save };
    });
  }

  /** True when `code` is valid for `id` now and was not used before; false otherwise. */
  validate(namespace: string, id: string, code: string): Promise<boolean> {
    return this.store.update(namespace, id, (stored) => {
      if (!stored) throw errors.notFound(`id: no code was generated for "${id}"; call Generate first`);
      const record = this.opened(namespace, id, stored);
      const now = this.now();
      const windowSeconds = this.limits.failureWindowSeconds ?? record.periodSeconds;
      let { failures, failuresSince } = record;
      if (failures > 0 && now - failuresSince >= windowSeconds * 1000) failures = 0;
      if (failures >= this.limits.maxFailures) {
        const wait = Math.max(1, Math.ceil((failuresSince + windowSeconds * 1000 - now) / 1000));
        throw errors.tooManyRequests(
          `code: ${failures} wrong codes for "${id}" within ${windowSeconds} s; validation is blocked for ${wait} s more`,
        );
      }
      const current = timeStep(now, record.periodSeconds);
      let accepted: number | undefined;
      // Every candidate is computed and compared, so timing says nothing about which matched.
      for (let step = current - SKEW_STEPS; step <= current + SKEW_STEPS; step++) {
        const matches = step >= 0 && sameCode(code, hotp(record.secret, step, record.digits, record.algorithm));
        if (matches && step > record.lastStep) accepted = step;
      }
      if (accepted !== undefined) {
        return { result: true, save: { ...stored, lastStep: accepted, failures: 0, failuresSince: 0 } };
      }
      return {
        result: false,
        save: { ...stored, failures: failures + 1, failuresSince: failures === 0 ? now : failuresSince },
      };
    });
  }

  deleteProject(projectId: string): Promise<number> {
    return this.store.deleteProject(projectId);
  }

  private opened(namespace: string, id: string, stored: OtpRecord): OpenedRecord {
    const secret = this.cipher ? this.cipher.openBytes(stored.secret, where(namespace, id)) : stored.secret;
    return { ...stored, secret, algorithm: stored.algorithm as OtpAlgorithm };
  }

  private seal(namespace: string, id: string, secret: Buffer): Buffer {
    return this.cipher ? this.cipher.sealBytes(secret, where(namespace, id)) : secret;
  }
}

/** What a sealed secret is bound to: it opens only as this id's secret in this namespace. */
function where(namespace: string, id: string): string[] {
  return ['otp.secret', namespace, id];
}
