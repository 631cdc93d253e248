/**
 * The `stream` block's store and schema with a controlled clock: M3O's limits (512
 * characters, 1000 messages per channel, 1000 channels, 24 hours), order, isolation and
 * project deletion.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { ListMessagesRequest, SendMessageRequest } from './schema.js';
import { SqliteStreamStore } from '../../store/streams/sqlite.js';
import { LIMITS, Streams } from './stream.js';

function fixture() {
  const db = openSqlite(':memory:');
  const clock = { now: 1_700_000_000_000 };
  const store = new SqliteStreamStore(db);
  return { db, clock, store, streams: new Streams(store, () => clock.now) };
}

test('messages list latest first by limit, in chronological order; a channel keeps its latest 1000', async () => {
  const { streams, store, db } = fixture();
  await streams.createChannel('p/dev', 'general', 'The channel for all things');
  for (let i = 0; i < 1005; i++) await streams.sendMessage('p/dev', 'general', `message ${i}`);
  const latest = await streams.listMessages('p/dev', 'general', 3);
  assert.deepEqual(latest.map((message) => message.text), ['message 1002', 'message 1003', 'message 1004']);
  const all = await streams.listMessages('p/dev', 'general', 1000);
  assert.equal(all.length, 1000);
  assert.equal(all[0].text, 'message 5', 'the oldest five were dropped');
  assert.equal((await store.listMessages('p/dev', 'general', 0, 2000)).length, 1000, 'the dropped ones are gone from the store');
  assert.deepEqual(await streams.listMessages('p/dev', 'nowhere', 25), []);
  db.close();
});

test('channels: created explicitly or by a first message, described, listed by name, kept apart', async () => {
  const { streams, db } = fixture();
  await streams.createChannel('p/dev', 'random', 'Anything goes');
  await streams.sendMessage('p/dev', 'general', 'hello');
  await streams.createChannel('p/dev', 'random', 'Anything at all');
  await streams.sendMessage('q/dev', 'general', 'other project');
  assert.deepEqual(
    (await streams.listChannels('p/dev')).map((channel) => [channel.name, channel.description]),
    [
      ['general', ''],
      ['random', 'Anything at all'],
    ],
  );
  assert.deepEqual((await streams.listMessages('q/dev', 'general', 25)).map((message) => message.text), ['other project']);
  await streams.deleteProject('p');
  assert.deepEqual(await streams.listChannels('p/dev'), []);
  assert.equal((await streams.listChannels('q/dev')).length, 1);
  db.close();
});

test('after 24 hours messages and quiet channels are gone; a project has at most 1000 live channels', async () => {
  const { streams, store, clock, db } = fixture();
  await streams.sendMessage('p/dev', 'old', 'yesterday');
  clock.now += LIMITS.ttlMs - 1000;
  await streams.sendMessage('p/dev', 'fresh', 'today');
  clock.now += 1000;
  assert.deepEqual(await streams.listMessages('p/dev', 'old', 25), []);
  assert.deepEqual((await streams.listChannels('p/dev')).map((channel) => channel.name), ['fresh']);
  assert.ok(await streams.purgeExpired() >= 2);
  assert.deepEqual((await store.listChannels('p/dev', 0)).map((channel) => channel.name), ['fresh'], 'the idle channel is gone from the store');

  for (let i = 1; i < LIMITS.maxChannels; i++) await streams.createChannel('p/dev', `c${i}`, '');
  await assert.rejects(streams.createChannel('p/dev', 'one-too-many', ''), (error: unknown) => {
    assert.ok(isAltoError(error) && error.status === 400);
    assert.match(error.detail, /has 1000 active channels, the most it may have/);
    return true;
  });
  await assert.rejects(streams.sendMessage('p/dev', 'one-too-many', 'hi'), /1000 active channels/);
  await streams.sendMessage('p/dev', 'c1', 'an existing channel still works');
  await streams.sendMessage('q/dev', 'elsewhere', 'another project has its own count');
  db.close();
});

test("schema: M3O's limits and defaults, with sentences", async () => {
  assert.equal(SendMessageRequest.safeParse({ channel: 'general', text: 'x'.repeat(512) }).success, true);
  assert.equal(SendMessageRequest.safeParse({ channel: 'general', text: '🚀'.repeat(512) }).success, true, 'characters, not bytes');
  const tooLong = SendMessageRequest.safeParse({ channel: 'general', text: 'x'.repeat(513) });
  assert.match(tooLong.error!.issues[0].message, /longer than 512 characters/);
  assert.match(SendMessageRequest.safeParse({ channel: '', text: 'x' }).error!.issues[0].message, /^missing: name the channel/);
  assert.match(SendMessageRequest.safeParse({ channel: 'general', text: '' }).error!.issues[0].message, /^missing: the message text/);
  assert.equal(ListMessagesRequest.parse({ channel: 'general' }).limit, 25);
  assert.equal(ListMessagesRequest.parse({ channel: 'general', limit: 0 }).limit, 25);
  assert.equal(ListMessagesRequest.safeParse({ channel: 'general', limit: 1001 }).success, false);
});
