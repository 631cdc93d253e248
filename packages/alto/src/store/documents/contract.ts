/**
 * @module store/documents/contract
 * The behaviour every document store adapter must have, as one node:test suite. Each adapter's
 * `*.contract.test.ts` calls `runDocumentStoreContract` with a factory for its store.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { projectOf, type Change, type DocumentLimits, type DocumentStore, type FindOptions, type JsonObject } from './port.js';
import { matches, parseFieldPath, parseQuery } from './query.js';

export interface ContractTarget {
  /** Opens a store on the shared test database; limits override the defaults. */
  open(limits?: Partial<DocumentLimits>): Promise<DocumentStore>;
}

function uniqueNamespace(): string {
  return `p${randomBytes(5).toString('hex')}/dev`;
}

function options(query?: string, extra: Partial<FindOptions> = {}): FindOptions {
  return { filter: query === undefined ? undefined : parseQuery(query), order: 'asc', limit: 1000, offset: 0, ...extra };
}

async function rejectsWith(promise: Promise<unknown>, status: number, detail?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isAltoError(error), `expected an AltoError, got ${String(error)}`);
    assert.equal(error.status, status, error.detail);
    if (detail) assert.match(error.detail, detail);
    return true;
  });
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Records of every JSON type, for query tests. Strings are ASCII so every collation agrees. */
const PEOPLE: JsonObject[] = [
  { id: 'ann', name: 'ann', age: 31, city: 'paris', verified: true, tags: ['a', 'b'], address: { zip: '75001', floor: 3 } },
  { id: 'bob', name: 'bob', age: 17, city: 'lyon', verified: false, tags: [], address: { zip: '69001', floor: 0 } },
  { id: 'cat', name: 'cat', age: 45.5, city: 'paris', verified: true, email: 'cat@example.com', address: null },
  { id: 'dan', name: 'dan', age: '40', city: 'nice', verified: 1, email: null },
  { id: 'eve', name: 'eve', age: 18, city: 'berlin', verified: 'true', tags: 'a', score: -2.5 },
  { id: 'fay', name: 'fay', city: 'paris', nested: { deep: { v: 7 } }, age: true },
];

async function seedPeople(store: DocumentStore, namespace: string, table = 'people'): Promise<void> {
  await store.create(
    namespace,
    table,
    PEOPLE.map((data) => ({ id: String(data.id), data })),
  );
}

async function idsOf(store: DocumentStore, namespace: string, query: string, extra: Partial<FindOptions> = {}): Promise<string[]> {
  return (await store.find(namespace, 'people', options(query, extra))).map((record) => record.id);
}

export function runDocumentStoreContract(name: string, target: ContractTarget): void {
  const withStore = (title: string, body: (store: DocumentStore, namespace: string) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const store = await target.open();
      try {
        await body(store, uniqueNamespace());
      } finally {
        await store.close();
      }
    });

  withStore('create and read back: every JSON type survives the round trip', async (store, ns) => {
    const data = {
      id: 'r1',
      int: 42,
      negative: -7,
      float: 3.25,
      big: 9007199254740991,
      small: 1e-7,
      text: "it's \"quoted\" \\ and ünïcödé 🎉",
      yes: true,
      no: false,
      nothing: null,
      list: [1, 'two', { three: 3 }, [4], null, false],
      nested: { a: { b: { c: [1, 2, 3], d: 'deep' } }, empty: {} },
      emptyList: [],
      emptyText: '',
    };
    const [created] = await store.create(ns, 'things', [{ id: 'r1', data }]);
    assert.equal(created.revision, 1);
    const read = await store.get(ns, 'things', 'r1');
    assert.deepEqual(read, { id: 'r1', revision: 1, data });
    const [found] = await store.find(ns, 'things', options());
    assert.deepEqual(found.data, data);
    assert.equal(await store.get(ns, 'things', 'nope'), undefined);
    assert.equal(await store.get(ns, 'missing_table', 'r1'), undefined);
  });

  withStore('tables appear on first write and are listed', async (store, ns) => {
    assert.deepEqual(await store.listTables(ns), []);
    assert.deepEqual(await store.find(ns, 'users', options()), []);
    assert.equal(await store.count(ns, 'users'), 0);
    await store.create(ns, 'users', [{ id: '1', data: { id: '1' } }]);
    await store.create(ns, 'Accounts', [{ id: '1', data: { id: '1' } }]);
    assert.deepEqual(await store.listTables(ns), ['Accounts', 'users']);
  });

  withStore('a duplicate id is a 409 and a batch is written all or nothing', async (store, ns) => {
    await store.create(ns, 't', [{ id: 'a', data: { id: 'a', v: 1 } }]);
    await rejectsWith(store.create(ns, 't', [{ id: 'a', data: { id: 'a', v: 2 } }]), 409, /"a" already exists in table "t"/);
    await rejectsWith(
      store.create(ns, 't', [
        { id: 'b', data: { id: 'b' } },
        { id: 'a', data: { id: 'a' } },
      ]),
      409,
      /"a"/,
    );
    assert.equal(await store.get(ns, 't', 'b'), undefined);
    assert.equal(await store.count(ns, 't'), 1);
    assert.equal((await store.get(ns, 't', 'a'))!.data.v, 1);
  });

  withStore('queries: comparisons, and/or/not, in, exists, dot paths, strict types', async (store, ns) => {
    await seedPeople(store, ns);
    const cases: [string, string[]][] = [
      ['age >= 18', ['ann', 'cat', 'eve']],
      ['age > 17 and age < 45.5', ['ann', 'eve']],
      ['age <= 18', ['bob', 'eve']],
      ["age == '40'", ['dan']],
      ['age == 40', []],
      ['verified == true', ['ann', 'cat']],
      ['verified == 1', ['dan']],
      ["verified == 'true'", ['eve']],
      ['verified != true', ['bob', 'dan', 'eve', 'fay']],
      ["city == 'paris' and verified == true", ['ann', 'cat']],
      ["city == \"paris\" or city == 'nice'", ['ann', 'cat', 'dan', 'fay']],
      ["age >= 18 and (city == 'paris' or tags in ['a','b']) and email exists", ['cat']],
      ["city in ['lyon', 'nice', 'rome']", ['bob', 'dan']],
      ["city not in ['paris']", ['bob', 'dan', 'eve']],
      ["age in [17, '40', true]", ['bob', 'dan', 'fay']],
      ['email exists', ['cat', 'dan']],
      ['email not exists', ['ann', 'bob', 'eve', 'fay']],
      ['email == null', ['ann', 'bob', 'dan', 'eve', 'fay']],
      ['email != null', ['cat']],
      ["address.zip == '75001'", ['ann']],
      ['address.floor < 3', ['bob']],
      ['address exists and address == null', ['cat']],
      ['nested.deep.v == 7', ['fay']],
      ['nested.deep.v.w exists', []],
      ["not (city == 'paris')", ['bob', 'dan', 'eve']],
      ["NOT city == 'paris' AND age >= 18", ['eve']],
      ["id == 'bob'", ['bob']],
      ["id in ['ann', 'eve', 'zed']", ['ann', 'eve']],
      ["id > 'dan'", ['eve', 'fay']],
      ['id == 5', []],
      ['id != 5', ['ann', 'bob', 'cat', 'dan', 'eve', 'fay']],
      ["name >= 'c' and name < 'f'", ['cat', 'dan', 'eve']],
      ['score < 0', ['eve']],
      ["tags == 'a'", ['eve']],
      ['missing != 1', ['ann', 'bob', 'cat', 'dan', 'eve', 'fay']],
    ];
    for (const [query, expected] of cases) {
      assert.deepEqual((await idsOf(store, ns, query)).sort(), expected, query);
      const inMemory = PEOPLE.filter((person) => matches(person, parseQuery(query))).map((person) => person.id);
      assert.deepEqual(inMemory.sort(), expected, `matches(): ${query}`);
      assert.equal(await store.count(ns, 'people', parseQuery(query)), expected.length, `count: ${query}`);
    }
  });

  withStore('ordering and paging', async (store, ns) => {
    await seedPeople(store, ns);
    assert.deepEqual(await idsOf(store, ns, 'name exists'), ['ann', 'bob', 'cat', 'dan', 'eve', 'fay'], 'creation order by default');
    assert.deepEqual(await idsOf(store, ns, 'name exists', { order: 'desc' }), ['fay', 'eve', 'dan', 'cat', 'bob', 'ann']);
    const numeric = "age >= 0";
    assert.deepEqual(await idsOf(store, ns, numeric, { orderBy: ['age'] }), ['bob', 'eve', 'ann', 'cat']);
    assert.deepEqual(await idsOf(store, ns, numeric, { orderBy: ['age'], order: 'desc' }), ['cat', 'ann', 'eve', 'bob']);
    assert.deepEqual(await idsOf(store, ns, numeric, { orderBy: ['age'], limit: 2, offset: 1 }), ['eve', 'ann']);
    assert.deepEqual(await idsOf(store, ns, "city exists", { orderBy: ['city'], limit: 3 }), ['eve', 'bob', 'dan']);
    assert.deepEqual(await idsOf(store, ns, 'address.floor >= 0', { orderBy: parseFieldPath('address.floor') }), ['bob', 'ann']);
    assert.deepEqual(await idsOf(store, ns, 'name exists', { orderBy: ['id'], order: 'desc', limit: 2 }), ['fay', 'eve']);
    assert.deepEqual(await idsOf(store, ns, 'name exists', { offset: 10 }), []);
    const page = await store.find(ns, 'people', options(undefined, { limit: 4 }));
    assert.equal(page.length, 4);
  });

  withStore('update merges top-level keys and counts revisions', async (store, ns) => {
    await store.create(ns, 'u', [{ id: '1', data: { id: '1', name: 'Jane', age: 42, address: { city: 'x', zip: 'y' } } }]);
    const updated = await store.update(ns, 'u', '1', { age: 43, address: { city: 'z' }, extra: [1] });
    assert.equal(updated.revision, 2);
    assert.deepEqual(updated.data, { id: '1', name: 'Jane', age: 43, address: { city: 'z' }, extra: [1] });
    assert.deepEqual(await store.get(ns, 'u', '1'), updated);
    const again = await store.update(ns, 'u', '1', { name: null }, 2);
    assert.equal(again.revision, 3);
    assert.equal(again.data.name, null);
    await rejectsWith(store.update(ns, 'u', '1', { age: 1 }, 2), 409, /revision 3, not 2/);
    assert.equal((await store.get(ns, 'u', '1'))!.data.age, 43);
    await rejectsWith(store.update(ns, 'u', 'nope', { age: 1 }), 404, /"nope" does not exist/);
    await rejectsWith(store.update(ns, 'no_table', '1', { age: 1 }), 404);
  });

  withStore('delete, with and without an expected revision', async (store, ns) => {
    await store.create(ns, 'd', [
      { id: '1', data: { id: '1' } },
      { id: '2', data: { id: '2' } },
    ]);
    await store.update(ns, 'd', '2', { x: 1 });
    await rejectsWith(store.delete(ns, 'd', '2', 1), 409);
    await store.delete(ns, 'd', '2', 2);
    await store.delete(ns, 'd', '1');
    assert.equal(await store.count(ns, 'd'), 0);
    await rejectsWith(store.delete(ns, 'd', '1'), 404);
    await rejectsWith(store.delete(ns, 'nothing', '1'), 404);
    const [recreated] = await store.create(ns, 'd', [{ id: '1', data: { id: '1' } }]);
    assert.equal(recreated.revision, 1);
  });

  withStore('truncate, count, rename, drop', async (store, ns) => {
    await seedPeople(store, ns, 'a');
    assert.equal(await store.count(ns, 'a'), PEOPLE.length);
    await store.createIndex(ns, 'a', ['age']);
    await store.truncate(ns, 'a');
    assert.equal(await store.count(ns, 'a'), 0);
    assert.deepEqual(await store.listTables(ns), ['a']);
    assert.deepEqual(await store.listIndexes(ns, 'a'), [{ table: 'a', field: 'age' }], 'truncate keeps indexes');
    await seedPeople(store, ns, 'a');
    await store.create(ns, 'b', [{ id: 'x', data: { id: 'x' } }]);
    await rejectsWith(store.renameTable(ns, 'a', 'b'), 409, /"b" already exists/);
    await rejectsWith(store.renameTable(ns, 'zzz', 'c'), 404, /"zzz" does not exist/);
    await store.renameTable(ns, 'a', 'c');
    assert.deepEqual(await store.listTables(ns), ['b', 'c']);
    assert.equal(await store.count(ns, 'c'), PEOPLE.length);
    assert.equal(await store.count(ns, 'a'), 0);
    assert.deepEqual(await store.listIndexes(ns, 'c'), [{ table: 'c', field: 'age' }], 'indexes follow a renamed table');
    assert.deepEqual((await store.get(ns, 'c', 'ann'))!.data.name, 'ann');
    await store.create(ns, 'a', [{ id: 'new', data: { id: 'new' } }]);
    assert.equal(await store.count(ns, 'a'), 1, 'the old name is a new, empty table');
    await store.dropTable(ns, 'c');
    await rejectsWith(store.dropTable(ns, 'c'), 404);
    await rejectsWith(store.truncate(ns, 'c'), 404);
    assert.deepEqual(await store.listTables(ns), ['a', 'b']);
    assert.equal(await store.get(ns, 'c', 'ann'), undefined);
    await store.create(ns, 'c', [{ id: 'ann', data: { id: 'ann' } }]);
    assert.equal(await store.count(ns, 'c'), 1, 'a dropped table comes back empty');
  });

  withStore('namespaces with the same table names never see each other', async (store, ns) => {
    const other = uniqueNamespace();
    await store.create(ns, 'shared', [{ id: '1', data: { id: '1', owner: 'first' } }]);
    await store.create(other, 'shared', [{ id: '1', data: { id: '1', owner: 'second' } }]);
    await store.createIndex(ns, 'shared', ['owner']);
    assert.equal((await store.get(ns, 'shared', '1'))!.data.owner, 'first');
    assert.equal((await store.get(other, 'shared', '1'))!.data.owner, 'second');
    assert.deepEqual((await store.find(other, 'shared', options("owner == 'first'"))).length, 0);
    assert.deepEqual(await store.listIndexes(other), []);
    await store.truncate(other, 'shared');
    assert.equal(await store.count(ns, 'shared'), 1);
    await store.dropTable(ns, 'shared');
    assert.equal((await store.get(other, 'shared', '1')), undefined);
    assert.deepEqual(await store.listTables(other), ['shared']);
    await store.renameTable(other, 'shared', 'mine');
    assert.deepEqual(await store.listTables(ns), []);
  });

  withStore('indexes: create, list, drop; an indexed query does not scan the table', async (store, ns) => {
    const records = Array.from({ length: 3000 }, (_, i) => ({
      id: `r${i}`,
      data: { id: `r${i}`, n: i, group: `g${i % 100}`, profile: { score: i % 37 } },
    }));
    for (let i = 0; i < records.length; i += 500) await store.create(ns, 'big', records.slice(i, i + 500));
    const query = options("group == 'g42'");
    const unindexed = await store.explain(ns, 'big', query);
    assert.equal(unindexed.fullScan, true, unindexed.plan);
    assert.deepEqual(unindexed.indexedFields, []);

    await store.createIndex(ns, 'big', ['group']);
    await store.createIndex(ns, 'big', ['group']); // idempotent
    await store.createIndex(ns, 'big', ['profile', 'score']);
    await store.createIndex(ns, 'big', ['id']); // always indexed: accepted, not listed
    assert.deepEqual(await store.listIndexes(ns, 'big'), [
      { table: 'big', field: 'group' },
      { table: 'big', field: 'profile.score' },
    ]);
    const indexed = await store.explain(ns, 'big', query);
    assert.equal(indexed.fullScan, false, indexed.plan);
    assert.deepEqual(indexed.indexedFields, ['group'], indexed.plan);
    const range = await store.explain(ns, 'big', options('profile.score == 5'));
    assert.deepEqual(range.indexedFields, ['profile.score'], range.plan);
    assert.equal((await store.find(ns, 'big', query)).length, 30);
    assert.equal((await store.find(ns, 'big', options('profile.score == 5'))).length, 81);

    await store.dropIndex(ns, 'big', ['group']);
    await rejectsWith(store.dropIndex(ns, 'big', ['group']), 404, /no index on "group"/);
    await rejectsWith(store.dropIndex(ns, 'nothing', ['group']), 404);
    assert.equal((await store.explain(ns, 'big', query)).fullScan, true);
    assert.equal((await store.find(ns, 'big', query)).length, 30);
    await store.createIndex(ns, 'fresh', ['x']);
    assert.deepEqual(await store.listTables(ns), ['big', 'fresh'], 'an index creates its table');
    assert.deepEqual(await store.listIndexes(ns), [
      { table: 'big', field: 'profile.score' },
      { table: 'fresh', field: 'x' },
    ]);
  });

  withStore('watch sees every committed change of its table only', async (store, ns) => {
    const seen: Change[] = [];
    const watch = await store.watch(ns, 'w', (change) => seen.push(change));
    const other: Change[] = [];
    const otherWatch = await store.watch(uniqueNamespace(), 'w', (change) => other.push(change));
    await store.create(ns, 'w', [{ id: '1', data: { id: '1', v: 1 } }]);
    await store.create(ns, 'not_w', [{ id: '1', data: { id: '1' } }]);
    await store.update(ns, 'w', '1', { v: 2 });
    await store.delete(ns, 'w', '1');
    await until(() => seen.length >= 3, 'three changes');
    assert.deepEqual(
      seen.map(({ type, id, revision, record }) => ({ type, id, revision, record })),
      [
        { type: 'create', id: '1', revision: 1, record: { id: '1', v: 1 } },
        { type: 'update', id: '1', revision: 2, record: { id: '1', v: 2 } },
        { type: 'delete', id: '1', revision: 2, record: { id: '1', v: 2 } },
      ],
    );
    watch.stop();
    await store.create(ns, 'w', [{ id: '2', data: { id: '2' } }]);
    await store.create(ns, 'w', [{ id: 'big', data: { id: 'big', blob: 'x'.repeat(20_000) } }]);
    const again: Change[] = [];
    const third = await store.watch(ns, 'w', (change) => again.push(change));
    await store.update(ns, 'w', 'big', { more: true });
    // Notifications of the creates above may still be on their way (PostgreSQL): wait for the update.
    await until(() => again.some((change) => change.type === 'update'), 'the change of a large record');
    const update = again.find((change) => change.type === 'update')!;
    assert.equal((update.record?.blob as string).length, 20_000, 'large records reach watchers whole');
    assert.equal(update.record?.more, true);
    assert.equal(seen.length, 3, 'a stopped watch receives nothing');
    assert.equal(other.length, 0);
    third.stop();
    otherWatch.stop();
  });

  test(`${name}: limits give clear 4xx errors`, async () => {
    const store = await target.open({ maxRowsPerProject: 5, maxTablesPerNamespace: 3, maxIndexesPerTable: 2, maxRecordBytes: 1000 });
    try {
      const ns = uniqueNamespace();
      const sameProject = ns.replace('/dev', '/prod');
      await store.create(ns, 'a', [1, 2, 3].map((i) => ({ id: `${i}`, data: { id: `${i}` } })));
      await store.create(sameProject, 'a', [{ id: '4', data: { id: '4' } }]);
      // What the platform's db_rows cap reads: every environment of the project counts.
      assert.equal(await store.projectRowCount(projectOf(ns)), 4);
      await rejectsWith(
        store.create(sameProject, 'b', [
          { id: '5', data: { id: '5' } },
          { id: '6', data: { id: '6' } },
        ]),
        403,
        /5 records, its limit/,
      );
      await store.create(ns, 'a', [{ id: '5', data: { id: '5' } }]);
      await rejectsWith(store.create(ns, 'a', [{ id: '6', data: { id: '6' } }]), 403);
      await store.delete(ns, 'a', '5');
      assert.equal(await store.projectRowCount(projectOf(ns)), 4);
      await store.create(ns, 'a', [{ id: '6', data: { id: '6' } }]);
      await store.truncate(ns, 'a');
      await store.create(ns, 'b', [{ id: '1', data: { id: '1' } }]);
      await store.create(ns, 'c', [{ id: '1', data: { id: '1' } }]);
      await rejectsWith(store.create(ns, 'd', [{ id: '1', data: { id: '1' } }]), 403, /3 tables/);
      await store.createIndex(ns, 'a', ['x']);
      await store.createIndex(ns, 'a', ['y']);
      await rejectsWith(store.createIndex(ns, 'a', ['z']), 403, /2 indexes/);
      await rejectsWith(store.create(ns, 'a', [{ id: 'big', data: { id: 'big', blob: 'x'.repeat(1000) } }]), 413, /more than the 1000 bytes/);
      await store.create(ns, 'a', [{ id: 'grow', data: { id: 'grow', blob: 'x'.repeat(500) } }]);
      await rejectsWith(store.update(ns, 'a', 'grow', { more: 'y'.repeat(600) }), 413);
      assert.equal((await store.get(ns, 'a', 'grow'))!.revision, 1);
    } finally {
      await store.close();
    }
  });

  withStore('dropProject removes every environment of one project only', async (store, ns) => {
    const project = ns.split('/')[0];
    const prod = `${project}/prod`;
    const bystander = uniqueNamespace();
    for (const namespace of [ns, prod, bystander]) await seedPeople(store, namespace);
    await store.createIndex(ns, 'people', ['age']);
    await store.dropProject(project);
    assert.deepEqual(await store.listTables(ns), []);
    assert.deepEqual(await store.listTables(prod), []);
    assert.deepEqual(await store.listIndexes(ns), []);
    assert.equal(await store.count(bystander, 'people'), PEOPLE.length);
    await seedPeople(store, ns);
    assert.equal(await store.count(ns, 'people'), PEOPLE.length);
  });

  withStore('hostile queries are values, never SQL', async (store, ns) => {
    await seedPeople(store, ns);
    const hostile = [
      "name == '1'; DROP TABLE people; --'",
      "x == '1'; DROP TABLE people",
      "name == 'x' or 1 == 1",
      'name == "\\" OR 1=1 --"',
      "name == 'a'' or ''1''=''1'",
      'name exists; DELETE FROM documents_tables',
      "name == 'x') OR (1 == 1",
      "'; DROP TABLE alto_db.tables; --",
    ];
    for (const query of hostile) {
      try {
        const found = await store.find(ns, 'people', options(query));
        assert.ok(found.every((record) => matches(record.data, parseQuery(query))), query);
      } catch (error) {
        assert.ok(isAltoError(error) && error.status === 400, `${query}: ${String(error)}`);
      }
    }
    assert.deepEqual(await idsOf(store, ns, 'name == "1\'; DROP TABLE people; --"'), []);
    await store.create(ns, 'people', [{ id: "o'brien", data: { id: "o'brien", name: "'; DROP TABLE people; --" } }]);
    assert.deepEqual(await idsOf(store, ns, `name == "'; DROP TABLE people; --"`), ["o'brien"]);
    assert.deepEqual(await idsOf(store, ns, "id == 'o\\'brien'"), ["o'brien"]);
    assert.equal(await store.count(ns, 'people'), PEOPLE.length + 1);
    assert.deepEqual(await store.listTables(ns), ['people']);
  });

  withStore('fuzz: random and mutated queries either run (agreeing with matches()) or are a 400', async (store, ns) => {
    await seedPeople(store, ns);
    let ran = 0;
    let refused = 0;
    for (const query of fuzzQueries(0x5eed, 1500)) {
      let filter;
      try {
        filter = parseQuery(query);
      } catch (error) {
        assert.ok(isAltoError(error) && error.status === 400, `parse of ${JSON.stringify(query)} threw ${String(error)}`);
        assert.match(error.detail, /^query: /);
        refused++;
        continue;
      }
      let ids: string[];
      try {
        ids = (await store.find(ns, 'people', { filter, order: 'asc', limit: 100, offset: 0 })).map((record) => record.id);
      } catch (error) {
        assert.ok(isAltoError(error) && error.status === 400, `${JSON.stringify(query)} failed to run: ${String(error)}`);
        refused++;
        continue;
      }
      ran++;
      if (/^[\x20-\x7e]*$/.test(query)) {
        const expected = PEOPLE.filter((person) => matches(person, filter)).map((person) => String(person.id));
        assert.deepEqual(ids, expected, `${JSON.stringify(query)} disagrees with matches()`);
      }
    }
    assert.ok(ran > 300 && refused > 300, `ran ${ran}, refused ${refused}`);
    assert.equal(await store.count(ns, 'people'), PEOPLE.length);
  });
}

/** A small deterministic generator (mulberry32), so a failing fuzz case can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIELDS = ['age', 'name', 'city', 'verified', 'address.zip', 'address.floor', 'nested.deep.v', 'tags', 'email', 'id', 'score', 'x'];
const VALUES = ["'paris'", '"lyon"', '18', '-2.5', '45.5', '0', 'true', 'false', 'null', "'40'", "'a'", '1e1', "'ann'", "'it\\'s'"];
const OPERATORS = ['==', '!=', '<', '<=', '>', '>='];
const NOISE = ['(', ')', '[', ']', ',', '.', 'and', 'or', 'not', 'in', 'exists', '=', '!', ';', '--', "'", '"', '\\', '$', '*', '\u0000', '🎉', 'DROP', '1.2.3', '-', '&&'];

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)];
}

function randomCondition(random: () => number, depth: number): string {
  const roll = random();
  if (depth < 3 && roll < 0.15) return `(${randomCondition(random, depth + 1)} ${pick(['and', 'or', 'AND'], random)} ${randomCondition(random, depth + 1)})`;
  if (depth < 3 && roll < 0.22) return `not ${randomCondition(random, depth + 1)}`;
  const field = pick(FIELDS, random);
  if (roll < 0.3) return `${field} ${pick(['exists', 'not exists'], random)}`;
  if (roll < 0.42) {
    const values = Array.from({ length: Math.floor(random() * 4) }, () => pick(VALUES, random));
    return `${field} ${pick(['in', 'not in'], random)} [${values.join(', ')}]`;
  }
  return `${field} ${pick(OPERATORS, random)} ${pick(VALUES, random)}`;
}

function randomValidQuery(random: () => number): string {
  const parts = [randomCondition(random, 0)];
  while (random() < 0.4) parts.push(pick(['and', 'or'], random), randomCondition(random, 0));
  return parts.join(' ');
}

function randomQuery(random: () => number): string {
  const tokens: string[] = [];
  const length = 1 + Math.floor(random() * 10);
  for (let i = 0; i < length; i++) {
    const roll = random();
    tokens.push(roll < 0.3 ? pick(FIELDS, random) : roll < 0.5 ? pick(OPERATORS, random) : roll < 0.7 ? pick(VALUES, random) : pick(NOISE, random));
  }
  return tokens.join(random() < 0.8 ? ' ' : '');
}

function mutate(query: string, random: () => number): string {
  let text = query;
  const edits = 1 + Math.floor(random() * 3);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * (text.length + 1));
    const roll = random();
    if (roll < 0.33) text = text.slice(0, at) + text.slice(at + 1);
    else if (roll < 0.66) text = text.slice(0, at) + pick(NOISE, random) + text.slice(at);
    else text = text.slice(0, at) + String.fromCharCode(32 + Math.floor(random() * 95)) + text.slice(at + 1);
  }
  return text;
}

/** `count` queries for fuzzing, a third random tokens, a third mutated valid queries, a third valid. */
export function fuzzQueries(seed: number, count: number): string[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, i) =>
    i % 3 === 0 ? randomQuery(random) : i % 3 === 1 ? mutate(randomValidQuery(random), random) : randomValidQuery(random),
  );
}
