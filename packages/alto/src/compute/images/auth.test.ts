/**
 * `WWW-Authenticate` challenges as registries send them, and the credentials file: owner-only,
 * one entry per registry (Docker Hub's aliases are one registry).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CredentialStore, parseChallenges } from './auth.js';

describe('parseChallenges', () => {
  test('Docker Hub, GHCR and basic challenges', () => {
    assert.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull"'), [
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/redis:pull' } },
    ]);
    assert.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
    assert.deepEqual(parseChallenges(['Bearer realm="https://ghcr.io/token", service="ghcr.io",scope="repository:a/b:pull"']), [
      { scheme: 'bearer', params: { realm: 'https://ghcr.io/token', service: 'ghcr.io', scope: 'repository:a/b:pull' } },
    ]);
  });

  test('several challenges, unquoted values and escaped quotes', () => {
    assert.deepEqual(parseChallenges('Bearer realm="https://x/token",error="insufficient_scope", Basic realm=plain, Custom realm="say \\"hi\\""'), [
      { scheme: 'bearer', params: { realm: 'https://x/token', error: 'insufficient_scope' } },
      { scheme: 'basic', params: { realm: 'plain' } },
      { scheme: 'custom', params: { realm: 'say "hi"' } },
    ]);
    assert.deepEqual(parseChallenges(undefined), []);
  });
});

describe('CredentialStore', () => {
  test('saves credentials in an owner-only file, one entry per registry', () => {
    const dir = mkdtempSync(join(tmpdir(), 'alto-credentials-'));
    try {
      const path = join(dir, 'images', 'credentials.json');
      const store = new CredentialStore(path);
      assert.equal(store.get('ghcr.io'), undefined);
      store.set('index.docker.io', { username: 'ada', password: 's3cret' });
      store.set('ghcr.io', { username: 'bob', password: 'token' });
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.deepEqual(store.get('docker.io'), { username: 'ada', password: 's3cret' }, 'Docker Hub aliases are one registry');
      assert.deepEqual(store.get('registry-1.docker.io'), { username: 'ada', password: 's3cret' });
      assert.deepEqual(store.list().map((entry) => `${entry.registry} ${entry.username}`), ['docker.io ada', 'ghcr.io bob']);
      assert.equal(store.remove('docker.io'), true);
      assert.equal(store.remove('docker.io'), false);
      assert.equal(store.get('docker.io'), undefined);
      assert.ok(!readFileSync(path, 'utf8').includes('s3cret'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
