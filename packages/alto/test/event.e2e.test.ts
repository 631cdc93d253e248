/**
 * The `event` block through the real server: M3O's own client drives Publish, the Consume
 * stream and Read; replay from an offset; a slow consumer that holds back neither publishers
 * nor a fast consumer and is then closed as too slow; retention; errors; project deletion; and
 * two consumers in one group sharing a topic with acknowledgements across a restart of the
 * server process, with none lost or duplicated. The same scenarios run on NATS JetStream.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import { eventBlock } from '../src/blocks/event/index.js';
import { startInProcess, startProcess, temporaryDataDir, waitFor, type ServerProcess, type TestAlto } from './harness.js';
import { openStream } from './stream-client.js';

interface WireEvent {
  id: string;
  topic: string;
  message: Record<string, unknown>;
  timestamp: string;
  deliveries: number;
}

type InProcess = Awaited<ReturnType<typeof startInProcess>>;

async function post(url: string, key: string, endpoint: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}/v1/event/${endpoint}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function publish(alto: TestAlto, key: string, topic: string, message: object): Promise<string> {
  const result = await alto.call('event', 'Publish', { topic, message }, key);
  assert.equal(result.status, 200, JSON.stringify(result.body));
  return result.body.id;
}

/** Open consumers in the server (the embedded store or the NATS one both keep a set). */
function openConsumers(alto: InProcess): number {
  const store = alto.alto.platform.use(eventBlock).store as unknown as { consumers: Set<unknown> };
  return store.consumers.size;
}

/** M3O's documented example through M3O's own client: Publish, the Consume stream, Read. */
async function m3oClientScenario(alto: TestAlto, key: string): Promise<void> {
  const client = new Client({ token: key, address: `${alto.url}/` });
  const offset = new Date(Date.now() - 1000).toISOString();
  const published = await client.call<object, { id: string }>('event', 'Publish', {
    topic: 'user',
    message: { id: '1', type: 'signup', user: 'john' },
  });
  assert.match(published.id, /^[0-9a-f-]{36}$/);
  const stream = await client.stream<object, WireEvent>('event', 'Consume', { topic: 'user', offset });
  const received: WireEvent[] = [];
  stream.onMessage((message) => received.push(message));
  await waitFor(() => received.length === 1, 'the replayed event');
  await client.call('event', 'Publish', { topic: 'user', message: { id: '2', type: 'login', user: 'john' } });
  await waitFor(() => received.length === 2, 'the live event');
  stream.conn.close();
  assert.equal(received[0].id, published.id);
  assert.equal(received[0].topic, 'user');
  assert.deepEqual(received[0].message, { id: '1', type: 'signup', user: 'john' });
  assert.deepEqual(received[1].message, { id: '2', type: 'login', user: 'john' });
  assert.ok(Date.parse(received[0].timestamp) <= Date.parse(received[1].timestamp));
  const read = await client.call<object, { events: { id: string; message: object; timestamp: string }[] }>('event', 'Read', {
    topic: 'user',
  });
  assert.deepEqual(
    read.events.map((event) => event.message),
    [
      { id: '1', type: 'signup', user: 'john' },
      { id: '2', type: 'login', user: 'john' },
    ],
  );
  assert.deepEqual(read.events.map((event) => event.timestamp), received.map((event) => event.timestamp));
  const paged = await client.call<object, { events: { id: string }[] }>('event', 'Read', { topic: 'user', limit: 1, offset: 1 });
  assert.deepEqual(paged.events.map((event) => event.id), [received[1].id]);
}

/** Consume from an offset: exactly the events stored from that time on, then the new ones. */
async function replayScenario(alto: TestAlto, key: string): Promise<void> {
  for (let n = 0; n < 3; n++) await publish(alto, key, 'audit', { n });
  const before = (await alto.call('event', 'Read', { topic: 'audit' }, key)).body.events;
  await waitFor(() => Date.now() > Date.parse(before[2].timestamp) + 2, 'the clock to move on');
  for (let n = 3; n < 6; n++) await publish(alto, key, 'audit', { n });
  const all = (await alto.call('event', 'Read', { topic: 'audit' }, key)).body.events;
  const replay = await openStream<WireEvent>(alto.url, key, 'event', 'Consume', { topic: 'audit', offset: all[3].timestamp });
  await waitFor(() => replay.messages.length === 3, 'the replay');
  await publish(alto, key, 'audit', { n: 6 });
  await waitFor(() => replay.messages.length === 4, 'the next live event');
  assert.deepEqual(replay.messages.map((event) => event.message.n), [3, 4, 5, 6]);
  replay.close();
  // Go's RFC 3339 with nanoseconds, as M3O's clients wrote it, means the same place.
  const goStyle = all[3].timestamp.replace('Z', '999999Z');
  const again = await openStream<WireEvent>(alto.url, key, 'event', 'Consume', { topic: 'audit', offset: goStyle });
  await waitFor(() => again.messages.length === 4, 'the replay from a nanosecond offset');
  assert.deepEqual(again.messages.map((event) => event.message.n), [3, 4, 5, 6]);
  again.close();
}

/**
 * A consumer that stops reading holds back neither the publisher nor a consumer that reads;
 * once it has read nothing for the stall timeout the server closes it, 4408 "slow consumer",
 * which it sees after what was already on its way. No event goes missing for the fast one.
 */
async function slowConsumerScenario(alto: InProcess, key: string): Promise<void> {
  const offset = new Date(Date.now() - 1000).toISOString();
  // Streams of earlier tests close asynchronously after their clients leave.
  await waitFor(() => openConsumers(alto) === 0, 'earlier consumers to close');
  const consumersBefore = 0;
  const slow = await openStream<WireEvent>(alto.url, key, 'event', 'Consume', { topic: 'firehose', offset });
  slow.ws.pause(); // reads nothing from here on
  const fast = await openStream<WireEvent>(alto.url, key, 'event', 'Consume', { topic: 'firehose', offset });
  await waitFor(() => openConsumers(alto) === consumersBefore + 2, 'both consumers to be open');
  // Enough data to fill the slow socket's kernel buffers and the server's 1 MiB stream buffer.
  const count = 300;
  const padding = 'x'.repeat(64 * 1024);
  for (let n = 0; n < count; n++) await publish(alto, key, 'firehose', { n, padding });
  await waitFor(() => fast.messages.length === count, 'the fast consumer to get every event', 30_000);
  assert.deepEqual(fast.messages.map((event) => event.message.n), Array.from({ length: count }, (_, n) => n));
  await waitFor(() => openConsumers(alto) === consumersBefore + 1, 'the server to give up on the slow consumer', 30_000);
  assert.equal(fast.isClosed(), false, 'the fast consumer is still open');
  slow.ws.resume();
  const { code, reason } = await slow.closed;
  assert.equal(code, 4408);
  assert.match(reason, /^slow consumer: the client read nothing for \d+ s/);
  assert.ok(slow.messages.length < count, `the slow one got ${slow.messages.length} before it was closed`);
  assert.deepEqual(slow.messages.map((event) => event.message.n), Array.from({ length: slow.messages.length }, (_, n) => n), 'in order');
  fast.close();
}

async function retentionScenario(alto: TestAlto, key: string, neighbourKey: string): Promise<void> {
  assert.deepEqual((await alto.call('event', 'Retention', {}, key)).body, { maxAge: 604800, maxEvents: 100000 });
  for (let n = 0; n < 4; n++) await publish(alto, key, 'capped', { n });
  for (let n = 0; n < 4; n++) await publish(alto, neighbourKey, 'capped', { n });
  const set = await alto.call('event', 'SetRetention', { maxEvents: 2 }, key);
  assert.deepEqual(set.body, { maxAge: 604800, maxEvents: 2 });
  assert.deepEqual((await alto.call('event', 'SetRetention', { maxAge: 86400 }, key)).body, { maxAge: 86400, maxEvents: 2 });
  const kept = (await alto.call('event', 'Read', { topic: 'capped' }, key)).body.events;
  assert.deepEqual(kept.map((event: WireEvent) => event.message.n), [2, 3], 'applied at once, the oldest first');
  assert.equal((await alto.call('event', 'Read', { topic: 'capped' }, neighbourKey)).body.events.length, 4, 'per project');
  assert.deepEqual((await alto.call('event', 'Retention', {}, neighbourKey)).body, { maxAge: 604800, maxEvents: 100000 });
}

async function errorScenario(alto: TestAlto, key: string): Promise<void> {
  const badTopic = await alto.call('event', 'Publish', { topic: 'not a topic', message: {} }, key);
  assert.equal(badTopic.status, 400);
  assert.match(badTopic.body.detail, /^topic: "not a topic" is not a valid topic: use letters, digits and/);
  const missing = await alto.call('event', 'Publish', { message: {} }, key);
  assert.equal(missing.status, 400);
  assert.match(missing.body.detail, /^topic: expected a string, the topic/);
  const notObject = await alto.call('event', 'Publish', { topic: 't', message: 'hello' }, key);
  assert.equal(notObject.status, 400);
  assert.match(notObject.body.detail, /^message: expected a JSON object/);
  const tooBig = await alto.call('event', 'Publish', { topic: 't', message: { big: 'x'.repeat(300 * 1024) } }, key);
  assert.equal(tooBig.status, 413);
  assert.match(tooBig.body.detail, /262144-byte limit/);
  const overHttp = await alto.call('event', 'Consume', { topic: 't' }, key);
  assert.equal(overHttp.status, 400);
  assert.match(overHttp.body.detail, /streams: open a websocket/);
  const readLimit = await alto.call('event', 'Read', { topic: 't', limit: 5000 }, key);
  assert.equal(readLimit.status, 400);
  assert.match(readLimit.body.detail, /^limit: must be at most 1000/);
  const unknownAck = await alto.call('event', 'Ack', { topic: 't', group: 'g', id: 'nope' }, key);
  assert.deepEqual([unknownAck.status, unknownAck.body], [200, { acknowledged: false }]);

  for (const [request, detail] of [
    [{ topic: 't', offset: 'yesterday' }, /^offset: "yesterday" is not an RFC 3339 time/],
    [{ topic: 't', autoAck: false }, /^autoAck: false needs a group/],
    [{ topic: 't', group: 'a b' }, /^group: "a b" is not a valid group/],
  ] as const) {
    const stream = await openStream(alto.url, key, 'event', 'Consume', request);
    const { code, reason } = await stream.closed;
    assert.equal(code, 4400, JSON.stringify(request));
    assert.match(reason, detail);
    assert.equal(stream.messages[0].code, 400, 'the error body comes first');
    assert.match(stream.messages[0].detail, detail);
  }
  const otherScope = await alto.projectKey('shop', ['cache']);
  assert.equal((await alto.call('event', 'Publish', { topic: 't' }, otherScope)).status, 403);
}

/**
 * Two workers share the group "billing" with manual acks. Worker B takes its five and holds
 * them unacknowledged; worker A processes the rest. The server process is stopped and started
 * again on the same data folder; B drops what it held (as if it had crashed), both reconnect,
 * more events come. Every event ends up processed (acknowledged) exactly once, B's five come
 * back after their ack wait, and no acknowledged event is ever delivered again.
 */
async function groupAcrossRestartScenario(args: string[]): Promise<void> {
  const dataDir = temporaryDataDir();
  let server: ServerProcess = await startProcess({ dataDir, args });
  try {
    const key = await server.projectKey('shop', ['event']);
    let current = server.url;
    const offset = new Date(Date.now() - 60_000).toISOString();
    const published: string[] = [];
    const processed = new Map<string, { worker: string; deliveries: number }>();
    const deliveredAfterAck: string[] = [];
    const held: WireEvent[] = [];
    let bHolds = true;

    const publishBatch = async (from: number, count: number) => {
      for (let n = from; n < from + count; n++) {
        const result = await post(current, key, 'Publish', { topic: 'orders', message: { n } });
        assert.equal(result.status, 200);
        published.push(result.body.id);
      }
    };
    const ack = async (id: string): Promise<boolean> => {
      try {
        const result = await post(current, key, 'Ack', { topic: 'orders', group: 'billing', id });
        return result.status === 200 && result.body.acknowledged === true;
      } catch {
        return false; // the server is going away: the event will come again
      }
    };
    /** Every delivery and acknowledgement, so a failure can tell a late ack from a lost one. */
    const history: string[] = [];
    const handle = (worker: string) => async (event: WireEvent) => {
      const receivedAt = Date.now();
      history.push(`${receivedAt} ${worker} got ${event.message.n} (delivery ${event.deliveries}) from ${current}`);
      if (processed.has(event.id)) deliveredAfterAck.push(`event ${event.message.n}`);
      if (worker === 'B' && bHolds) {
        held.push(event);
        return;
      }
      const acknowledged = await ack(event.id);
      history.push(`${Date.now()} ${worker} acked ${event.message.n}: ${acknowledged}`);
      if (acknowledged) processed.set(event.id, { worker, deliveries: event.deliveries });
    };
    let stopped = false;
    const workerStreams = new Map<string, Awaited<ReturnType<typeof openStream>>>();
    /** A worker that reconnects to whichever server is current whenever its stream ends. */
    const runWorker = async (worker: string) => {
      while (!stopped) {
        const url = current;
        try {
          const stream = await openStream<WireEvent>(
            url,
            key,
            'event',
            'Consume',
            { topic: 'orders', group: 'billing', offset, autoAck: false, ackWait: 3, maxInFlight: 5 },
            handle(worker),
          );
          workerStreams.set(worker, stream);
          await stream.closed;
        } catch {
          // refused: the server is restarting
        }
        if (!stopped) await waitFor(() => current !== url || stopped, `${worker} to see the restarted server`, 60_000);
      }
    };

    const workerB = runWorker('B');
    await waitFor(() => workerStreams.has('B'), 'worker B to connect');
    await publishBatch(0, 40);
    await waitFor(() => held.length === 5, 'worker B to fill up with five unacknowledged events');
    const workerA = runWorker('A');
    await waitFor(() => processed.size === 35, 'worker A to process the other 35', 30_000);
    assert.ok([...processed.values()].every((entry) => entry.worker === 'A'));

    assert.equal(await server.stop('SIGTERM'), 0);
    server = await startProcess({ dataDir, args });
    bHolds = false; // B "crashed" with its five: they were never acknowledged
    history.push(`${Date.now()} restarted`);
    current = server.url;
    await waitFor(() => workerStreams.get('A')?.isClosed() === false && workerStreams.get('B')?.isClosed() === false, 'both workers back', 30_000);
    const kept = await post(current, key, 'Read', { topic: 'orders', limit: 100 });
    assert.deepEqual(kept.body.events.map((event: WireEvent) => event.id), published, 'the log survived the restart, in order');
    await publishBatch(40, 40);
    await waitFor(() => processed.size === 80, 'every event processed', 60_000);

    stopped = true;
    for (const stream of workerStreams.values()) stream.close();
    await Promise.all([workerA, workerB]);
    assert.deepEqual(new Set(processed.keys()), new Set(published), 'none lost');
    if (deliveredAfterAck.length > 0) writeFileSync(join(dataDir, '..', `alto-event-history-${Date.now()}.log`), history.join('\n'));
    assert.deepEqual(deliveredAfterAck, [], 'no acknowledged event was delivered again');
    for (const event of held) {
      assert.ok(processed.get(event.id)!.deliveries >= 2, 'what B held came back after its ack wait');
    }
    const byWorker = (name: string) => [...processed.values()].filter((entry) => entry.worker === name).length;
    assert.ok(byWorker('A') > 0 && byWorker('B') > 0, `shared after the restart: A ${byWorker('A')}, B ${byWorker('B')}`);
  } finally {
    // Deleting the project deletes its events (and, on NATS, its stream), whatever happened.
    assert.equal((await server.call('projects', 'Delete', { name: 'shop' })).status, 200);
    await server.stop('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

describe('event on embedded SQLite', () => {
  let alto: InProcess;
  let key: string;

  before(async () => {
    alto = await startInProcess({ streamStallTimeoutMs: 1500 });
    key = await alto.projectKey('shop', ['event']);
  });
  after(() => alto.close());

  test("M3O's client drives Publish, the Consume stream and Read", async () => {
    await m3oClientScenario(alto, key);
  });

  test('Consume replays from an offset', async () => {
    await replayScenario(alto, key);
  });

  test('a slow consumer blocks neither publishers nor a fast consumer, and is closed with a clear reason', async () => {
    await slowConsumerScenario(alto, key);
  });

  test('retention per project, applied at once', async () => {
    await retentionScenario(alto, await alto.projectKey('capped', ['event']), await alto.projectKey('neighbour', ['event']));
  });

  test('errors are clear 4xx', async () => {
    await errorScenario(alto, key);
  });

  test('deleting a project deletes its events, groups and settings', async () => {
    const doomed = await alto.projectKey('doomed', ['event']);
    await publish(alto, doomed, 'gone', { n: 1 });
    await alto.call('event', 'SetRetention', { maxEvents: 5 }, doomed);
    const group = await openStream<WireEvent>(alto.url, doomed, 'event', 'Consume', { topic: 'gone', group: 'g', offset: new Date(0).toISOString() });
    await waitFor(() => group.messages.length === 1, 'the delivery');
    const { projects } = (await alto.call('projects', 'List')).body as { projects: { id: string; name: string }[] };
    const projectId = projects.find((project) => project.name === 'doomed')!.id;
    const rows = (table: string) =>
      (
        alto.alto.platform.stores.sqlite
          .prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE substr(namespace, 1, length(?)) = ?`)
          .get(`${projectId}/`, `${projectId}/`) as { n: number }
      ).n;
    assert.ok(rows('event_log') === 1 && rows('event_groups') === 1 && rows('event_retention') === 1);
    assert.equal((await alto.call('projects', 'Delete', { name: 'doomed' })).status, 200);
    for (const table of ['event_log', 'event_topics', 'event_groups', 'event_pending', 'event_retention']) assert.equal(rows(table), 0, table);
    await group.closed; // its consumer ended
  });

  test('two consumers in one group share the events across a server restart, none lost or duplicated', async () => {
    await groupAcrossRestartScenario([]);
  });
});

describe('event on NATS JetStream (--events)', () => {
  const natsUrl = process.env.ALTO_TEST_NATS_URL;
  let alto: InProcess;
  let key: string;

  before(async () => {
    if (!natsUrl) throw new Error('ALTO_TEST_NATS_URL is not set: run ". scripts/test-services.sh" first');
    alto = await startInProcess({ natsUrl, streamStallTimeoutMs: 1500 });
    key = await alto.projectKey('shop', ['event']);
  });
  after(async () => {
    // The projects' streams go with them.
    for (const name of ['shop', 'capped', 'neighbour']) await alto?.call('projects', 'Delete', { name });
    await alto?.close();
  });

  test("M3O's client drives Publish, the Consume stream and Read", async () => {
    await m3oClientScenario(alto, key);
  });

  test('Consume replays from an offset', async () => {
    await replayScenario(alto, key);
  });

  test('a slow consumer blocks neither publishers nor a fast consumer, and is closed with a clear reason', async () => {
    await slowConsumerScenario(alto, key);
  });

  test('retention per project, applied at once', async () => {
    await retentionScenario(alto, await alto.projectKey('capped', ['event']), await alto.projectKey('neighbour', ['event']));
  });

  test('errors are clear 4xx', async () => {
    await errorScenario(alto, key);
  });

  test('two consumers in one group share the events across a server restart, none lost or duplicated', async () => {
    await groupAcrossRestartScenario(['--events', natsUrl!]);
  });
});
