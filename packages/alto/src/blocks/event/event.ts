/**
 * @module blocks/event/event
 * The `event` block's logic over the event store port: message size, offsets (RFC 3339 times),
 * the wire shape of an event, consumers tied to the caller's connection, retention in the
 * units the API speaks, and the timer that applies retention on the embedded log.
 */
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { EventStore, JsonObject, StoredEvent } from '../../store/events/port.js';

/** Largest message, as JSON: well under NATS's default 1 MiB payload, with room for headers. */
export const MAX_MESSAGE_BYTES = 256 * 1024;
/** How often the embedded log applies retention. */
const RETENTION_INTERVAL_MS = 60_000;

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * An RFC 3339 time (M3O's `2006-01-02T15:04:05.999Z07:00`) in milliseconds since the epoch;
 * digits beyond the millisecond are dropped (so the event at that time is included).
 */
export function parseOffset(offset: string): number | undefined {
  if (offset === '') return undefined;
  const trimmed = offset.trim();
  const millis = RFC3339.test(trimmed) ? Date.parse(trimmed.replace(/(\.\d{3})\d+/, '$1')) : NaN;
  if (Number.isNaN(millis)) {
    throw errors.badRequest(
      `offset: ${JSON.stringify(offset.slice(0, 60))} is not an RFC 3339 time; use e.g. 2006-01-02T15:04:05.999Z ` +
        'or a timestamp from a consumed event',
    );
  }
  return millis;
}

export function timestampOf(millis: number): string {
  return new Date(millis).toISOString();
}

export interface ConsumeSettings {
  topic: string;
  group: string;
  offset: string;
  autoAck: boolean;
  /** Seconds. */
  ackWait: number;
  maxInFlight: number;
}

export class EventBlock {
  private retentionTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly store: EventStore,
    private readonly log: Logger,
  ) {}

  /** Applies retention now and then (the embedded log; JetStream does it itself). */
  startRetention(intervalMs = RETENTION_INTERVAL_MS): void {
    if (this.store.backend !== 'sqlite') return;
    const enforce = () => {
      this.store.enforceRetention().then(
        (removed) => removed > 0 && this.log.debug({ removed }, 'events past their retention removed'),
        (error: unknown) => this.log.error({ err: error }, 'applying event retention failed'),
      );
    };
    enforce();
    this.retentionTimer = setInterval(enforce, intervalMs);
    this.retentionTimer.unref();
  }

  async publish(namespace: string, topic: string, message: JsonObject): Promise<{ id: string }> {
    const bytes = Buffer.byteLength(JSON.stringify(message));
    if (bytes > MAX_MESSAGE_BYTES) {
      throw errors.payloadTooLarge(
        `message: ${bytes} bytes of JSON is over the ${MAX_MESSAGE_BYTES}-byte limit; publish a reference (a file or space URL) instead`,
      );
    }
    return this.store.publish(namespace, topic, message);
  }

  async read(namespace: string, topic: string, offset: number, limit: number) {
    const events = await this.store.read(namespace, topic, { offset, limit });
    return events.map((event) => ({ id: event.id, message: event.message, timestamp: timestampOf(event.timestamp) }));
  }

  /**
   * Yields the topic's events in the wire shape until `signal` aborts (the client left) or the
   * consumer is closed by the store. The consumer is in place before the first one is awaited.
   */
  async *consume(namespace: string, settings: ConsumeSettings, signal: AbortSignal) {
    const since = parseOffset(settings.offset);
    const consumer = await this.store.consume(namespace, settings.topic, {
      group: settings.group || undefined,
      since,
      autoAck: settings.autoAck,
      ackWaitMs: Math.round(settings.ackWait * 1000),
      maxInFlight: settings.maxInFlight,
    });
    const stop = () => void consumer.close();
    signal.addEventListener('abort', stop, { once: true });
    try {
      if (signal.aborted) return;
      for await (const delivery of consumer) yield wireEvent(settings.topic, delivery);
    } finally {
      signal.removeEventListener('abort', stop);
      await consumer.close();
    }
  }

  async ack(namespace: string, topic: string, group: string, id: string): Promise<boolean> {
    return this.store.ack(namespace, topic, group, id);
  }

  async retention(namespace: string): Promise<{ maxAge: number; maxEvents: number }> {
    const policy = await this.store.retention(namespace);
    return { maxAge: Math.round(policy.maxAgeMs / 1000), maxEvents: policy.maxEventsPerTopic };
  }

  async setRetention(namespace: string, change: { maxAge?: number; maxEvents?: number }) {
    const current = await this.store.retention(namespace);
    await this.store.setRetention(namespace, {
      maxAgeMs: change.maxAge !== undefined ? change.maxAge * 1000 : current.maxAgeMs,
      maxEventsPerTopic: change.maxEvents ?? current.maxEventsPerTopic,
    });
    await this.store.enforceRetention(namespace); // at once, not at the next round of the timer
    return this.retention(namespace);
  }

  async close(): Promise<void> {
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    await this.store.close();
  }
}

function wireEvent(topic: string, delivery: StoredEvent & { deliveries: number }) {
  return {
    id: delivery.id,
    topic,
    message: delivery.message,
    timestamp: timestampOf(delivery.timestamp),
    deliveries: delivery.deliveries,
  };
}
