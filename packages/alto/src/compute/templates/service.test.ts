import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planStack } from './compose.js';
import { runRequestOf } from './service.js';

const COMPOSE = `services:
  db:
    image: postgres:16
    expose: ["5432"]
  cache:
    image: redis:7
    expose: ["6379"]
  web:
    image: ghcr.io/org/web:v1
    ports: ["8080"]
    environment:
      DATABASE_URL: postgres://app@db:5432/app
  worker:
    image: ghcr.io/org/worker:v1
    environment:
      REDIS: redis://$(CACHE_SERVICE_HOST):$(CACHE_SERVICE_PORT)
      NOT_A_LINK: mydb:5432 and db:54321
`;

test('a service is linked to what it names (name:port or link variables) and what it depends on, and nothing else', () => {
  const plan = planStack({ compose: COMPOSE, alto: 'public: web\nservices:\n  db: {protocol: tcp}\n  cache: {protocol: tcp}\n' });
  const request = (name: string) => runRequestOf('shop', plan.services.find((service) => service.name === name)!, plan, {}, new Map());
  assert.deepEqual([request('web').links, request('web').link_aliases], [['shop-db'], { db: 'shop-db' }]);
  assert.deepEqual(request('worker').links, ['shop-cache']);
  assert.equal((request('worker').env_vars as Record<string, string>).REDIS, 'redis://$(SHOP_CACHE_SERVICE_HOST):$(SHOP_CACHE_SERVICE_PORT)');
  assert.deepEqual((request('worker').env_vars as Record<string, string>).CACHE_SERVICE_HOST, '$(SHOP_CACHE_SERVICE_HOST)');
  assert.deepEqual(request('db').links, [], 'the database reaches nothing');
  assert.equal(request('db').link_aliases, undefined);
});

test("a service's compose secrets become its app's secret_files, under the stack's keys, and never its env", () => {
  const compose = `services:
  api:
    image: ghcr.io/org/api:v1
    secrets: [token, {source: shared, target: /run/secrets/shared.key, mode: 0400, uid: "1000"}]
  other:
    image: ghcr.io/org/other:v1
secrets:
  token: {environment: TOKEN}
  shared: {external: true, name: team-key}
`;
  const plan = planStack({ compose }, { TOKEN: 'value-of-the-token' });
  const request = (name: string) => runRequestOf('shop', plan.services.find((service) => service.name === name)!, plan, {}, new Map(), new Map([['token', 'shop-token'], ['shared', 'team-key']]));
  assert.deepEqual(request('api').secret_files, [
    { secret: 'shop-token', target: 'token', mode: 0o444 },
    { secret: 'team-key', target: 'shared.key', mode: 0o400, uid: 1000 },
  ]);
  assert.ok(!JSON.stringify(request('api')).includes('value-of-the-token'), 'the value is not in the app request');
  assert.equal(request('other').secret_files, undefined, 'a service that lists no secret gets none');
});
