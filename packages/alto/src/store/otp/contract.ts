/**
 * @module store/otp/contract
 * The behaviour every otp store adapter must have, as one node:test suite;
 * `otp.contract.test.ts` runs it per adapter. `other` is a second store on the same data, as
 * another process would open it: changes to one id through both must never interleave.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { OtpRecord, OtpStore } from './port.js';

export interface OtpAdapterUnderTest {
  store: OtpStore;
  /** Another store on the same data, as a second process sees it. */
  other: OtpStore;
  /** Removes whatever the suite left behind (a database file, a database). */
  dispose(): Promise<void>;
}

export function runOtpStoreContract(name: string, open: () => Promise<OtpAdapterUnderTest>): void {
  describe(`otp store contract: ${name}`, () => {
    let adapter: OtpAdapterUnderTest;
    let store: OtpStore;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/production`;
    const record = (changes: Partial<OtpRecord> = {}): OtpRecord => ({
      secret: randomBytes(20),
      algorithm: 'SHA1',
      digits: 6,
      periodSeconds: 60,
      lastStep: -1,
      failures: 0,
      failuresSince: 0,
      createdAt: 1_800_000_000_000,
      ...changes,
    });
    const read = (on: OtpStore, ns: string, id: string) => on.update(ns, id, (current) => ({ result: current }));

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(() => adapter.dispose());

    test('update creates, reads back exactly, and replaces everything but the creation time', async () => {
      const ns = namespace('basic');
      assert.equal(await read(store, ns, 'ada'), undefined);
      const created = record({ secret: Buffer.from([0, 255, 0, 1, 2]), algorithm: 'SHA512', digits: 10, periodSeconds: 86_400 });
      assert.equal(await store.update(ns, 'ada', (current) => ({ result: current === undefined ? 'made' : 'found', save: created })), 'made');
      assert.deepEqual(await read(store, ns, 'ada'), created);
      assert.deepEqual(await read(adapter.other, ns, 'ada'), created, 'the other process reads it too');
      const changed = record({ secret: randomBytes(64), lastStep: 30_000_000_123, failures: 3, failuresSince: 1_800_000_000_999, createdAt: 5 });
      await store.update(ns, 'ada', () => ({ result: undefined, save: changed }));
      assert.deepEqual(await read(store, ns, 'ada'), { ...changed, createdAt: created.createdAt });
      assert.equal(await read(store, ns, 'bob'), undefined, 'ids are separate');
      assert.equal(await read(store, namespace('basic-other'), 'ada'), undefined, 'namespaces are separate');
    });

    test('without save nothing is written; an error thrown by the change writes nothing and reaches the caller', async () => {
      const ns = namespace('nothing');
      assert.equal(await store.update(ns, 'ada', () => ({ result: 1 })), 1);
      assert.equal(await read(store, ns, 'ada'), undefined);
      const kept = record();
      await store.update(ns, 'ada', () => ({ result: undefined, save: kept }));
      const refused = new Error('too many wrong codes');
      await assert.rejects(
        store.update(ns, 'ada', () => {
          throw refused;
        }),
        (error) => error === refused,
      );
      assert.deepEqual(await read(store, ns, 'ada'), kept);
      assert.equal(await store.update(ns, 'ada', (current) => ({ result: current!.failures })), 0, 'the store still answers');
    });

    test('racing changes to one id, through both processes, never interleave: the first makes it, every count is kept', async () => {
      const ns = namespace('race');
      const attempts = 16;
      const made = await Promise.all(
        Array.from({ length: attempts }, (_, index) =>
          (index % 2 ? adapter.other : store).update(ns, 'ada', (current) => ({
            result: current === undefined,
            save: current ? { ...current, failures: current.failures + 1 } : record({ failures: 1 }),
          })),
        ),
      );
      assert.equal(made.filter(Boolean).length, 1, 'made once');
      assert.equal((await read(store, ns, 'ada'))!.failures, attempts, 'no increment lost');
    });

    test('rewriteSecrets replaces where asked and leaves the rest', async () => {
      const ns = namespace('rewrite');
      const plain = Buffer.from('plain seed');
      const sealed = Buffer.from('sealed:seed');
      await store.update(ns, 'plain', () => ({ result: undefined, save: record({ secret: plain, failures: 2 }) }));
      await store.update(ns, 'sealed', () => ({ result: undefined, save: record({ secret: sealed }) }));
      const replaced = await store.rewriteSecrets((each, id, stored) =>
        each === ns && !stored.subarray(0, 7).equals(Buffer.from('sealed:')) ? Buffer.concat([Buffer.from('sealed:'), stored]) : undefined,
      );
      assert.equal(replaced, 1);
      const rewritten = await read(store, ns, 'plain');
      assert.deepEqual(rewritten!.secret, Buffer.from('sealed:plain seed'));
      assert.equal(rewritten!.failures, 2, 'only the secret changes');
      assert.deepEqual((await read(store, ns, 'sealed'))!.secret, sealed);
    });

    test('deleteProject forgets every environment of that project only', async () => {
      const project = `proj-${run}`;
      for (const ns of [`${project}/production`, `${project}/development`, `${project}0/production`]) {
        await store.update(ns, 'ada', () => ({ result: undefined, save: record() }));
      }
      assert.equal(await store.deleteProject(project), 2);
      assert.equal(await read(store, `${project}/production`, 'ada'), undefined);
      assert.equal(await read(store, `${project}/development`, 'ada'), undefined);
      assert.ok(await read(store, `${project}0/production`, 'ada'));
      assert.equal(await store.deleteProject(project), 0);
    });
  });
}
