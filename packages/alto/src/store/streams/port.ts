/**
 * @module store/streams/port
 * The stream storage port: per tenant namespace, channels (name, description, last activity)
 * and their messages in the order they were sent. The block sets the limits (messages kept
 * per channel, live channels per namespace, how long things live) and passes them in, so every
 * adapter applies the same ones atomically (in a transaction, or by compare-and-set). Adapters: `sqlite.ts` (embedded),
 * `postgres.ts` (with `--store postgres://`) and `nats.ts` (NATS JetStream, with `--events nats://`).
 */

export interface StreamMessageRecord {
  id: string;
  text: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

export interface StreamChannelRecord {
  name: string;
  description: string;
  lastActive: number;
}

export interface ChannelLimits {
  /** Channels active after this time (milliseconds since the epoch) are live; older ones count for nothing. */
  liveAfter: number;
  /** Live channels a namespace may have; touching one more is refused. */
  maxChannels: number;
}

export interface StreamStore {
  readonly backend: 'sqlite' | 'postgres' | 'nats';
  /**
   * Marks a channel active at `now`, making it when it is new (or no longer live), and sets its
   * description when one is given. False, with nothing written, when it would be one live
   * channel too many.
   */
  touchChannel(namespace: string, name: string, description: string | undefined, now: number, limits: ChannelLimits): Promise<boolean>;
  /**
   * Appends a message to a channel (touched as by `touchChannel`, at the message's time) and
   * keeps only the newest `keep` messages of that channel. False, with nothing written, when the
   * channel would be one live channel too many.
   */
  addMessage(namespace: string, channel: string, message: StreamMessageRecord, keep: number, limits: ChannelLimits): Promise<boolean>;
  /** The newest `limit` messages created after `since`, oldest first. */
  listMessages(namespace: string, channel: string, since: number, limit: number): Promise<StreamMessageRecord[]>;
  /** The channels active after `since`, by name. */
  listChannels(namespace: string, since: number): Promise<StreamChannelRecord[]>;
  /** Removes the messages created and the channels last active at or before `cutoff`; returns how many rows went. */
  purge(cutoff: number): Promise<number>;
  /** Forgets the channels and messages of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<void>;
}
