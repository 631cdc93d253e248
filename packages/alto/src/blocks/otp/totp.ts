/**
 * @module blocks/otp/totp
 * HOTP (RFC 4226) and TOTP (RFC 6238) with node:crypto's HMAC, base-32 secrets (RFC 4648) and
 * the `otpauth://totp/...` URIs that authenticator apps read from a QR code.
 */
import { createHmac } from 'node:crypto';

export const OTP_ALGORITHMS = ['SHA1', 'SHA256', 'SHA512'] as const;
export type OtpAlgorithm = (typeof OTP_ALGORITHMS)[number];

const HMAC_NAMES: Record<OtpAlgorithm, string> = { SHA1: 'sha1', SHA256: 'sha256', SHA512: 'sha512' };
/** Secret sizes RFC 6238 uses for each hash: the hash's output length. */
export const SECRET_BYTES: Record<OtpAlgorithm, number> = { SHA1: 20, SHA256: 32, SHA512: 64 };

/** RFC 4226 §5.3: HMAC of the 8-byte big-endian counter, dynamic truncation, modulo 10^digits. */
export function hotp(secret: Uint8Array, counter: number, digits: number, algorithm: OtpAlgorithm = 'SHA1'): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const hash = createHmac(HMAC_NAMES[algorithm], secret).update(message).digest();
  const offset = hash[hash.length - 1] & 0x0f;
  const binary =
    ((hash[offset] & 0x7f) << 24) | (hash[offset + 1] << 16) | (hash[offset + 2] << 8) | hash[offset + 3];
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** RFC 6238: the time step (counter) of a moment, with T0 = 0. */
export function timeStep(timeMs: number, periodSeconds: number): number {
  return Math.floor(timeMs / 1000 / periodSeconds);
}

export interface TotpSettings {
  digits: number;
  periodSeconds: number;
  algorithm: OtpAlgorithm;
}

export function totp(secret: Uint8Array, timeMs: number, settings: TotpSettings): string {
  return hotp(secret, timeStep(timeMs, settings.periodSeconds), settings.digits, settings.algorithm);
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base 32 without padding, as authenticator apps expect secrets. */
export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

/** Decodes base 32, ignoring case, spaces and padding. */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s=]/g, '').toUpperCase();
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of clean) {
    const value = BASE32.indexOf(char);
    if (value < 0) throw new Error(`"${char}" is not a base-32 character`);
    buffer = ((buffer << 5) | value) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((buffer >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/**
 * The key URI format of Google Authenticator (and every app that copied it):
 * `otpauth://totp/Issuer:account?secret=...&issuer=Issuer&algorithm=SHA1&digits=6&period=30`.
 */
export function otpauthUri(options: { issuer: string; account: string; secret: Uint8Array } & TotpSettings): string {
  const label = `${encodeURIComponent(options.issuer)}:${encodeURIComponent(options.account)}`;
  const query = new URLSearchParams({
    secret: base32Encode(options.secret),
    issuer: options.issuer,
    algorithm: options.algorithm,
    digits: String(options.digits),
    period: String(options.periodSeconds),
  });
  return `otpauth://totp/${label}?${query.toString().replace(/\+/g, '%20')}`;
}
