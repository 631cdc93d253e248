/**
 * The `mq` block's logic on the in-process bus: order, the size limit, the bounded queue that
 * disconnects a subscriber that falls behind, and clean unsubscription.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { InProcessMessageBus } from '../../store/events/fanout.js';
import { MAX_MESSAGE_BYTES, MqBlock } from './mq.js';

test('a subscriber gets what is published while it listens, in order', async () => {
  const mq = new MqBlock(new InProcessMessageBus());
  await mq.publish('p/dev', 'news', { n: -1 }); // nobody listens: gone
  const caller = new AbortController();
  const subscription = mq.subscribe('p/dev', 'news', caller.signal);
  const first = subscription.next(); // subscribes, then waits
  await new Promise((resolve) => setImmediate(resolve));
  for (let n = 0; n < 5; n++) await mq.publish('p/dev', 'news', { n });
  const received = [(await first).value];
  for (let n = 1; n < 5; n++) received.push((await subscription.next()).value);
  assert.deepEqual(received, [0, 1, 2, 3, 4].map((n) => ({ topic: 'news', message: { n } })));
  caller.abort();
  assert.equal((await subscription.next()).done, true);
});

test('a subscriber that falls more than the queue behind is disconnected with a 429 that says why', async () => {
  const bus = new InProcessMessageBus();
  const mq = new MqBlock(bus, { maxMessages: 10, maxBytes: 1 << 20 });
  const slow = mq.subscribe('p/dev', 'firehose', new AbortController().signal);
  const fastCaller = new AbortController();
  const fastReceived: unknown[] = [];
  const fast = (async () => {
    for await (const item of mq.subscribe('p/dev', 'firehose', fastCaller.signal)) fastReceived.push(item.message.n);
  })();
  const slowFirst = slow.next(); // subscribes, takes the first message, then reads nothing more
  await new Promise((resolve) => setImmediate(resolve));
  for (let n = 0; n < 20; n++) {
    await mq.publish('p/dev', 'firehose', { n });
    await new Promise((resolve) => setImmediate(resolve)); // the fast one reads as messages come
  }
  assert.deepEqual((await slowFirst).value?.message, { n: 0 }, 'what came first was delivered');
  await assert.rejects(slow.next(), (error: unknown) => {
    assert.ok(isAltoError(error) && error.status === 429);
    assert.match(error.detail, /^slow subscriber: more than 10 messages .* waited for this subscriber, so it was disconnected/);
    return true;
  });
  assert.deepEqual(fastReceived, Array.from({ length: 20 }, (_, n) => n), 'the subscriber reading as it goes got every one');
  fastCaller.abort();
  await fast;
  await mq.publish('p/dev', 'firehose', { after: true }); // nobody left listening: no error
});

test('a message over the size limit is a 413', async () => {
  const mq = new MqBlock(new InProcessMessageBus());
  await assert.rejects(mq.publish('p/dev', 't', { big: 'x'.repeat(MAX_MESSAGE_BYTES) }), (error: unknown) => {
    assert.ok(isAltoError(error) && error.status === 413);
    return true;
  });
});
