/**
 * @module store/events/nats
 * The scale-out adapters on NATS. Events: one JetStream stream per namespace
 * (`ALTO_EVENTS_<namespace>`, subjects `alto.events.<namespace>.<topic>`, file storage), whose
 * limits are the namespace's retention (max age, max messages per subject = per topic), so the
 * server enforces it. A consumer without a group is an ordered consumer; a group is a durable
 * pull consumer with explicit acks and the ack wait, so JetStream itself shares the events among
 * the members and redelivers what is not acknowledged, wherever the members run. Messages
 * (`mq`): plain NATS subjects `alto.mq.<namespace>.<topic>`, nothing kept.
 *
 * Names become subject tokens with every byte outside [A-Za-z0-9-] written as `_XX`, so no
 * namespace or topic can reach into another's subjects, and a project's streams share the
 * prefix of its encoded id.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy as StreamRetention,
  StorageType,
  nanos,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type StreamConfig,
} from 'nats';
import { errors } from '../../kit/errors.js';
import {
  ACK_NEEDS_GROUP,
  DEFAULT_RETENTION,
  type BusSubscription,
  type ConsumeOptions,
  type Delivery,
  type EventConsumer,
  type EventStore,
  type JsonObject,
  type MessageBus,
  type RetentionPolicy,
  type StoredEvent,
} from './port.js';

const STREAM_PREFIX = 'ALTO_EVENTS_';
/** Messages a group member pulls at once when acks are automatic. */
const GROUP_BATCH = 16;
/** Messages an ordered consumer keeps buffered ahead of its reader. */
const SOLO_BUFFER = 128;
/**
 * How long one group pull request waits on a quiet topic before the next one is sent: short,
 * so none outlives its member by long (see NatsGroupConsumer).
 */
const PULL_EXPIRES_MS = 2000;
/** JetStream's window for dropping a re-sent publish with the same id (capped by max age). */
const DUPLICATE_WINDOW_MS = 120_000;
/** Deliveries a group may have unacknowledged at once, over all its members. */
const GROUP_MAX_ACK_PENDING = 10_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A subject token (and stream-name part) for any text: bytes outside [A-Za-z0-9-] as `_XX`. */
export function subjectToken(text: string): string {
  let token = '';
  for (const byte of encoder.encode(text)) {
    const char = String.fromCharCode(byte);
    token += /[A-Za-z0-9-]/.test(char) ? char : `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return token;
}

/** The text `subjectToken` wrote. */
function subjectText(token: string): string {
  const bytes: number[] = [];
  for (let index = 0; index < token.length; index++) {
    if (token[index] === '_') {
      bytes.push(parseInt(token.slice(index + 1, index + 3), 16));
      index += 2;
    } else bytes.push(token.charCodeAt(index));
  }
  return decoder.decode(Uint8Array.from(bytes));
}

function isNotFound(error: unknown): boolean {
  return /not found/i.test((error as Error)?.message ?? '');
}

function isAlreadyInUse(error: unknown): boolean {
  return /already in use|already exists/i.test((error as Error)?.message ?? '');
}

function policyConfig(policy: RetentionPolicy): Partial<StreamConfig> {
  return {
    max_age: nanos(policy.maxAgeMs),
    max_msgs_per_subject: policy.maxEventsPerTopic,
    duplicate_window: nanos(Math.min(DUPLICATE_WINDOW_MS, policy.maxAgeMs)),
  };
}

interface InFlight {
  msg: JsMsg;
  consumer: NatsGroupConsumer;
  deadline: number;
}

export class NatsEventStore implements EventStore {
  readonly backend = 'nats';
  private readonly streams = new Map<string, Promise<void>>();
  private readonly consumers = new Set<NatsGroupConsumer | NatsSoloConsumer>();
  /** Group deliveries handed out by this process and not yet acknowledged, by event. */
  readonly inFlight = new Map<string, InFlight>();

  private constructor(
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
  ) {}

  static async open(nc: NatsConnection): Promise<NatsEventStore> {
    return new NatsEventStore(await nc.jetstreamManager(), nc.jetstream());
  }

  static streamName(namespace: string): string {
    return STREAM_PREFIX + subjectToken(namespace);
  }

  static subject(namespace: string, topic: string): string {
    return `alto.events.${subjectToken(namespace)}.${subjectToken(topic)}`;
  }

  static inFlightKey(namespace: string, topic: string, group: string, id: string): string {
    return [namespace, topic, group, id].join('\u0000');
  }

  /** Creates the namespace's stream (with the default retention) unless it exists. */
  private ensureStream(namespace: string): Promise<void> {
    let ready = this.streams.get(namespace);
    if (!ready) {
      ready = this.createStream(namespace, DEFAULT_RETENTION);
      this.streams.set(namespace, ready);
      ready.catch(() => this.streams.delete(namespace));
    }
    return ready;
  }

  private async createStream(namespace: string, policy: RetentionPolicy): Promise<void> {
    const name = NatsEventStore.streamName(namespace);
    try {
      await this.jsm.streams.info(name);
      return;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    try {
      await this.jsm.streams.add({
        name,
        subjects: [`alto.events.${subjectToken(namespace)}.*`],
        storage: StorageType.File,
        retention: StreamRetention.Limits,
        discard: DiscardPolicy.Old,
        num_replicas: 1,
        ...policyConfig(policy),
      });
    } catch (error) {
      // Another process created it between our look and our add: that is what we wanted.
      if (!isAlreadyInUse(error)) throw error;
    }
  }

  async publish(namespace: string, topic: string, message: JsonObject): Promise<{ id: string }> {
    await this.ensureStream(namespace);
    const id = randomUUID();
    const data = encoder.encode(JSON.stringify(message));
    const subject = NatsEventStore.subject(namespace, topic);
    try {
      await this.js.publish(subject, data, { msgID: id });
    } catch (error) {
      // The stream went away under us (deleted by hand, or the project was deleted and
      // recreated): make it again, once. The same id lets JetStream drop a double.
      if (!/no responders|not found/i.test((error as Error).message)) throw error;
      this.streams.delete(namespace);
      await this.ensureStream(namespace);
      await this.js.publish(subject, data, { msgID: id });
    }
    return { id };
  }

  async read(namespace: string, topic: string, page: { offset: number; limit: number }): Promise<StoredEvent[]> {
    const name = NatsEventStore.streamName(namespace);
    const subject = NatsEventStore.subject(namespace, topic);
    let total: number;
    try {
      const info = await this.jsm.streams.info(name, { subjects_filter: subject });
      total = info.state.subjects?.[subject] ?? 0;
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const wanted = Math.min(page.limit, total - page.offset);
    if (wanted <= 0) return [];
    // JetStream has no "n-th message of a subject": an ordered consumer walks the topic from
    // its first event, skipping `offset`. It stops as soon as the page is full or the topic ends.
    // (Without a deliver policy an ordered consumer starts at the stream's first sequence.)
    const consumer = await this.js.consumers.get(name, { filterSubjects: subject });
    const events: StoredEvent[] = [];
    try {
      const messages = await consumer.fetch({ max_messages: page.offset + wanted, expires: 5000 });
      let index = 0;
      for await (const msg of messages) {
        if (index++ >= page.offset) events.push(toEvent(topic, msg));
        if (events.length >= wanted || msg.info.pending === 0) {
          messages.stop();
          break;
        }
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
    return events;
  }

  async consume(namespace: string, topic: string, options: ConsumeOptions): Promise<EventConsumer> {
    if (!options.autoAck && !options.group) throw errors.badRequest(ACK_NEEDS_GROUP);
    await this.ensureStream(namespace);
    const name = NatsEventStore.streamName(namespace);
    const subject = NatsEventStore.subject(namespace, topic);
    const start =
      options.since === undefined
        ? { deliver_policy: DeliverPolicy.New }
        : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(options.since).toISOString() };
    if (!options.group) {
      const ordered = await this.js.consumers.get(name, { filterSubjects: subject, ...start });
      const messages = await ordered.consume({ max_messages: SOLO_BUFFER });
      const consumer = new NatsSoloConsumer(this, topic, ordered, messages);
      this.consumers.add(consumer);
      return consumer;
    }
    const durable = durableName(topic, options.group);
    const retention = await this.retention(namespace);
    try {
      const info = await this.jsm.consumers.info(name, durable);
      if (info.config.ack_wait !== nanos(options.ackWaitMs)) {
        // The ack wait belongs to the group on JetStream: the latest member's value wins.
        await this.jsm.consumers.update(name, durable, { ack_wait: nanos(options.ackWaitMs) });
      }
    } catch (error) {
      if (!isNotFound(error)) throw error;
      try {
        await this.jsm.consumers.add(name, {
          durable_name: durable,
          description: `alto group "${options.group}" on topic "${topic}"`,
          filter_subject: subject,
          ack_policy: AckPolicy.Explicit,
          ack_wait: nanos(options.ackWaitMs),
          max_deliver: -1,
          max_ack_pending: GROUP_MAX_ACK_PENDING,
          // A group unused for longer than events are kept is forgotten, as on SQLite.
          inactive_threshold: nanos(retention.maxAgeMs),
          ...start,
        });
      } catch (addError) {
        if (!isAlreadyInUse(addError)) throw addError;
      }
    }
    const pull = await this.js.consumers.get(name, durable);
    const consumer = new NatsGroupConsumer(this, namespace, topic, options, pull);
    this.consumers.add(consumer);
    return consumer;
  }

  async ack(namespace: string, topic: string, group: string, id: string): Promise<boolean> {
    const key = NatsEventStore.inFlightKey(namespace, topic, group, id);
    const entry = this.inFlight.get(key);
    if (!entry) return false;
    this.inFlight.delete(key);
    let acknowledged: boolean;
    try {
      // Confirmed by the server, so a successful Ack is never redelivered.
      acknowledged = await entry.msg.ackAck();
    } catch {
      acknowledged = false;
    }
    entry.consumer.settled(key);
    return acknowledged;
  }

  async listTopics(namespace: string): Promise<string[]> {
    const prefix = `alto.events.${subjectToken(namespace)}.`;
    try {
      const info = await this.jsm.streams.info(NatsEventStore.streamName(namespace), { subjects_filter: `${prefix}*` });
      return Object.keys(info.state.subjects ?? {})
        .filter((subject) => subject.startsWith(prefix))
        .map((subject) => subjectText(subject.slice(prefix.length)))
        .sort();
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
  }

  async retention(namespace: string): Promise<RetentionPolicy> {
    try {
      const info = await this.jsm.streams.info(NatsEventStore.streamName(namespace));
      return { maxAgeMs: Math.round(info.config.max_age / 1e6), maxEventsPerTopic: info.config.max_msgs_per_subject };
    } catch (error) {
      if (isNotFound(error)) return { ...DEFAULT_RETENTION };
      throw error;
    }
  }

  async setRetention(namespace: string, policy: RetentionPolicy): Promise<void> {
    const name = NatsEventStore.streamName(namespace);
    await this.ensureStream(namespace);
    const info = await this.jsm.streams.info(name);
    await this.jsm.streams.update(name, { ...info.config, ...policyConfig(policy) });
  }

  async enforceRetention(_namespace?: string): Promise<number> {
    return 0; // JetStream applies the stream limits itself.
  }

  async deleteProject(projectId: string): Promise<void> {
    const prefix = NatsEventStore.streamName(`${projectId}/`);
    await Promise.all(
      [...this.consumers]
        .filter((consumer) => consumer instanceof NatsGroupConsumer && consumer.namespace.startsWith(`${projectId}/`))
        .map((consumer) => consumer.close()),
    );
    const doomed: string[] = [];
    for await (const name of this.jsm.streams.names()) if (name.startsWith(prefix)) doomed.push(name);
    for (const name of doomed) {
      try {
        await this.jsm.streams.delete(name);
      } catch (error) {
        if (!isNotFound(error)) throw error; // deleted meanwhile by another replica: fine
      }
    }
    for (const namespace of [...this.streams.keys()]) if (namespace.startsWith(`${projectId}/`)) this.streams.delete(namespace);
  }

  async close(): Promise<void> {
    await Promise.all([...this.consumers].map((consumer) => consumer.close()));
    // The connection is shared; `Stores.close()` drains it.
  }

  /** @internal */
  forget(consumer: NatsGroupConsumer | NatsSoloConsumer): void {
    this.consumers.delete(consumer);
  }
}

/** A durable consumer's name for a group on a topic: the pair hashed, as both are free text. */
function durableName(topic: string, group: string): string {
  return 'g_' + createHash('sha256').update(`${topic}\n${group}`).digest('hex').slice(0, 40);
}

function toEvent(topic: string, msg: JsMsg): StoredEvent {
  return {
    id: msg.headers?.get('Nats-Msg-Id') || String(msg.seq),
    topic,
    message: JSON.parse(decoder.decode(msg.data)) as JsonObject,
    timestamp: Math.floor(msg.info.timestampNanos / 1e6),
  };
}

/** A consumer without a group: an ordered consumer of the topic. */
class NatsSoloConsumer implements EventConsumer {
  private closed = false;

  constructor(
    private readonly store: NatsEventStore,
    private readonly topic: string,
    private readonly ordered: Consumer,
    private readonly messages: ConsumerMessages,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<Delivery> {
    try {
      for await (const msg of this.messages) {
        if (this.closed) break;
        yield { ...toEvent(this.topic, msg), deliveries: 1 };
      }
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.store.forget(this);
    this.messages.stop();
    await this.ordered.delete().catch(() => {});
  }
}

/**
 * A member of a group: pulls from the group's durable consumer as much as it may hold.
 *
 * Pull requests are short (PULL_EXPIRES_MS) and a closing member keeps its inbox open until
 * its last one ends, NAKing whatever still arrives. The reason: nats-server 2.9 mishandles a
 * redelivery that falls due while a pull request whose client has gone is still waiting (it
 * sends the group's last acknowledged event again, as a first delivery). So no member leaves a
 * pull request behind when it closes, and one lost in a crash lives two seconds at most.
 */
class NatsGroupConsumer implements EventConsumer {
  readonly group: string;
  private readonly autoAck: boolean;
  private readonly ackWaitMs: number;
  private readonly maxInFlight: number;
  /** In-flight keys this member handed out. */
  private readonly held = new Set<string>();
  private closed = false;
  private iterating = false;
  private wake: (() => void) | undefined;
  private readonly finished: Promise<void>;
  private finish!: () => void;

  constructor(
    private readonly store: NatsEventStore,
    readonly namespace: string,
    private readonly topic: string,
    options: ConsumeOptions,
    private readonly pull: Consumer,
  ) {
    this.group = options.group!;
    this.autoAck = options.autoAck;
    this.ackWaitMs = options.ackWaitMs;
    this.maxInFlight = options.maxInFlight;
    this.finished = new Promise<void>((resolve) => (this.finish = resolve));
  }

  /** Unacknowledged deliveries still within their ack wait; forgets long-expired ones. */
  private holding(now: number): { count: number; nextDeadline?: number } {
    let count = 0;
    let nextDeadline: number | undefined;
    for (const key of this.held) {
      const entry = this.store.inFlight.get(key);
      if (!entry || entry.consumer !== this) {
        this.held.delete(key); // acknowledged, or delivered again to another member here
      } else if (entry.deadline + this.ackWaitMs <= now) {
        // Long since resent by JetStream (to a member elsewhere, or it would have replaced it).
        this.store.inFlight.delete(key);
        this.held.delete(key);
      } else if (entry.deadline > now) {
        count++;
        nextDeadline = Math.min(nextDeadline ?? Infinity, entry.deadline);
      }
      // Between the two: resent now, no longer counted, still ackable for a while.
    }
    return { count, nextDeadline };
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Delivery> {
    this.iterating = true;
    let current: JsMsg | undefined;
    let iterator: AsyncIterator<JsMsg> | undefined;
    try {
      while (!this.closed) {
        const { count, nextDeadline } = this.holding(Date.now());
        const room = this.autoAck ? GROUP_BATCH : Math.min(GROUP_BATCH, this.maxInFlight - count);
        if (room <= 0) {
          await this.sleep(nextDeadline);
          continue;
        }
        const batch = await this.pull.fetch({ max_messages: room, expires: PULL_EXPIRES_MS });
        iterator = batch[Symbol.asyncIterator]();
        for (;;) {
          const next = await iterator.next();
          if (next.done) break;
          const msg = next.value;
          if (this.closed) {
            msg.nak(); // pulled but never handed over: straight back to the group
            continue;
          }
          const delivery: Delivery = { ...toEvent(this.topic, msg), deliveries: msg.info.deliveryCount };
          if (!this.autoAck) {
            const key = NatsEventStore.inFlightKey(this.namespace, this.topic, this.group, delivery.id);
            this.store.inFlight.set(key, { msg, consumer: this, deadline: Date.now() + this.ackWaitMs });
            this.held.add(key);
          }
          current = msg;
          yield delivery;
          if (this.autoAck) msg.ack();
          current = undefined;
        }
        iterator = undefined;
      }
    } finally {
      this.closed = true;
      // An auto-ack delivery not yet settled may be lost with the connection: back to the group.
      if (current && this.autoAck) current.nak();
      // Let the last pull request run out (it is short) with the inbox still open, handing
      // back whatever it brings: see the class comment.
      while (iterator) {
        const next = await iterator.next().catch(() => ({ done: true as const, value: undefined }));
        if (next.done) break;
        next.value.nak();
      }
      this.store.forget(this);
      this.forgetHeldLater();
      this.finish();
    }
  }

  private sleep(until: number | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.closed) return resolve();
      const timer = until === undefined ? undefined : setTimeout(() => done(), Math.max(1, until - Date.now() + 1));
      const done = () => {
        if (timer) clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
    });
  }

  /** @internal An acknowledgement freed room. */
  settled(key: string): void {
    this.held.delete(key);
    this.wake?.();
  }

  /**
   * A closed member's deliveries stay ackable until their ack wait runs out (the client may
   * still acknowledge what it processed); then JetStream redelivers them and they are dropped.
   */
  private forgetHeldLater(): void {
    const keys = [...this.held];
    if (keys.length === 0) return;
    const timer = setTimeout(() => {
      for (const key of keys) if (this.store.inFlight.get(key)?.consumer === this) this.store.inFlight.delete(key);
    }, this.ackWaitMs + 1000);
    timer.unref();
  }

  /** Ends the iteration; resolves once the last pull request has run out (a few seconds at most). */
  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    if (!this.iterating) {
      this.store.forget(this);
      this.finish();
      return;
    }
    // A reader stuck elsewhere (a stalled websocket) must not hold a shutdown for long.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, PULL_EXPIRES_MS + 1000)))]);
    clearTimeout(timer);
  }
}

/** `mq` on NATS: every replica subscribed to a topic gets every message. */
export class NatsMessageBus implements MessageBus {
  readonly backend = 'nats';

  constructor(private readonly nc: NatsConnection) {}

  static subject(namespace: string, topic: string): string {
    return `alto.mq.${subjectToken(namespace)}.${subjectToken(topic)}`;
  }

  async publish(namespace: string, topic: string, message: JsonObject): Promise<void> {
    this.nc.publish(NatsMessageBus.subject(namespace, topic), encoder.encode(JSON.stringify(message)));
  }

  async subscribe(namespace: string, topic: string, listener: (message: JsonObject) => void): Promise<BusSubscription> {
    const subscription = this.nc.subscribe(NatsMessageBus.subject(namespace, topic), {
      callback: (error, msg) => {
        if (!error) listener(JSON.parse(decoder.decode(msg.data)) as JsonObject);
      },
    });
    // Once the server has the subscription, nothing published after this returns is missed.
    await this.nc.flush();
    return { close: () => subscription.unsubscribe() };
  }

  async close(): Promise<void> {}
}
