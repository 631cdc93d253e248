/**
 * @module blocks/space/signing
 * Presigned URLs: `?expires=<unix seconds>&signature=<base64url HMAC-SHA256>` (plus
 * `&visibility=` on uploads). The MAC covers the method, the namespace, the object name, the
 * expiry and, for uploads, the visibility the object will get, so changing any of them, or
 * using a download URL to upload, breaks the signature. Expiry is checked after the MAC, so a
 * forged expiry is "does not match", never "expired".
 *
 * The key comes from ALTO_SPACE_SIGNING_KEY (64 hex characters; set the same one on every
 * replica); else, on a shared store (PostgreSQL), from the control store's settings, sealed with
 * the master key, so every process signs alike; else from `<data>/space-signing-key`, generated
 * on first start with owner-only permissions. Replacing it revokes every presigned URL handed out
 * so far.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../kit/files.js';
import type { Platform } from '../../platform/platform.js';
import type { Visibility } from '../../store/objects/port.js';

const KEY_BYTES = 32;
const KEY_FILE = 'space-signing-key';

export type SignedMethod = 'GET' | 'PUT';

/** What a presigned URL allows. */
export interface Grant {
  method: SignedMethod;
  namespace: string;
  name: string;
  /** Unix time in seconds after which the URL is refused. */
  expiresAt: number;
  /** For uploads: the visibility the uploaded object gets. */
  visibility?: Visibility;
}

export type SignatureCheck = 'valid' | 'expired' | 'invalid';

export class UrlSigner {
  constructor(private readonly key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`the signing key must be ${KEY_BYTES} bytes, not ${key.length}`);
  }

  sign(grant: Grant): string {
    return this.mac(grant).toString('base64url');
  }

  check(grant: Grant, signature: string, nowMs = Date.now()): SignatureCheck {
    const given = Buffer.from(signature, 'base64url');
    const expected = this.mac(grant);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
    return nowMs >= grant.expiresAt * 1000 ? 'expired' : 'valid';
  }

  /** JSON of the parts: unambiguous however names are spelled. */
  private mac(grant: Grant): Buffer {
    const message = JSON.stringify(['alto.space.v1', grant.method, grant.namespace, grant.name, grant.expiresAt, grant.visibility ?? '']);
    return createHmac('sha256', this.key).update(message).digest();
  }
}

function parseKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  return /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, 'hex') : undefined;
}

/**
 * The signing key of this cloud: ALTO_SPACE_SIGNING_KEY when set; else the one shared through the
 * store (the first process records this node's key file when it has one, so URLs it signed
 * before keep working, else a new key); else the data folder's file.
 */
export async function loadCloudSigningKey(platform: Platform, fromEnvironment = process.env.ALTO_SPACE_SIGNING_KEY): Promise<Buffer> {
  const dataDir = platform.config.dataDir;
  if (fromEnvironment) return loadSigningKey(dataDir, fromEnvironment);
  const path = join(dataDir, KEY_FILE);
  const shared = await platform.sharedKey('space_signing_key', () => (existsSync(path) ? readKeyFile(path) : randomBytes(KEY_BYTES)));
  return shared ?? loadSigningKey(dataDir, fromEnvironment);
}

/** The signing key: ALTO_SPACE_SIGNING_KEY when set, else `<dataDir>/space-signing-key`, made on first start. */
export function loadSigningKey(dataDir: string, fromEnvironment = process.env.ALTO_SPACE_SIGNING_KEY): Buffer {
  if (fromEnvironment) {
    const key = parseKey(fromEnvironment);
    if (!key) throw new Error('ALTO_SPACE_SIGNING_KEY must be 32 bytes written as 64 hex characters (make one with "openssl rand -hex 32")');
    return key;
  }
  const path = join(dataDir, KEY_FILE);
  if (existsSync(path)) return readKeyFile(path);
  const generated = randomBytes(KEY_BYTES);
  // Written whole under a temporary name, then linked into place: link never replaces an
  // existing file, so of two processes starting together one key wins and both use it.
  const candidate = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  writeFileAtomic(candidate, generated.toString('hex') + '\n', 0o600);
  try {
    linkSync(candidate, path);
    return generated;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return readKeyFile(path);
  } finally {
    unlinkSync(candidate);
  }
}

function readKeyFile(path: string): Buffer {
  const key = parseKey(readFileSync(path, 'utf8'));
  if (!key) throw new Error(`${path} does not hold a signing key (64 hex characters); delete it to make a new one (presigned URLs handed out so far stop working)`);
  return key;
}
