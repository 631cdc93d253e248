/**
 * The SDK against a real Alto: generated from the server's definitions, typed calls, streams as
 * async iterators, errors as AltoError with the server's code.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Alto, AltoError } from './index.js';
import { renderSdk } from '../scripts/render.js';
import { allServices, buildOpenApiDocument } from '../../alto/src/edge/registry.js';
import { startInProcess, type TestAlto } from '../../alto/test/harness.js';

let server: TestAlto;

before(async () => {
  server = await startInProcess();
});
after(() => server.close());

test('the committed generated.ts matches the service definitions (run `npm run generate -w @alto/sdk`)', () => {
  const expected = renderSdk(buildOpenApiDocument(allServices(), "sdk"));
  const committed = readFileSync(new URL('./generated.ts', import.meta.url), 'utf8');
  assert.ok(committed === expected, 'packages/sdk/src/generated.ts is stale: run `npm run generate -w @alto/sdk`');
});

test('typed calls, management and errors', async () => {
  const admin = new Alto({ url: server.url, key: server.adminKey });
  const { project } = await admin.projects.create({ name: 'sdk-test' });
  assert.equal(project.name, 'sdk-test');
  const { key } = await admin.keys.generate({ project: 'sdk-test', scopes: ['id'] });
  const alto = new Alto({ url: server.url, key });
  const { id, type } = await alto.id.generate({ type: 'ulid' });
  assert.equal(type, 'ulid');
  assert.match(id, /^[0-9A-Z]{26}$/);
  assert.ok((await alto.id.types()).types.includes('snowflake'));

  await assert.rejects(alto.projects.list(), (error: unknown) => {
    assert.ok(error instanceof AltoError);
    assert.equal(error.code, 'forbidden');
    assert.equal(error.status, 403);
    return true;
  });
  await assert.rejects(alto.id.generate({ type: 'bogus' }), (error: unknown) => {
    assert.ok(error instanceof AltoError);
    assert.equal(error.code, 'bad_request');
    assert.match(error.detail, /"bogus" is not an id type/);
    assert.ok(error.requestId);
    return true;
  });
  await assert.rejects(new Alto({ url: server.url, key: 'alto_bad' }).id.generate(), { code: 'unauthorized', status: 401 });
});

test('streams are async iterators; errors arrive as AltoError; breaking out closes the stream', async () => {
  const alto = new Alto({ url: server.url, key: server.adminKey });
  const ids: string[] = [];
  for await (const item of alto.id.stream({ type: 'ksuid', count: 12 })) ids.push(item.id);
  assert.equal(ids.length, 12);
  assert.equal(new Set(ids).size, 12);

  let taken = 0;
  for await (const _item of alto.id.stream({ count: 10000 })) {
    if (++taken === 3) break;
  }
  assert.equal(taken, 3);

  await assert.rejects(
    (async () => {
      for await (const _item of alto.id.stream({ type: 'bogus' })) assert.fail('no item expected');
    })(),
    { code: 'bad_request', status: 400 },
  );
  await assert.rejects(
    (async () => {
      for await (const _item of new Alto({ url: server.url, key: 'alto_bad' }).id.stream()) assert.fail('no item expected');
    })(),
    { code: 'unauthorized', status: 401 },
  );
});

test('a server that is not there is a network AltoError', async () => {
  await assert.rejects(new Alto({ url: 'http://127.0.0.1:9', key: 'k' }).id.generate(), { code: 'network', status: 0 });
});
