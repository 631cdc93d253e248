/**
 * @module kit/master-key
 * Encryption at rest with the server's master key: the `secret` block's values, and every other
 * value a copy of the database must not reveal (TOTP seeds, cron signing secrets, SMTP URLs,
 * tokens in the outbox). AES-256-GCM with a fresh random 12-byte nonce per write; where the value
 * lives is the additional authenticated data, so a ciphertext copied to another row or another
 * project fails to decrypt instead of revealing its value there. Sealed layout: version (1 byte)
 * | nonce (12) | ciphertext | tag (16).
 *
 * Fields sealed with `sealText` / `sealBytes` carry a prefix, so values written before they were
 * sealed still read back as they are (and are sealed on their next write).
 *
 * The master key comes from ALTO_MASTER_KEY (32 bytes as 64 hex or 44 base64 characters), else
 * from `<data>/master-key`, generated on first start with owner-only permissions.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './files.js';

const FORMAT_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
/** What a sealed text field starts with; anything else is a value stored before sealing. */
const SEALED_TEXT_PREFIX = 'alto-sealed:v1:';
/** What a sealed binary field starts with. */
const SEALED_BYTES_PREFIX = Buffer.from('ALTO-SEALED-1:', 'latin1');

/** Where a secret lives; bound into its ciphertext. */
export interface SecretAddress {
  namespace: string;
  path: string;
  key: string;
}

export class SecretCipher {
  constructor(private readonly masterKey: Buffer) {
    if (masterKey.length !== KEY_BYTES) throw new Error(`the master key must be ${KEY_BYTES} bytes, not ${masterKey.length}`);
  }

  seal(plaintext: string, address: SecretAddress): Buffer {
    return this.sealWith(Buffer.from(plaintext, 'utf8'), associatedData(address));
  }

  /** Throws when the ciphertext was altered, moved to another address, or sealed with another key. */
  open(sealed: Buffer, address: SecretAddress): string {
    return this.openWith(sealed, associatedData(address)).toString('utf8');
  }

  /**
   * Seals a text field for a text column. `where` names the field and its row (e.g.
   * `['cron.signing_secret', namespace]`) and must be given again to open it.
   */
  sealText(plaintext: string, where: readonly string[]): string {
    return SEALED_TEXT_PREFIX + this.sealWith(Buffer.from(plaintext, 'utf8'), fieldData(where)).toString('base64');
  }

  /** The plain text of a field sealed by `sealText`; a value stored before sealing comes back as it is. */
  openText(stored: string, where: readonly string[]): string {
    if (!isSealedText(stored)) return stored;
    return this.openWith(Buffer.from(stored.slice(SEALED_TEXT_PREFIX.length), 'base64'), fieldData(where)).toString('utf8');
  }

  /** Seals a binary field for a BLOB column, as `sealText` does for text. */
  sealBytes(plaintext: Buffer, where: readonly string[]): Buffer {
    return Buffer.concat([SEALED_BYTES_PREFIX, this.sealWith(plaintext, fieldData(where))]);
  }

  /** The bytes of a field sealed by `sealBytes`; a value stored before sealing comes back as it is. */
  openBytes(stored: Buffer, where: readonly string[]): Buffer {
    if (!isSealedBytes(stored)) return stored;
    return this.openWith(stored.subarray(SEALED_BYTES_PREFIX.length), fieldData(where));
  }

  private sealWith(plaintext: Buffer, associated: Buffer): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.masterKey, nonce);
    cipher.setAAD(associated);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.of(FORMAT_VERSION), nonce, body, cipher.getAuthTag()]);
  }

  private openWith(sealed: Buffer, associated: Buffer): Buffer {
    if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== FORMAT_VERSION) {
      throw new Error('not a sealed secret of a known format');
    }
    const nonce = sealed.subarray(1, 1 + NONCE_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', this.masterKey, nonce);
    decipher.setAAD(associated);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
  }

  /**
   * A value that identifies the key without revealing it. The store keeps the first one it sees,
   * so starting with a different key fails at once rather than on the first read of a secret.
   */
  fingerprint(): string {
    return createHmac('sha256', this.masterKey).update('alto secret master key fingerprint').digest('hex').slice(0, 32);
  }
}

/** JSON of the parts: unambiguous however the parts are spelled. */
function associatedData(address: SecretAddress): Buffer {
  return Buffer.from(JSON.stringify(['alto.secret.v1', address.namespace, address.path, address.key]), 'utf8');
}

/** A field's additional data: its own label, so no field's ciphertext opens as a `secret` value. */
function fieldData(where: readonly string[]): Buffer {
  return Buffer.from(JSON.stringify(['alto.field.v1', ...where]), 'utf8');
}

/** Whether a text field holds a sealed value (else it was stored before values were sealed). */
export function isSealedText(stored: string): boolean {
  return stored.startsWith(SEALED_TEXT_PREFIX);
}

/** Whether a binary field holds a sealed value. */
export function isSealedBytes(stored: Buffer): boolean {
  return stored.length > SEALED_BYTES_PREFIX.length && stored.subarray(0, SEALED_BYTES_PREFIX.length).equals(SEALED_BYTES_PREFIX);
}

/** Reads 32 bytes from 64 hex characters or 44 base64 characters; undefined for anything else. */
export function parseMasterKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  if (/^[A-Za-z0-9+/]{43}=$/.test(trimmed)) {
    const bytes = Buffer.from(trimmed, 'base64');
    if (bytes.length === KEY_BYTES) return bytes;
  }
  return undefined;
}

export interface MasterKey {
  key: Buffer;
  /** Where it came from, for the start-up log. */
  source: 'ALTO_MASTER_KEY' | 'file' | 'generated';
  path?: string;
}

/**
 * The master key: ALTO_MASTER_KEY when set, else `<dataDir>/master-key`, created on first start.
 * Throws a sentence a person can act on when either holds something that is not a key.
 */
export function loadMasterKey(dataDir: string, fromEnvironment = process.env.ALTO_MASTER_KEY): MasterKey {
  if (fromEnvironment) {
    const key = parseMasterKey(fromEnvironment);
    if (!key) {
      throw new Error(
        `ALTO_MASTER_KEY must be 32 bytes written as 64 hex characters or 44 base64 characters ` +
          `(make one with "openssl rand -hex 32"); the value given is ${fromEnvironment.trim().length} characters and neither`,
      );
    }
    return { key, source: 'ALTO_MASTER_KEY' };
  }
  const path = join(dataDir, 'master-key');
  if (existsSync(path)) return { key: readKeyFile(path), source: 'file', path };
  const generated = randomBytes(KEY_BYTES);
  // Written whole under a temporary name, then linked into place: link never replaces an
  // existing file, so of two processes starting together one key wins and both use it.
  const candidate = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  writeFileAtomic(candidate, generated.toString('hex') + '\n', 0o600);
  try {
    linkSync(candidate, path);
    return { key: generated, source: 'generated', path };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { key: readKeyFile(path), source: 'file', path };
  } finally {
    unlinkSync(candidate);
  }
}

function readKeyFile(path: string): Buffer {
  const key = parseMasterKey(readFileSync(path, 'utf8'));
  if (!key) {
    throw new Error(
      `${path} does not hold a master key (64 hex characters); restore it from your backup, or set ALTO_MASTER_KEY. ` +
        'Without the right key the stored secrets cannot be read.',
    );
  }
  return key;
}
