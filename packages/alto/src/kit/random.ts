/**
 * @module kit/random
 * Random strings from the operating system's CSPRNG, in the alphabets identifiers use.
 */
import { randomBytes, randomInt } from 'node:crypto';

export const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const URL_ALPHABET = 'useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict';

/** `length` characters drawn uniformly from `alphabet` (no modulo bias). */
export function randomString(length: number, alphabet: string = BASE62): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

/** Encode bytes as a big-endian base-62 number, left-padded to `width` characters. */
export function base62(bytes: Uint8Array, width = 0): string {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  let out = '';
  while (value > 0n) {
    out = BASE62[Number(value % 62n)] + out;
    value /= 62n;
  }
  return out.padStart(width, '0');
}

export function randomBase62(byteCount: number): string {
  // ceil(bits / log2(62)) characters always hold `byteCount` bytes.
  const width = Math.ceil((byteCount * 8) / Math.log2(62));
  return base62(randomBytes(byteCount), width);
}
