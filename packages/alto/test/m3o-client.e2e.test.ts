/**
 * M3O's own published client (`@m3o/m3o-node`) pointed at Alto by its `address` option.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import { startInProcess, type TestAlto } from './harness.js';

let alto: TestAlto;
let client: Client;

before(async () => {
  alto = await startInProcess();
  const key = await alto.projectKey('m3o', ['id']);
  client = new Client({ token: key, address: `${alto.url}/` });
});
after(() => alto.close());

test('id Generate and Types through the M3O client', async () => {
  const types = await client.call<object, { types: string[] }>('id', 'Types', {});
  assert.ok(types.types.includes('uuid'));
  for (const type of types.types) {
    const generated = await client.call<object, { id: string; type: string }>('id', 'Generate', { type });
    assert.equal(generated.type, type);
    assert.ok(generated.id.length > 0);
  }
  const byDefault = await client.call<object, { id: string; type: string }>('id', 'Generate');
  assert.equal(byDefault.type, 'uuid');
});

test('errors reach the M3O client in the micro error shape', async () => {
  const error = await client.call('id', 'Generate', { type: 'nope' }).then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
  assert.equal(error.code, 400);
  assert.equal(error.id, 'bad_request');
  assert.equal(error.status, 'Bad Request');
  assert.match(error.detail, /"nope" is not an id type/);

  const forbidden = await client.call('projects', 'List', {}).then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
  assert.equal(forbidden.code, 403);
});

test('streams through the M3O client', async () => {
  const stream = await client.stream<object, { id: string; type: string }>('id', 'Stream', { type: 'snowflake', count: 5 });
  const received: { id: string; type: string }[] = [];
  await new Promise<void>((resolve, reject) => {
    stream.onMessage((message) => received.push(message));
    stream.onError(reject);
    stream.conn.on('close', () => resolve());
  });
  assert.equal(received.length, 5);
  assert.ok(received.every((message) => message.type === 'snowflake'));
  const ids = received.map((message) => BigInt(message.id));
  assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), 'snowflakes out of order');
});
