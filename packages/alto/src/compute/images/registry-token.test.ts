/**
 * Registry tokens: what is issued reads back until it expires, and a token altered, sealed with
 * another master key or made of plain JSON is no token. Scopes are read as token servers read them.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { SecretCipher } from '../../kit/master-key.js';
import { issueToken, readToken, requestedScopes, TOKEN_LIFETIME_SECONDS } from './registry-token.js';

test('a token carries its key and grants until it expires, and cannot be altered or forged', () => {
  const cipher = new SecretCipher(randomBytes(32));
  const now = Date.now();
  const issued = issueToken(cipher, 'alto_key', { 'shop/web': ['pull', 'push'] }, now);
  assert.equal(issued.expiresIn, TOKEN_LIFETIME_SECONDS);
  assert.deepEqual(readToken(cipher, issued.token, now + 1000), { key: 'alto_key', expiresAt: now + TOKEN_LIFETIME_SECONDS * 1000, grants: { 'shop/web': ['pull', 'push'] } });
  assert.equal(readToken(cipher, issued.token, now + TOKEN_LIFETIME_SECONDS * 1000), undefined, 'expired');

  const bytes = Buffer.from(issued.token, 'base64url');
  bytes[bytes.length - 20] ^= 1;
  assert.equal(readToken(cipher, bytes.toString('base64url'), now), undefined, 'altered');
  assert.equal(readToken(new SecretCipher(randomBytes(32)), issued.token, now), undefined, 'another master key');
  const forged = Buffer.from(JSON.stringify({ key: 'alto_key', expiresAt: now + 1e9, grants: { 'other/web': ['push'] } })).toString('base64url');
  assert.equal(readToken(cipher, forged, now), undefined, 'plain JSON');
  assert.equal(readToken(cipher, 'not a token!', now), undefined);
  assert.equal(readToken(cipher, 'A'.repeat(10_000), now), undefined, 'too long to decode');
});

test('scopes: repository scopes with their actions, others left out', () => {
  assert.deepEqual(requestedScopes(['repository:shop/web:pull,push', 'registry:catalog:*', 'repository:shop/team/api:pull repository:shop/db:*']), [
    { repository: 'shop/web', actions: ['pull', 'push'] },
    { repository: 'shop/team/api', actions: ['pull'] },
    { repository: 'shop/db', actions: ['*'] },
  ]);
  assert.deepEqual(requestedScopes(['repository:nocolon', 'bogus']), []);
});
