/**
 * `alto migrate`: an embedded instance, populated through the API, is copied into a fresh
 * PostgreSQL database and an S3 bucket (s3rver) by the CLI, a second run copies nothing, and an
 * Alto started with `--store` and `--objects` on an empty data folder, with the same master and
 * admin keys, answers every item to the migrated project key. A function record (with a key
 * stored before sealing) is copied with its key sealed. A run killed part-way is completed by the
 * next one, which copies the rest and nothing twice. An image pushed to the source's registry is
 * served by the new store: its records from PostgreSQL, its blobs from the bucket. Also: it
 * refuses while the source runs, and with another master key.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startProcess, temporaryDataDir } from './harness.js';
import { runCli } from './apps-fixture.js';
import { startS3Server, TEST_S3_CREDENTIALS, type TestS3 } from './s3-server.js';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { openSqlite } from '../src/store/sqlite/database.js';
import { SqliteFunctionStore } from '../src/store/functions/sqlite.js';
import { isSealedText } from '../src/kit/master-key.js';

const MASTER_KEY = randomBytes(32).toString('hex');
const ADMIN_KEY = `sk_admin_${randomBytes(12).toString('hex')}`;
const environment = {
  ALTO_MASTER_KEY: MASTER_KEY,
  ALTO_ADMIN_KEY: ADMIN_KEY,
  AWS_ACCESS_KEY_ID: TEST_S3_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: TEST_S3_CREDENTIALS.secretAccessKey,
};

let database: TestDatabase;
let s3: TestS3;
const folders: string[] = [];

before(async () => {
  database = await createTestDatabase('migrate');
  s3 = await startS3Server('alto-migrate');
});

after(async () => {
  await s3?.close();
  await database?.drop();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** Each part's line of the command's output: `part  N copied  M skipped`. */
function partsOf(stdout: string): Map<string, { copied: number; skipped: number }> {
  const parts = new Map<string, { copied: number; skipped: number }>();
  for (const line of stdout.split('\n')) {
    const match = /^(.+?)\s+(\d+) copied\s+(\d+) skipped$/.exec(line);
    if (match) parts.set(match[1].trim(), { copied: Number(match[2]), skipped: Number(match[3]) });
  }
  return parts;
}

test('alto migrate copies an embedded instance into PostgreSQL and S3, once, and the new store serves it all', async () => {
  const source = temporaryDataDir();
  const target = temporaryDataDir();
  folders.push(source, target);

  const embedded = await startProcess({ dataDir: source, env: environment });
  const key = await embedded.projectKey('shop');
  const call = (service: string, endpoint: string, body: unknown) => embedded.call(service, endpoint, body, key);
  for (const [id, name] of [['1', 'Jane'], ['2', 'Joe']]) {
    assert.equal((await call('db', 'Create', { table: 'customers', record: { id, name } })).status, 200);
  }
  assert.equal((await call('db', 'CreateIndex', { table: 'customers', field: 'name' })).status, 200);
  assert.equal((await call('secret', 'Set', { key: 'stripe', value: 'sk_live_42' })).status, 200);
  const object = await call('space', 'Create', { name: 'docs/hello.txt', object: Buffer.from('hello, migrated').toString('base64') });
  assert.equal(object.status, 200, JSON.stringify(object.body));
  const short = await call('url', 'Shorten', { destinationURL: 'https://example.com/long/page' });
  assert.equal(short.status, 200, JSON.stringify(short.body));
  const user = await call('user', 'Create', { email: 'ada@example.com', password: 'correct horse battery', username: 'ada' });
  assert.equal(user.status, 200, JSON.stringify(user.body));

  // An image in the registry: a config, a layer and a manifest tagged v1, each pushed in one request.
  const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const layer = randomBytes(20_000);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }));
  for (const blob of [config, layer]) {
    const pushed = await fetch(`${embedded.url}/v2/shop/web/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob, headers: { authorization: `Bearer ${key}` } });
    assert.equal(pushed.status, 201);
  }
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
  }));
  const tagged = await fetch(`${embedded.url}/v2/shop/web/manifests/v1`, { method: 'PUT', body: manifest, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(tagged.status, 201);

  // An environment of its project the admin key acted in (X-Alto-Environment), no key of it: recorded, and the record moves.
  const inQa = await fetch(`${embedded.url}/v1/id/Generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'x-alto-environment': 'qa', 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'uuid' }),
  });
  assert.equal(inQa.status, 200);

  const indexed = await call('search', 'Index', { index: 'notes', id: 'n1', data: { title: 'green tea', body: 'brewed at eighty degrees' } });
  assert.equal(indexed.status, 200, JSON.stringify(indexed.body));

  const migrate = (env: Record<string, string> = environment) =>
    runCli(['migrate', '--from', source, '--store', database.url, '--objects', s3.objectsUrl], env);

  const whileRunning = await migrate();
  assert.notEqual(whileRunning.code, 0);
  assert.match(whileRunning.stderr, /is running/);
  const shopId = (await embedded.call('projects', 'List', {})).body.projects.find((project: { name: string }) => project.name === 'shop').id as string;
  await embedded.stop();

  // A function's record as a version of before sealed keys wrote it (building one needs a sandbox).
  const sourceDb = openSqlite(join(source, 'alto.db'));
  try {
    const inserted = await new SqliteFunctionStore(sourceDb).insert({
      id: 'f000000000000001', projectId: shopId, name: 'greeter', runtime: 'nodejs', entrypoint: '', sourceKind: 'inline',
      source: 'export default () => new Response("hi");\n', repo: '', branch: '', subfolder: '', envVars: { GREETING: 'hi' },
      image: `functions.alto.internal/${shopId}/greeter@sha256:${'a'.repeat(64)}`, buildLog: 'built', keyId: 'k1', keySecret: 'alto_plaintext_key',
      environment: 'dev', secrets: [], sourceArchive: '', createdAt: 1, updatedAt: 2,
    });
    assert.ok(inserted);
  } finally {
    sourceDb.close();
  }

  const wrongKey = await migrate({ ...environment, ALTO_MASTER_KEY: randomBytes(32).toString('hex') });
  assert.notEqual(wrongKey.code, 0);
  assert.match(wrongKey.stderr, /ALTO_MASTER_KEY is not the master key of the source/);

  // Killed (as by kill -9) right after the secrets are copied: what it copied stays, and the
  // next run copies the rest and skips that.
  const killed = await migrate({ ...environment, ALTO_MIGRATE_KILL_AFTER_PART: 'secrets' });
  assert.notEqual(killed.code, 0, 'the interrupted run did not finish');
  const before = partsOf(killed.stdout);
  assert.equal(before.get('secrets')?.copied, 1, killed.stdout);
  assert.ok(!before.has('short_urls') && !before.has('space objects'), 'nothing after the secrets was copied');

  const first = await migrate();
  assert.equal(first.code, 0, first.stderr);
  const resumed = partsOf(first.stdout);
  for (const [part, counts] of before) {
    assert.equal(resumed.get(part)?.copied, 0, `${part} is not copied again after the interruption`);
    assert.equal(resumed.get(part)?.skipped, counts.copied + counts.skipped, `${part}: what the interrupted run copied is skipped`);
  }
  // What both runs copied, part by part.
  const copied = new Map(resumed);
  for (const [part, counts] of before) copied.set(part, { copied: counts.copied, skipped: counts.skipped });
  assert.ok((copied.get('projects')?.copied ?? 0) >= 1, first.stdout);
  assert.ok((copied.get('api_keys')?.copied ?? 0) >= 2, 'the admin key and the project key');
  assert.equal(copied.get('project_environments')?.copied, 1, 'qa, acted in by the admin key');
  assert.equal(copied.get('secrets')?.copied, 1);
  assert.equal(copied.get('db records')?.copied, 2);
  assert.equal(copied.get('short_urls')?.copied, 1);
  assert.equal(copied.get('user_accounts')?.copied, 1);
  assert.equal(copied.get('space objects')?.copied, 1);
  assert.equal(copied.get('search_documents')?.copied, 1);
  assert.ok((copied.get('usage_records')?.copied ?? 0) > 0, 'usage records');
  assert.match(first.stdout, /image records: node-local/);
  assert.equal(copied.get('functions')?.copied, 1);
  assert.equal(copied.get('registry_tags')?.copied, 1);
  assert.equal(copied.get('registry blobs')?.copied, 3, 'the config, the layer and the manifest');
  const copies = new pg.Client({ connectionString: database.url });
  await copies.connect();
  try {
    const { rows } = await copies.query<{ key_secret: string }>("SELECT key_secret FROM alto_functions WHERE name = 'greeter'");
    assert.ok(isSealedText(rows[0].key_secret), 'the key arrives sealed');
    assert.doesNotMatch(rows[0].key_secret, /alto_plaintext_key/);
  } finally {
    await copies.end();
  }
  // App records go too, run by the node of the source's data folder (this test deploys none).
  assert.ok(copied.has('apps') && copied.has('app_instances'), first.stdout);
  assert.match(first.stdout, new RegExp(`apps: run by node ${readFileSync(join(source, 'node-id'), 'utf8').trim()}, the node started on ${source}`));

  const second = await migrate();
  assert.equal(second.code, 0, second.stderr);
  const again = partsOf(second.stdout);
  assert.ok(again.size >= copied.size);
  for (const [part, counts] of again) assert.equal(counts.copied, 0, `${part} copied nothing the second time`);
  assert.equal(again.get('db records')?.skipped, 2);
  assert.equal(again.get('space objects')?.skipped, 1);
  assert.equal(again.get('registry blobs')?.skipped, 3);

  const shared = await startProcess({ dataDir: target, env: environment, args: ['--store', database.url, '--objects', s3.objectsUrl] });
  try {
    const on = (service: string, endpoint: string, body: unknown) => shared.call(service, endpoint, body, key);
    const environments = await shared.call('projects', 'Environments', { name: 'default' });
    assert.deepEqual(environments.body.environments, ['dev', 'qa'], JSON.stringify(environments.body));
    const records = await on('db', 'Read', { table: 'customers' });
    assert.equal(records.status, 200, JSON.stringify(records.body));
    assert.deepEqual(records.body.records.map((record: { name: string }) => record.name).sort(), ['Jane', 'Joe']);
    assert.equal((await on('db', 'Read', { table: 'customers', query: 'name == "Joe"' })).body.records[0].id, '2');
    const created = await on('db', 'Create', { table: 'customers', record: { id: '3', name: 'Max' } });
    assert.equal(created.status, 200, 'new records after the copied ones');
    assert.equal((await on('db', 'Count', { table: 'customers' })).body.count, 3);
    assert.equal((await on('secret', 'Get', { key: 'stripe' })).body.value, 'sk_live_42');
    const read = await on('space', 'Read', { name: 'docs/hello.txt' });
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.equal(Buffer.from(read.body.object.data, 'base64').toString(), 'hello, migrated');
    const resolved = await on('url', 'Resolve', { shortURL: short.body.shortURL });
    assert.equal(resolved.body.destinationURL, 'https://example.com/long/page');
    assert.equal((await on('user', 'Read', { email: 'ada@example.com' })).body.account.username, 'ada');
    assert.equal((await on('user', 'Login', { email: 'ada@example.com', password: 'correct horse battery' })).status, 200);
    const fn = await on('function', 'Describe', { name: 'greeter' });
    assert.equal(fn.status, 200, JSON.stringify(fn.body));
    assert.deepEqual(fn.body.function.env_vars, { GREETING: 'hi' });
    const found = await on('search', 'Search', { index: 'notes', query: 'eighty' });
    assert.deepEqual(found.body.records.map((record: { id: string }) => record.id), ['n1'], 'the full text indexed before');
    const v2 = (path: string) => fetch(`${shared.url}/v2/shop/web/${path}`, { headers: { authorization: `Bearer ${key}` } });
    const pulledManifest = await v2('manifests/v1');
    assert.equal(pulledManifest.status, 200);
    assert.deepEqual(Buffer.from(await pulledManifest.arrayBuffer()), manifest, 'the manifest, from the bucket');
    assert.deepEqual(Buffer.from(await (await v2(`blobs/${sha256(layer)}`)).arrayBuffer()), layer, 'the layer, from the bucket');
    const usage = await shared.call('usage', 'Read', { project: 'shop', service: 'secret' });
    assert.equal(usage.status, 200, JSON.stringify(usage.body));
    assert.ok(usage.body.usage.some((row: { endpoint: string; calls: number }) => row.endpoint === 'Set' && row.calls >= 1), 'the usage of before');
  } finally {
    await shared.stop();
  }
});

test('a row an older version kept with a NUL character stops alto migrate with its table, column and row named; once changed, the next run copies the rest', async () => {
  const source = temporaryDataDir();
  folders.push(source);
  const target = await createTestDatabase('migrate_text');
  try {
    const embedded = await startProcess({ dataDir: source, env: environment });
    const key = await embedded.projectKey('shop');
    const short = await embedded.call('url', 'Shorten', { destinationURL: 'https://example.com/a' }, key);
    assert.equal(short.status, 200, JSON.stringify(short.body));
    // This version refuses such text at the door; an older one stored it as it came.
    const refused = await embedded.call('url', 'Shorten', { destinationURL: 'https://example.com/\u0000' }, key);
    assert.equal(refused.status, 400);
    assert.match(refused.body.detail, /^destinationURL: text may not hold a NUL character/);
    await embedded.stop();
    const id = short.body.shortURL.split('/').pop();
    const db = openSqlite(join(source, 'alto.db'));
    assert.equal(db.prepare("UPDATE short_urls SET destination = 'https://example.com/a' || char(0) WHERE id = ?").run(id).changes, 1);
    db.close();

    const migrate = () => runCli(['migrate', '--from', source, '--store', target.url, '--objects', s3.objectsUrl], environment);
    const stopped = await migrate();
    assert.notEqual(stopped.code, 0, stopped.stdout);
    assert.match(stopped.stderr, new RegExp(`alto_short_urls: the row whose id is "${id}" holds a NUL character or half of a surrogate pair in destination, which PostgreSQL cannot keep`));
    assert.match(stopped.stderr, /change or delete it in the source, then run "alto migrate" again/);

    const fixed = openSqlite(join(source, 'alto.db'));
    fixed.prepare("UPDATE short_urls SET destination = 'https://example.com/a' WHERE id = ?").run(id);
    fixed.close();
    const completed = await migrate();
    assert.equal(completed.code, 0, completed.stderr);
    assert.equal(partsOf(completed.stdout).get('short_urls')?.copied, 1, completed.stdout);
  } finally {
    await target.drop();
  }
});
