/**
 * @module blocks/secret/crypto
 * Encryption of secret values at rest, and the master key it uses. AES-256-GCM with a fresh
 * random 12-byte nonce per write; the namespace, path and key are the additional authenticated
 * data, so a ciphertext copied to another row or another project fails to decrypt instead of
 * revealing its value there. Sealed layout: version (1 byte) | nonce (12) | ciphertext | tag (16).
 *
 * The master key comes from ALTO_MASTER_KEY (32 bytes as 64 hex or 44 base64 characters), else
 * from `<data>/master-key`, generated on first start with owner-only permissions.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../kit/files.js';

const FORMAT_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

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
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.masterKey, nonce);
    cipher.setAAD(associatedData(address));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.of(FORMAT_VERSION), nonce, body, cipher.getAuthTag()]);
  }

  /** Throws when the ciphertext was altered, moved to another address, or sealed with another key. */
  open(sealed: Buffer, address: SecretAddress): string {
    if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== FORMAT_VERSION) {
      throw new Error('not a sealed secret of a known format');
    }
    const nonce = sealed.subarray(1, 1 + NONCE_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', this.masterKey, nonce);
    decipher.setAAD(associatedData(address));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]).toString('utf8');
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
