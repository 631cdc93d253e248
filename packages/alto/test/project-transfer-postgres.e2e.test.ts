/**
 * A project's data moves between an embedded instance (SQLite) and one on PostgreSQL, both ways,
 * through the project archive routes: the sections read and write through the storage ports, so
 * an archive does not depend on the backend that wrote it. Also: the project's SMTP server and
 * limits come along, and a project key may not export (only the admin or an owner may).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { startInProcess, type TestAlto } from './harness.js';

let sqlite: TestAlto;
let postgres: TestAlto;
let database: TestDatabase | undefined;
const shortId = `sale-${randomBytes(4).toString('hex')}`;

before(async () => {
  // The project's SMTP server is on loopback here, as on a developer's machine.
  process.env.ALTO_ALLOW_PRIVATE_CALLBACKS = '1';
  database = await createTestDatabase('transfer');
  [sqlite, postgres] = await Promise.all([startInProcess(), startInProcess({ postgresUrl: database.url })]);
});

after(async () => {
  await Promise.all([sqlite?.close(), postgres?.close()]);
  await database?.drop();
});

async function ok(alto: TestAlto, key: string, service: string, endpoint: string, body: unknown): Promise<any> {
  const result = await alto.call(service, endpoint, body, key);
  assert.equal(result.status, 200, `${service}/${endpoint}: ${JSON.stringify(result.body)}`);
  return result.body;
}

async function exportArchive(alto: TestAlto, name: string, key = alto.adminKey): Promise<Response> {
  return fetch(`${alto.url}/admin/projects/export?name=${name}`, { headers: { authorization: `Bearer ${key}` } });
}

async function importArchive(alto: TestAlto, archive: Buffer, as: string): Promise<any> {
  const response = await fetch(`${alto.url}/admin/projects/import?as=${as}`, { method: 'POST', headers: { authorization: `Bearer ${alto.adminKey}` }, body: archive });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body;
}

test('SQLite to PostgreSQL and back: the data is the same on each side', async () => {
  const key = await sqlite.projectKey('shop', ['*']);
  await ok(sqlite, sqlite.adminKey, 'projects', 'Update', { name: 'shop', monthly_quota: 123456 });
  // More records than one page of the export's reads (1000).
  for (let index = 0; index < 1200; index++) await ok(sqlite, key, 'db', 'Create', { table: 'items', record: { id: `r${index}`, n: index } });
  await ok(sqlite, key, 'secret', 'Set', { path: 'payments', key: 'stripe', value: 'sk_test_1' });
  await ok(sqlite, key, 'user', 'Create', { email: 'bo@example.com', password: 'a fine password' });
  await ok(sqlite, key, 'url', 'Create', { id: shortId, destinationURL: 'https://example.com/sale' });
  await ok(sqlite, key, 'search', 'Index', { index: 'products', data: { id: 'p1', title: 'green tea' } });
  await ok(sqlite, key, 'file', 'Save', { file: { project: 'docs', path: '/a.md', content: 'A' } });
  await ok(sqlite, key, 'event', 'Publish', { topic: 'audit', message: { step: 1 } });
  await ok(sqlite, key, 'email', 'SetSmtp', { url: 'smtp://mailer:hunter2@127.0.0.1:2525' });

  // A project key may not take a project out.
  assert.equal((await exportArchive(sqlite, 'shop', key)).status, 403);
  const exported = await exportArchive(sqlite, 'shop');
  assert.equal(exported.status, 200);
  const archive = Buffer.from(await exported.arrayBuffer());
  const answer = await importArchive(postgres, archive, 'shop');
  assert.equal(answer.sections.db, 1200);

  const check = async (alto: TestAlto, projectKey: string) => {
    assert.equal((await ok(alto, projectKey, 'db', 'Count', { table: 'items' })).count, 1200);
    assert.equal((await ok(alto, projectKey, 'secret', 'Get', { path: 'payments', key: 'stripe' })).value, 'sk_test_1');
    assert.ok((await ok(alto, projectKey, 'user', 'Login', { email: 'bo@example.com', password: 'a fine password' })).session.id);
    assert.equal((await ok(alto, projectKey, 'url', 'List', {})).urlPairs.length, 1);
    assert.equal((await ok(alto, projectKey, 'search', 'Search', { index: 'products', query: 'tea' })).records.length, 1);
    assert.equal((await ok(alto, projectKey, 'file', 'Read', { project: 'docs', path: '/a.md' })).file.content, 'A');
    assert.equal((await ok(alto, projectKey, 'event', 'Read', { topic: 'audit' })).events.length, 1);
    const smtp = await ok(alto, projectKey, 'email', 'ReadSmtp', {});
    assert.match(JSON.stringify(smtp), /127\.0\.0\.1:2525/);
  };
  await check(postgres, answer.key);
  const projects = (await ok(postgres, postgres.adminKey, 'projects', 'List', {})).projects;
  assert.equal(projects.find((project: any) => project.name === 'shop').limits.monthly_quota, 123456);

  // Back to SQLite under another name: the short id is taken there by the original, so it moves.
  const back = await exportArchive(postgres, 'shop');
  const returned = await importArchive(sqlite, Buffer.from(await back.arrayBuffer()), 'shop-copy');
  assert.ok(returned.warnings.some((line: string) => line.includes(`"${shortId}" is taken`)), JSON.stringify(returned.warnings));
  await check(sqlite, returned.key);
});

test('an archive of another format is refused with a 400 that says so', async () => {
  const response = await fetch(`${postgres.url}/admin/projects/import`, { method: 'POST', headers: { authorization: `Bearer ${postgres.adminKey}` }, body: Buffer.from('not an archive') });
  assert.equal(response.status, 400);
  assert.match(((await response.json()) as { detail: string }).detail, /cannot be read as a gzipped tar/);
});
