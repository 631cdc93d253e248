/**
 * The `mq` block through the real server: M3O's own client subscribes and publishes; every
 * subscriber gets every message in order; a subscriber that stops reading holds back neither
 * the publisher nor the others and is disconnected with a clear reason; on NATS, two servers
 * sharing it deliver to each other's subscribers.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import { mqBlock } from '../src/blocks/mq/index.js';
import { startInProcess, temporaryDataDir, waitFor, type TestAlto } from './harness.js';
import { openStream, type StreamClient } from './stream-client.js';

type InProcess = Awaited<ReturnType<typeof startInProcess>>;
interface Received {
  topic: string;
  message: Record<string, unknown>;
}

/**
 * Nothing is kept, so a subscriber only gets what is published once it listens: publish a
 * probe until it arrives, which proves the subscription is in place.
 */
async function untilListening(alto: TestAlto, key: string, topic: string, subscribers: { messages: Received[] }[]): Promise<void> {
  for (let attempt = 0; !subscribers.every((subscriber) => subscriber.messages.some((m) => m.message.probe !== undefined)); attempt++) {
    if (attempt > 200) throw new Error('the subscribers never got a probe');
    await alto.call('mq', 'Publish', { topic, message: { probe: attempt } }, key);
    // A short wait for this probe, then another one: the subscription may not be in place yet.
    await waitFor(() => subscribers.every((subscriber) => subscriber.messages.some((m) => m.message.probe !== undefined)), 'a probe', 50).catch(() => {});
  }
}

function withoutProbes(messages: Received[]): Received[] {
  return messages.filter((message) => message.message.probe === undefined);
}

async function fanoutScenario(publisher: TestAlto, subscriberServer: TestAlto, key: string): Promise<void> {
  const client = new Client({ token: key, address: `${subscriberServer.url}/` });
  const m3oStream = await client.stream<object, Received>('mq', 'Subscribe', { topic: 'events' });
  const viaM3o: { messages: Received[] } = { messages: [] };
  m3oStream.onMessage((message) => viaM3o.messages.push(message));
  const plain = await openStream<Received>(subscriberServer.url, key, 'mq', 'Subscribe', { topic: 'events' });
  await untilListening(publisher, key, 'events', [viaM3o, plain]);
  const publisherClient = new Client({ token: key, address: `${publisher.url}/` });
  assert.deepEqual(await publisherClient.call('mq', 'Publish', { topic: 'events', message: { id: '1', type: 'signup', user: 'john' } }), {});
  for (let n = 0; n < 20; n++) await publisherClient.call('mq', 'Publish', { topic: 'events', message: { n } });
  await publisherClient.call('mq', 'Publish', { topic: 'elsewhere', message: { wrong: 'topic' } });
  const expected = [{ topic: 'events', message: { id: '1', type: 'signup', user: 'john' } }];
  for (let n = 0; n < 20; n++) expected.push({ topic: 'events', message: { n } } as never);
  await waitFor(() => withoutProbes(viaM3o.messages).length === 21 && withoutProbes(plain.messages).length === 21, 'both subscribers');
  assert.deepEqual(withoutProbes(viaM3o.messages), expected);
  assert.deepEqual(withoutProbes(plain.messages), expected);
  m3oStream.conn.close();
  plain.close();
}

async function slowSubscriberScenario(alto: InProcess, key: string): Promise<void> {
  const mq = alto.alto.platform.use(mqBlock);
  await waitFor(() => mq.activeSubscriptions === 0, 'earlier subscribers to leave');
  const slow = await openStream<Received>(alto.url, key, 'mq', 'Subscribe', { topic: 'firehose' });
  const fast = await openStream<Received>(alto.url, key, 'mq', 'Subscribe', { topic: 'firehose' });
  await untilListening(alto, key, 'firehose', [slow, fast]);
  slow.ws.pause(); // reads nothing from here on
  const count = 300;
  const padding = 'x'.repeat(64 * 1024);
  for (let n = 0; n < count; n++) {
    const result = await alto.call('mq', 'Publish', { topic: 'firehose', message: { n, padding } }, key);
    assert.equal(result.status, 200);
  }
  await waitFor(() => withoutProbes(fast.messages).length === count, 'the fast subscriber to get every message', 30_000);
  assert.deepEqual(withoutProbes(fast.messages).map((m) => m.message.n), Array.from({ length: count }, (_, n) => n));
  await waitFor(() => mq.activeSubscriptions === 1, 'the server to give up on the slow subscriber', 30_000);
  assert.equal(fast.isClosed(), false);
  slow.ws.resume();
  const { code, reason } = await slow.closed;
  // Stuck sending, it is closed as a stalled reader; reading but too slowly, as one too far behind.
  assert.ok([4408, 4429].includes(code), `close code ${code}`);
  assert.match(reason, /^slow (consumer|subscriber)/);
  const got = withoutProbes(slow.messages).map((m) => m.message.n);
  assert.ok(got.length < count);
  assert.deepEqual(got, Array.from({ length: got.length }, (_, n) => n), 'what it got came in order');
  fast.close();
}

async function errorScenario(alto: TestAlto, key: string): Promise<void> {
  const badTopic = await alto.call('mq', 'Publish', { topic: 'a*b', message: {} }, key);
  assert.equal(badTopic.status, 400);
  assert.match(badTopic.body.detail, /^topic: "a\*b" is not a valid topic/);
  const tooBig = await alto.call('mq', 'Publish', { topic: 't', message: { big: 'x'.repeat(300 * 1024) } }, key);
  assert.equal(tooBig.status, 413);
  const stream = await openStream(alto.url, key, 'mq', 'Subscribe', {});
  const { code, reason } = await stream.closed;
  assert.equal(code, 4400);
  assert.match(reason, /^topic: expected a string, the topic/);
}

describe('mq in process', () => {
  let alto: InProcess;
  let key: string;

  before(async () => {
    alto = await startInProcess({ streamStallTimeoutMs: 1500 });
    key = await alto.projectKey('shop', ['mq']);
  });
  after(() => alto.close());

  test("M3O's client subscribes and publishes; every subscriber gets every message, in order", async () => {
    await fanoutScenario(alto, alto, key);
  });

  test('a subscriber that stops reading holds back no one and is disconnected with a clear reason', async () => {
    await slowSubscriberScenario(alto, key);
  });

  test('errors are clear 4xx', async () => {
    await errorScenario(alto, key);
  });
});

describe('mq on NATS (--events)', () => {
  const natsUrl = process.env.ALTO_TEST_NATS_URL;
  const dataDir = temporaryDataDir();
  let first: InProcess;
  let second: InProcess;
  let key: string;

  before(async () => {
    if (!natsUrl) throw new Error('ALTO_TEST_NATS_URL is not set: run ". scripts/test-services.sh" first');
    // Two servers on one data folder and one NATS: two replicas of one Alto.
    first = await startInProcess({ natsUrl, dataDir, streamStallTimeoutMs: 1500 });
    second = await startInProcess({ natsUrl, dataDir, streamStallTimeoutMs: 1500 });
    key = await first.projectKey('shop', ['mq']);
  });
  after(async () => {
    await second?.close();
    await first?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a message published on one server reaches the subscribers of the other', async () => {
    await fanoutScenario(first, second, key);
  });

  test('a subscriber that stops reading holds back no one and is disconnected with a clear reason', async () => {
    await slowSubscriberScenario(first, key);
  });

  test('errors are clear 4xx', async () => {
    await errorScenario(first, key);
  });
});
