import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadSigningKey, UrlSigner, type Grant } from './signing.js';

const signer = new UrlSigner(Buffer.alloc(32, 7));
const grant: Grant = { method: 'GET', namespace: 'p/dev', name: 'a/b.txt', expiresAt: 2_000_000_000 };

test('a signature is valid for its grant until it expires', () => {
  const signature = signer.sign(grant);
  assert.match(signature, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(signer.check(grant, signature, 1_999_999_999_000), 'valid');
  assert.equal(signer.check(grant, signature, 2_000_000_000_000), 'expired');
});

test('changing any part of the grant, or the signature, makes it invalid', () => {
  const signature = signer.sign(grant);
  const now = 1_000_000_000_000;
  const changed: Grant[] = [
    { ...grant, method: 'PUT' },
    { ...grant, namespace: 'p/prod' },
    { ...grant, name: 'a/b.txT' },
    { ...grant, expiresAt: grant.expiresAt + 1 },
    { ...grant, visibility: 'public' },
  ];
  for (const other of changed) assert.equal(signer.check(other, signature, now), 'invalid', JSON.stringify(other));
  const flipped = (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1);
  assert.equal(signer.check(grant, flipped, now), 'invalid');
  assert.equal(signer.check(grant, '', now), 'invalid');
  assert.equal(signer.check(grant, signature.slice(0, 20), now), 'invalid');
  // A forged expiry in the past reads as "does not match", not as "expired".
  assert.equal(signer.check({ ...grant, expiresAt: 1 }, signature, now), 'invalid');
  assert.equal(new UrlSigner(Buffer.alloc(32, 8)).check(grant, signature, now), 'invalid', 'another server’s key');
});

test('the signing key is made once, owner-only, and read back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-signing-'));
  try {
    const first = loadSigningKey(dir, '');
    assert.equal(first.length, 32);
    assert.equal(statSync(join(dir, 'space-signing-key')).mode & 0o777, 0o600);
    assert.deepEqual(loadSigningKey(dir, ''), first);
    assert.deepEqual(loadSigningKey(dir, 'ab'.repeat(32)), Buffer.alloc(32, 0xab), 'the environment wins');
    assert.throws(() => loadSigningKey(dir, 'short'), /64 hex characters/);
    writeFileSync(join(dir, 'space-signing-key'), 'garbage');
    assert.throws(() => loadSigningKey(dir, ''), /does not hold a signing key/);
    assert.equal(readFileSync(join(dir, 'space-signing-key'), 'utf8'), 'garbage');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
