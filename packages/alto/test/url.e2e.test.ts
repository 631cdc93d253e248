/**
 * The url block through the real server: every endpoint over HTTP and through M3O's client,
 * the public `/u/{id}` redirect (302/301, hit counts, 404), refused schemes, global ids.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import pg from 'pg';
import { startInProcess, type TestAlto } from './harness.js';
import { createTestDatabase } from '../src/store/postgres/test-database.js';

let alto: TestAlto;
let shopKey: string;
let blogKey: string;

before(async () => {
  alto = await startInProcess();
  shopKey = await alto.projectKey('shop', ['url']);
  blogKey = await alto.projectKey('blog', ['url']);
});
after(() => alto.close());

function follow(path: string, method = 'GET'): Promise<Response> {
  return fetch(`${alto.url}${path}`, { method, redirect: 'manual' });
}

async function hitCountOf(id: string, key: string): Promise<number> {
  const resolved = await alto.call('url', 'Resolve', { id }, key);
  assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
  return resolved.body.hitCount;
}

test('Shorten returns a full short URL that redirects with 302 and counts each hit', async () => {
  const shortened = await alto.call('url', 'Shorten', { destinationURL: 'https://example.com/a/long/page?x=1' }, shopKey);
  assert.equal(shortened.status, 200, JSON.stringify(shortened.body));
  assert.deepEqual(Object.keys(shortened.body), ['shortURL']);
  const shortURL: string = shortened.body.shortURL;
  assert.match(shortURL, new RegExp(`^${alto.url}/u/[0-9A-Za-z]{8}$`));
  const path = new URL(shortURL).pathname;
  const id = path.slice('/u/'.length);

  const redirect = await follow(path);
  assert.equal(redirect.status, 302);
  assert.equal(redirect.headers.get('location'), 'https://example.com/a/long/page?x=1');
  assert.match(redirect.headers.get('cache-control') ?? '', /no-store/);
  await follow(path);
  assert.equal(await hitCountOf(id, shopKey), 2);

  const head = await follow(path, 'HEAD');
  assert.equal(head.status, 302);
  assert.equal(await hitCountOf(id, shopKey), 2, 'HEAD does not count a hit');

  const resolved = await alto.call('url', 'Resolve', { shortURL }, shopKey);
  assert.deepEqual(resolved.body, { destinationURL: 'https://example.com/a/long/page?x=1', hitCount: 2, permanent: false });
});

test('concurrent redirects lose no hit', async () => {
  const created = await alto.call('url', 'Create', { id: 'busy', destinationURL: 'https://example.com/busy' }, shopKey);
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const responses = await Promise.all(Array.from({ length: 60 }, () => follow('/u/busy')));
  assert.ok(responses.every((response) => response.status === 302));
  assert.equal(await hitCountOf('busy', shopKey), 60);
});

test('Create with a custom id and permanent: 301; List shows pairs with hit counts', async () => {
  const created = await alto.call('url', 'Create', { id: 'launch', destinationURL: 'https://example.com/launch', permanent: true }, shopKey);
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const url = created.body.url;
  assert.equal(url.id, 'launch');
  assert.equal(url.shortURL, `${alto.url}/u/launch`);
  assert.equal(url.destinationURL, 'https://example.com/launch');
  assert.equal(url.hitCount, 0);
  assert.equal(url.permanent, true);
  assert.ok(!Number.isNaN(Date.parse(url.created)));

  const redirect = await follow('/u/launch');
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.get('location'), 'https://example.com/launch');

  const listed = await alto.call('url', 'List', {}, shopKey);
  assert.equal(listed.status, 200);
  const launch = listed.body.urlPairs.find((pair: { id: string }) => pair.id === 'launch');
  assert.equal(launch.hitCount, 1);
  assert.equal(launch.shortURL, `${alto.url}/u/launch`);
  const filtered = await alto.call('url', 'List', { shortURL: `${alto.url}/u/launch` }, shopKey);
  assert.deepEqual(
    filtered.body.urlPairs.map((pair: { id: string }) => pair.id),
    ['launch'],
  );
  const blogList = await alto.call('url', 'List', {}, blogKey);
  assert.deepEqual(blogList.body, { urlPairs: [] }, 'another project sees none of them');
});

test('ids are global: a custom id taken by another project is a 409, and so is one of our own', async () => {
  await alto.call('url', 'Create', { id: 'taken', destinationURL: 'https://shop.example/' }, shopKey);
  const elsewhere = await alto.call('url', 'Create', { id: 'taken', destinationURL: 'https://blog.example/' }, blogKey);
  assert.equal(elsewhere.status, 409);
  assert.match(elsewhere.body.detail, /"taken" is taken/);
  const again = await alto.call('url', 'Create', { id: 'taken', destinationURL: 'https://shop.example/2' }, shopKey);
  assert.equal(again.status, 409);
  assert.match(again.body.detail, /already exists in this project/);
  assert.equal((await follow('/u/taken')).headers.get('location'), 'https://shop.example/');
  const badId = await alto.call('url', 'Create', { id: 'no/slashes', destinationURL: 'https://shop.example/' }, shopKey);
  assert.equal(badId.status, 400);
});

test('only http and https destinations are accepted', async () => {
  await alto.call('url', 'Create', { id: 'safe', destinationURL: 'https://example.com/safe' }, shopKey);
  const refused = ['javascript:alert(document.cookie)', 'data:text/html;base64,PHNjcmlwdD4=', '/relative/path', 'example.com', 'ftp://example.com/file', ''];
  for (const destinationURL of refused) {
    for (const [endpoint, body] of [
      ['Shorten', { destinationURL }],
      ['Create', { id: 'nope', destinationURL }],
      ['Update', { id: 'safe', destinationURL }],
    ] as const) {
      const answer = await alto.call('url', endpoint, body, shopKey);
      assert.equal(answer.status, 400, `${endpoint} ${destinationURL}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.id, 'bad_request');
      assert.match(answer.body.detail, /destinationURL/);
    }
  }
  assert.equal((await follow('/u/safe')).headers.get('location'), 'https://example.com/safe');
  assert.equal((await follow('/u/nope')).status, 404);
});

test('Update changes where a short URL goes and how; Delete frees it; other projects cannot touch it', async () => {
  await alto.call('url', 'Create', { id: 'moving', destinationURL: 'https://example.com/old' }, shopKey);
  const foreign = await alto.call('url', 'Update', { id: 'moving', destinationURL: 'https://evil.example/' }, blogKey);
  assert.equal(foreign.status, 404);
  assert.equal((await alto.call('url', 'Delete', { id: 'moving' }, blogKey)).status, 404);
  assert.equal((await alto.call('url', 'Resolve', { id: 'moving' }, blogKey)).status, 404);

  const updated = await alto.call('url', 'Update', { shortURL: `${alto.url}/u/moving`, destinationURL: 'https://example.com/new', permanent: true }, shopKey);
  assert.equal(updated.status, 200, JSON.stringify(updated.body));
  assert.deepEqual(updated.body, {});
  const redirect = await follow('/u/moving');
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.get('location'), 'https://example.com/new');
  assert.equal((await alto.call('url', 'Update', { id: 'moving', permanent: false }, shopKey)).status, 200);
  assert.equal((await follow('/u/moving')).status, 302);

  const deleted = await alto.call('url', 'Delete', { shortURL: `${alto.url}/u/moving` }, shopKey);
  assert.equal(deleted.status, 200);
  assert.deepEqual(deleted.body, {});
  assert.equal((await follow('/u/moving')).status, 404);
  assert.equal((await alto.call('url', 'Delete', { id: 'moving' }, shopKey)).status, 404);
  assert.equal((await alto.call('url', 'Create', { id: 'moving', destinationURL: 'https://blog.example/' }, blogKey)).status, 200);
});

test('unknown short ids get a 404 JSON error, without a key', async () => {
  for (const path of ['/u/does-not-exist', '/u/', '/u/a/b', '/u/%00']) {
    const response = await follow(path);
    assert.equal(response.status, 404, path);
    assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    const body = await response.json();
    assert.equal(body.id, 'not_found');
    assert.equal(body.code, 404);
  }
  const post = await fetch(`${alto.url}/u/launch`, { method: 'POST', redirect: 'manual' });
  assert.equal(post.status, 405);
});

test('endpoints need a key with the url scope; the redirect does not', async () => {
  assert.equal((await alto.call('url', 'List', {}, null)).status, 401);
  const idOnly = await alto.projectKey('shop', ['id']);
  assert.equal((await alto.call('url', 'List', {}, idOnly)).status, 403);
});

test('every endpoint through the M3O client', async () => {
  const client = new Client({ token: shopKey, address: `${alto.url}/` });
  const shortened = await client.call<object, { shortURL: string }>('url', 'Shorten', { destinationURL: 'https://m3o.example/one' });
  assert.match(shortened.shortURL, /\/u\/[0-9A-Za-z]{8}$/);
  const created = await client.call<object, { url: { id: string; shortURL: string } }>('url', 'Create', {
    id: 'm3o-client',
    destinationURL: 'https://m3o.example/two',
  });
  assert.equal(created.url.shortURL, `${alto.url}/u/m3o-client`);
  await follow('/u/m3o-client');
  const listed = await client.call<object, { urlPairs: { id: string; hitCount: number }[] }>('url', 'List', {});
  assert.equal(listed.urlPairs.find((pair) => pair.id === 'm3o-client')?.hitCount, 1);
  const resolved = await client.call<object, { destinationURL: string }>('url', 'Resolve', { shortURL: shortened.shortURL });
  assert.equal(resolved.destinationURL, 'https://m3o.example/one');
  await client.call('url', 'Update', { id: 'm3o-client', destinationURL: 'https://m3o.example/three' });
  assert.equal((await follow('/u/m3o-client')).headers.get('location'), 'https://m3o.example/three');
  await client.call('url', 'Delete', { shortURL: created.url.shortURL });
  const error = await client.call('url', 'Resolve', { id: 'm3o-client' }).then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
  assert.equal(error.code, 404);
  const refused = await client.call('url', 'Shorten', { destinationURL: 'javascript:alert(1)' }).then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
  assert.equal(refused.code, 400);
});

test("deleting a project deletes its short URLs", async () => {
  const key = await alto.projectKey('doomed', ['url']);
  const created = await alto.call('url', 'Create', { id: 'doomed-link', destinationURL: 'https://example.com/' }, key);
  assert.equal(created.status, 200);
  assert.equal((await follow('/u/doomed-link')).status, 302);
  const deleted = await alto.call('projects', 'Delete', { name: 'doomed' });
  assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
  assert.equal((await follow('/u/doomed-link')).status, 404);
});

test('ALTO_PUBLIC_URL sets the base of short URLs', async () => {
  process.env.ALTO_PUBLIC_URL = 'https://go.example.com/';
  let other: TestAlto | undefined;
  try {
    other = await startInProcess();
    const key = await other.projectKey('public', ['url']);
    const shortened = await other.call('url', 'Shorten', { destinationURL: 'https://example.com/' }, key);
    assert.match(shortened.body.shortURL, /^https:\/\/go\.example\.com\/u\/[0-9A-Za-z]{8}$/);
  } finally {
    delete process.env.ALTO_PUBLIC_URL;
    await other?.close();
  }
});

test('with --store postgres the short URLs live in PostgreSQL and redirects count there', async () => {
  const database = await createTestDatabase('url_e2e');
  let onPostgres: TestAlto | undefined;
  try {
    onPostgres = await startInProcess({ postgresUrl: database.url });
    const key = await onPostgres.projectKey('pg', ['url']);
    const created = await onPostgres.call('url', 'Create', { id: 'on-pg', destinationURL: 'https://example.com/pg' }, key);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const hits = await Promise.all(
      Array.from({ length: 20 }, () => fetch(`${onPostgres!.url}/u/on-pg`, { redirect: 'manual' })),
    );
    assert.ok(hits.every((response) => response.status === 302 && response.headers.get('location') === 'https://example.com/pg'));
    const direct = new pg.Client({ connectionString: database.url });
    await direct.connect();
    const stored = await direct.query(`SELECT hit_count FROM alto_short_urls WHERE id = 'on-pg'`).finally(() => direct.end());
    assert.equal(Number(stored.rows[0].hit_count), 20);
    assert.equal((await onPostgres.call('url', 'Resolve', { id: 'on-pg' }, key)).body.hitCount, 20);
  } finally {
    await onPostgres?.close();
    await database.drop();
  }
});
