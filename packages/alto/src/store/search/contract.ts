/**
 * @module store/search/contract
 * The behaviour every search adapter must have, as one node:test suite. Each adapter's run in
 * `search.contract.test.ts` calls `runSearchStoreContract` with a factory for a fresh store.
 * Queries are built with the block's parser, so the suite reads like the API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseQuery } from '../../blocks/search/query.js';
import { flattenText } from '../../blocks/search/search-indexes.js';
import type { SearchStore } from './port.js';

export interface SearchStoreFixture {
  store: SearchStore;
  /** Drops whatever the fixture created (a database, a file). */
  dispose(): Promise<void>;
}

const PEOPLE: Array<[string, Record<string, unknown>]> = [
  ['1', { name: 'John Smith', age: 37, city: 'London', bio: 'Loves coffee and long walks', address: { country: 'UK' } }],
  ['2', { name: 'Johanna Berg', age: 25, city: 'Oslo', bio: 'Coffee coffee coffee, espresso every morning', address: { country: 'NO' } }],
  ['3', { name: 'Mary Jones', age: 52, city: 'London', bio: 'Tea person, gardens and books', address: { country: 'UK' } }],
  ['4', { name: 'Peter Pan', age: 12, city: 'Neverland', bio: "Never grows up; flies; 100% [sure]", tags: ['flying', 'pirates'] }],
  ['5', { name: 'jon', age: '37', city: 'Paris' }],
];

export function runSearchStoreContract(adapter: string, openFixture: () => Promise<SearchStoreFixture>): void {
  describe(`search store contract: ${adapter}`, () => {
    let fixture: SearchStoreFixture;
    let store: SearchStore;
    const NS = 'project-a/production';

    before(async () => {
      fixture = await openFixture();
      store = fixture.store;
      assert.equal(await store.createIndex(NS, 'people'), true);
      for (const [id, data] of PEOPLE) assert.equal(await store.upsert(NS, 'people', { id, data, text: flattenText(data) }), true);
    });
    after(async () => {
      await store.close?.();
      await fixture.dispose();
    });

    async function ids(query: string, index = 'people', namespace = NS, page = { limit: 100, offset: 0 }) {
      const hits = await store.search(namespace, index, parseQuery(query), page);
      assert.ok(hits, `index ${index} exists`);
      return hits.map((hit) => hit.id);
    }

    test('createIndex refuses an existing name; unknown indexes are reported', async () => {
      assert.equal(await store.createIndex(NS, 'people'), false);
      assert.equal(await store.search(NS, 'nope', undefined, { limit: 10, offset: 0 }), undefined);
      assert.equal(await store.upsert(NS, 'nope', { id: 'x', data: {}, text: '' }), false);
      assert.equal(await store.delete(NS, 'nope', 'x'), 'no-index');
      assert.equal(await store.delete(NS, 'people', 'missing'), 'no-document');
    });

    test('an empty query returns every record in indexing order, with its data', async () => {
      const hits = await store.search(NS, 'people', undefined, { limit: 100, offset: 0 });
      assert.deepEqual(hits?.map((hit) => hit.id), ['1', '2', '3', '4', '5']);
      assert.deepEqual(hits?.[0], { id: '1', data: PEOPLE[0][1], highlights: [] });
    });

    test('field comparisons: strings exact, numbers by type, nested paths, negation', async () => {
      assert.deepEqual(await ids("name == 'John Smith'"), ['1']);
      assert.deepEqual(await ids("name == 'john smith'"), []);
      assert.deepEqual(await ids('age == 37'), ['1'], 'the string "37" is not the number 37');
      assert.deepEqual(await ids("age == '37'"), ['5']);
      assert.deepEqual(await ids('age >= 37'), ['1', '3']);
      assert.deepEqual(await ids('age < 25'), ['4']);
      assert.deepEqual(await ids('age <= 25 and age > 12'), ['2']);
      assert.deepEqual(await ids("address.country == 'UK'"), ['1', '3']);
      assert.deepEqual(await ids("city != 'London'"), ['2', '4', '5']);
      assert.deepEqual(await ids("address.country != 'UK'"), ['2', '4', '5'], 'a missing field is not equal');
    });

    test('wildcards match case-sensitively and treat other pattern characters literally', async () => {
      assert.deepEqual(await ids("name == 'Joh*'"), ['1', '2']);
      assert.deepEqual(await ids("name == '*Smith'"), ['1']);
      assert.deepEqual(await ids("name == 'joh*'"), []);
      assert.deepEqual(await ids("bio == '*100% [sure]'"), ['4']);
      assert.deepEqual(await ids("bio == '*_*'"), []);
      assert.deepEqual(await ids("name != 'Joh*'"), ['3', '4', '5']);
    });

    test('AND binds tighter than OR; parentheses regroup', async () => {
      assert.deepEqual(await ids("city == 'Oslo' OR city == 'London' AND age > 40"), ['2', '3']);
      assert.deepEqual(await ids("(city == 'Oslo' OR city == 'London') AND age < 40"), ['1', '2']);
    });

    test('full text: words, phrases and prefixes, ranked by relevance, with highlights', async () => {
      assert.deepEqual(await ids('coffee'), ['2', '1'], 'the record saying coffee three times ranks first');
      assert.deepEqual(await ids('COFFEE'), ['2', '1']);
      assert.deepEqual(await ids("'long walks'"), ['1']);
      assert.deepEqual(await ids("'walks long'"), []);
      assert.deepEqual(await ids('espres*'), ['2']);
      assert.deepEqual(await ids('pirates'), ['4'], 'array elements are text too');
      assert.deepEqual(await ids("coffee AND city == 'London'"), ['1']);
      assert.deepEqual((await ids('tea OR espresso')).sort(), ['2', '3']);
      assert.deepEqual(await ids('coffee morning'), ['2'], 'adjacent terms are joined by AND');
      const hits = await store.search(NS, 'people', parseQuery('gardens'), { limit: 10, offset: 0 });
      assert.equal(hits?.length, 1);
      assert.match(hits![0].highlights.join(' '), /<em>gardens<\/em>/i);
    });

    test('query text is data, never SQL or match syntax', async () => {
      assert.deepEqual(await ids(`name == "x' OR 1=1 --"`), []);
      assert.deepEqual(await ids(`'" OR coffee'`), []);
      assert.deepEqual(await ids(`'coffee" OR "tea'`), []);
    });

    test('limit and offset page through the results', async () => {
      assert.deepEqual(await ids('', 'people', NS, { limit: 2, offset: 0 }), ['1', '2']);
      assert.deepEqual(await ids('', 'people', NS, { limit: 2, offset: 2 }), ['3', '4']);
      assert.deepEqual(await ids('coffee', 'people', NS, { limit: 1, offset: 1 }), ['1']);
    });

    test('upsert replaces a record, and the old text no longer matches', async () => {
      await store.createIndex(NS, 'notes');
      await store.upsert(NS, 'notes', { id: 'a', data: { body: 'alpha' }, text: 'alpha' });
      await store.upsert(NS, 'notes', { id: 'b', data: { body: 'beta' }, text: 'beta' });
      await store.upsert(NS, 'notes', { id: 'a', data: { body: 'gamma' }, text: 'gamma' });
      assert.deepEqual(await ids('alpha', 'notes'), []);
      assert.deepEqual(await ids('gamma', 'notes'), ['a']);
      assert.deepEqual(await ids('', 'notes'), ['a', 'b'], 'replacing keeps the first indexing position');
      assert.equal(await store.delete(NS, 'notes', 'a'), 'deleted');
      assert.deepEqual(await ids('', 'notes'), ['b']);
      assert.deepEqual(await ids('gamma', 'notes'), []);
    });

    test('namespaces and indexes are isolated; deleteIndex and deleteProject remove everything', async () => {
      const other = 'project-b/production';
      const lookalike = 'project-ab/production';
      for (const namespace of [other, lookalike, 'project-b/development']) {
        await store.createIndex(namespace, 'people');
        await store.upsert(namespace, 'people', { id: 'z', data: { word: 'coffee' }, text: 'coffee' });
      }
      assert.deepEqual(await ids('coffee', 'people', other), ['z']);
      assert.deepEqual(await ids('coffee'), ['2', '1']);
      await store.createIndex(NS, 'scratch');
      assert.equal(await store.deleteIndex(NS, 'scratch'), true);
      assert.equal(await store.deleteIndex(NS, 'scratch'), false);
      assert.equal(await store.deleteProject('project-b'), 2);
      assert.equal(await store.search(other, 'people', undefined, { limit: 10, offset: 0 }), undefined);
      assert.deepEqual(await ids('coffee', 'people', lookalike), ['z']);
      assert.equal(await store.createIndex(other, 'people'), true, 'a deleted index can be created again');
      assert.deepEqual(await ids('', 'people', other), []);
    });
  });
}
