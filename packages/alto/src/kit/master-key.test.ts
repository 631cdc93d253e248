import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadMasterKey, parseMasterKey, SecretCipher } from './master-key.js';

const address = { namespace: 'p1/dev', path: 'prod', key: 'stripe' };

test('a sealed value opens at its own address only', () => {
  const cipher = new SecretCipher(randomBytes(32));
  const sealed = cipher.seal('sk_live_123', address);
  assert.equal(cipher.open(sealed, address), 'sk_live_123');
  assert.ok(!sealed.includes(Buffer.from('sk_live_123')), 'the plaintext is not in the sealed bytes');
  for (const moved of [
    { ...address, namespace: 'p2/dev' },
    { ...address, path: '' },
    { ...address, key: 'other' },
    // The parts are bound as a list, so shifting a slash between them is another address.
    { namespace: 'p1/dev', path: 'prod/stripe', key: '' },
  ]) {
    assert.throws(() => cipher.open(sealed, moved), /unable to authenticate|Unsupported state/);
  }
});

test('every seal uses a fresh nonce, and tampering is detected', () => {
  const cipher = new SecretCipher(randomBytes(32));
  const first = cipher.seal('same', address);
  const second = cipher.seal('same', address);
  assert.notDeepEqual(first.subarray(1, 13), second.subarray(1, 13));
  assert.notDeepEqual(first, second);
  const tampered = Buffer.from(first);
  tampered[14] ^= 1;
  assert.throws(() => cipher.open(tampered, address));
  assert.throws(() => new SecretCipher(randomBytes(32)).open(first, address), 'another key cannot open it');
  assert.throws(() => cipher.open(Buffer.from([1, 2, 3]), address), /known format/);
});

test('empty and unicode values round-trip', () => {
  const cipher = new SecretCipher(randomBytes(32));
  for (const value of ['', 'ünïcødé 🔑', 'x'.repeat(65536)]) assert.equal(cipher.open(cipher.seal(value, address), address), value);
});

test('master keys are 64 hex or 44 base64 characters, nothing else', () => {
  const bytes = randomBytes(32);
  assert.deepEqual(parseMasterKey(bytes.toString('hex')), bytes);
  assert.deepEqual(parseMasterKey(bytes.toString('hex').toUpperCase() + '\n'), bytes);
  assert.deepEqual(parseMasterKey(bytes.toString('base64')), bytes);
  for (const bad of ['', 'secret', bytes.toString('hex').slice(2), randomBytes(31).toString('base64'), randomBytes(33).toString('hex'), 'z'.repeat(64)]) {
    assert.equal(parseMasterKey(bad), undefined, bad);
  }
});

test('ALTO_MASTER_KEY wins; a malformed one refuses with a clear message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-key-'));
  try {
    const bytes = randomBytes(32);
    assert.deepEqual(loadMasterKey(dir, bytes.toString('base64')), { key: bytes, source: 'ALTO_MASTER_KEY' });
    assert.throws(() => loadMasterKey(dir, 'hunter2'), /ALTO_MASTER_KEY must be 32 bytes written as 64 hex characters or 44 base64/);
    assert.deepEqual(readdirSync(dir), [], 'no key file is written when the environment gives the key');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without ALTO_MASTER_KEY a key is generated once, owner-only, and reused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-key-'));
  try {
    const first = loadMasterKey(dir, undefined);
    assert.equal(first.source, 'generated');
    const path = join(dir, 'master-key');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['master-key'], 'no temporary file is left behind');
    assert.deepEqual(parseMasterKey(readFileSync(path, 'utf8')), first.key);
    const second = loadMasterKey(dir, '');
    assert.equal(second.source, 'file');
    assert.deepEqual(second.key, first.key);
    writeFileSync(path, 'garbage\n');
    assert.throws(() => loadMasterKey(dir, undefined), /does not hold a master key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
