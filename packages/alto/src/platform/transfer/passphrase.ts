/**
 * @module platform/transfer/passphrase
 * Seals the secrets section of a project archive with a passphrase (`--passphrase-file`), so an
 * archive that leaves the machine does not carry the project's secrets in clear. scrypt turns
 * the passphrase into a key (a fresh salt per archive entry), AES-256-GCM seals the entry: a
 * wrong passphrase or a changed byte fails to open, and says so, instead of importing garbage.
 * Layout of a sealed entry: `alto-sealed/1` magic (13 bytes), salt (16), nonce (12), tag (16),
 * ciphertext.
 */
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import { errors } from '../../kit/errors.js';

const MAGIC = Buffer.from('alto-sealed/1');
const SALT_BYTES = 16;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** scrypt's cost: about 50 ms here, once per sealed entry (the secrets are few entries). */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
export const MIN_PASSPHRASE_LENGTH = 8;

function keyOf(passphrase: string, salt: Buffer): Buffer {
  return scryptSync(passphrase.normalize('NFC'), salt, 32, SCRYPT);
}

export function checkPassphrase(passphrase: string): void {
  if (passphrase.length < MIN_PASSPHRASE_LENGTH) throw errors.badRequest(`the passphrase is shorter than ${MIN_PASSPHRASE_LENGTH} characters: choose a longer one`);
}

export function sealWithPassphrase(content: Buffer, passphrase: string): Buffer {
  const salt = randomBytes(SALT_BYTES);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keyOf(passphrase, salt), nonce);
  cipher.setAAD(MAGIC);
  const sealed = Buffer.concat([cipher.update(content), cipher.final()]);
  return Buffer.concat([MAGIC, salt, nonce, cipher.getAuthTag(), sealed]);
}

export function openWithPassphrase(content: Buffer, passphrase: string, what: string): Buffer {
  const header = MAGIC.length + SALT_BYTES + NONCE_BYTES + TAG_BYTES;
  if (content.length < header || !content.subarray(0, MAGIC.length).equals(MAGIC)) throw errors.badRequest(`${what} is not sealed with a passphrase as Alto seals it`);
  let offset = MAGIC.length;
  const salt = content.subarray(offset, (offset += SALT_BYTES));
  const nonce = content.subarray(offset, (offset += NONCE_BYTES));
  const tag = content.subarray(offset, (offset += TAG_BYTES));
  const decipher = createDecipheriv('aes-256-gcm', keyOf(passphrase, salt), nonce);
  decipher.setAAD(MAGIC);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(content.subarray(offset)), decipher.final()]);
  } catch {
    throw errors.badRequest(`${what} does not open with this passphrase: give the passphrase the archive was exported with (--passphrase-file)`);
  }
}
