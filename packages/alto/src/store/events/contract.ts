/**
 * @module store/events/contract
 * The behaviour every event store and message bus adapter must have, as node:test suites;
 * `events.contract.test.ts` runs them on the embedded adapters and on NATS. Deliveries are
 * pumped into arrays and the tests wait on conditions over them (never on fixed sleeps);
 * ack waits are real time (JetStream keeps its own clock), a few hundred milliseconds.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import type { ConsumeOptions, Delivery, EventConsumer, EventStore, JsonObject, MessageBus } from './port.js';

export interface EventAdapterUnderTest {
  store: EventStore;
  /**
   * A second store over the same data with a connection (or database handle) of its own, as
   * another server process has; `exit()` closes the store and that connection, as the
   * process ending would.
   */
  openProcess(): Promise<{ store: EventStore; exit(): Promise<void> }>;
  /** Removes whatever the suite left behind (a database file, NATS streams). */
  cleanup(): Promise<void>;
}

export interface BusAdapterUnderTest {
  bus: MessageBus;
  cleanup(): Promise<void>;
}

async function eventually(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

interface Pump {
  received: Delivery[];
  /** Resolves when the consumer's iteration ends. */
  done: Promise<void>;
}

/** Reads a consumer as fast as it delivers, keeping what arrives. */
function pump(consumer: EventConsumer, onDelivery?: (delivery: Delivery) => void | Promise<void>): Pump {
  const received: Delivery[] = [];
  const done = (async () => {
    for await (const delivery of consumer) {
      received.push(delivery);
      await onDelivery?.(delivery);
    }
  })();
  return { received, done };
}

const AUTO: ConsumeOptions = { autoAck: true, ackWaitMs: 30_000, maxInFlight: 100 };

export function runEventStoreContract(name: string, open: () => Promise<EventAdapterUnderTest>): void {
  describe(`event store contract: ${name}`, () => {
    let adapter: EventAdapterUnderTest;
    let store: EventStore;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/dev`;
    const consumers: EventConsumer[] = [];
    const consume = async (ns: string, topic: string, options: Partial<ConsumeOptions> = {}, on = store) => {
      const consumer = await on.consume(ns, topic, { ...AUTO, ...options });
      consumers.push(consumer);
      return consumer;
    };
    const publishAll = async (ns: string, topic: string, count: number, from = 0) => {
      const ids: string[] = [];
      for (let i = from; i < from + count; i++) ids.push((await store.publish(ns, topic, { n: i })).id);
      return ids;
    };

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(async () => {
      for (const consumer of consumers) await consumer.close();
      await store.close();
      await adapter.cleanup();
    });

    test('publish and read: oldest first, paged by offset and limit, messages round-trip', async () => {
      const ns = namespace('read');
      const messages: JsonObject[] = [
        { id: '1', type: 'signup', user: 'john' },
        { nested: { list: [1, 'two', { three: null }], flag: true }, text: 'ünïcødé 🚀' },
        {},
        { big: 'x'.repeat(64 * 1024) },
      ];
      const ids = [];
      for (const message of messages) ids.push((await store.publish(ns, 'user', message)).id);
      assert.equal(new Set(ids).size, 4, 'ids are unique');
      const all = await store.read(ns, 'user', { offset: 0, limit: 25 });
      assert.deepEqual(all.map((event) => event.message), messages);
      assert.deepEqual(all.map((event) => event.id), ids);
      assert.ok(all.every((event) => event.topic === 'user' && Number.isInteger(event.timestamp)));
      assert.ok(all.every((event, i) => i === 0 || event.timestamp >= all[i - 1].timestamp), 'time follows the log');
      assert.ok(Math.abs(all[0].timestamp - Date.now()) < 60_000, 'timestamps are wall-clock milliseconds');
      assert.deepEqual((await store.read(ns, 'user', { offset: 1, limit: 2 })).map((event) => event.id), ids.slice(1, 3));
      assert.deepEqual((await store.read(ns, 'user', { offset: 3, limit: 25 })).map((event) => event.id), ids.slice(3));
      assert.deepEqual(await store.read(ns, 'user', { offset: 4, limit: 25 }), []);
      assert.deepEqual(await store.read(ns, 'nobody-published-here', { offset: 0, limit: 25 }), []);
      assert.deepEqual(await store.read(namespace('never-used'), 'user', { offset: 0, limit: 25 }), []);
    });

    test('concurrent publishes keep one order, the same for readers and consumers', async () => {
      const ns = namespace('order');
      const since = Date.now() - 1000;
      await Promise.all(Array.from({ length: 100 }, (_, i) => store.publish(ns, 'orders', { n: i })));
      const history = await store.read(ns, 'orders', { offset: 0, limit: 1000 });
      assert.equal(history.length, 100);
      const consumer = await consume(ns, 'orders', { since });
      const { received } = pump(consumer);
      await eventually(() => received.length === 100, '100 deliveries');
      assert.deepEqual(received.map((event) => event.id), history.map((event) => event.id));
      await consumer.close();
    });

    test('topics and namespaces never see each other', async () => {
      const first = namespace('iso-a');
      const second = namespace('iso-b');
      const consumer = await consume(second, 'shared');
      const { received } = pump(consumer);
      await store.publish(first, 'shared', { from: 'first' });
      await store.publish(second, 'other', { from: 'second-other' });
      await store.publish(second, 'shared', { from: 'second' });
      await eventually(() => received.length >= 1, 'the delivery');
      assert.deepEqual(received.map((event) => event.message), [{ from: 'second' }]);
      assert.deepEqual((await store.read(first, 'shared', { offset: 0, limit: 10 })).map((e) => e.message), [{ from: 'first' }]);
      assert.deepEqual((await store.read(second, 'other', { offset: 0, limit: 10 })).map((e) => e.message), [{ from: 'second-other' }]);
      await consumer.close();
    });

    test('a consumer without a group gets the events published after it opened, in order, as they come', async () => {
      const ns = namespace('live');
      await publishAll(ns, 'ticks', 3);
      const consumer = await consume(ns, 'ticks');
      const { received, done } = pump(consumer);
      for (let i = 3; i < 8; i++) {
        await store.publish(ns, 'ticks', { n: i });
        // Each one arrives before the next is published: pushed, not found by a later poll.
        await eventually(() => received.length === i - 2, `delivery of event ${i}`);
      }
      assert.deepEqual(received.map((event) => event.message.n), [3, 4, 5, 6, 7]);
      assert.ok(received.every((event) => event.deliveries === 1));
      await consumer.close();
      await done; // closing ends the iteration
    });

    test('since replays from a time: every event stored at or after it', async () => {
      const ns = namespace('since');
      await publishAll(ns, 'log', 2);
      const [, second] = await store.read(ns, 'log', { offset: 0, limit: 10 });
      await eventually(() => Date.now() > second.timestamp + 2, 'the clock to move on');
      await publishAll(ns, 'log', 2, 2);
      const third = (await store.read(ns, 'log', { offset: 2, limit: 1 }))[0];
      const replay = pump(await consume(ns, 'log', { since: third.timestamp }));
      await store.publish(ns, 'log', { n: 4 });
      await eventually(() => replay.received.length >= 3, 'the replay and the new event');
      assert.deepEqual(replay.received.map((event) => event.message.n), [2, 3, 4]);
      const everything = pump(await consume(ns, 'log', { since: 0 }));
      await eventually(() => everything.received.length >= 5, 'the whole log');
      assert.deepEqual(everything.received.map((event) => event.message.n), [0, 1, 2, 3, 4]);
    });

    test('two members of a group share the events: each goes to exactly one', async () => {
      const ns = namespace('group');
      const first = pump(await consume(ns, 'jobs', { group: 'workers' }));
      const second = pump(await consume(ns, 'jobs', { group: 'workers' }));
      const ids = await publishAll(ns, 'jobs', 60);
      await eventually(() => first.received.length + second.received.length >= 60, 'all 60 deliveries');
      const delivered = [...first.received, ...second.received].map((event) => event.id);
      assert.equal(delivered.length, 60, 'no event was delivered twice');
      assert.deepEqual(new Set(delivered), new Set(ids));
      for (const member of [first, second]) {
        const order = member.received.map((event) => event.message.n as number);
        assert.deepEqual(order, [...order].sort((a, b) => a - b), 'each member sees its share in order');
      }
    });

    test('a group resumes from its cursor after all members left; a new group starts where asked', async () => {
      const ns = namespace('cursor');
      const member = await consume(ns, 'feed', { group: 'reader' });
      const firstRun = pump(member);
      await publishAll(ns, 'feed', 3);
      await eventually(() => firstRun.received.length === 3, 'the first three');
      await member.close();
      await firstRun.done;
      await publishAll(ns, 'feed', 3, 3); // published while the group has no member
      const back = pump(await consume(ns, 'feed', { group: 'reader', since: 0 }));
      await eventually(() => back.received.length >= 3, 'the three published meanwhile');
      assert.deepEqual(back.received.map((event) => event.message.n), [3, 4, 5], 'an existing group ignores since');
      const fresh = pump(await consume(ns, 'feed', { group: 'auditor', since: 0 }));
      await eventually(() => fresh.received.length >= 6, 'the whole topic for a new group');
      assert.deepEqual(fresh.received.map((event) => event.message.n), [0, 1, 2, 3, 4, 5]);
      const late = pump(await consume(ns, 'feed', { group: 'latecomer' }));
      await store.publish(ns, 'feed', { n: 6 });
      await eventually(() => late.received.length >= 1, 'the next event for a group starting now');
      assert.deepEqual(late.received.map((event) => event.message.n), [6]);
    });

    test('manual acks: an unacknowledged delivery comes back after the ack wait, an acknowledged one never', async () => {
      const ns = namespace('acks');
      const member = pump(await consume(ns, 'tasks', { group: 'g', autoAck: false, ackWaitMs: 400, maxInFlight: 10 }));
      const [keep, drop] = await publishAll(ns, 'tasks', 2);
      await eventually(() => member.received.length >= 2, 'both deliveries');
      assert.equal(await store.ack(ns, 'tasks', 'g', keep), true);
      assert.equal(await store.ack(ns, 'tasks', 'g', keep), false, 'a second ack finds nothing pending');
      await eventually(() => member.received.length >= 3, 'the redelivery', 10_000);
      const redelivered = member.received[2];
      assert.equal(redelivered.id, drop);
      assert.equal(redelivered.deliveries, 2);
      assert.deepEqual(redelivered.message, { n: 1 });
      await eventually(() => member.received.length >= 4, 'a second redelivery', 10_000);
      assert.equal(member.received[3].id, drop, 'still only the unacknowledged one comes back');
      assert.equal(member.received[3].deliveries, 3);
      assert.equal(await store.ack(ns, 'tasks', 'g', drop), true);
      assert.equal(await store.ack(ns, 'tasks', 'other-group', drop), false);
      assert.equal(await store.ack(ns, 'tasks', 'g', 'no-such-event'), false);
    });

    test('manual acks: a member holds at most maxInFlight; the others get the rest', async () => {
      const ns = namespace('in-flight');
      const options = { group: 'g', autoAck: false, ackWaitMs: 60_000 };
      const holder = pump(await consume(ns, 'work', { ...options, maxInFlight: 2 }));
      await publishAll(ns, 'work', 2);
      await eventually(() => holder.received.length === 2, 'the holder to fill up');
      const worker = pump(await consume(ns, 'work', { ...options, maxInFlight: 2 }), async (delivery) => {
        assert.equal(await store.ack(ns, 'work', 'g', delivery.id), true);
      });
      await publishAll(ns, 'work', 8, 2);
      await eventually(() => worker.received.length === 8, 'the worker to take the other eight');
      assert.equal(holder.received.length, 2, 'the holder got nothing while full');
      await store.ack(ns, 'work', 'g', holder.received[0].id);
      await store.publish(ns, 'work', { n: 10 });
      await eventually(() => holder.received.length + worker.received.length === 11, 'the eleventh delivery');
    });

    test('manual acks need a group', async () => {
      await assert.rejects(store.consume(namespace('no-group'), 't', { ...AUTO, autoAck: false }), (error: unknown) => {
        assert.ok(isAltoError(error) && error.status === 400 && /needs a group/.test(error.detail));
        return true;
      });
    });

    test('a consumer that reads nothing holds back neither publishers nor other consumers', async () => {
      const ns = namespace('slow');
      const stalled = await consume(ns, 'firehose'); // opened, never read until the end
      const fast = pump(await consume(ns, 'firehose'));
      const grouped = pump(await consume(ns, 'firehose', { group: 'fast' }));
      const count = 500;
      await publishAll(ns, 'firehose', count);
      await eventually(() => fast.received.length === count && grouped.received.length === count, 'the fast consumers');
      assert.deepEqual(fast.received.map((event) => event.message.n), Array.from({ length: count }, (_, i) => i));
      const late = pump(stalled);
      await eventually(() => late.received.length === count, 'the stalled consumer to catch up');
      assert.deepEqual(late.received.map((event) => event.message.n), Array.from({ length: count }, (_, i) => i), 'none lost');
    });

    test('retention: per namespace, by events per topic and by age', async () => {
      const ns = namespace('retention');
      assert.deepEqual(await store.retention(ns), { maxAgeMs: 7 * 24 * 3600 * 1000, maxEventsPerTopic: 100_000 });
      await store.setRetention(ns, { maxAgeMs: 3600_000, maxEventsPerTopic: 3 });
      assert.deepEqual(await store.retention(ns), { maxAgeMs: 3600_000, maxEventsPerTopic: 3 });
      await publishAll(ns, 'capped', 5);
      await publishAll(ns, 'other', 2);
      await eventually(async () => {
        await store.enforceRetention();
        return (await store.read(ns, 'capped', { offset: 0, limit: 10 })).length === 3;
      }, 'the count limit');
      assert.deepEqual((await store.read(ns, 'capped', { offset: 0, limit: 10 })).map((e) => e.message.n), [2, 3, 4]);
      assert.equal((await store.read(ns, 'other', { offset: 0, limit: 10 })).length, 2, 'the limit is per topic');
      const neighbour = namespace('retention-neighbour');
      await publishAll(neighbour, 'capped', 5);

      const aging = namespace('aging');
      await store.setRetention(aging, { maxAgeMs: 1000, maxEventsPerTopic: 100 });
      await publishAll(aging, 'short-lived', 2);
      assert.equal((await store.read(aging, 'short-lived', { offset: 0, limit: 10 })).length, 2);
      await eventually(async () => {
        await store.enforceRetention();
        return (await store.read(aging, 'short-lived', { offset: 0, limit: 10 })).length === 0;
      }, 'the events to age out', 15_000);
      assert.equal((await store.read(neighbour, 'capped', { offset: 0, limit: 10 })).length, 5, 'other namespaces keep theirs');
    });

    test('events, group cursors and unacknowledged deliveries survive a restart', async () => {
      const ns = namespace('restart');
      const options = { group: 'g', autoAck: false, ackWaitMs: 500, maxInFlight: 1 };
      const member = await consume(ns, 'orders', options);
      const before = pump(member, async (delivery) => {
        if (delivery.message.n === 0) await store.ack(ns, 'orders', 'g', delivery.id);
      });
      await publishAll(ns, 'orders', 3);
      await eventually(() => before.received.length === 2, 'the first delivery acknowledged and the second held');
      await member.close();
      await before.done;

      const { store: restarted, exit } = await adapter.openProcess();
      try {
        assert.deepEqual((await restarted.read(ns, 'orders', { offset: 0, limit: 10 })).map((e) => e.message.n), [0, 1, 2]);
        const after = pump(await consume(ns, 'orders', options, restarted), async (delivery) => {
          await restarted.ack(ns, 'orders', 'g', delivery.id);
        });
        await eventually(() => after.received.length >= 2, 'the held one again and the next', 10_000);
        const seen = after.received.map((event) => [event.message.n, event.deliveries]).sort();
        assert.deepEqual(seen, [[1, 2], [2, 1]], 'the acknowledged one never comes back; the held one does');
      } finally {
        await exit();
      }
    });

    test('a consumer in another process gets what this one publishes, alone and in a group', async () => {
      const ns = namespace('processes');
      const other = await adapter.openProcess();
      try {
        const solo = pump(await consume(ns, 'shared', {}, other.store));
        const member = pump(await consume(ns, 'shared', { group: 'g' }, other.store));
        await publishAll(ns, 'shared', 3);
        await eventually(() => solo.received.length === 3 && member.received.length === 3, 'the other process to get them');
        assert.deepEqual(solo.received.map((event) => event.message.n), [0, 1, 2]);
      } finally {
        await other.exit();
      }
    });

    test('an acknowledged event never comes back, even when deliveries fall due while the group has no member', async () => {
      const ns = namespace('no-member');
      const options = { group: 'g', autoAck: false, ackWaitMs: 300, maxInFlight: 2 };
      // The first members live in a process of their own, which then stops.
      const first = await adapter.openProcess();
      const holder = pump(await consume(ns, 'jobs', options, first.store)); // takes two, never acknowledges
      await publishAll(ns, 'jobs', 6);
      await eventually(() => holder.received.length === 2, 'the holder to fill up');
      const acknowledged = new Set<string>();
      const worker = pump(await consume(ns, 'jobs', { ...options, maxInFlight: 5 }, first.store), async (delivery) => {
        if (await first.store.ack(ns, 'jobs', 'g', delivery.id)) acknowledged.add(delivery.id);
      });
      await eventually(() => acknowledged.size === 4, 'the other four acknowledged');
      await first.exit();
      await Promise.all([holder.done, worker.done]);
      // The point of the test is time passing with no member: the held ones fall due then.
      const due = Date.now() + options.ackWaitMs * 3;
      await eventually(() => Date.now() > due, 'the held deliveries to fall due');
      const next = pump(await consume(ns, 'jobs', { ...options, maxInFlight: 10 }), async (delivery) => {
        await store.ack(ns, 'jobs', 'g', delivery.id);
      });
      await store.publish(ns, 'jobs', { n: 6 });
      await eventually(() => next.received.length >= 3, 'the two held ones and the new one');
      const again = next.received.filter((delivery) => acknowledged.has(delivery.id));
      assert.deepEqual(again.map((delivery) => [delivery.message.n, delivery.deliveries]), [], 'none acknowledged came back');
      assert.deepEqual(next.received.map((delivery) => delivery.message.n).sort(), [...holder.received.map((d) => d.message.n), 6].sort());
    });

    test('deleteProject removes every environment of that project and nothing else', async () => {
      const project = `proj-${run}`;
      await store.publish(`${project}/dev`, 'a', { n: 1 });
      await store.publish(`${project}/prod`, 'b', { n: 2 });
      await store.publish(`${project}0/dev`, 'a', { n: 3 });
      await store.setRetention(`${project}/dev`, { maxAgeMs: 60_000, maxEventsPerTopic: 10 });
      const member = pump(await consume(`${project}/dev`, 'a', { group: 'g' }));
      await store.deleteProject(project);
      await member.done; // its consumers end
      assert.deepEqual(await store.read(`${project}/dev`, 'a', { offset: 0, limit: 10 }), []);
      assert.deepEqual(await store.read(`${project}/prod`, 'b', { offset: 0, limit: 10 }), []);
      assert.equal((await store.retention(`${project}/dev`)).maxEventsPerTopic, 100_000, 'settings go too');
      assert.deepEqual((await store.read(`${project}0/dev`, 'a', { offset: 0, limit: 10 })).map((e) => e.message), [{ n: 3 }]);
      // The project's namespace works again from scratch.
      await store.publish(`${project}/dev`, 'a', { n: 4 });
      assert.deepEqual((await store.read(`${project}/dev`, 'a', { offset: 0, limit: 10 })).map((e) => e.message), [{ n: 4 }]);
    });
  });
}

export function runMessageBusContract(name: string, open: () => Promise<BusAdapterUnderTest>): void {
  describe(`message bus contract: ${name}`, () => {
    let adapter: BusAdapterUnderTest;
    let bus: MessageBus;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/dev`;

    before(async () => {
      adapter = await open();
      bus = adapter.bus;
    });
    after(async () => {
      await bus.close();
      await adapter.cleanup();
    });

    test('every subscriber gets every message published after it subscribed, in order', async () => {
      const ns = namespace('fanout');
      await bus.publish(ns, 'news', { n: -1 }); // before anyone listens: gone
      const first: JsonObject[] = [];
      const second: JsonObject[] = [];
      const a = await bus.subscribe(ns, 'news', (message) => first.push(message));
      const b = await bus.subscribe(ns, 'news', (message) => second.push(message));
      for (let n = 0; n < 50; n++) await bus.publish(ns, 'news', { n, text: 'ünïcødé' });
      await eventually(() => first.length === 50 && second.length === 50, 'both subscribers');
      const expected = Array.from({ length: 50 }, (_, n) => ({ n, text: 'ünïcødé' }));
      assert.deepEqual(first, expected);
      assert.deepEqual(second, expected);
      a.close();
      b.close();
    });

    test('topics and namespaces are apart; a closed subscription gets nothing more', async () => {
      const ns = namespace('apart');
      const got: JsonObject[] = [];
      const other: JsonObject[] = [];
      const subscription = await bus.subscribe(ns, 'a', (message) => got.push(message));
      const marker = await bus.subscribe(ns, 'b', (message) => other.push(message));
      await bus.publish(namespace('elsewhere'), 'a', { wrong: 'namespace' });
      await bus.publish(ns, 'b', { wrong: 'topic' });
      await bus.publish(ns, 'a', { right: true });
      await eventually(() => got.length === 1 && other.length === 1, 'the two messages');
      assert.deepEqual(got, [{ right: true }]);
      subscription.close();
      await bus.publish(ns, 'a', { after: 'close' });
      await bus.publish(ns, 'b', { marker: true });
      // The marker on the other topic was published after: once it is in, the first would be too.
      await eventually(() => other.length === 2, 'the marker');
      assert.deepEqual(got, [{ right: true }]);
      marker.close();
    });
  });
}
