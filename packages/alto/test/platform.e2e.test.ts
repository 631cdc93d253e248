/**
 * End to end: `alto up` as a real process, driven over HTTP and websocket as a user would.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startProcess, temporaryDataDir, waitFor, type ServerProcess } from './harness.js';

function assertError(result: { status: number; body: any }, status: number, id: string, detail: RegExp) {
  assert.equal(result.status, status, JSON.stringify(result.body));
  assert.equal(result.body.id, id);
  assert.equal(result.body.code, status);
  assert.match(result.body.detail, detail);
  assert.equal(typeof result.body.status, 'string');
  assert.equal(typeof result.body.request_id, 'string');
  assert.ok(!JSON.stringify(result.body).includes('    at '), 'a stack trace leaked');
}

/** Opens a websocket stream, sends the request, collects messages until the server closes. */
function streamOf(url: string, key: string | undefined, request: unknown) {
  return new Promise<{ messages: any[]; code: number; reason: string }>((resolve, reject) => {
    const ws = new WebSocket(url.replace('http', 'ws'), { headers: key ? { authorization: `Bearer ${key}` } : {} });
    const messages: any[] = [];
    ws.on('open', () => ws.send(JSON.stringify(request)));
    ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
    ws.on('close', (code, reason) => resolve({ messages, code, reason: reason.toString() }));
    ws.on('unexpected-response', (_request, response) => resolve({ messages, code: response.statusCode ?? 0, reason: 'http' }));
    ws.on('error', reject);
  });
}

describe('a running alto', () => {
  let alto: ServerProcess;
  let shopKey: string;
  let idOnlyKey: string;
  let idOnlyKeyId: string;

  before(async () => {
    alto = await startProcess();
  });
  after(async () => {
    await alto?.close();
  });

  test('writes the admin key once, owner-only, and prints it', async () => {
    const mode = statSync(`${alto.dataDir}/admin-key`).mode & 0o777;
    assert.equal(mode, 0o600);
    assert.match(alto.adminKey, /^alto_/);
    await waitFor(() => alto.stderr().includes(alto.adminKey), 'the admin key on stderr');
  });

  test('health, readiness and metrics', async () => {
    const live = await fetch(`${alto.url}/livez`);
    assert.equal(live.status, 200);
    const ready = await fetch(`${alto.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual((await ready.json()).parts, { store: true, components: true, http: true });
    await alto.call('id', 'Generate', {});
    assert.equal((await fetch(`${alto.url}/metrics`)).status, 401, '/metrics is the admin key\'s');
    const metrics = await (await fetch(`${alto.url}/metrics`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).text();
    assert.match(metrics, /alto_api_requests_total\{service="id",endpoint="Generate",code="200"\} \d+/);
    assert.match(metrics, /alto_process_cpu_user_seconds_total/);
  });

  test('the admin key creates projects and scoped keys', async () => {
    const created = await alto.call('projects', 'Create', { name: 'shop' });
    assert.equal(created.status, 200);
    assert.equal(created.body.project.name, 'shop');
    const listed = await alto.call('projects', 'List', {});
    assert.deepEqual(listed.body.projects.map((project: any) => project.name).sort(), ['default', 'shop']);

    const all = await alto.call('keys', 'Generate', { project: 'shop', scopes: ['*'], description: 'backend' });
    assert.equal(all.status, 200);
    shopKey = all.body.key;
    assert.match(shopKey, /^alto_[0-9A-Za-z]{33}$/);
    const scoped = await alto.call('keys', 'Generate', { project: 'shop', scopes: ['id'] });
    idOnlyKey = scoped.body.key;
    idOnlyKeyId = scoped.body.info.id;
    assert.deepEqual(scoped.body.info.scopes, ['id']);
    assert.equal(scoped.body.info.environment, 'dev');

    const keys = await alto.call('keys', 'List', { project: 'shop' });
    assert.equal(keys.body.keys.length, 2);
    assert.ok(!JSON.stringify(keys.body).includes(shopKey), 'keys/List returned a key');
  });

  test('id/Generate answers every type with each key', async () => {
    const types = (await alto.call('id', 'Types', {}, shopKey)).body.types as string[];
    assert.ok(types.includes('uuid') && types.includes('snowflake') && types.includes('ulid'));
    for (const key of [alto.adminKey, shopKey, idOnlyKey]) {
      for (const type of types) {
        const result = await alto.call('id', 'Generate', { type }, key);
        assert.equal(result.status, 200, JSON.stringify(result.body));
        assert.equal(result.body.type, type);
        assert.ok(result.body.id.length >= 11);
      }
    }
    const byDefault = await alto.call('id', 'Generate', {}, idOnlyKey);
    assert.equal(byDefault.body.type, 'uuid');
  });

  test('long-form paths, query-string parameters, GET and Basic auth', async () => {
    const long = await alto.call('id', 'Id/Generate', { type: 'ksuid' }, idOnlyKey);
    assert.equal(long.body.type, 'ksuid');
    const query = await fetch(`${alto.url}/v1/id/Generate?type=snowflake`, {
      method: 'POST',
      headers: { authorization: `Bearer ${idOnlyKey}` },
    });
    assert.equal((await query.json()).type, 'snowflake');
    const basic = await fetch(`${alto.url}/v1/id/Generate?type=ulid`, {
      headers: { authorization: `Basic ${Buffer.from(`any:${idOnlyKey}`).toString('base64')}` },
    });
    assert.equal(basic.status, 200);
    assert.equal((await basic.json()).type, 'ulid');
    const numeric = await fetch(`${alto.url}/v1/id/Stream?count=0`, { headers: { authorization: `Bearer ${idOnlyKey}` } });
    assert.match((await numeric.json()).detail, /^count: .*>=1/);
  });

  test('401: no key, a key that does not exist, a malformed header', async () => {
    assertError(await alto.call('id', 'Generate', {}, null), 401, 'unauthorized', /API key is required/);
    assertError(await alto.call('id', 'Generate', {}, 'alto_nope'), 401, 'unauthorized', /not valid/);
    const malformed = await fetch(`${alto.url}/v1/id/Generate`, { method: 'POST', headers: { authorization: 'Token abc' } });
    assertError({ status: malformed.status, body: await malformed.json() }, 401, 'unauthorized', /Bearer/);
  });

  test('403: out of scope, and project keys cannot manage', async () => {
    assertError(await alto.call('projects', 'List', {}, idOnlyKey), 403, 'forbidden', /admin or account owner key/);
    assertError(await alto.call('keys', 'Generate', { project: 'shop' }, shopKey), 403, 'forbidden', /admin or account owner/);
    const scopedToDb = (await alto.call('keys', 'Generate', { project: 'shop', scopes: ['projects'] })).body.key;
    assertError(await alto.call('id', 'Generate', {}, scopedToDb), 403, 'forbidden', /may not call the "id" service/);
  });

  test('404: unknown service, endpoint or path', async () => {
    assertError(await alto.call('nosuch', 'Thing', {}), 404, 'not_found', /service "nosuch" does not exist/);
    assertError(await alto.call('id', 'Nope', {}), 404, 'not_found', /endpoint "Nope" does not exist on service "id"; it has Generate, Types, Stream/);
    const deep = await fetch(`${alto.url}/v1/id/a/b/c`, { method: 'POST' });
    assert.equal(deep.status, 404);
  });

  test('400: bad JSON, wrong types, unknown id type; the detail names the field and the rule', async () => {
    assertError(await alto.call('id', 'Generate', '{"type":', idOnlyKey), 400, 'bad_request', /not valid JSON/);
    assertError(await alto.call('id', 'Generate', '[1,2]', idOnlyKey), 400, 'bad_request', /must be a JSON object/);
    assertError(await alto.call('id', 'Generate', { type: 7 }, idOnlyKey), 400, 'bad_request', /^type: expected string, received number/);
    assertError(await alto.call('id', 'Generate', { type: 'guid' }, idOnlyKey), 400, 'bad_request', /"guid" is not an id type/);
    assertError(await alto.call('keys', 'Generate', { project: 'shop', scopes: 'id' }), 400, 'bad_request', /^scopes: expected array/);
    assertError(await alto.call('projects', 'Create', { name: 'Not OK' }), 400, 'bad_request', /project name "Not OK" is not valid/);
  });

  test('413: a body over the limit', async () => {
    const big = JSON.stringify({ type: 'uuid', padding: 'x'.repeat(5 * 1024 * 1024) });
    const result = await alto.call('id', 'Generate', big, idOnlyKey);
    assertError(result, 413, 'payload_too_large', /larger than \d+ bytes/);
  });

  test('streams over websocket: one message per item, then a normal close', async () => {
    const { messages, code } = await streamOf(`${alto.url}/v1/id/Stream`, idOnlyKey, { type: 'ulid', count: 25 });
    assert.equal(code, 1000);
    assert.equal(messages.length, 25);
    assert.ok(messages.every((message) => message.type === 'ulid' && /^[0-9A-Z]{26}$/.test(message.id)));
    assert.deepEqual([...messages.map((m) => m.id)].sort(), messages.map((m) => m.id), 'ulids out of order');

    const unary = await streamOf(`${alto.url}/v1/id/Generate`, idOnlyKey, { type: 'nanoid' });
    assert.equal(unary.code, 400, 'an endpoint that is not a stream does not upgrade');

    const invalid = await streamOf(`${alto.url}/v1/id/Stream`, idOnlyKey, { count: 'many' });
    assert.equal(invalid.code, 4400);
    assert.equal(invalid.messages[0].id, 'bad_request');
    assert.match(invalid.messages[0].detail, /^count:/);

    const refused = await streamOf(`${alto.url}/v1/id/Stream`, 'alto_wrong', {});
    assert.equal(refused.code, 401);
  });

  test('revoking and blocking take effect on the next request', async () => {
    assert.equal((await alto.call('id', 'Generate', {}, idOnlyKey)).status, 200);
    assert.equal((await alto.call('keys', 'Block', { id: idOnlyKeyId })).status, 200);
    assertError(await alto.call('id', 'Generate', {}, idOnlyKey), 403, 'forbidden', /blocked/);
    assert.equal((await alto.call('keys', 'Unblock', { id: idOnlyKeyId })).status, 200);
    assert.equal((await alto.call('id', 'Generate', {}, idOnlyKey)).status, 200);
    assert.equal((await alto.call('keys', 'Revoke', { id: idOnlyKeyId })).status, 200);
    assertError(await alto.call('id', 'Generate', {}, idOnlyKey), 401, 'unauthorized', /revoked/);
    const listed = await alto.call('keys', 'List', { project: 'shop' });
    assert.equal(listed.body.keys.find((key: any) => key.id === idOnlyKeyId).status, 'revoked');
  });

  test('deleting a project revokes its keys', async () => {
    await alto.call('projects', 'Create', { name: 'scratch' });
    const key = (await alto.call('keys', 'Generate', { project: 'scratch', scopes: ['id'] })).body.key;
    assert.equal((await alto.call('id', 'Generate', {}, key)).status, 200);
    assert.equal((await alto.call('projects', 'Delete', { name: 'scratch' })).status, 200);
    assertError(await alto.call('id', 'Generate', {}, key), 401, 'unauthorized', /not valid/);
    assertError(await alto.call('projects', 'Delete', { name: 'default' }), 409, 'conflict', /holds the key/);
  });

  test('every log line is JSON, and API calls carry their request id', async () => {
    const result = await fetch(`${alto.url}/v1/id/Generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${shopKey}`, 'x-request-id': 'trace-me-123' },
    });
    assert.equal(result.headers.get('x-request-id'), 'trace-me-123');
    // The log line is written after the response; wait for it to arrive.
    await waitFor(() => alto.stdout().includes('trace-me-123'), 'the log line of the call');
    const lines = alto.stdout().trim().split('\n');
    const entries = lines.map((line) => JSON.parse(line));
    const call = entries.find((entry) => entry.req_id === 'trace-me-123');
    assert.ok(call, 'no log line with the request id');
    assert.equal(call.service, 'id');
    assert.ok(entries.filter((entry) => entry.msg === 'api call').every((entry) => typeof entry.req_id === 'string'));
  });

  test('Ctrl-C (SIGINT) stops cleanly; a restart keeps keys and prints no new admin key', async () => {
    const code = await alto.stop('SIGINT');
    assert.equal(code, 0);
    assert.match(alto.stdout(), /"msg":"stopped"/);
    const again = await startProcess({ dataDir: alto.dataDir });
    try {
      assert.equal(again.adminKey, alto.adminKey);
      await waitFor(() => again.stderr().includes('Admin key: in'), 'the start banner');
      assert.ok(!again.stderr().includes(alto.adminKey), 'the admin key was printed again');
      assert.equal((await again.call('id', 'Generate', {}, shopKey)).status, 200);
      assertError(await again.call('id', 'Generate', {}, idOnlyKey), 401, 'unauthorized', /revoked/);
    } finally {
      await again.close();
    }
  });
});

test('ALTO_ADMIN_KEY sets the admin key', async () => {
  const adminKey = 'my-own-admin-key-which-is-long-enough';
  const alto = await startProcess({ env: { ALTO_ADMIN_KEY: adminKey } });
  try {
    assert.equal((await alto.call('projects', 'List', {}, adminKey)).status, 200);
    await waitFor(() => alto.stderr().includes('Admin key: in'), 'the start banner');
    assert.ok(!alto.stderr().includes(adminKey), 'a configured admin key must not be printed');
  } finally {
    await alto.close();
  }
});

test('open sign-up: closed by default, then sign-up and login give owner keys for the account', async () => {
  const closed = await startProcess();
  try {
    const refused = await closed.call('accounts', 'Signup', { email: 'ada@example.com', password: 'correct horse battery' }, null);
    assertError(refused, 403, 'forbidden', /sign-up is closed/);
  } finally {
    await closed.close();
  }
  const open = await startProcess({ args: ['--open-signup'], dataDir: temporaryDataDir() });
  try {
    const credentials = { email: 'Ada@Example.com', password: 'correct horse battery' };
    const signup = await open.call('accounts', 'Signup', credentials, null);
    assert.equal(signup.status, 200, JSON.stringify(signup.body));
    assertError(await open.call('accounts', 'Signup', credentials, null), 409, 'conflict', /already exists/);
    assertError(await open.call('accounts', 'Signup', { email: 'not-an-email', password: 'x' }, null), 400, 'bad_request', /^email:/);
    const owner = signup.body.key;
    assert.equal((await open.call('projects', 'Create', { name: 'mine' }, owner)).status, 200);
    const projects = (await open.call('projects', 'List', {}, owner)).body.projects.map((p: any) => p.name);
    assert.deepEqual(projects.sort(), ['default', 'mine']);
    const adminProjects = (await open.call('projects', 'List', {})).body.projects.map((p: any) => p.name);
    assert.deepEqual(adminProjects, ['default'], 'accounts saw each other’s projects');
    assertError(await open.call('accounts', 'Login', { ...credentials, password: 'wrong password!' }, null), 401, 'unauthorized', /wrong/);
    const login = await open.call('accounts', 'Login', { email: 'ada@example.com', password: credentials.password }, null);
    assert.equal(login.status, 200);
    assert.equal((await open.call('id', 'Generate', {}, login.body.key)).status, 200);
  } finally {
    await open.close();
  }
});
