/**
 * Runs the event store and message bus contracts on the embedded adapters (a temporary SQLite
 * file; the in-process bus) and on NATS (JetStream at ALTO_TEST_NATS_URL; streams of the run's
 * namespaces deleted at the end), plus the SQLite adapter's own bookkeeping.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from 'nats';
import { openSqlite } from '../sqlite/database.js';
import { runEventStoreContract, runMessageBusContract } from './contract.js';
import { InProcessMessageBus } from './fanout.js';
import { NatsEventStore, NatsMessageBus, subjectToken } from './nats.js';
import { SqliteEventStore } from './sqlite.js';

function natsUrl(): string {
  const url = process.env.ALTO_TEST_NATS_URL;
  if (!url) throw new Error('ALTO_TEST_NATS_URL is not set: run ". scripts/test-services.sh" first to start NATS with JetStream');
  return url;
}

runEventStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-events-'));
  const db = openSqlite(join(dir, 'alto.db'));
  return {
    store: new SqliteEventStore(db),
    async openProcess() {
      const db = openSqlite(join(dir, 'alto.db'));
      const store = new SqliteEventStore(db);
      return {
        store,
        async exit() {
          await store.close();
          db.close();
        },
      };
    },
    async cleanup() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runEventStoreContract('nats', async () => {
  const connection = await connect({ servers: natsUrl() });
  return {
    store: await NatsEventStore.open(connection),
    async openProcess() {
      const nc = await connect({ servers: natsUrl() });
      const store = await NatsEventStore.open(nc);
      return {
        store,
        async exit() {
          await store.close();
          await nc.drain();
        },
      };
    },
    async cleanup() {
      // Every namespace of the suite starts with "project-<run>" or "proj-<run>".
      const jsm = await connection.jetstreamManager();
      for await (const name of jsm.streams.names()) {
        if (/^ALTO_EVENTS_proj(ect)?-/.test(name)) await jsm.streams.delete(name).catch(() => {});
      }
      await connection.drain();
    },
  };
});

runMessageBusContract('in-process', async () => ({ bus: new InProcessMessageBus(), async cleanup() {} }));

runMessageBusContract('nats', async () => {
  const nc = await connect({ servers: natsUrl() });
  return { bus: new NatsMessageBus(nc), cleanup: () => nc.drain() };
});

test('nats: names become subject tokens that cannot reach into other subjects', () => {
  assert.equal(subjectToken('orders'), 'orders');
  assert.equal(subjectToken('a.b'), 'a_2Eb');
  assert.equal(subjectToken('*'), '_2A');
  assert.equal(subjectToken('>'), '_3E');
  assert.equal(subjectToken('x_2Ey'), 'x_5F2Ey', 'the escape character is escaped, so a.b and a_2Eb differ');
  assert.equal(subjectToken('prj/dev'), 'prj_2Fdev');
  assert.equal(subjectToken('ä'), '_C3_A4');
  assert.equal(NatsEventStore.subject('p/dev', 'user.signup'), 'alto.events.p_2Fdev.user_2Esignup');
  assert.ok(NatsEventStore.streamName('p/dev').startsWith(NatsEventStore.streamName('p/')), 'a project prefix stays a prefix');
});

test('sqlite: retention counts per topic and drops deliveries of removed events', async () => {
  const db = openSqlite(':memory:');
  let now = 1_000_000;
  const store = new SqliteEventStore(db, () => now);
  const rows = (table: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
  await store.setRetention('p/dev', { maxAgeMs: 10_000, maxEventsPerTopic: 2500 });
  for (let i = 0; i < 3000; i++) await store.publish('p/dev', 'big', { i });
  const member = await store.consume('p/dev', 'big', { group: 'g', since: 0, autoAck: false, ackWaitMs: 60_000, maxInFlight: 5 });
  const iterator = member[Symbol.asyncIterator]();
  assert.deepEqual((await iterator.next()).value?.message, { i: 0 });
  assert.ok(rows('event_pending') >= 1);
  assert.equal(await store.enforceRetention(), 500);
  assert.equal(rows('event_log'), 2500);
  assert.equal((db.prepare('SELECT events FROM event_topics').get() as { events: number }).events, 2500);
  assert.equal(rows('event_pending'), 0, 'deliveries of removed events go with them');
  now += 10_001;
  assert.equal(await store.enforceRetention(), 2500, 'all of them aged out');
  assert.equal(rows('event_log'), 0);
  await member.close();
  await iterator.return?.();
  now += 10_001;
  await store.enforceRetention();
  assert.equal(rows('event_groups'), 0, 'an idle group without members is forgotten');
  assert.equal(rows('event_topics'), 0, 'an empty, idle topic is forgotten');
  db.close();
});

test('sqlite: timestamps never go backwards along a topic, whatever the clock does', async () => {
  const db = openSqlite(':memory:');
  let now = 5_000;
  const store = new SqliteEventStore(db, () => now);
  await store.publish('p/dev', 't', { n: 1 });
  now = 4_000; // the wall clock stepped back
  await store.publish('p/dev', 't', { n: 2 });
  await store.publish('p/dev', 'other', { n: 3 });
  const events = await store.read('p/dev', 't', { offset: 0, limit: 10 });
  assert.deepEqual(events.map((event) => event.timestamp), [5_000, 5_000]);
  assert.equal((await store.read('p/dev', 'other', { offset: 0, limit: 10 }))[0].timestamp, 4_000);
  db.close();
});
