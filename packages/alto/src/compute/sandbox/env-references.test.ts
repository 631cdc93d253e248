import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expandArgReferences, expandEnvReferences } from './env-references.js';

test('$(NAME) takes the value of NAME in the same environment, links included', () => {
  const env = expandEnvReferences({
    DB_SERVICE_HOST: '10.0.2.101',
    DB_SERVICE_PORT: '5432',
    DB_PASSWORD: 's3cret',
    DATABASE_URL: 'postgres://app:$(DB_PASSWORD)@$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)/app',
  });
  assert.equal(env.DATABASE_URL, 'postgres://app:s3cret@10.0.2.101:5432/app');
  assert.equal(env.DB_SERVICE_PORT, '5432');
});

test('$$(NAME) stays literal, unknown names stay as written, values are not expanded twice, $VAR is not a reference', () => {
  const env = expandEnvReferences({ A: '$(B)', B: '$(C)', C: 'c', LITERAL: 'cost $$(A) and $(MISSING)', SHELL_STYLE: '$HOME ${C}' });
  assert.equal(env.A, '$(C)');
  assert.equal(env.B, 'c');
  assert.equal(env.LITERAL, 'cost $(A) and $(MISSING)');
  assert.equal(env.SHELL_STYLE, '$HOME ${C}');
});

test("an app's arguments take the expanded environment's values the same way", () => {
  const env = expandEnvReferences({ PASSWORD: 'pw', URL: 'redis://:$(PASSWORD)@host' });
  assert.deepEqual(expandArgReferences(['redis-server', '--requirepass', '$(PASSWORD)', '--url=$(URL)', '$$(PASSWORD)', '$(NOPE)'], env), [
    'redis-server',
    '--requirepass',
    'pw',
    '--url=redis://:pw@host',
    '$(PASSWORD)',
    '$(NOPE)',
  ]);
});
