/**
 * @module store/events/port
 * The event storage ports, per tenant namespace:
 * - `EventStore`: a durable, ordered log per topic, read as history or consumed live. A consumer
 *   without a group sees every event from where it starts; consumers sharing a group compete for
 *   the events (each goes to one of them) from a cursor the store keeps, so a group resumes where
 *   it stopped, across restarts. A delivery awaits an acknowledgement; one not acknowledged within
 *   the ack wait goes out again (at least once). Retention (age, events per topic) is set per
 *   namespace. Adapters: `sqlite.ts` (embedded log plus in-process fan-out) and `nats.ts`
 *   (NATS JetStream: one stream per namespace, one durable consumer per group).
 * - `MessageBus`: fire-and-forget publish/subscribe, nothing kept. Adapters: `InProcessMessageBus`
 *   (`fanout.ts`) and `NatsMessageBus` (core NATS subjects, so every replica sees every message).
 * Every method takes the namespace first, so one project can never name another's topics.
 */

export type JsonObject = Record<string, unknown>;

/** Topic (and group) names: what every adapter can carry in a subject or a key as they are. */
export const TOPIC_PATTERN = /^[A-Za-z0-9_\-.:/]+$/;
export const MAX_TOPIC_LENGTH = 200;
export const MAX_GROUP_LENGTH = 100;
export const NAME_RULE = 'letters, digits and . _ - : /';

export interface StoredEvent {
  /** Unique id of the event (a UUID), the same in history and in deliveries. */
  id: string;
  topic: string;
  message: JsonObject;
  /** When the event was stored, in milliseconds since the epoch; never decreases along a topic. */
  timestamp: number;
}

export interface Delivery extends StoredEvent {
  /** 1 for the first delivery to the group; more when redelivered after an ack wait ran out. */
  deliveries: number;
}

export interface RetentionPolicy {
  /** Events older than this are removed. */
  maxAgeMs: number;
  /** Only the newest this many events of each topic are kept. */
  maxEventsPerTopic: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = { maxAgeMs: 7 * 24 * 3600 * 1000, maxEventsPerTopic: 100_000 };
export const RETENTION_LIMITS = {
  minAgeMs: 1000,
  maxAgeMs: 365 * 24 * 3600 * 1000,
  maxEventsPerTopic: 10_000_000,
} as const;

export interface ConsumeOptions {
  /** Consumers with the same group share the events; without one, a consumer sees them all. */
  group?: string;
  /**
   * Where to start, in milliseconds since the epoch: the first event stored at or after it.
   * Default: only events published from now on. For a group it applies when the group is new;
   * an existing group resumes from its cursor whatever this says.
   */
  since?: number;
  /**
   * true: a delivery counts as acknowledged once the consumer moves on to the next one (M3O's
   * behaviour). false: it waits for `ack()`; only with a group, whose cursor remembers it.
   */
  autoAck: boolean;
  /** How long a group delivery may go unacknowledged before it is delivered again. */
  ackWaitMs: number;
  /** Most unacknowledged deliveries this consumer holds at once (manual acks). */
  maxInFlight: number;
}

/** An open consumer: iterate it for deliveries; `close()` ends the iteration. */
export interface EventConsumer extends AsyncIterable<Delivery> {
  close(): Promise<void>;
}

export interface EventStore {
  readonly backend: 'sqlite' | 'nats';
  /** Appends one event to the topic's log and wakes its consumers; returns the event's id. */
  publish(namespace: string, topic: string, message: JsonObject): Promise<{ id: string }>;
  /** Retained events, oldest first, skipping `offset` of them. */
  read(namespace: string, topic: string, page: { offset: number; limit: number }): Promise<StoredEvent[]>;
  /**
   * Opens a consumer; resolves once it is in place, so an event published after that is
   * delivered to it (or, with a group, to one member of the group).
   */
  consume(namespace: string, topic: string, options: ConsumeOptions): Promise<EventConsumer>;
  /**
   * Acknowledges a group delivery by event id. False when the event awaits no acknowledgement
   * there (already acknowledged, unknown, or, on NATS, delivered by an earlier server process).
   */
  ack(namespace: string, topic: string, group: string, id: string): Promise<boolean>;
  /** The namespace's topics that hold retained events, sorted: for a project's export. */
  listTopics(namespace: string): Promise<string[]>;
  retention(namespace: string): Promise<RetentionPolicy>;
  setRetention(namespace: string, policy: RetentionPolicy): Promise<void>;
  /**
   * Applies retention now, to one namespace or to all (the embedded adapter's timer calls it);
   * returns how many events were removed. JetStream applies its limits itself.
   */
  enforceRetention(namespace?: string): Promise<number>;
  /** Removes every topic, group and setting of a project's environments (`${projectId}/...`). */
  deleteProject(projectId: string): Promise<void>;
  /** Ends open consumers; leaves the shared connection open. */
  close(): Promise<void>;
}

export interface BusSubscription {
  close(): void;
}

export interface MessageBus {
  readonly backend: 'memory' | 'nats';
  publish(namespace: string, topic: string, message: JsonObject): Promise<void>;
  /** Resolves once messages published from then on reach `listener`, in order. */
  subscribe(namespace: string, topic: string, listener: (message: JsonObject) => void): Promise<BusSubscription>;
  close(): Promise<void>;
}

/** The one sentence every adapter uses for a manual-ack consumer without a group. */
export const ACK_NEEDS_GROUP = 'autoAck: false needs a group: acknowledgements name the group whose cursor keeps the event';
