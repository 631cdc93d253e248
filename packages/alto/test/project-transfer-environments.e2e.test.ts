/**
 * Data an owner key writes with X-Alto-Environment into an environment no key, app or function
 * belongs to is found: the environment is recorded when the key acts in it (over HTTP and over a
 * websocket stream), projects/Environments lists it, and the project's archive carries its data
 * from an embedded instance (SQLite) to one on PostgreSQL, where the import records it again for
 * the new project. A project key naming another environment is still refused, and records nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { startInProcess, type TestAlto } from './harness.js';

let source: TestAlto;
let target: TestAlto;
let database: TestDatabase | undefined;

before(async () => {
  database = await createTestDatabase('transfer_envs');
  [source, target] = await Promise.all([startInProcess({ openSignup: true }), startInProcess({ postgresUrl: database.url })]);
});

after(async () => {
  await Promise.all([source?.close(), target?.close()]);
  await database?.drop();
});

/** POST /v1/{service}/{endpoint} with `key`, in `environment` (X-Alto-Environment): status and body. */
async function callIn(alto: TestAlto, key: string, environment: string, service: string, endpoint: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${alto.url}/v1/${service}/${endpoint}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'x-alto-environment': environment, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function ok(alto: TestAlto, key: string, service: string, endpoint: string, body: unknown): Promise<any> {
  const result = await alto.call(service, endpoint, body, key);
  assert.equal(result.status, 200, `${service}/${endpoint}: ${JSON.stringify(result.body)}`);
  return result.body;
}

const environmentsOf = async (alto: TestAlto, key: string, project: string): Promise<string[]> => (await ok(alto, key, 'projects', 'Environments', { name: project })).environments;

/** Streams `count` ids with `key` in `environment` (the websocket's ?environment=), until the server closes it. */
async function streamIdsIn(alto: TestAlto, key: string, environment: string, count: number): Promise<unknown[]> {
  const ws = new WebSocket(`${alto.url.replace(/^http/, 'ws')}/v1/id/Stream?environment=${environment}`, { headers: { authorization: `Bearer ${key}` } });
  const messages: unknown[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_request, response) => reject(new Error(`websocket refused: ${response.statusCode}`)));
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'uuid', count }));
  assert.equal(await closed, 1000);
  return messages;
}

test('an environment only an owner key wrote into is listed, exported and imported with its data', async () => {
  const signup = await source.call('accounts', 'Signup', { email: `owner-${randomBytes(3).toString('hex')}@example.com`, password: 'correct horse battery' }, null);
  assert.equal(signup.status, 200, JSON.stringify(signup.body));
  const owner: string = signup.body.key;
  const project: string = signup.body.project;
  assert.deepEqual(await environmentsOf(source, owner, project), ['dev'], 'a new project: the default environment only');

  // The owner writes into qa, which no key, app or function belongs to.
  const written = await callIn(source, owner, 'qa', 'db', 'Create', { table: 'notes', record: { id: 'n1', text: 'only in qa' } });
  assert.equal(written.status, 200, JSON.stringify(written.body));
  const space = await callIn(source, owner, 'qa', 'space', 'Create', { name: 'qa/report.txt', object: Buffer.from('qa report').toString('base64') });
  assert.equal(space.status, 200, JSON.stringify(space.body));
  // A stream acting in another environment records it too.
  assert.equal((await streamIdsIn(source, owner, 'live', 2)).length, 2);
  assert.deepEqual(await environmentsOf(source, owner, project), ['dev', 'live', 'qa']);

  // A project key may not name another environment of its project: 403, and nothing recorded.
  const generated = await ok(source, owner, 'keys', 'Generate', { project, scopes: ['*'] });
  const refused = await callIn(source, generated.key, 'preview', 'db', 'Create', { table: 'notes', record: { id: 'n2', text: 'refused' } });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.match(refused.body.detail, /belongs to environment "dev"/);
  await assert.rejects(streamIdsIn(source, generated.key, 'preview-stream', 1), /websocket refused: 403/);
  assert.deepEqual(await environmentsOf(source, owner, project), ['dev', 'live', 'qa']);

  // The owner takes the project out; the target's admin brings it in under another name.
  const exported = await fetch(`${source.url}/admin/projects/export?name=${project}`, { headers: { authorization: `Bearer ${owner}` } });
  assert.equal(exported.status, 200);
  const archive = Buffer.from(await exported.arrayBuffer());
  const imported = await fetch(`${target.url}/admin/projects/import?as=moved`, { method: 'POST', headers: { authorization: `Bearer ${target.adminKey}` }, body: archive });
  const answer = (await imported.json()) as any;
  assert.equal(imported.status, 200, JSON.stringify(answer));
  assert.deepEqual(answer.environments, { dev: 'dev', live: 'live', qa: 'qa' });
  // On the target too no key of qa exists, yet the import recorded it: listed, and exported again from there.
  assert.deepEqual(await environmentsOf(target, target.adminKey, 'moved'), ['dev', 'live', 'qa']);

  const qaKey = (await ok(target, target.adminKey, 'keys', 'Generate', { project: 'moved', scopes: ['*'], environment: 'qa' })).key;
  const notes = await ok(target, qaKey, 'db', 'Read', { table: 'notes' });
  assert.deepEqual(notes.records.map((record: any) => [record.id, record.text]), [['n1', 'only in qa']]);
  const report = await ok(target, qaKey, 'space', 'Read', { name: 'qa/report.txt' });
  assert.equal(Buffer.from(report.object.data, 'base64').toString(), 'qa report');
  assert.ok(!(await ok(target, answer.key, 'db', 'ListTables', {})).tables.includes('notes'), 'the record stayed in qa, not in dev');
});
