/**
 * @module store/secrets/contract
 * The behaviour every secret store adapter must have, as one node:test suite;
 * `secrets.contract.test.ts` runs it once per adapter. The store keeps bytes it is given
 * (ciphertexts), so these tests use arbitrary bytes: encryption is the block's concern.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { SecretStore } from './port.js';

export interface SecretAdapterUnderTest {
  store: SecretStore;
  /** Opens a second store on the same data, as a restarted process would. */
  reopen(): Promise<SecretStore>;
  cleanup(): Promise<void>;
}

export function runSecretStoreContract(name: string, open: () => Promise<SecretAdapterUnderTest>): void {
  describe(`secret store contract: ${name}`, () => {
    let adapter: SecretAdapterUnderTest;
    let store: SecretStore;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/dev`;

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(async () => {
      await store.close();
      await adapter.cleanup();
    });

    test('put, get, replace and delete keep bytes and times', async () => {
      const ns = namespace('basic');
      assert.equal(await store.get(ns, '', 'api'), undefined);
      const first = randomBytes(64);
      await store.put(ns, { path: '', key: 'api', ciphertext: first, at: 1000 });
      assert.deepEqual(await store.get(ns, '', 'api'), { path: '', key: 'api', ciphertext: first, createdAt: 1000, updatedAt: 1000 });
      const second = Buffer.from([0, 255, 0, 1]);
      await store.put(ns, { path: '', key: 'api', ciphertext: second, at: 2000 });
      assert.deepEqual(await store.get(ns, '', 'api'), { path: '', key: 'api', ciphertext: second, createdAt: 1000, updatedAt: 2000 });
      assert.equal(await store.delete(ns, '', 'api'), true);
      assert.equal(await store.delete(ns, '', 'api'), false);
      assert.equal(await store.get(ns, '', 'api'), undefined);
    });

    test('the same key under different paths is a different secret', async () => {
      const ns = namespace('paths');
      await store.put(ns, { path: '', key: 'db', ciphertext: Buffer.from('root'), at: 1 });
      await store.put(ns, { path: 'prod', key: 'db', ciphertext: Buffer.from('prod'), at: 1 });
      await store.put(ns, { path: 'prod/eu', key: 'db', ciphertext: Buffer.from('eu'), at: 1 });
      assert.equal((await store.get(ns, 'prod', 'db'))?.ciphertext.toString(), 'prod');
      assert.equal((await store.get(ns, 'prod/eu', 'db'))?.ciphertext.toString(), 'eu');
      await store.delete(ns, 'prod', 'db');
      assert.equal((await store.get(ns, '', 'db'))?.ciphertext.toString(), 'root');
      assert.equal((await store.get(ns, 'prod/eu', 'db'))?.ciphertext.toString(), 'eu');
    });

    test('listKeys lists one path, sorted; listPaths the paths beneath', async () => {
      const ns = namespace('list');
      const rows: [string, string][] = [
        ['', 'b'], ['', 'a'], ['', 'B'], ['prod', 'z'], ['prod', 'y'], ['prod/eu', 'x'], ['prod_', 'w'], ['prodx', 'v'], ['staging', 'u'],
      ];
      for (const [path, key] of rows) await store.put(ns, { path, key, ciphertext: Buffer.from('v'), at: 1 });
      assert.deepEqual(await store.listKeys(ns, ''), ['B', 'a', 'b']);
      assert.deepEqual(await store.listKeys(ns, 'prod'), ['y', 'z']);
      assert.deepEqual(await store.listKeys(ns, 'nothing'), []);
      assert.deepEqual(await store.listPaths(ns, ''), ['prod', 'prod/eu', 'prod_', 'prodx', 'staging']);
      assert.deepEqual(await store.listPaths(ns, 'prod'), ['prod/eu']);
      assert.deepEqual(await store.listPaths(ns, 'prod/eu'), []);
      assert.deepEqual(await store.listPaths(namespace('empty'), ''), []);
    });

    test('namespaces never see each other', async () => {
      const first = namespace('iso-a');
      const second = namespace('iso-b');
      await store.put(first, { path: 'p', key: 'token', ciphertext: Buffer.from('first'), at: 1 });
      await store.put(second, { path: 'p', key: 'token', ciphertext: Buffer.from('second'), at: 1 });
      await store.put(first, { path: '', key: 'only-first', ciphertext: Buffer.from('x'), at: 1 });
      assert.equal((await store.get(first, 'p', 'token'))?.ciphertext.toString(), 'first');
      assert.equal((await store.get(second, 'p', 'token'))?.ciphertext.toString(), 'second');
      assert.equal(await store.get(second, '', 'only-first'), undefined);
      assert.deepEqual(await store.listKeys(second, ''), []);
      assert.deepEqual(await store.listPaths(second, ''), ['p']);
      assert.equal(await store.delete(second, '', 'only-first'), false);
      await store.delete(second, 'p', 'token');
      assert.equal((await store.get(first, 'p', 'token'))?.ciphertext.toString(), 'first');
    });

    test('deleteProject removes every environment of that project only', async () => {
      const project = `proj_${run}`;
      await store.put(`${project}/dev`, { path: '', key: 'a', ciphertext: Buffer.from('1'), at: 1 });
      await store.put(`${project}/prod`, { path: 'x', key: 'b', ciphertext: Buffer.from('2'), at: 1 });
      // `_` is a LIKE wildcard: "projX..." must not match "proj_...".
      await store.put(`${project.replace('_', 'X')}/dev`, { path: '', key: 'a', ciphertext: Buffer.from('other'), at: 1 });
      await store.put(`${project}0/dev`, { path: '', key: 'a', ciphertext: Buffer.from('neighbour'), at: 1 });
      assert.equal(await store.deleteProject(project), 2);
      assert.equal(await store.get(`${project}/dev`, '', 'a'), undefined);
      assert.equal(await store.get(`${project}/prod`, 'x', 'b'), undefined);
      assert.equal((await store.get(`${project.replace('_', 'X')}/dev`, '', 'a'))?.ciphertext.toString(), 'other');
      assert.equal((await store.get(`${project}0/dev`, '', 'a'))?.ciphertext.toString(), 'neighbour');
    });

    test('the first key fingerprint is kept', async () => {
      const first = await store.claimKeyFingerprint('fingerprint-one');
      assert.equal(await store.claimKeyFingerprint('fingerprint-two'), first);
      assert.equal(await store.claimKeyFingerprint(first), first);
    });

    test('data written is there for a store reopened on the same database', async () => {
      const ns = namespace('reopen');
      await store.put(ns, { path: 'p', key: 'k', ciphertext: Buffer.from('kept'), at: 5 });
      const reopened = await adapter.reopen();
      assert.equal((await reopened.get(ns, 'p', 'k'))?.ciphertext.toString(), 'kept');
      await reopened.close();
    });
  });
}
