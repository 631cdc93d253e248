/**
 * @module compute/images/registry-token
 * The bearer tokens of Alto's registry, as Docker's token flow hands them out: the token
 * endpoint checks an Alto key (the Basic password) and returns a short-lived token that carries
 * the key, sealed with the master key (AES-256-GCM, so it can be neither read nor altered
 * outside Alto), with its expiry and the repositories and actions it grants. Each request with a
 * token checks the key inside again, so a revoked key's tokens stop at once.
 */
import type { SecretCipher } from '../../kit/master-key.js';

/** How long a token is good for; clients ask for a new one when it lapses. */
export const TOKEN_LIFETIME_SECONDS = 300;
/** Bound into each token's ciphertext, so no other sealed value passes for a token. */
const TOKEN_ADDRESS = { namespace: '', path: 'registry-token', key: 'v1' };
/** Tokens longer than this are not even decoded. */
const MAX_TOKEN_LENGTH = 8192;

/** What a token grants: actions (`pull`, `push`, `delete`) per repository (`<project>/<name>`). */
export type Grants = Record<string, string[]>;

export interface RegistryToken {
  /** The Alto key the token was issued for. */
  key: string;
  /** Expiry, ms since the epoch. */
  expiresAt: number;
  grants: Grants;
}

export function issueToken(cipher: SecretCipher, key: string, grants: Grants, now = Date.now()): { token: string; expiresIn: number; issuedAt: string } {
  const payload: RegistryToken = { key, expiresAt: now + TOKEN_LIFETIME_SECONDS * 1000, grants };
  const sealed = cipher.seal(JSON.stringify(payload), TOKEN_ADDRESS);
  return { token: sealed.toString('base64url'), expiresIn: TOKEN_LIFETIME_SECONDS, issuedAt: new Date(now).toISOString() };
}

/** The token's content, or undefined when it is not one of ours, was altered or has expired. */
export function readToken(cipher: SecretCipher, token: string, now = Date.now()): RegistryToken | undefined {
  if (token.length > MAX_TOKEN_LENGTH || !/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
  let payload: RegistryToken;
  try {
    payload = JSON.parse(cipher.open(Buffer.from(token, 'base64url'), TOKEN_ADDRESS)) as RegistryToken;
  } catch {
    return undefined;
  }
  if (typeof payload?.key !== 'string' || typeof payload.expiresAt !== 'number' || payload.expiresAt <= now) return undefined;
  if (typeof payload.grants !== 'object' || payload.grants === null) return undefined;
  return payload;
}

/**
 * Parses the `scope` parameters of a token request: `repository:<name>:<action>[,<action>]`.
 * Others (`registry:catalog:*`) are left out, as a token server grants what it can.
 */
export function requestedScopes(scopes: string[]): { repository: string; actions: string[] }[] {
  const wanted: { repository: string; actions: string[] }[] = [];
  for (const text of scopes.slice(0, 16)) {
    for (const scope of text.split(' ').slice(0, 16)) {
      const first = scope.indexOf(':');
      const last = scope.lastIndexOf(':');
      if (first < 0 || last === first || scope.slice(0, first) !== 'repository' || scope.length > 512) continue;
      wanted.push({ repository: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',').filter(Boolean) });
    }
  }
  return wanted;
}
