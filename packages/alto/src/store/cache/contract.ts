/**
 * @module store/cache/contract
 * The behaviour every cache adapter must have, as one node:test suite. `cache.contract.test.ts`
 * runs it once per adapter. Expiry is tested with real time (TTLs of a few milliseconds and a
 * polled condition), because Redis keeps its own clock.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { MAX_COUNTER, type CacheStore } from './port.js';

export interface CacheAdapterUnderTest {
  store: CacheStore;
  /** Removes whatever the suite left behind (a database file, a Redis key prefix). */
  cleanup(): Promise<void>;
}

async function eventually(condition: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function rejectsWith400(promise: Promise<unknown>, detail: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isAltoError(error), `expected an AltoError, got ${String(error)}`);
    assert.equal(error.status, 400);
    assert.match(error.detail, detail);
    return true;
  });
}

export function runCacheContract(name: string, open: () => Promise<CacheAdapterUnderTest>): void {
  describe(`cache store contract: ${name}`, () => {
    let adapter: CacheAdapterUnderTest;
    let store: CacheStore;
    const run = randomBytes(4).toString('hex');
    /** A namespace of its own for each test, shaped like a real one. */
    const namespace = (label: string) => `project-${run}-${label}/dev`;

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(async () => {
      await store.close();
      await adapter.cleanup();
    });

    test('set, get, overwrite and delete', async () => {
      const ns = namespace('basic');
      assert.equal(await store.get(ns, 'foo'), undefined);
      await store.set(ns, { key: 'foo', value: 'bar' });
      assert.deepEqual(await store.get(ns, 'foo'), { value: 'bar', ttlMs: undefined });
      await store.set(ns, { key: 'foo', value: 'baz', ttlMs: 60_000 });
      const overwritten = await store.get(ns, 'foo');
      assert.equal(overwritten?.value, 'baz');
      assert.ok(overwritten?.ttlMs !== undefined && overwritten.ttlMs > 50_000 && overwritten.ttlMs <= 60_000);
      await store.set(ns, { key: 'foo', value: 'qux' });
      assert.deepEqual(await store.get(ns, 'foo'), { value: 'qux', ttlMs: undefined }, 'a Set without ttl clears the expiry');
      assert.equal(await store.delete(ns, 'foo'), true);
      assert.equal(await store.delete(ns, 'foo'), false);
      assert.equal(await store.get(ns, 'foo'), undefined);
    });

    test('values round-trip byte for byte: empty, unicode, JSON text, large', async () => {
      const ns = namespace('values');
      const values = ['', 'ünïcødé 🚀', '{"a":[1,2,{"b":null}]}', '  spaces  ', 'x'.repeat(256 * 1024), '\u0000nul'];
      await store.setMany(ns, values.map((value, i) => ({ key: `k${i}`, value })));
      const read = await store.getMany(ns, values.map((_, i) => `k${i}`));
      assert.deepEqual(read.map((entry) => entry?.value), values);
    });

    test('keys are opaque text: glob and LIKE characters, slashes, unicode', async () => {
      const ns = namespace('keys');
      const keys = ['a*', 'a?', 'a[1]', 'a%', 'a_', 'a\\b', 'a/b', 'ä', 'a'];
      for (const key of keys) await store.set(ns, { key, value: key });
      for (const key of keys) assert.equal((await store.get(ns, key))?.value, key);
      assert.deepEqual(await store.listKeys(ns, 'a*'), ['a*']);
      assert.deepEqual(await store.listKeys(ns, 'a['), ['a[1]']);
      assert.deepEqual(await store.listKeys(ns, 'a%'), ['a%']);
      assert.deepEqual(await store.listKeys(ns, 'a_'), ['a_']);
      assert.deepEqual(await store.listKeys(ns, 'a\\'), ['a\\b']);
      assert.equal((await store.listKeys(ns)).length, keys.length);
    });

    test('listKeys is sorted and filters by prefix', async () => {
      const ns = namespace('list');
      await store.setMany(ns, ['user:2', 'user:10', 'order:1', 'user:1', 'users'].map((key) => ({ key, value: '1' })));
      assert.deepEqual(await store.listKeys(ns), ['order:1', 'user:1', 'user:10', 'user:2', 'users']);
      assert.deepEqual(await store.listKeys(ns, 'user:'), ['user:1', 'user:10', 'user:2']);
      assert.deepEqual(await store.listKeys(ns, 'nothing'), []);
      assert.deepEqual(await store.listKeys(namespace('empty')), []);
    });

    test('getMany answers in the order asked, undefined for missing keys', async () => {
      const ns = namespace('many');
      await store.setMany(ns, [
        { key: 'a', value: '1' },
        { key: 'b', value: '2', ttlMs: 60_000 },
      ]);
      const [b, missing, a] = await store.getMany(ns, ['b', 'missing', 'a']);
      assert.equal(b?.value, '2');
      assert.ok(b?.ttlMs !== undefined && b.ttlMs > 0);
      assert.equal(missing, undefined);
      assert.deepEqual(a, { value: '1', ttlMs: undefined });
      assert.deepEqual(await store.getMany(ns, []), []);
    });

    test('increment: a missing key starts from zero, decrements go below zero', async () => {
      const ns = namespace('counter');
      assert.equal(await store.increment(ns, 'counter', 2), 2);
      assert.equal(await store.increment(ns, 'counter', -2), 0);
      assert.equal(await store.increment(ns, 'counter', -5), -5);
      assert.equal(await store.increment(ns, 'counter', 0), -5);
      assert.deepEqual(await store.get(ns, 'counter'), { value: '-5', ttlMs: undefined });
      await store.set(ns, { key: 'typed', value: '41' });
      assert.equal(await store.increment(ns, 'typed', 1), 42);
    });

    test('increment keeps the expiry of a live key', async () => {
      const ns = namespace('counter-ttl');
      await store.set(ns, { key: 'hits', value: '10', ttlMs: 60_000 });
      assert.equal(await store.increment(ns, 'hits', 5), 15);
      const entry = await store.get(ns, 'hits');
      assert.equal(entry?.value, '15');
      assert.ok(entry?.ttlMs !== undefined && entry.ttlMs > 50_000, `ttl kept, got ${entry?.ttlMs}`);
    });

    test('increment refuses a value that is not an integer, and changes nothing', async () => {
      const ns = namespace('not-integer');
      for (const value of ['abc', '1.5', '', '12abc']) {
        await store.set(ns, { key: 'word', value });
        await rejectsWith400(store.increment(ns, 'word', 1), /not an integer/);
        assert.equal((await store.get(ns, 'word'))?.value, value);
      }
    });

    test('increment refuses to leave the safe integer range, and changes nothing', async () => {
      const ns = namespace('range');
      await store.set(ns, { key: 'big', value: String(MAX_COUNTER - 1) });
      assert.equal(await store.increment(ns, 'big', 1), MAX_COUNTER);
      await rejectsWith400(store.increment(ns, 'big', 1), /beyond/);
      assert.equal((await store.get(ns, 'big'))?.value, String(MAX_COUNTER));
      await store.set(ns, { key: 'small', value: String(-MAX_COUNTER) });
      await rejectsWith400(store.increment(ns, 'small', -1), /beyond/);
      assert.equal((await store.get(ns, 'small'))?.value, String(-MAX_COUNTER));
    });

    test('concurrent increments are atomic: none is lost', async () => {
      const ns = namespace('atomic');
      const results = await Promise.all(Array.from({ length: 100 }, () => store.increment(ns, 'n', 1)));
      assert.equal((await store.get(ns, 'n'))?.value, '100');
      assert.deepEqual([...results].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i + 1));
    });

    test('an expired key is gone for every method', async () => {
      const ns = namespace('expiry');
      const items = ['read', 'listed', 'counted', 'deleted', 'many'].map((key) => ({ key, value: '7', ttlMs: 20 }));
      await store.setMany(ns, [...items, { key: 'stays', value: 'here' }]);
      // Listing is the condition: it must drop all five once their time is up, whenever that is.
      await eventually(async () => (await store.listKeys(ns)).join() === 'stays', 'the keys to expire');
      assert.equal(await store.get(ns, 'read'), undefined);
      assert.deepEqual(await store.getMany(ns, ['many', 'stays']), [undefined, { value: 'here', ttlMs: undefined }]);
      assert.equal(await store.delete(ns, 'deleted'), false);
      assert.equal(await store.increment(ns, 'counted', 3), 3, 'an expired counter starts from zero');
      assert.deepEqual(await store.get(ns, 'counted'), { value: '3', ttlMs: undefined }, 'and keeps no expiry');
      await store.purgeExpired();
      assert.deepEqual(await store.listKeys(ns), ['counted', 'stays']);
    });

    test('namespaces never see each other', async () => {
      const first = namespace('iso-a');
      const second = namespace('iso-b');
      await store.set(first, { key: 'shared', value: 'first' });
      await store.set(second, { key: 'shared', value: 'second' });
      await store.increment(first, 'count', 1);
      assert.equal((await store.get(first, 'shared'))?.value, 'first');
      assert.equal((await store.get(second, 'shared'))?.value, 'second');
      assert.deepEqual(await store.listKeys(first), ['count', 'shared']);
      assert.deepEqual(await store.listKeys(second), ['shared']);
      assert.equal(await store.get(second, 'count'), undefined);
      assert.equal(await store.delete(second, 'count'), false);
      await store.delete(second, 'shared');
      assert.equal((await store.get(first, 'shared'))?.value, 'first');
    });

    test('deleteProject removes every environment of that project only', async () => {
      const project = `proj-${run}`;
      await store.set(`${project}/dev`, { key: 'a', value: '1' });
      await store.set(`${project}/prod`, { key: 'b', value: '2', ttlMs: 60_000 });
      await store.set(`${project}0/dev`, { key: 'a', value: 'neighbour' });
      assert.equal(await store.deleteProject(project), 2);
      assert.deepEqual(await store.listKeys(`${project}/dev`), []);
      assert.deepEqual(await store.listKeys(`${project}/prod`), []);
      assert.equal((await store.get(`${project}0/dev`, 'a'))?.value, 'neighbour');
    });
  });
}
