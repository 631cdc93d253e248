/**
 * The `db` block end to end, over HTTP through the real server and through M3O's own client:
 * once on the embedded SQLite (server in this process) and once on PostgreSQL (`alto up --store
 * postgres://...` as its own process, on a fresh database). Then durability: records
 * acknowledged before a kill -9 are there after a restart.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import pg from 'pg';
import { fuzzQueries } from '../src/store/documents/contract.js';
import { startInProcess, startProcess, temporaryDataDir, waitFor, type TestAlto } from './harness.js';

async function m3oError(promise: Promise<unknown>): Promise<{ id: string; code: number; detail: string; status: string }> {
  return promise.then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
}

function assertError(result: { status: number; body: any }, status: number, detail: RegExp): void {
  assert.equal(result.status, status, JSON.stringify(result.body));
  assert.match(result.body.detail, detail);
}

interface Watcher {
  messages: any[];
  closed: Promise<void>;
  close(): void;
}

/** Opens a Watch through the M3O client and resolves once the server says it is listening. */
async function watch(client: Client, request: object): Promise<Watcher> {
  const stream = await client.stream<object, any>('db', 'Watch', { ...request, ready: true });
  const messages: any[] = [];
  stream.onMessage((message) => messages.push(message));
  const closed = new Promise<void>((resolve) => stream.conn.on('close', () => resolve()));
  await waitFor(() => messages.some((message) => message.type === 'ready'), 'the watch to be ready');
  messages.shift();
  return { messages, closed, close: () => stream.conn.close() };
}

function dbSuite(backend: string, start: () => Promise<TestAlto>): void {
  describe(`db on ${backend}`, () => {
    let alto: TestAlto;
    let key: string;
    let client: Client;
    const db = (endpoint: string, body: unknown, withKey = key) => alto.call('db', endpoint, body, withKey);

    before(async () => {
      alto = await start();
      key = await alto.projectKey('shop', ['db']);
      client = new Client({ token: key, address: `${alto.url}/` });
    });
    after(() => alto?.close());

    test("M3O's documented examples through @m3o/m3o-node", async () => {
      const call = <T = any>(endpoint: string, body: object) => client.call<object, T>('db', endpoint, body);
      assert.deepEqual(await call('Create', { table: 'example', record: { id: '1', name: 'Jane', age: 42, isActive: true } }), {
        id: '1',
        revision: 1,
      });
      const created = await call('Create', { table: 'example', record: { name: 'Joe', age: 17, isActive: false } });
      assert.match(created.id, /^[0-9a-f-]{36}$/, 'a uuid when no id is given');
      assert.equal((await call('Update', { table: 'example', record: { id: '1', age: 43 } })).revision, 2);
      const read = await call('Read', { table: 'example', query: 'age == 43' });
      assert.deepEqual(read.records, [{ id: '1', name: 'Jane', age: 43, isActive: true }]);
      assert.deepEqual(read.revisions, { '1': 2 });
      assert.deepEqual((await call('Read', { table: 'example', id: '1' })).records, [{ id: '1', name: 'Jane', age: 43, isActive: true }]);
      assert.deepEqual(await call('Count', { table: 'example' }), { count: 2 });
      assert.deepEqual(await call('ListTables', {}), { tables: ['example'] });
      assert.deepEqual(await call('RenameTable', { from: 'example', to: 'examples' }), {});
      assert.deepEqual(await call('ListTables', {}), { tables: ['examples'] });
      assert.deepEqual(await call('Delete', { table: 'examples', id: '1' }), {});
      assert.deepEqual(await call('Count', { table: 'examples' }), { count: 1 });
      assert.deepEqual(await call('Truncate', { table: 'examples' }), {});
      assert.deepEqual(await call('Read', { table: 'examples' }), { records: [], revisions: {} });
      assert.deepEqual(await call('DropTable', { table: 'examples' }), {});
      assert.deepEqual(await call('ListTables', {}), { tables: [] });

      const error = await m3oError(call('Read', { table: 'x', query: 'age >= and' }));
      assert.equal(error.code, 400);
      assert.equal(error.id, 'bad_request');
      assert.equal(error.detail, `query: at position 8: expected a value after ">=", found name "and"; quote strings: 'and'`);
    });

    test('defaults, ids and JSON types over HTTP', async () => {
      const record = { title: 'milk', qty: 2, price: 1.25, tags: ['dairy', { fresh: true }], meta: { a: { b: null } }, done: false };
      const created = await db('Create', { id: 'from-request', record: { ...record, id: 'from-record' } });
      assert.equal(created.status, 200);
      assert.equal(created.body.id, 'from-request', "the request's id wins over the record's");
      assert.deepEqual((await db('ListTables', {})).body.tables, ['default'], "the table defaults to 'default'");
      const read = await db('Read', { id: 'from-request' });
      assert.deepEqual(read.body.records, [{ ...record, id: 'from-request' }]);
      assert.equal((await db('Create', { table: '', record: { id: 'r2', n: 1 } })).body.id, 'r2');
      const many = await db('Create', { table: 'bulk', record: [{ id: 'a', n: 1 }, { n: 2 }, { id: 'c', n: 3 }] });
      assert.equal(many.status, 200, JSON.stringify(many.body));
      assert.equal(many.body.ids.length, 3);
      assert.deepEqual([many.body.ids[0], many.body.ids[2]], ['a', 'c']);
      assert.equal((await db('Count', { table: 'bulk', query: 'n >= 2' })).body.count, 2);
      // Query-string parameters work too, with their JSON types.
      const response = await fetch(`${alto.url}/v1/db/Read?table=bulk&orderBy=n&order=desc&limit=2`, {
        headers: { authorization: `Bearer ${key}` },
      });
      assert.deepEqual(((await response.json()) as any).records.map((r: any) => r.n), [3, 2]);
    });

    test('queries, ordering and paging', async () => {
      const people = Array.from({ length: 60 }, (_, i) => ({
        id: `p${String(i).padStart(2, '0')}`,
        age: i,
        city: ['Paris', 'Lyon', 'Nice'][i % 3],
        tags: i % 4 === 0 ? 'a' : 'z',
        ...(i % 5 === 0 ? { email: `p${i}@example.com` } : {}),
        address: { floor: i % 7 },
      }));
      assert.equal((await db('Create', { table: 'people', record: people })).status, 200);
      const read = async (body: object) => {
        const result = await db('Read', { table: 'people', ...body });
        assert.equal(result.status, 200, JSON.stringify(result.body));
        return result.body.records.map((r: any) => r.id);
      };
      const expected = people
        .filter((p) => p.age >= 18 && (p.city === 'Paris' || ['a', 'b'].includes(p.tags)) && p.email !== undefined)
        .map((p) => p.id);
      assert.deepEqual(await read({ query: "age >= 18 and (city == 'Paris' or tags in ['a','b']) and email exists", limit: 100 }), expected);
      assert.equal((await read({})).length, 25, 'limit defaults to 25');
      assert.deepEqual(await read({ orderBy: 'age', order: 'desc', limit: 3 }), ['p59', 'p58', 'p57']);
      assert.deepEqual(await read({ orderBy: 'age', limit: 2, offset: 10 }), ['p10', 'p11']);
      assert.deepEqual(await read({ query: 'address.floor == 6', orderBy: 'age', order: 'DESC', limit: 2 }), ['p55', 'p48']);
      assert.equal((await read({ limit: 1000 })).length, 60);
      assertError(await db('Read', { table: 'people', limit: 1001 }), 400, /^limit: 1001 is out of range; use 1 to 1000/);
      assertError(await db('Read', { table: 'people', order: 'up' }), 400, /^order: "up" is not an order/);
      assertError(await db('Read', { table: 'people', orderBy: "age; DROP TABLE people" }), 400, /^orderBy: .* is not a field path/);
      assertError(await db('Read', { table: 'people', offset: -1 }), 400, /^offset: -1 is negative/);
    });

    test('revisions: a stale update or delete is a 409', async () => {
      await db('Create', { table: 'docs', record: { id: 'd', body: 'v1' } });
      const first = await db('Update', { table: 'docs', id: 'd', record: { body: 'v2' }, revision: 1 });
      assert.deepEqual(first.body, { revision: 2 });
      assertError(await db('Update', { table: 'docs', id: 'd', record: { body: 'v3' }, revision: 1 }), 409, /is at revision 2, not 1/);
      assertError(await db('Delete', { table: 'docs', id: 'd', revision: 1 }), 409, /revision 2, not 1/);
      assert.deepEqual((await db('Read', { table: 'docs', id: 'd' })).body, { records: [{ id: 'd', body: 'v2' }], revisions: { d: 2 } });
      assert.equal((await db('Delete', { table: 'docs', id: 'd', revision: 2 })).status, 200);
    });

    test('errors are 400, 404, 409 and 413 with clear details', async () => {
      await db('Create', { table: 'errs', record: { id: '1' } });
      assertError(await db('Create', { table: 'errs', record: { id: '1' } }), 409, /record "1" already exists in table "errs"; use Update/);
      assertError(await db('Create', { table: 'bad-name', record: {} }), 400, /^table: "bad-name" is not a table name/);
      assertError(await db('Create', { table: 'errs' }), 400, /^record: is required/);
      assertError(await db('Create', { table: 'errs', record: { id: 5 } }), 400, /^record.id: must be a string, not number/);
      assertError(await db('Create', { table: 'errs', record: { s: 'a\u0000b' } }), 400, /NUL/);
      assertError(await db('Create', { table: 'errs', record: { big: 'x'.repeat(1024 * 1024) } }), 413, /more than the 1 MiB a record may hold/);
      assertError(await db('Update', { table: 'errs', id: 'nope', record: { a: 1 } }), 404, /record "nope" does not exist in table "errs"/);
      assertError(await db('Update', { table: 'errs', record: { a: 1 } }), 400, /^id: say which record to update/);
      assertError(await db('Update', { table: 'errs', id: '1', record: { id: '2' } }), 400, /a record's id cannot change/);
      assertError(await db('Delete', { table: 'errs', id: 'nope' }), 404, /does not exist/);
      assertError(await db('DropTable', { table: 'nope' }), 404, /^table "nope" does not exist/);
      assertError(await db('Truncate', { table: 'nope' }), 404, /does not exist/);
      assertError(await db('RenameTable', { from: 'nope', to: 'x' }), 404, /"nope" does not exist/);
      await db('Create', { table: 'other', record: { id: '1' } });
      assertError(await db('RenameTable', { from: 'errs', to: 'other' }), 409, /"other" already exists/);
      assertError(await db('RenameTable', { from: 'errs' }), 400, /^to: /);
      assertError(await db('Read', { table: 'errs', query: "name == 'x" }), 400, /^query: at position 9: the string starting here has no closing '/);
      assertError(await db('DropIndex', { table: 'errs', field: 'zzz' }), 404, /no index on "zzz"/);
      assertError(await db('CreateIndex', { table: 'errs', field: 'a-b' }), 400, /^field: "a-b" is not a field path/);
    });

    test('indexes through the API', async () => {
      assert.equal((await db('CreateIndex', { table: 'indexed', field: 'email' })).status, 200);
      assert.equal((await db('CreateIndex', { table: 'indexed', field: 'address.city' })).status, 200);
      await db('Create', { table: 'indexed', record: { id: '1', email: 'a@b.c', address: { city: 'Paris' } } });
      assert.deepEqual((await db('ListIndexes', { table: 'indexed' })).body.indexes, [
        { table: 'indexed', field: 'address.city' },
        { table: 'indexed', field: 'email' },
      ]);
      assert.deepEqual((await db('Read', { table: 'indexed', query: "address.city == 'Paris'" })).body.records.length, 1);
      assert.equal((await db('DropIndex', { table: 'indexed', field: 'email' })).status, 200);
      assert.deepEqual((await db('ListIndexes', {})).body.indexes, [{ table: 'indexed', field: 'address.city' }]);
    });

    test('two projects with the same table names never see each other', async () => {
      const otherKey = await alto.projectKey('blog', ['db']);
      await db('Create', { table: 'posts', record: { id: '1', owner: 'shop' } });
      await db('Create', { table: 'posts', record: { id: '1', owner: 'blog' } }, otherKey);
      assert.deepEqual((await db('Read', { table: 'posts', id: '1' })).body.records, [{ id: '1', owner: 'shop' }]);
      assert.deepEqual((await db('Read', { table: 'posts', id: '1' }, otherKey)).body.records, [{ id: '1', owner: 'blog' }]);
      await db('DropTable', { table: 'posts' }, otherKey);
      assert.equal((await db('Count', { table: 'posts' })).body.count, 1);
      assert.ok(!(await db('ListTables', {}, otherKey)).body.tables.includes('posts'));
    });

    test('Watch streams every change, optionally filtered by a query', async () => {
      const all = await watch(client, { table: 'live' });
      const adults = await watch(client, { table: 'live', query: 'age >= 18' });
      await db('Create', { table: 'live', record: { id: 'kid', age: 9 } });
      await db('Create', { table: 'live', record: { id: 'adult', age: 30 } });
      await db('Update', { table: 'live', record: { id: 'adult', age: 31 } });
      await db('Delete', { table: 'live', id: 'adult' });
      await db('Create', { table: 'elsewhere', record: { id: 'x', age: 50 } });
      await waitFor(() => all.messages.length >= 4 && adults.messages.length >= 3, 'the changes to reach the watchers');
      assert.deepEqual(all.messages, [
        { type: 'create', id: 'kid', revision: 1, record: { id: 'kid', age: 9 } },
        { type: 'create', id: 'adult', revision: 1, record: { id: 'adult', age: 30 } },
        { type: 'update', id: 'adult', revision: 2, record: { id: 'adult', age: 31 } },
        { type: 'delete', id: 'adult', revision: 2, record: { id: 'adult', age: 31 } },
      ]);
      assert.deepEqual(
        adults.messages.map((message) => `${message.type} ${message.id}`),
        ['create adult', 'update adult', 'delete adult'],
      );
      all.close();
      adults.close();
      await Promise.all([all.closed, adults.closed]);

      const stream = await client.stream<object, any>('db', 'Watch', { table: 'live', query: 'age >=' });
      const messages: any[] = [];
      stream.onMessage((message) => messages.push(message));
      await new Promise<void>((resolve) => stream.conn.on('close', () => resolve()));
      assert.equal(messages[0].code, 400);
      assert.match(messages[0].detail, /^query: at position 7: expected a value after ">="/);
    });

    test('fuzz over HTTP: every query is answered 200 or 400, and the table survives', async () => {
      await db('Create', { table: 'fuzz', record: [{ id: 'a', age: 20, name: 'ann' }, { id: 'b', age: 'x', tags: ['a'] }] });
      const hostile = ["x == '1'; DROP TABLE fuzz", "name == 'x' or 1 == 1 --", "') OR 1=1; DROP TABLE documents_tables; --"];
      const queries = [...hostile, ...fuzzQueries(7, 300)];
      const statuses = new Map<number, number>();
      for (let i = 0; i < queries.length; i += 20) {
        const results = await Promise.all(queries.slice(i, i + 20).map((query) => db('Read', { table: 'fuzz', query })));
        results.forEach((result, j) => {
          statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
          assert.ok(result.status === 200 || result.status === 400, `${JSON.stringify(queries[i + j])}: ${result.status} ${JSON.stringify(result.body)}`);
          if (result.status === 400) assert.match(result.body.detail, /^query: /);
        });
      }
      assert.ok((statuses.get(200) ?? 0) > 50 && (statuses.get(400) ?? 0) > 50, JSON.stringify([...statuses]));
      assert.equal((await db('Count', { table: 'fuzz' })).body.count, 2);
      assert.ok((await db('ListTables', {})).body.tables.includes('fuzz'));
    });

    test('deleting a project drops its tables', async () => {
      const scratchKey = await alto.projectKey('scratch', ['db']);
      await db('Create', { table: 'notes', record: { id: '1' } }, scratchKey);
      assert.equal((await alto.call('projects', 'Delete', { name: 'scratch' })).status, 200);
      const againKey = await alto.projectKey('scratch', ['db']);
      assert.deepEqual((await db('ListTables', {}, againKey)).body.tables, []);
      assert.equal((await db('Count', { table: 'posts' })).body.count, 1, 'other projects keep their data');
    });
  });
}

dbSuite('sqlite', () => startInProcess());

let admin: pg.Client | undefined;
let database: string | undefined;

dbSuite('postgres', async () => {
  const adminUrl = process.env.ALTO_TEST_POSTGRES_URL;
  if (!adminUrl) {
    throw new Error('ALTO_TEST_POSTGRES_URL is not set: run `. scripts/test-services.sh` first to start the test PostgreSQL');
  }
  database = `alto_test_db_e2e_${randomBytes(6).toString('hex')}`;
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return startProcess({ args: ['--store', url.toString()] });
});

test('the postgres run kept its tables in PostgreSQL', async () => {
  assert.ok(database, 'the postgres suite did not start');
  const url = new URL(process.env.ALTO_TEST_POSTGRES_URL!);
  url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>('SELECT name FROM alto_db.tables ORDER BY name');
    assert.ok(rows.some((row) => row.name === 'people'), JSON.stringify(rows));
  } finally {
    await client.end();
  }
});

after(async () => {
  if (!admin) return;
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.end();
});

test('records acknowledged before a kill -9 are there after a restart', async () => {
  const dataDir = temporaryDataDir();
  try {
    const first = await startProcess({ dataDir });
    const key = await first.projectKey('durable', ['db']);
    const ids: string[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => first.call('db', 'Create', { table: 'ledger', record: { id: `e${batch}-${i}`, amount: i } }, key)),
      );
      for (const result of results) {
        assert.equal(result.status, 200);
        ids.push(result.body.id);
      }
    }
    await first.call('db', 'Update', { table: 'ledger', record: { id: 'e9-19', amount: 1000 } }, key);
    assert.equal(await first.stop('SIGKILL'), 'SIGKILL');

    const second = await startProcess({ dataDir });
    try {
      assert.equal((await second.call('db', 'Count', { table: 'ledger' }, key)).body.count, ids.length);
      const read = await second.call('db', 'Read', { table: 'ledger', limit: 1000 }, key);
      assert.deepEqual(read.body.records.map((record: any) => record.id).sort(), [...ids].sort());
      assert.equal(read.body.revisions['e9-19'], 2);
      assert.equal(read.body.records.find((record: any) => record.id === 'e9-19').amount, 1000);
    } finally {
      await second.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
