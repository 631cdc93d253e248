/**
 * @module store/streams/contract
 * The behaviour every stream store adapter must have, as one node:test suite;
 * `streams.contract.test.ts` runs it per adapter. `other` is a second store on the same data,
 * as another process would open it: the channel limit and the trim hold across the two.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { ChannelLimits, StreamStore } from './port.js';

export interface StreamAdapterUnderTest {
  store: StreamStore;
  /** Another store on the same data, as a second process sees it. */
  other: StreamStore;
  /** Removes whatever the suite left behind (a database file, a database). */
  dispose(): Promise<void>;
}

export function runStreamStoreContract(name: string, open: () => Promise<StreamAdapterUnderTest>): void {
  describe(`stream store contract: ${name}`, () => {
    let adapter: StreamAdapterUnderTest;
    let store: StreamStore;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/production`;
    const limits = (liveAfter = 0, maxChannels = 1000): ChannelLimits => ({ liveAfter, maxChannels });
    const message = (text: string, createdAt = 1_000) => ({ id: `id-${text}`, text, createdAt });
    const texts = async (ns: string, channel: string, since = 0, limit = 100) =>
      (await store.listMessages(ns, channel, since, limit)).map((each) => each.text);

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(() => adapter.dispose());

    test('messages: in the order sent, the newest `limit` after `since`, the channel trimmed to `keep`', async () => {
      const ns = namespace('messages');
      for (let i = 0; i < 7; i++) assert.equal(await store.addMessage(ns, 'general', message(`m${i}`, 1_000 + i), 5, limits()), true);
      assert.deepEqual(await texts(ns, 'general'), ['m2', 'm3', 'm4', 'm5', 'm6'], 'the oldest two were dropped');
      assert.deepEqual(await texts(ns, 'general', 0, 2), ['m5', 'm6']);
      assert.deepEqual(await texts(ns, 'general', 1_004), ['m5', 'm6'], 'created after since');
      assert.deepEqual((await store.listMessages(ns, 'general', 0, 1))[0], message('m6', 1_006));
      assert.deepEqual(await texts(ns, 'nowhere'), []);
      assert.deepEqual(await texts(namespace('messages-other'), 'general'), [], 'namespaces are separate');
      await store.addMessage(ns, 'ünïcødé 🚀', message('ünïcødé 🚀\n'), 5, limits());
      assert.deepEqual(await texts(ns, 'ünïcødé 🚀'), ['ünïcødé 🚀\n']);
    });

    test("a quiet channel's messages among a busy one's: the newest `limit` of that channel only", async () => {
      const ns = namespace('interleaved');
      for (let round = 0; round < 3; round++) {
        await store.addMessage(ns, 'quiet', message(`q${round}`, 2_000 + round * 100), 50, limits());
        for (let i = 0; i < 20; i++) await store.addMessage(ns, 'busy', message(`b${round}-${i}`, 2_001 + round * 100 + i), 50, limits());
      }
      assert.deepEqual(await texts(ns, 'quiet', 0, 2), ['q1', 'q2']);
      assert.deepEqual(await texts(ns, 'quiet', 0, 10), ['q0', 'q1', 'q2']);
      assert.deepEqual(await texts(ns, 'quiet', 2_000, 10), ['q1', 'q2'], 'created after since');
      assert.deepEqual(await texts(ns, 'busy', 0, 3), ['b2-17', 'b2-18', 'b2-19']);
      assert.equal((await texts(ns, 'busy', 0, 100)).length, 50, 'trimmed to keep');
    });

    test('channels: made by a touch or a first message, described, listed by name when live', async () => {
      const ns = namespace('channels');
      assert.equal(await store.touchChannel(ns, 'random', 'Anything goes', 2_000, limits()), true);
      await store.addMessage(ns, 'general', message('hello', 3_000), 5, limits());
      await store.addMessage(ns, 'random', message('hi', 4_000), 5, limits());
      assert.deepEqual(await store.listChannels(ns, 0), [
        { name: 'general', description: '', lastActive: 3_000 },
        { name: 'random', description: 'Anything goes', lastActive: 4_000 },
      ]);
      await store.touchChannel(ns, 'random', 'Anything at all', 5_000, limits());
      assert.deepEqual(await store.listChannels(ns, 3_000), [{ name: 'random', description: 'Anything at all', lastActive: 5_000 }]);
    });

    test('the live-channel limit: refused past it, writing nothing; old channels do not count; it holds across processes', async () => {
      const ns = namespace('limit');
      await store.touchChannel(ns, 'stale', '', 1_000, limits());
      for (const channel of ['a', 'b']) assert.equal(await store.touchChannel(ns, channel, '', 5_000, limits(2_000, 2)), true);
      assert.equal(await store.touchChannel(ns, 'c', '', 5_000, limits(2_000, 2)), false);
      assert.equal(await store.addMessage(ns, 'c', message('refused', 5_000), 5, limits(2_000, 2)), false);
      assert.deepEqual(await texts(ns, 'c'), [], 'a refused message is not kept');
      assert.equal(await store.touchChannel(ns, 'stale', '', 5_000, limits(2_000, 2)), false, 'a channel that is no longer live counts as new');
      assert.equal(await store.addMessage(ns, 'a', message('fine', 5_000), 5, limits(2_000, 2)), true, 'a live channel still takes messages');

      const racing = namespace('limit-race');
      const touched = await Promise.all(
        Array.from({ length: 10 }, (_, index) => (index % 2 ? adapter.other : store).touchChannel(racing, `c${index}`, '', 5_000, limits(0, 3))),
      );
      assert.equal(touched.filter(Boolean).length, 3, `three of ten: ${touched}`);
      assert.equal((await store.listChannels(racing, 0)).length, 3);
    });

    test('racing messages from both processes are all kept in one order, trimmed exactly', async () => {
      const ns = namespace('race');
      await Promise.all(
        Array.from({ length: 12 }, (_, index) => (index % 2 ? adapter.other : store).addMessage(ns, 'general', message(`r${index}`), 8, limits())),
      );
      const kept = await texts(ns, 'general');
      assert.equal(kept.length, 8);
      assert.deepEqual(await adapter.other.listMessages(ns, 'general', 0, 100).then((all) => all.map((each) => each.text)), kept, 'one order for both');
    });

    test('a channel long live takes messages from both processes at once, and a later touch wins', async () => {
      const ns = namespace('busy');
      assert.equal(await store.addMessage(ns, 'general', message('first', 1_000_000), 100, limits()), true);
      const sent = await Promise.all(
        Array.from({ length: 10 }, (_, index) =>
          (index % 2 ? adapter.other : store).addMessage(ns, 'general', message(`b${index}`, 1_000_001 + index), 100, limits()),
        ),
      );
      assert.deepEqual(sent, Array(10).fill(true));
      assert.equal((await texts(ns, 'general')).length, 11);
      assert.equal(await adapter.other.touchChannel(ns, 'general', 'Busy', 1_000_100, limits()), true);
      assert.deepEqual(await store.listChannels(ns, 0), [{ name: 'general', description: 'Busy', lastActive: 1_000_100 }]);
    });

    test('purge removes old messages and idle channels with theirs', async () => {
      const ns = namespace('purge');
      // Far in the past, so other tests' rows (from 1 000 ms on) are not purged with them.
      await store.addMessage(ns, 'idle', message('old', 10), 5, limits());
      await store.addMessage(ns, 'busy', message('old too', 10), 5, limits());
      await store.addMessage(ns, 'busy', message('new', 900), 5, limits());
      assert.equal(await store.purge(50), 3, 'two messages and a channel');
      assert.deepEqual(await texts(ns, 'busy'), ['new']);
      assert.deepEqual((await store.listChannels(ns, 0)).map((channel) => channel.name), ['busy']);
    });

    test('deleteProject forgets every environment of that project only', async () => {
      const project = `proj-${run}`;
      for (const ns of [`${project}/production`, `${project}/development`, `${project}0/production`]) {
        await store.addMessage(ns, 'general', message(ns), 5, limits());
      }
      await store.deleteProject(project);
      assert.deepEqual(await store.listChannels(`${project}/production`, 0), []);
      assert.deepEqual(await texts(`${project}/development`, 'general'), []);
      assert.deepEqual(await texts(`${project}0/production`, 'general'), [`${project}0/production`]);
    });

    test('a project deleted by one process is used again through the other', async () => {
      const ns = `again-${run}/production`;
      assert.equal(await store.addMessage(ns, 'general', message('before'), 5, limits()), true);
      await adapter.other.deleteProject(`again-${run}`);
      assert.equal(await store.addMessage(ns, 'general', message('after', 2_000), 5, limits()), true);
      assert.deepEqual(await texts(ns, 'general'), ['after']);
      assert.deepEqual(await adapter.other.listChannels(ns, 0), [{ name: 'general', description: '', lastActive: 2_000 }]);
    });
  });
}
