/**
 * The `event` block's own logic: offsets, the wire schema's names and defaults, the message
 * size limit, and a consumer that ends when its caller goes away.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { silentLogger } from '../../kit/logger.js';
import { Fanout } from '../../store/events/fanout.js';
import { SqliteEventStore } from '../../store/events/sqlite.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { EventBlock, MAX_MESSAGE_BYTES, parseOffset, timestampOf } from './event.js';
import { AckRequest, ConsumeRequest, PublishRequest, ReadRequest, SetRetentionRequest } from './schema.js';

function issues(schema: { safeParse(input: unknown): { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } } }, input: unknown): string {
  const result = schema.safeParse(input);
  assert.equal(result.success, false, `expected ${JSON.stringify(input)} to be refused`);
  return result.error!.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
}

test('offsets are RFC 3339 times, to the millisecond; anything else is a clear 400', () => {
  assert.equal(parseOffset(''), undefined);
  assert.equal(parseOffset('2021-09-01T12:00:00Z'), Date.UTC(2021, 8, 1, 12));
  assert.equal(parseOffset('2021-09-01T12:00:00.123Z'), Date.UTC(2021, 8, 1, 12, 0, 0, 123));
  assert.equal(parseOffset('2021-09-01T12:00:00.123456789Z'), Date.UTC(2021, 8, 1, 12, 0, 0, 123), 'nanoseconds, as Go writes them');
  assert.equal(parseOffset('2021-09-01T14:00:00.5+02:00'), Date.UTC(2021, 8, 1, 12, 0, 0, 500));
  assert.equal(parseOffset(timestampOf(1_700_000_000_123)), 1_700_000_000_123, 'a consumed timestamp round-trips');
  for (const bad of ['yesterday', '2021-09-01', '1630497600', '2021-13-01T00:00:00Z', '2021-09-01T12:00:00']) {
    assert.throws(() => parseOffset(bad), (error: unknown) => {
      assert.ok(isAltoError(error) && error.status === 400);
      assert.match(error.detail, /^offset: .* is not an RFC 3339 time; use e\.g\. 2006-01-02T15:04:05\.999Z/);
      return true;
    });
  }
});

test('topic and group names: M3O-style names pass, the rest get a sentence', () => {
  for (const topic of ['user', 'user.signup', 'orders/created', 'a:b', 'A_b-9', 'x'.repeat(200)]) {
    assert.ok(PublishRequest.safeParse({ topic, message: {} }).success, topic);
  }
  assert.match(issues(PublishRequest, { message: {} }), /^topic: expected a string, the topic/);
  assert.match(issues(PublishRequest, { topic: '' }), /^topic: missing: name the topic, e\.g\. "user\.signup"/);
  assert.match(issues(PublishRequest, { topic: 'x'.repeat(201) }), /^topic: 201 characters; a topic has at most 200/);
  assert.match(issues(PublishRequest, { topic: 'has space' }), /^topic: "has space" is not a valid topic: use letters, digits and \. _ - : \//);
  assert.match(issues(PublishRequest, { topic: 'wild.*' }), /is not a valid topic/);
  assert.match(issues(ConsumeRequest, { topic: 't', group: 'a b' }), /^group: "a b" is not a valid group/);
  assert.match(issues(AckRequest, { topic: 't', id: 'x' }), /^group: expected a string, the group/);
  assert.match(issues(AckRequest, { topic: 't', group: 'g', id: '' }), /^id: missing/);
});

test("M3O's defaults: a zero means the default, numbers may come as strings, a missing message is {}", () => {
  assert.deepEqual(ReadRequest.parse({ topic: 't' }), { topic: 't', limit: 25, offset: 0 });
  assert.deepEqual(ReadRequest.parse({ topic: 't', limit: 0, offset: '5' }), { topic: 't', limit: 25, offset: 5 });
  assert.match(issues(ReadRequest, { topic: 't', limit: 1001 }), /^limit: must be at most 1000/);
  assert.match(issues(ReadRequest, { topic: 't', offset: -1 }), /^offset: must be at least 0/);
  assert.deepEqual(ConsumeRequest.parse({ topic: 't' }), {
    topic: 't',
    group: '',
    offset: '',
    autoAck: true,
    ackWait: 30,
    maxInFlight: 100,
  });
  assert.equal(ConsumeRequest.parse({ topic: 't', ackWait: 0 }).ackWait, 30);
  assert.match(issues(ConsumeRequest, { topic: 't', ackWait: 0.01 }), /^ackWait: must be at least 0\.1 seconds/);
  assert.deepEqual(PublishRequest.parse({ topic: 't' }).message, {});
  assert.deepEqual(PublishRequest.parse({ topic: 't', message: null }).message, {});
  assert.match(issues(PublishRequest, { topic: 't', message: 'text' }), /^message: expected a JSON object, the event to publish/);
  assert.match(issues(PublishRequest, { topic: 't', message: [1, 2] }), /^message: expected a JSON object/);
  assert.match(issues(SetRetentionRequest, { maxAge: 0 }), /^maxAge: must be at least 1 second/);
  assert.match(issues(SetRetentionRequest, { maxEvents: 10_000_001 }), /^maxEvents: must be at most 10000000/);
});

test('a message over the size limit is a 413 and is not stored', async () => {
  const db = openSqlite(':memory:');
  const block = new EventBlock(new SqliteEventStore(db), silentLogger());
  await assert.rejects(block.publish('p/dev', 't', { big: 'x'.repeat(MAX_MESSAGE_BYTES) }), (error: unknown) => {
    assert.ok(isAltoError(error) && error.status === 413);
    assert.match(error.detail, /over the 262144-byte limit/);
    return true;
  });
  assert.deepEqual(await block.read('p/dev', 't', 0, 10), []);
  await block.publish('p/dev', 't', { big: 'x'.repeat(MAX_MESSAGE_BYTES - 20) });
  assert.equal((await block.read('p/dev', 't', 0, 10)).length, 1);
  await block.close();
  db.close();
});

test('a consumer ends when its caller goes away, and stops listening', async () => {
  const db = openSqlite(':memory:');
  const store = new SqliteEventStore(db);
  const block = new EventBlock(store, silentLogger());
  const caller = new AbortController();
  const consumer = block.consume('p/dev', { topic: 't', group: '', offset: '', autoAck: true, ackWait: 30, maxInFlight: 100 }, caller.signal);
  const first = consumer.next(); // opens the consumer and waits for an event
  const listening = () => (store as unknown as { fanout: Fanout }).fanout.count();
  await new Promise<void>((resolve) => {
    const check = () => (listening() === 1 ? resolve() : setTimeout(check, 1));
    check();
  });
  await block.publish('p/dev', 't', { n: 1 });
  const delivered = await first;
  assert.equal(delivered.done, false);
  assert.deepEqual(delivered.value?.message, { n: 1 });
  assert.equal(delivered.value?.deliveries, 1);
  assert.equal(typeof delivered.value?.timestamp, 'string');
  const pending = consumer.next();
  caller.abort();
  assert.deepEqual(await pending, { done: true, value: undefined });
  assert.equal(listening(), 0);
  await block.close();
  db.close();
});
