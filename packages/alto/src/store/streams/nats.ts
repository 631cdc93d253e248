/**
 * @module store/streams/nats
 * The NATS JetStream adapter of the stream port, for Alto running with `--events nats://`: every
 * process on one NATS server sees the same channels and messages.
 *
 * Messages: one JetStream stream per namespace (`ALTO_STREAM_<namespace>`, subjects
 * `alto.stream.<namespace>.<channel>`, file storage) whose `max_msgs_per_subject` is the `keep`
 * the block passes, so the server itself trims each channel to its newest messages, exactly,
 * whichever process sends. Channels: a KV bucket (`ALTO_STREAM_CHANNELS`, history 1) with one
 * entry per channel (`c.<namespace>.<channel>`: name, description, last activity) and one per
 * namespace (`n.<namespace>`: the admissions in progress). Names become subject tokens as the
 * event adapter writes them (`subjectToken`), so any namespace or channel maps to its own
 * subject and a project's namespaces share the prefix of its encoded id.
 *
 * The live-channel limit: a channel live by a margin is touched with a compare-and-set on its own
 * entry. Any other touch (a new channel, an idle one, one near the end of its day) is an
 * admission: it counts the namespace's live channels and records itself in the namespace entry
 * with a compare-and-set on that entry's revision, so admissions in one namespace happen one at a
 * time across processes and see each other before their channel entries are written. The margin
 * keeps a fast touch and an admission from judging one channel differently; the limit is exact as
 * long as the processes' clocks agree within it.
 */
import {
  DeliverPolicy,
  DiscardPolicy,
  ErrorCode,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type KV,
  type MsgRequest,
  type NatsConnection,
  type NatsError,
  type StoredMsg,
} from 'nats';
import { errors } from '../../kit/errors.js';
import { subjectToken } from '../events/nats.js';
import type { ChannelLimits, StreamChannelRecord, StreamMessageRecord, StreamStore } from './port.js';

/**
 * A touch takes the fast path only for a channel live by this much more than `liveAfter`
 * (milliseconds); see the module comment.
 */
const LIVE_MARGIN_MS = 60_000;
/** Compare-and-set attempts on one touch before giving up (each failure is another writer's success). */
const MAX_ATTEMPTS = 200;
/** How long a read waits for messages the server said it has (they went meanwhile). */
const FETCH_EXPIRES_MS = 2000;
/** Messages a purge reads at once while finding where a namespace's unexpired messages begin. */
const PURGE_BATCH = 256;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface NatsStreamStoreOptions {
  /**
   * Sets these streams apart from others on the same server (tests use one per run): names
   * `ALTO_STREAM-<scope>_...` and subjects `alto.stream-<scope>.…`. Letters, digits and dashes.
   */
  scope?: string;
}

interface ChannelEntry {
  name: string;
  description: string;
  lastActive: number;
}

/** The namespace entry: channels admitted whose own entry may not be written yet, with when. */
interface Admissions {
  pending: Record<string, number>;
}

/** A subject token for any text; the empty text, which `subjectToken` leaves empty, is `_`. */
function token(text: string): string {
  return subjectToken(text) || '_';
}

function isNotFound(error: unknown): boolean {
  return /not found/i.test((error as Error)?.message ?? '');
}

function isWrongSequence(error: unknown): boolean {
  return (error as { api_error?: { err_code?: number } })?.api_error?.err_code === 10071 || /wrong last sequence/i.test((error as Error)?.message ?? '');
}

/** A publish to a subject no stream takes: NATS answers "no responders" (503). */
function isStreamGone(error: unknown): boolean {
  return (error as NatsError)?.code === ErrorCode.NoResponders || /no responders|not found/i.test((error as Error)?.message ?? '');
}

function json<T>(data: Uint8Array): T | undefined {
  if (data.length === 0) return undefined; // a KV delete or purge marker
  return JSON.parse(decoder.decode(data)) as T;
}

export class NatsStreamStore implements StreamStore {
  readonly backend = 'nats';
  /** Namespaces whose message stream this process made sure of, with the `keep` it has. */
  private readonly streams = new Map<string, { keep: number; ready: Promise<void> }>();
  /** What the names of this store's message streams start with (then the namespace's token). */
  readonly streamPrefix: string;
  private readonly subjectRoot: string;
  private readonly bucket: string;

  private constructor(
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    private readonly kv: KV,
    scope: string | undefined,
  ) {
    this.streamPrefix = scope ? `ALTO_STREAM-${scope}_` : 'ALTO_STREAM_';
    this.subjectRoot = scope ? `alto.stream-${scope}` : 'alto.stream';
    this.bucket = NatsStreamStore.bucketName(scope);
  }

  /** Opens (creating when missing) the channel bucket; message streams are made on first use. */
  static async open(nc: NatsConnection, options: NatsStreamStoreOptions = {}): Promise<NatsStreamStore> {
    if (options.scope !== undefined && !/^[A-Za-z0-9-]+$/.test(options.scope)) {
      throw new Error(`stream store scope "${options.scope}": use letters, digits and dashes`);
    }
    const js = nc.jetstream();
    const kv = await js.views.kv(NatsStreamStore.bucketName(options.scope), { history: 1, storage: StorageType.File });
    return new NatsStreamStore(await nc.jetstreamManager(), js, kv, options.scope);
  }

  /** The KV bucket of the channels (its JetStream stream is `KV_` and this). */
  static bucketName(scope?: string): string {
    return scope ? `ALTO_STREAM-${scope}_CHANNELS` : 'ALTO_STREAM_CHANNELS';
  }

  /** The message stream of a namespace. */
  streamName(namespace: string): string {
    return this.streamPrefix + token(namespace);
  }

  /** The subject of a channel's messages. */
  subject(namespace: string, channel: string): string {
    return `${this.subjectRoot}.${token(namespace)}.${token(channel)}`;
  }

  async touchChannel(namespace: string, name: string, description: string | undefined, now: number, limits: ChannelLimits): Promise<boolean> {
    return this.touch(namespace, name, description, now, limits);
  }

  async addMessage(namespace: string, channel: string, message: StreamMessageRecord, keep: number, limits: ChannelLimits): Promise<boolean> {
    if (!(await this.touch(namespace, channel, undefined, message.createdAt, limits))) return false;
    const subject = this.subject(namespace, channel);
    const data = encoder.encode(JSON.stringify({ id: message.id, text: message.text, createdAt: message.createdAt }));
    await this.ensureStream(namespace, keep);
    try {
      await this.js.publish(subject, data);
    } catch (error) {
      // The stream went away under us (the project was deleted by another process and is in use
      // again), so the message was not stored: make the stream again and send it, once.
      if (!isStreamGone(error)) throw error;
      this.streams.delete(namespace);
      await this.ensureStream(namespace, keep);
      await this.js.publish(subject, data);
    }
    return true;
  }

  /**
   * Reads backwards from the channel's last message in windows of stream sequences (the
   * namespace's other channels share them), the first twice `limit`, each next four times the
   * last, until `limit` messages after `since` are found or the channel's first message is
   * reached: a busy channel costs one window of at most twice `limit` messages; at worst the whole
   * channel, which `keep` bounds.
   */
  async listMessages(namespace: string, channel: string, since: number, limit: number): Promise<StreamMessageRecord[]> {
    if (limit <= 0) return [];
    const stream = this.streamName(namespace);
    const subject = this.subject(namespace, channel);
    const last = await this.lookup(stream, { last_by_subj: subject });
    if (!last) return [];
    /** The channel's first sequence, looked up only when one window is not enough. */
    let first: number | undefined;
    let found: StreamMessageRecord[] = [];
    let upTo = last.seq;
    for (let window = 2 * limit; ; window *= 4) {
      const from = Math.max(first ?? 1, upTo - window + 1);
      const read = await this.readRange(stream, subject, from, upTo);
      found = [...read.filter((message) => message.createdAt > since), ...found];
      if (found.length >= limit) break;
      first ??= (await this.lookup(stream, { next_by_subj: subject, seq: 1 }))?.seq ?? from;
      if (from <= first) break;
      upTo = from - 1;
    }
    return found.slice(-limit);
  }

  async listChannels(namespace: string, since: number): Promise<StreamChannelRecord[]> {
    const entries = await this.channelEntries(namespace);
    return [...entries.values()]
      .filter((entry) => entry.lastActive > since)
      .sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))
      .map(({ name, description, lastActive }) => ({ name, description, lastActive }));
  }

  /**
   * Idle channels go with their messages (each entry only if still at the revision read, so a
   * channel touched meanwhile stays). Then each namespace's stream loses its expired head: its
   * messages up to the first one created after `cutoff`. Messages are in the order they were
   * sent, so that is every expired one, except one sent with a clock behind another process's,
   * which goes at a later purge (reads already leave it out).
   */
  async purge(cutoff: number): Promise<number> {
    let removed = 0;
    for (const msg of await this.latestPerSubject(`KV_${this.bucket}`, this.key('c', '*', '*'))) {
      const entry = json<ChannelEntry>(msg.data);
      if (!entry || entry.lastActive > cutoff) continue;
      const [namespaceToken, channelToken] = msg.subject.split('.').slice(-2);
      const stream = this.streamPrefix + namespaceToken;
      const subject = `${this.subjectRoot}.${namespaceToken}.${channelToken}`;
      const last = await this.lookup(stream, { last_by_subj: subject });
      // Removes the entry only if nothing was written to it after the revision read.
      const gone = await this.jsm.streams.purge(`KV_${this.bucket}`, { filter: msg.subject, seq: msg.seq + 1 });
      if (gone.purged === 0) continue;
      removed += gone.purged;
      if (last) removed += await this.purgeStream(stream, { filter: subject, seq: last.seq + 1 });
    }
    for await (const info of this.jsm.streams.list(`${this.subjectRoot}.>`)) {
      if (!info.config.name.startsWith(this.streamPrefix) || info.state.messages === 0) continue;
      removed += await this.purgeExpiredHead(info.config.name, info.state.first_seq, cutoff);
    }
    return removed;
  }

  async deleteProject(projectId: string): Promise<void> {
    const prefix = token(`${projectId}/`);
    const doomed: string[] = [];
    for await (const name of this.jsm.streams.names(`${this.subjectRoot}.>`)) {
      if (name.startsWith(this.streamPrefix + prefix)) doomed.push(name);
    }
    for (const name of doomed) {
      try {
        await this.jsm.streams.delete(name);
      } catch (error) {
        if (!isNotFound(error)) throw error; // deleted meanwhile by another process: fine
      }
    }
    for (const namespace of [...this.streams.keys()]) if (namespace.startsWith(`${projectId}/`)) this.streams.delete(namespace);
    // Every namespace with channels has its namespace entry (admission writes it first).
    for (const msg of await this.latestPerSubject(`KV_${this.bucket}`, this.key('n', '*'), true)) {
      const namespaceToken = msg.subject.split('.').pop()!;
      if (!namespaceToken.startsWith(prefix)) continue;
      // Channels first: the namespace entry is how a retry finds them.
      await this.jsm.streams.purge(`KV_${this.bucket}`, { filter: this.key('c', namespaceToken, '*') });
      await this.jsm.streams.purge(`KV_${this.bucket}`, { filter: this.key('n', namespaceToken) });
    }
  }

  /** The full subject of a KV key made of tokens. */
  private key(...tokens: string[]): string {
    return `$KV.${this.bucket}.${tokens.join('.')}`;
  }

  private async touch(namespace: string, name: string, description: string | undefined, now: number, limits: ChannelLimits): Promise<boolean> {
    const key = `c.${token(namespace)}.${token(name)}`;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored = await this.kv.get(key);
      const entry = stored && json<ChannelEntry>(stored.value);
      if (!entry || entry.lastActive <= limits.liveAfter + LIVE_MARGIN_MS) {
        const admitted = await this.admit(namespace, name, now, limits);
        if (admitted === 'full') return false;
        if (admitted === 'conflict') continue;
      }
      const next: ChannelEntry = {
        name,
        description: description ?? entry?.description ?? '',
        lastActive: Math.max(entry?.lastActive ?? now, now),
      };
      if (entry && next.description === entry.description && next.lastActive === entry.lastActive) return true;
      if (await this.compareAndSet(key, next, stored?.revision ?? 0)) return true;
    }
    throw errors.unavailable(`stream: channel "${name}" is being changed by too many requests at once; try again`);
  }

  /**
   * Counts the namespace's live channels other than `name` and, when there is room, records
   * `name` as admitted in the namespace entry; 'conflict' when that entry changed since it was read.
   */
  private async admit(namespace: string, name: string, now: number, limits: ChannelLimits): Promise<'admitted' | 'full' | 'conflict'> {
    const key = `n.${token(namespace)}`;
    const stored = await this.kv.get(key);
    const pending = (stored && json<Admissions>(stored.value)?.pending) || {};
    const entries = await this.channelEntries(namespace);
    const live = new Set<string>();
    for (const entry of entries.values()) if (entry.lastActive > limits.liveAfter) live.add(entry.name);
    for (const [channel, admittedAt] of Object.entries(pending)) if (admittedAt > limits.liveAfter) live.add(channel);
    live.delete(name);
    if (live.size >= limits.maxChannels) return 'full';
    // Admissions stay until their channel's entry is written after them, or they are no longer live.
    const kept: Record<string, number> = {};
    for (const [channel, admittedAt] of Object.entries(pending)) {
      const written = (entries.get(channel)?.lastActive ?? -Infinity) >= admittedAt;
      if (channel !== name && admittedAt > limits.liveAfter && !written) kept[channel] = admittedAt;
    }
    kept[name] = now;
    return (await this.compareAndSet(key, { pending: kept } satisfies Admissions, stored?.revision ?? 0)) ? 'admitted' : 'conflict';
  }

  /** Writes a KV entry if it is still at `revision` (0: absent); false when it is not. */
  private async compareAndSet(key: string, value: unknown, revision: number): Promise<boolean> {
    try {
      await this.kv.put(key, encoder.encode(JSON.stringify(value)), { previousSeq: revision });
      return true;
    } catch (error) {
      if (isWrongSequence(error)) return false;
      throw error;
    }
  }

  /** The namespace's channel entries, by name. */
  private async channelEntries(namespace: string): Promise<Map<string, ChannelEntry>> {
    const entries = new Map<string, ChannelEntry>();
    for (const msg of await this.latestPerSubject(`KV_${this.bucket}`, this.key('c', token(namespace), '*'))) {
      const entry = json<ChannelEntry>(msg.data);
      if (entry) entries.set(entry.name, entry);
    }
    return entries;
  }

  /** The last message of every subject matching `filter`, read by one ordered consumer. */
  private async latestPerSubject(stream: string, filter: string, headersOnly = false): Promise<JsMsg[]> {
    const consumer = await this.js.consumers.get(stream, {
      filterSubjects: filter,
      deliver_policy: DeliverPolicy.LastPerSubject,
      headers_only: headersOnly,
    });
    const found: JsMsg[] = [];
    try {
      const { num_pending: pending } = await consumer.info(true);
      if (pending === 0) return found;
      const messages = await consumer.fetch({ max_messages: pending, expires: FETCH_EXPIRES_MS });
      for await (const msg of messages) {
        found.push(msg);
        if (msg.info.pending === 0) {
          messages.stop();
          break;
        }
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
    return found;
  }

  /**
   * The channel's messages with stream sequences from `from` to `upTo`, in order. The range holds
   * one at least (`upTo` was the channel's, or the range ends just before messages read), or a
   * later one follows it: the read stops at once, without waiting, unless the messages all went
   * meanwhile (then it waits FETCH_EXPIRES_MS).
   */
  private async readRange(stream: string, subject: string, from: number, upTo: number): Promise<StreamMessageRecord[]> {
    const consumer = await this.js.consumers.get(stream, { filterSubjects: subject, opt_start_seq: from });
    const read: StreamMessageRecord[] = [];
    try {
      const messages = await consumer.fetch({ max_messages: upTo - from + 1, expires: FETCH_EXPIRES_MS });
      for await (const msg of messages) {
        if (msg.seq > upTo) break;
        read.push(json<StreamMessageRecord>(msg.data)!);
        if (msg.seq === upTo || msg.info.pending === 0) break;
      }
      messages.stop();
    } catch (error) {
      if (!isNotFound(error)) throw error; // the stream went (its project was deleted)
    } finally {
      await consumer.delete().catch(() => {});
    }
    return read;
  }

  /**
   * Purges the stream's messages from `firstSeq` up to the first one created after `cutoff`;
   * returns how many went.
   */
  private async purgeExpiredHead(stream: string, firstSeq: number, cutoff: number): Promise<number> {
    const head = await this.lookup(stream, { seq: firstSeq });
    if (!head || json<StreamMessageRecord>(head.data)!.createdAt > cutoff) return 0;
    const consumer = await this.js.consumers.get(stream, { opt_start_seq: head.seq });
    let boundary = head.seq;
    try {
      for (let done = false; !done; ) {
        const { num_pending: pending } = await consumer.info();
        if (pending === 0) break;
        const messages = await consumer.fetch({ max_messages: Math.min(pending, PURGE_BATCH), expires: FETCH_EXPIRES_MS });
        let received = 0;
        for await (const msg of messages) {
          received++;
          if (json<StreamMessageRecord>(msg.data)!.createdAt > cutoff) {
            done = true;
            break;
          }
          boundary = msg.seq + 1;
          if (msg.info.pending === 0) {
            done = true;
            break;
          }
        }
        messages.stop();
        if (received === 0) break;
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
    return boundary > head.seq ? this.purgeStream(stream, { seq: boundary }) : 0;
  }

  /** Purges (all, or by filter and sequence); 0 when the stream is gone. */
  private async purgeStream(stream: string, options: { filter?: string; seq: number }): Promise<number> {
    try {
      return (await this.jsm.streams.purge(stream, options)).purged;
    } catch (error) {
      if (isNotFound(error)) return 0;
      throw error;
    }
  }

  /**
   * One stored message, or undefined when there is none (or no stream). `next_by_subj` (the first
   * message of a subject at or after `seq`) is in the server's message get since 2.9; the client
   * only types it for direct gets, which time out on a missing stream rather than saying so.
   */
  private async lookup(stream: string, query: MsgRequest | { seq: number; next_by_subj: string }): Promise<StoredMsg | undefined> {
    try {
      return await this.jsm.streams.getMessage(stream, query as MsgRequest);
    } catch (error) {
      if (isNotFound(error) || /no message found/i.test((error as Error).message)) return undefined;
      throw error;
    }
  }

  /** Creates the namespace's message stream unless it exists, trimming each channel to `keep`. */
  private ensureStream(namespace: string, keep: number): Promise<void> {
    const known = this.streams.get(namespace);
    if (known?.keep === keep) return known.ready;
    const ready = this.createStream(namespace, keep);
    this.streams.set(namespace, { keep, ready });
    ready.catch(() => this.streams.delete(namespace));
    return ready;
  }

  private async createStream(namespace: string, keep: number): Promise<void> {
    const name = this.streamName(namespace);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const info = await this.jsm.streams.info(name);
        // `keep` is the block's, the same for every call; a new version with another one updates it.
        if (info.config.max_msgs_per_subject !== keep) await this.jsm.streams.update(name, { ...info.config, max_msgs_per_subject: keep });
        return;
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
      try {
        await this.jsm.streams.add({
          name,
          subjects: [`${this.subjectRoot}.${token(namespace)}.*`],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          discard: DiscardPolicy.Old,
          max_msgs_per_subject: keep,
          num_replicas: 1,
        });
        return;
      } catch (error) {
        // Another process made it between our look and our add: look again.
        if (!/already in use|already exists/i.test((error as Error).message)) throw error;
      }
    }
    throw new Error(`stream ${name}: neither found nor created (made and deleted meanwhile); try again`);
  }
}
