import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { planStack } from '../compute/templates/compose.js';
import { CATALOGUE_DIR, catalogue, isGitSource, readTemplate } from './templates.js';

test('the catalogue holds postgres, redis, postgres-node and postgres-adminer, each described', () => {
  const entries = catalogue();
  assert.deepEqual(entries.map((entry) => entry.name), ['postgres', 'postgres-adminer', 'postgres-node', 'redis']);
  for (const entry of entries) assert.ok(entry.description.length > 10, `${entry.name} has a description`);
});

test("every catalogue template plans with no value given, no warning, and a generated secret that never shows in the plan's environment when referenced", () => {
  for (const { name } of catalogue()) {
    const read = readTemplate(join(CATALOGUE_DIR, name));
    const files = read.files;
    const plan = planStack({
      compose: read.compose,
      alto: read.alto,
      readFile: (path) => (files[path] === undefined ? undefined : Buffer.from(files[path], 'base64').toString('utf8')),
    });
    assert.deepEqual(plan.warnings, [], `${name}: ${plan.warnings.join('; ')}`);
    const secrets = plan.parameters.filter((parameter) => parameter.secret);
    assert.ok(secrets.length > 0, `${name} generates a secret`);
    for (const secret of secrets) assert.equal(plan.values[secret.name].length, secret.generate, `${name}: ${secret.name} generated`);
    for (const service of plan.services) {
      assert.ok(service.image || service.build, `${name}/${service.name} has an image or a build`);
      assert.ok(service.port !== undefined, `${name}/${service.name} serves a port`);
    }
  }
  const node = planStack({ ...readTemplate(join(CATALOGUE_DIR, 'postgres-node')), readFile: () => undefined }, { DB_PASSWORD: '$(STACK_DB_PASSWORD)' });
  assert.deepEqual(node.services.map((service) => [service.name, service.protocol]), [['db', 'tcp'], ['web', 'http']]);
  assert.equal(node.services[1].environment.DATABASE_URL, 'postgres://app:$(STACK_DB_PASSWORD)@$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)/app');
  assert.deepEqual([node.services[0].stopSignal, node.services[0].stopGraceSeconds], ['SIGINT', 30]);
  assert.ok(Object.keys(readTemplate(join(CATALOGUE_DIR, 'postgres-node')).files).includes('web/server.js'));
});

test('git sources are told from folders and catalogue names', () => {
  for (const source of ['https://github.com/org/stack.git', 'git@github.com:org/stack.git', 'file:///srv/stack', 'ssh://git@host/stack']) assert.ok(isGitSource(source), source);
  for (const source of ['./stack', 'postgres', '/srv/stack']) assert.ok(!isGitSource(source), source);
});
