/**
 * Two `alto up` processes on different ports and data folders, on one PostgreSQL database
 * (`--store`), one NATS (`--events`), one S3-compatible bucket (`--objects`, s3rver; see
 * s3-server.ts) and one Redis (`--cache`), serve one cloud for the data blocks: a db Watch on one
 * sees the writes made on the other; a space object written through one is read through the
 * other, and a presigned URL made by one is served by the other; an event published on one is
 * consumed on the other, and an mq message reaches a subscriber on the other; a stream message
 * sent through one is listed through the other; a cache value set on one is read on the other.
 * The control plane's half (keys, revocation, rate limits, usage) is in shared-store.e2e.test.ts,
 * cron's in cron.e2e.test.ts. Needs the test services (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { startProcess, waitFor, waitForAsync, type ServerProcess } from './harness.js';
import { startS3Server, TEST_S3_CREDENTIALS, type TestS3 } from './s3-server.js';
import { openStream, type StreamClient } from './stream-client.js';

const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex');

function requiredEnvironment(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: source scripts/test-services.sh first`);
  return value;
}

/** The same URL on the other process: same path and signature, other origin. */
function onOtherProcess(url: string, server: ServerProcess): string {
  const moved = new URL(url);
  const target = new URL(server.url);
  moved.protocol = target.protocol;
  moved.host = target.host;
  return moved.toString();
}

describe('two processes on PostgreSQL, NATS, S3 and Redis: one cloud for the data blocks', () => {
  let database: TestDatabase;
  let s3: TestS3;
  let first: ServerProcess;
  let second: ServerProcess;
  let key: string;
  // Redis and NATS are shared with other test files: a project name of this run only.
  const project = `nodes-${randomBytes(4).toString('hex')}`;

  before(async () => {
    database = await createTestDatabase('two_nodes');
    s3 = await startS3Server('alto-two-nodes');
    const env = {
      ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
      ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
      // Credentials as every S3 tool reads them.
      AWS_ACCESS_KEY_ID: TEST_S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TEST_S3_CREDENTIALS.secretAccessKey,
    };
    const args = [
      '--store', database.url,
      '--events', requiredEnvironment('ALTO_TEST_NATS_URL'),
      '--objects', s3.objectsUrl,
      '--cache', requiredEnvironment('ALTO_TEST_REDIS_URL'),
    ];
    first = await startProcess({ args, env });
    second = await startProcess({ args, env });
    key = await first.projectKey(project, ['db', 'space', 'event', 'mq', 'cache', 'stream']);
  });
  after(async () => {
    // Deleting the project deletes its events and stream channels (on NATS) and cache keys in the shared servers.
    if (first) assert.equal((await first.call('projects', 'Delete', { name: project })).status, 200);
    await second?.close();
    await first?.close();
    await s3?.close();
    await database?.drop();
  });

  test('a db Watch on one process sees the writes made on the other', async () => {
    const watcher = await openStream(second.url, key, 'db', 'Watch', { table: 'live', ready: true });
    try {
      await waitFor(() => watcher.messages.some((message) => message.type === 'ready'), 'the watch on the second process to be ready');
      const db = (endpoint: string, body: unknown) => first.call('db', endpoint, body, key);
      assert.equal((await db('Create', { table: 'live', record: { id: 'a', n: 1 } })).status, 200);
      assert.equal((await db('Update', { table: 'live', record: { id: 'a', n: 2 } })).status, 200);
      assert.equal((await db('Delete', { table: 'live', id: 'a' })).status, 200);
      await waitFor(() => watcher.messages.length >= 4, 'the first process’s writes to reach the watch on the second');
      assert.deepEqual(watcher.messages, [
        { type: 'ready' },
        { type: 'create', id: 'a', revision: 1, record: { id: 'a', n: 1 } },
        { type: 'update', id: 'a', revision: 2, record: { id: 'a', n: 2 } },
        { type: 'delete', id: 'a', revision: 2, record: { id: 'a', n: 2 } },
      ]);
    } finally {
      watcher.close();
      await watcher.closed;
    }
  });

  test('a space object written through one process is read through the other, and presigned URLs work on either', async () => {
    const content = Buffer.from('written through the first process');
    const created = await first.call('space', 'Create', { name: 'docs/shared.txt', object: content.toString('base64') }, key);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const read = await second.call('space', 'Read', { name: 'docs/shared.txt' }, key);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.deepEqual(Buffer.from(read.body.object.data, 'base64'), content);
    assert.equal(read.body.object.sha256, sha256(content));

    // An upload URL made by the first process, used on the second; a download URL made by the
    // second, used on the first.
    const uploaded = randomBytes(64 * 1024);
    const upload = await first.call('space', 'Upload', { name: 'blobs/up.bin' }, key);
    assert.equal(upload.status, 200, JSON.stringify(upload.body));
    const stored = await fetch(onOtherProcess(upload.body.url, second), { method: 'PUT', body: uploaded });
    assert.equal(stored.status, 200, await stored.text());
    const download = await second.call('space', 'Download', { name: 'blobs/up.bin' }, key);
    assert.equal(download.status, 200, JSON.stringify(download.body));
    const served = await fetch(onOtherProcess(download.body.url, first));
    assert.equal(served.status, 200);
    assert.equal(sha256(Buffer.from(await served.arrayBuffer())), sha256(uploaded));

    // One bucket holds both, whichever process wrote them.
    const keys = ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).Contents ?? []).map((entry) => entry.Key!);
    assert.deepEqual(keys.map((name) => name.split('/').slice(2).join('/')).sort(), ['blobs/up.bin', 'docs/shared.txt']);
    // A forged signature is refused on both.
    for (const server of [first, second]) {
      const forged = new URL(onOtherProcess(download.body.url, server));
      forged.searchParams.set('signature', 'A'.repeat(forged.searchParams.get('signature')!.length));
      assert.equal((await fetch(forged)).status, 403, `a forged URL on ${server.url}`);
    }
  });

  test('an event published on one process is consumed on the other', async () => {
    // From a minute back: the consumer gets the event even if it subscribes after the publish.
    const offset = new Date(Date.now() - 60_000).toISOString();
    const consumer: StreamClient = await openStream(second.url, key, 'event', 'Consume', { topic: 'orders', offset });
    try {
      const published = await first.call('event', 'Publish', { topic: 'orders', message: { order: 42 } }, key);
      assert.equal(published.status, 200, JSON.stringify(published.body));
      await waitFor(() => consumer.messages.length >= 1, 'the event published on the first process to reach the second');
      assert.equal(consumer.messages.length, 1, JSON.stringify(consumer.messages));
      assert.equal(consumer.messages[0].id, published.body.id);
      assert.deepEqual(consumer.messages[0].message, { order: 42 });
      const kept = await second.call('event', 'Read', { topic: 'orders' }, key);
      assert.deepEqual(kept.body.events.map((event: { id: string }) => event.id), [published.body.id]);
    } finally {
      consumer.close();
      await consumer.closed;
    }
  });

  test('an mq message published on one process reaches a subscriber on the other', async () => {
    const subscriber = await openStream(second.url, key, 'mq', 'Subscribe', { topic: 'pings' });
    try {
      // mq keeps nothing: publish until the subscription on the second process is in place.
      let sent = 0;
      await waitForAsync(async () => {
        const published = await first.call('mq', 'Publish', { topic: 'pings', message: { n: ++sent } }, key);
        assert.equal(published.status, 200, JSON.stringify(published.body));
        return subscriber.messages.length > 0;
      }, 'a message from the first process to reach the subscriber on the second');
      assert.ok(subscriber.messages.every((message) => message.topic === 'pings'), JSON.stringify(subscriber.messages));
      const received: number[] = subscriber.messages.map((message) => message.message.n);
      assert.ok(received.every((n, i) => Number.isInteger(n) && (i === 0 || n === received[i - 1] + 1)), `in order: ${JSON.stringify(received)}`);
    } finally {
      subscriber.close();
      await subscriber.closed;
    }
  });

  test('a stream message sent through one process is listed through the other, kept on NATS rather than PostgreSQL', async () => {
    const sent = await first.call('stream', 'SendMessage', { channel: 'lobby', text: 'sent through the first process' }, key);
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const listed = await second.call('stream', 'ListMessages', { channel: 'lobby' }, key);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.deepEqual(
      listed.body.messages.map((message: { id: string; text: string }) => [message.id, message.text]),
      [[sent.body.id, 'sent through the first process']],
    );
    assert.deepEqual((await second.call('stream', 'ListChannels', {}, key)).body.channels.map((channel: { name: string }) => channel.name), ['lobby']);
    // Both processes share the PostgreSQL database too: the message is not there.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      assert.equal((await client.query('SELECT count(*)::int AS n FROM alto_stream_messages')).rows[0].n, 0);
    } finally {
      await client.end();
    }
  });

  test('a cache value set on one process is read on the other', async () => {
    const cache = (server: ServerProcess, endpoint: string, body: unknown) => server.call('cache', endpoint, body, key);
    assert.equal((await cache(first, 'Set', { key: 'greeting', value: 'hello', ttl: 600 })).status, 200);
    const read = await cache(second, 'Get', { key: 'greeting' });
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.equal(read.body.value, 'hello');
    assert.ok(read.body.ttl > 0 && read.body.ttl <= 600, `ttl ${read.body.ttl}`);
    // Counters add up across both.
    await cache(first, 'Increment', { key: 'visits', value: 2 });
    assert.equal((await cache(second, 'Increment', { key: 'visits', value: 3 })).body.value, 5);
    assert.equal((await cache(second, 'Delete', { key: 'greeting' })).status, 200);
    assert.equal((await cache(first, 'Get', { key: 'greeting' })).body.value, '');
  });
});
