/**
 * Image references by the distribution project's rules: Docker Hub defaults (`library/`,
 * `latest`), registry hosts told apart from path components, digests, and clear refusals.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { apiHostOf, familiarReference, formatReference, isLoopbackRegistry, parseReference } from './reference.js';
import { schemesFor } from './registry-client.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  const cases: [string, string, string][] = [
    ['redis', 'docker.io/library/redis:latest', 'redis:latest'],
    ['redis:7', 'docker.io/library/redis:7', 'redis:7'],
    ['bitnami/redis:7.2', 'docker.io/bitnami/redis:7.2', 'bitnami/redis:7.2'],
    ['docker.io/redis', 'docker.io/library/redis:latest', 'redis:latest'],
    ['index.docker.io/library/redis:7', 'docker.io/library/redis:7', 'redis:7'],
    ['registry-1.docker.io/library/redis:7', 'docker.io/library/redis:7', 'redis:7'],
    [`ghcr.io/org/app@${DIGEST}`, `ghcr.io/org/app@${DIGEST}`, `ghcr.io/org/app@${DIGEST}`],
    [`ghcr.io/org/app:v1@${DIGEST}`, `ghcr.io/org/app:v1@${DIGEST}`, `ghcr.io/org/app:v1@${DIGEST}`],
    ['localhost:5000/app:v2', 'localhost:5000/app:v2', 'localhost:5000/app:v2'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
    ['127.0.0.1:5000/team/deep/app', '127.0.0.1:5000/team/deep/app:latest', '127.0.0.1:5000/team/deep/app:latest'],
    ['quay.io/a_b/c-d.e:1.0-rc_1', 'quay.io/a_b/c-d.e:1.0-rc_1', 'quay.io/a_b/c-d.e:1.0-rc_1'],
  ];
  for (const [input, canonical, familiar] of cases) {
    test(`${input} -> ${canonical}`, () => {
      const reference = parseReference(input);
      assert.equal(formatReference(reference), canonical);
      assert.equal(familiarReference(reference), familiar);
    });
  }

  test('Docker Hub answers at registry-1.docker.io; others at their own host', () => {
    assert.equal(apiHostOf(parseReference('redis').registry), 'registry-1.docker.io');
    assert.equal(apiHostOf(parseReference('ghcr.io/a/b').registry), 'ghcr.io');
  });

  test('invalid references are refused with what is wrong', () => {
    assert.throws(() => parseReference(''), /the image reference is empty/);
    assert.throws(() => parseReference('Redis:7'), /"Redis" in "Redis:7" is not a valid repository name component/);
    assert.throws(() => parseReference('redis:-bad'), /"-bad" in "redis:-bad" is not a valid tag/);
    assert.throws(() => parseReference('redis@sha256:abc'), /"sha256:abc" in "redis@sha256:abc" is not a digest/);
    assert.throws(() => parseReference('ghcr.io/'), /names no repository/);
    assert.throws(() => parseReference('a//b'), /"" in "a\/\/b" is not a valid repository name component/);
  });

  test('only loopback registries may speak plain HTTP, unless marked insecure', () => {
    for (const host of ['localhost:5000', '127.0.0.1:5000', '127.8.9.10', '[::1]:5000']) {
      assert.ok(isLoopbackRegistry(host), host);
      assert.deepEqual(schemesFor(host), ['https', 'http']);
    }
    for (const host of ['docker.io', 'ghcr.io', '10.0.0.5:5000', 'localhost.example.com', '128.0.0.1']) {
      assert.ok(!isLoopbackRegistry(host), host);
      assert.deepEqual(schemesFor(host), ['https']);
    }
    assert.deepEqual(schemesFor('10.0.0.5:5000', true), ['https', 'http']);
  });
});
