/**
 * @module blocks/mq/mq
 * The `mq` block's logic: fire-and-forget messages over the message bus port. Nothing is kept,
 * so a subscriber that reads slower than messages come cannot be caught up later: each has a
 * bounded queue, and one that overflows it is disconnected with a 429 that says so (the edge
 * closes the socket with that reason) rather than silently missing messages or growing memory.
 */
import { errors } from '../../kit/errors.js';
import type { JsonObject, MessageBus } from '../../store/events/port.js';

/** Largest message, as JSON (the same as an event's). */
export const MAX_MESSAGE_BYTES = 256 * 1024;

export interface QueueLimits {
  /** Messages waiting for one subscriber before it is disconnected. */
  maxMessages: number;
  /** Bytes of JSON waiting for one subscriber before it is disconnected. */
  maxBytes: number;
}

export const DEFAULT_QUEUE_LIMITS: QueueLimits = { maxMessages: 1000, maxBytes: 16 * 1024 * 1024 };

export class MqBlock {
  private subscriptions = 0;

  constructor(
    readonly bus: MessageBus,
    private readonly limits: QueueLimits = DEFAULT_QUEUE_LIMITS,
  ) {}

  /** Subscribers listening now, on this server. */
  get activeSubscriptions(): number {
    return this.subscriptions;
  }

  async publish(namespace: string, topic: string, message: JsonObject): Promise<void> {
    const bytes = Buffer.byteLength(JSON.stringify(message));
    if (bytes > MAX_MESSAGE_BYTES) {
      throw errors.payloadTooLarge(`message: ${bytes} bytes of JSON is over the ${MAX_MESSAGE_BYTES}-byte limit`);
    }
    await this.bus.publish(namespace, topic, message);
  }

  /**
   * Yields every message published on the topic from when the subscription is in place, in
   * order, until `signal` aborts; throws 429 if the caller falls too far behind.
   */
  async *subscribe(namespace: string, topic: string, signal: AbortSignal): AsyncGenerator<{ topic: string; message: JsonObject }> {
    const queue: { message: JsonObject; bytes: number }[] = [];
    let head = 0;
    let queuedBytes = 0;
    let overflowed = false;
    let wake: (() => void) | undefined;
    const { maxMessages, maxBytes } = this.limits;
    const subscription = await this.bus.subscribe(namespace, topic, (message) => {
      if (overflowed) return;
      const bytes = Buffer.byteLength(JSON.stringify(message));
      if (queue.length - head >= maxMessages || queuedBytes + bytes > maxBytes) overflowed = true;
      else {
        queue.push({ message, bytes });
        queuedBytes += bytes;
      }
      wake?.();
    });
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    this.subscriptions++;
    try {
      while (!signal.aborted) {
        if (overflowed) {
          throw errors.tooManyRequests(
            `slow subscriber: more than ${maxMessages} messages (or ${maxBytes} bytes) waited for this subscriber, ` +
              'so it was disconnected and missed some; read faster, or use the event service, which keeps history',
          );
        }
        if (head < queue.length) {
          const next = queue[head++];
          queuedBytes -= next.bytes;
          if (head > 1024 && head * 2 > queue.length) queue.splice(0, head), (head = 0); // reclaim the front
          yield { topic, message: next.message };
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.subscriptions--;
      signal.removeEventListener('abort', onAbort);
      subscription.close();
    }
  }

  async close(): Promise<void> {
    await this.bus.close();
  }
}
