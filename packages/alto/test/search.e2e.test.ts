/**
 * The search block through the real server: every endpoint over HTTP and through M3O's client,
 * the query language end to end, 400s with positions, two projects kept apart, project
 * deletion, and the same calls on PostgreSQL.
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
  shopKey = await alto.projectKey('shop', ['search']);
  blogKey = await alto.projectKey('blog', ['search']);
});
after(() => alto.close());

/** Index, search, page, delete: the same story on whichever server it is given. */
async function exerciseSearch(server: TestAlto, key: string): Promise<void> {
  const created = await server.call('search', 'CreateIndex', { index: 'customers' }, key);
  assert.equal(created.status, 200, JSON.stringify(created.body));
  assert.deepEqual(created.body, {});
  assert.equal((await server.call('search', 'CreateIndex', { index: 'customers' }, key)).status, 409);

  const people = [
    { id: 'c1', data: { name: 'John Doe', age: 37, starsign: 'Leo', notes: 'prefers green tea' } },
    { id: 'c2', data: { name: 'Jane Doe', age: 28, starsign: 'Leo', notes: 'tea tea tea, and biscuits' } },
    { id: 'c3', data: { name: 'Johnny Walker', age: 52, starsign: 'Virgo', notes: 'coffee only' } },
  ];
  for (const person of people) {
    const indexed = await server.call('search', 'Index', { index: 'customers', ...person }, key);
    assert.equal(indexed.status, 200, JSON.stringify(indexed.body));
    assert.deepEqual(indexed.body, { record: person });
  }
  const generated = await server.call('search', 'Index', { index: 'customers', data: { name: 'Anon' } }, key);
  assert.match(generated.body.record.id, /^[0-9a-f-]{36}$/);

  const search = async (query: string, extra: object = {}) => {
    const result = await server.call('search', 'Search', { index: 'customers', query, ...extra }, key);
    assert.equal(result.status, 200, JSON.stringify(result.body));
    return result.body.records as Array<{ id: string; data: any; highlights: string[] }>;
  };
  assert.deepEqual((await search("name == 'Joh*' AND age >= 30")).map((r) => r.id), ['c1', 'c3']);
  assert.deepEqual((await search("starsign == 'Leo' and (age <= 30 OR name == 'John Doe')")).map((r) => r.id), ['c1', 'c2']);
  const ranked = await search('tea');
  assert.deepEqual(ranked.map((r) => r.id), ['c2', 'c1']);
  assert.deepEqual(ranked[1].data, people[0].data);
  assert.match(ranked[0].highlights[0], /<em>tea<\/em>/i);
  assert.deepEqual((await search('', { limit: 2, offset: 1 })).map((r) => r.id), ['c2', 'c3']);

  const malformed = await server.call('search', 'Search', { index: 'customers', query: "name == 'John" }, key);
  assert.equal(malformed.status, 400);
  assert.match(JSON.stringify(malformed.body), /position 9/);
  assert.equal((await server.call('search', 'Search', { index: 'nope', query: '' }, key)).status, 404);

  assert.equal((await server.call('search', 'Delete', { index: 'customers', id: 'c2' }, key)).status, 200);
  assert.deepEqual((await search('tea')).map((r) => r.id), ['c1']);
  assert.equal((await server.call('search', 'Delete', { index: 'customers', id: 'c2' }, key)).status, 404);
  assert.equal((await server.call('search', 'DeleteIndex', { index: 'customers' }, key)).status, 200);
  assert.equal((await server.call('search', 'Search', { index: 'customers' }, key)).status, 404);
}

test('CreateIndex, Index, Search, Delete and DeleteIndex over HTTP', async () => {
  await exerciseSearch(alto, shopKey);
});

test('two projects never see each other’s indexes', async () => {
  await alto.call('search', 'Index', { index: 'posts', id: 'p1', data: { title: 'secret recipe' } }, shopKey);
  await alto.call('search', 'Index', { index: 'posts', id: 'p1', data: { title: 'public diary' } }, blogKey);
  const shop = await alto.call('search', 'Search', { index: 'posts', query: 'recipe' }, shopKey);
  assert.deepEqual(shop.body.records.map((r: { id: string }) => r.id), ['p1']);
  const blog = await alto.call('search', 'Search', { index: 'posts', query: 'recipe' }, blogKey);
  assert.deepEqual(blog.body.records, []);
  assert.equal((await alto.call('search', 'Delete', { index: 'posts', id: 'p1' }, blogKey)).status, 200);
  const stillThere = await alto.call('search', 'Search', { index: 'posts', query: 'recipe' }, shopKey);
  assert.equal(stillThere.body.records.length, 1);
});

test('M3O’s client works unchanged, and errors reject with the JSON body', async () => {
  const client = new Client({ token: shopKey, address: alto.url + '/' });
  await client.call('search', 'CreateIndex', { index: 'm3o' });
  const indexed = await client.call<object, { record: { id: string } }>('search', 'Index', {
    index: 'm3o',
    id: '1',
    data: { name: 'Joe Bloggs', age: 41 },
  });
  assert.equal(indexed.record.id, '1');
  const found = await client.call<object, { records: Array<{ id: string; data: { name: string } }> }>('search', 'Search', {
    index: 'm3o',
    query: "name == 'Joe*' and age >= 40",
  });
  assert.deepEqual(found.records.map((r) => [r.id, r.data.name]), [['1', 'Joe Bloggs']]);
  const refused = await client.call('search', 'Search', { index: 'm3o', query: 'age >= ' }).then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
  assert.equal(refused.code, 400);
  await client.call('search', 'Delete', { index: 'm3o', id: '1' });
  await client.call('search', 'DeleteIndex', { index: 'm3o' });
});

test('deleting a project deletes its indexes', async () => {
  const key = await alto.projectKey('doomed', ['search']);
  assert.equal((await alto.call('search', 'Index', { index: 'gone', id: 'a', data: { t: 'x' } }, key)).status, 200);
  const deleted = await alto.call('projects', 'Delete', { name: 'doomed' });
  assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
  const again = await alto.projectKey('doomed', ['search']);
  assert.equal((await alto.call('search', 'Search', { index: 'gone' }, again)).status, 404);
});

test('with --store postgres the indexes live in PostgreSQL', async () => {
  const database = await createTestDatabase('search_e2e');
  let onPostgres: TestAlto | undefined;
  try {
    onPostgres = await startInProcess({ postgresUrl: database.url });
    await exerciseSearch(onPostgres, await onPostgres.projectKey('pg', ['search']));
    const check = new pg.Client({ connectionString: database.url });
    await check.connect();
    const { rows } = await check.query('SELECT count(*)::int AS n FROM alto_search_indexes');
    await check.end();
    assert.equal(rows[0].n, 0, 'DeleteIndex removed the index row');
  } finally {
    await onPostgres?.close();
    await database.drop();
  }
});
