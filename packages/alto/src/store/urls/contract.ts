/**
 * @module store/urls/contract
 * The behaviour every short-URL adapter must have, as one node:test suite. Each adapter's
 * `urls.contract.test.ts` calls `runUrlStoreContract` with a factory for a fresh, empty store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { NewShortUrl, UrlStore } from './port.js';

export interface UrlStoreFixture {
  store: UrlStore;
  /** Drops whatever the fixture created (a database, a file). */
  dispose(): Promise<void>;
}

const NS_A = 'project-a/production';
const NS_A_DEV = 'project-a/development';
const NS_B = 'project-b/production';
/** A project whose id starts with another's: deleting `project-a` must leave it alone. */
const NS_PREFIX_LOOKALIKE = 'project-ab/production';

function newUrl(id: string, overrides: Partial<NewShortUrl> = {}): NewShortUrl {
  return { id, destination: `https://example.com/${id}`, permanent: false, createdAt: 1_700_000_000_000, ...overrides };
}

export function runUrlStoreContract(adapter: string, openFixture: () => Promise<UrlStoreFixture>): void {
  describe(`url store contract: ${adapter}`, () => {
    let fixture: UrlStoreFixture;
    let store: UrlStore;
    let counter = 0;
    /** Ids unique within the run, so the tests share one store without colliding. */
    const uniqueId = (label: string) => `${label}-${++counter}`;

    before(async () => {
      fixture = await openFixture();
      store = fixture.store;
    });
    after(async () => {
      await store.close?.();
      await fixture.dispose();
    });

    test('insert, get and list round-trip, oldest first', async () => {
      const namespace = `list-${uniqueId('ns')}/production`;
      const later = newUrl(uniqueId('later'), { createdAt: 2_000, destination: 'https://example.com/b?q=1#x', permanent: true });
      const earlier = newUrl(uniqueId('earlier'), { createdAt: 1_000 });
      assert.equal(await store.insert(namespace, later), true);
      assert.equal(await store.insert(namespace, earlier), true);
      const got = await store.get(namespace, later.id);
      assert.deepEqual(got, {
        id: later.id,
        destination: 'https://example.com/b?q=1#x',
        permanent: true,
        hitCount: 0,
        createdAt: 2_000,
        updatedAt: 2_000,
      });
      const listed = await store.list(namespace);
      assert.deepEqual(
        listed.map((url) => url.id),
        [earlier.id, later.id],
      );
      assert.equal(listed[0].permanent, false);
      assert.deepEqual(await store.list(`empty-${uniqueId('ns')}/production`), []);
    });

    test('an id is unique across namespaces and a taken id is never overwritten', async () => {
      const id = uniqueId('taken');
      assert.equal(await store.insert(NS_A, newUrl(id)), true);
      assert.equal(await store.insert(NS_A, newUrl(id, { destination: 'https://evil.example/' })), false);
      assert.equal(await store.insert(NS_B, newUrl(id, { destination: 'https://evil.example/' })), false);
      assert.equal((await store.get(NS_A, id))?.destination, `https://example.com/${id}`);
      assert.equal(await store.get(NS_B, id), undefined);
    });

    test('namespaces are isolated: another namespace can neither read, change nor delete', async () => {
      const id = uniqueId('isolated');
      await store.insert(NS_A, newUrl(id));
      assert.equal(await store.get(NS_B, id), undefined);
      assert.equal(await store.get(NS_A_DEV, id), undefined);
      assert.ok(!(await store.list(NS_B)).some((url) => url.id === id));
      assert.equal(await store.update(NS_B, id, { destination: 'https://evil.example/', updatedAt: 5 }), undefined);
      assert.equal(await store.delete(NS_B, id), false);
      const kept = await store.get(NS_A, id);
      assert.equal(kept?.destination, `https://example.com/${id}`);
      assert.ok((await store.list(NS_A)).some((url) => url.id === id));
    });

    test('update changes only the fields given', async () => {
      const id = uniqueId('update');
      await store.insert(NS_A, newUrl(id, { createdAt: 10 }));
      const moved = await store.update(NS_A, id, { destination: 'https://example.org/new', updatedAt: 20 });
      assert.deepEqual(moved, {
        id,
        destination: 'https://example.org/new',
        permanent: false,
        hitCount: 0,
        createdAt: 10,
        updatedAt: 20,
      });
      const madePermanent = await store.update(NS_A, id, { permanent: true, updatedAt: 30 });
      assert.equal(madePermanent?.destination, 'https://example.org/new');
      assert.equal(madePermanent?.permanent, true);
      const madeTemporary = await store.update(NS_A, id, { permanent: false, updatedAt: 40 });
      assert.equal(madeTemporary?.permanent, false);
      assert.equal(madeTemporary?.updatedAt, 40);
      assert.equal(await store.update(NS_A, uniqueId('missing'), { permanent: true, updatedAt: 50 }), undefined);
    });

    test('delete removes the URL and frees its id', async () => {
      const id = uniqueId('delete');
      await store.insert(NS_A, newUrl(id));
      assert.equal(await store.delete(NS_A, id), true);
      assert.equal(await store.delete(NS_A, id), false);
      assert.equal(await store.get(NS_A, id), undefined);
      assert.equal(await store.follow(id, false), undefined);
      assert.equal(await store.insert(NS_B, newUrl(id)), true, 'a deleted id can be used again');
    });

    test('follow finds a URL without its namespace and counts hits only when asked', async () => {
      const id = uniqueId('follow');
      await store.insert(NS_B, newUrl(id, { permanent: true }));
      assert.deepEqual(await store.follow(id, false), { destination: `https://example.com/${id}`, permanent: true });
      assert.equal((await store.get(NS_B, id))?.hitCount, 0);
      assert.deepEqual(await store.follow(id, true), { destination: `https://example.com/${id}`, permanent: true });
      await store.follow(id, true);
      assert.equal((await store.get(NS_B, id))?.hitCount, 2);
      assert.equal(await store.follow(uniqueId('unknown'), true), undefined);
    });

    test('concurrent hits are all counted', async () => {
      const id = uniqueId('concurrent');
      await store.insert(NS_A, newUrl(id));
      const hits = 200;
      const results = await Promise.all(Array.from({ length: hits }, () => store.follow(id, true)));
      assert.ok(results.every((target) => target?.destination === `https://example.com/${id}`));
      assert.equal((await store.get(NS_A, id))?.hitCount, hits);
    });

    test('deleteProject removes every environment of that project and nothing else', async () => {
      const inA = uniqueId('a-prod');
      const inADev = uniqueId('a-dev');
      const inB = uniqueId('b');
      const inLookalike = uniqueId('ab');
      await store.insert(NS_A, newUrl(inA));
      await store.insert(NS_A_DEV, newUrl(inADev));
      await store.insert(NS_B, newUrl(inB));
      await store.insert(NS_PREFIX_LOOKALIKE, newUrl(inLookalike));
      const deleted = await store.deleteProject('project-a');
      assert.ok(deleted >= 2, `deleted ${deleted}`);
      assert.deepEqual(await store.list(NS_A), []);
      assert.deepEqual(await store.list(NS_A_DEV), []);
      assert.equal(await store.follow(inA, false), undefined);
      assert.ok(await store.get(NS_B, inB));
      assert.ok(await store.get(NS_PREFIX_LOOKALIKE, inLookalike));
    });
  });
}
