/**
 * The `stream` block through the real server: M3O's documented examples through M3O's own
 * client, M3O's limits as clear 400s, two projects kept apart, and project deletion; with
 * `--store postgres://...` the channels and messages in PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import pg from 'pg';
import { createTestDatabase } from '../src/store/postgres/test-database.js';
import { startInProcess } from './harness.js';

interface Message {
  id: string;
  text: string;
  timestamp: string;
  channel: string;
  metadata: Record<string, string>;
}

describe('stream', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let key: string;

  before(async () => {
    alto = await startInProcess();
    key = await alto.projectKey('chat', ['stream']);
  });
  after(() => alto.close());

  test("M3O's documented examples through M3O's client", async () => {
    const client = new Client({ token: key, address: `${alto.url}/` });
    const started = Date.now();
    assert.deepEqual(await client.call('stream', 'CreateChannel', { name: 'general', description: 'The channel for all things' }), {});
    const sent = await client.call<object, { id: string }>('stream', 'SendMessage', {
      channel: 'general',
      text: 'Hey checkout this tweet https://twitter.com/m3oservices/status/1455291054295498752',
    });
    assert.match(sent.id, /^[0-9a-f-]{36}$/);
    await client.call('stream', 'SendMessage', { channel: 'general', text: 'second' });
    const listed = await client.call<object, { channel: string; messages: Message[] }>('stream', 'ListMessages', { channel: 'general' });
    assert.equal(listed.channel, 'general');
    assert.deepEqual(
      listed.messages.map((message) => [message.text, message.channel, message.metadata]),
      [
        ['Hey checkout this tweet https://twitter.com/m3oservices/status/1455291054295498752', 'general', {}],
        ['second', 'general', {}],
      ],
    );
    assert.equal(listed.messages[0].id, sent.id);
    assert.ok(Date.parse(listed.messages[0].timestamp) >= started - 1000);
    const latest = await client.call<object, { messages: Message[] }>('stream', 'ListMessages', { channel: 'general', limit: 1 });
    assert.deepEqual(latest.messages.map((message) => message.text), ['second'], 'the latest, by limit');
    const channels = await client.call<object, { channels: { name: string; description: string; last_active: string }[] }>(
      'stream',
      'ListChannels',
      {},
    );
    assert.deepEqual(channels.channels.map((channel) => [channel.name, channel.description]), [['general', 'The channel for all things']]);
    assert.ok(Date.parse(channels.channels[0].last_active) >= started - 1000);
    assert.deepEqual(await client.call('stream', 'ListMessages', { channel: 'nobody-here' }), { channel: 'nobody-here', messages: [] });
  });

  test("M3O's limits are clear 400s", async () => {
    const tooLong = await alto.call('stream', 'SendMessage', { channel: 'general', text: 'x'.repeat(513) }, key);
    assert.equal(tooLong.status, 400);
    assert.match(tooLong.body.detail, /^text: longer than 512 characters/);
    const blank = await alto.call('stream', 'SendMessage', { channel: '', text: 'hi' }, key);
    assert.equal(blank.status, 400);
    assert.match(blank.body.detail, /^channel: missing: name the channel/);
    const odd = await alto.call('stream', 'CreateChannel', { name: '#general' }, key);
    assert.equal(odd.status, 400);
    assert.match(odd.body.detail, /^name: "#general" is not a valid channel name/);
    const limit = await alto.call('stream', 'ListMessages', { channel: 'general', limit: 1001 }, key);
    assert.equal(limit.status, 400);
    assert.match(limit.body.detail, /^limit: must be at most 1000/);
  });

  test('two projects never see each other; deleting a project deletes its channels', async () => {
    const other = await alto.projectKey('other', ['stream']);
    await alto.call('stream', 'SendMessage', { channel: 'general', text: 'from other' }, other);
    const mine = (await alto.call('stream', 'ListMessages', { channel: 'general', limit: 100 }, key)).body.messages as Message[];
    assert.ok(!mine.some((message) => message.text === 'from other'));
    assert.deepEqual(
      ((await alto.call('stream', 'ListMessages', { channel: 'general' }, other)).body.messages as Message[]).map((m) => m.text),
      ['from other'],
    );
    const rows = () => (alto.alto.platform.stores.sqlite.prepare('SELECT COUNT(*) AS n FROM stream_messages').get() as { n: number }).n;
    const before = rows();
    assert.equal((await alto.call('projects', 'Delete', { name: 'other' })).status, 200);
    assert.equal(rows(), before - 1);
  });
});

test('with --store postgres the channels and messages live in PostgreSQL', async () => {
  const database = await createTestDatabase('stream_e2e');
  let onPostgres: Awaited<ReturnType<typeof startInProcess>> | undefined;
  const direct = new pg.Client({ connectionString: database.url });
  try {
    onPostgres = await startInProcess({ postgresUrl: database.url });
    const key = await onPostgres.projectKey('pg', ['stream']);
    assert.equal((await onPostgres.call('stream', 'CreateChannel', { name: 'general', description: 'on PostgreSQL' }, key)).status, 200);
    for (const text of ['one', 'two', 'three']) {
      assert.equal((await onPostgres.call('stream', 'SendMessage', { channel: 'general', text }, key)).status, 200);
    }
    const listed = await onPostgres.call('stream', 'ListMessages', { channel: 'general', limit: 2 }, key);
    assert.deepEqual(listed.body.messages.map((message: { text: string }) => message.text), ['two', 'three']);
    await direct.connect();
    const messages = await direct.query<{ text: string }>("SELECT text FROM alto_stream_messages WHERE channel = 'general' ORDER BY seq");
    assert.deepEqual(messages.rows.map((row) => row.text), ['one', 'two', 'three']);
    const channels = await direct.query('SELECT name, description FROM alto_stream_channels');
    assert.deepEqual(channels.rows, [{ name: 'general', description: 'on PostgreSQL' }]);
  } finally {
    await direct.end().catch(() => undefined);
    await onPostgres?.close();
    await database.drop();
  }
});
