/**
 * @module blocks/stream/stream
 * The `stream` block's logic and limits: ephemeral channels of short text messages, as M3O
 * had them. A message holds at most 512 characters; a channel keeps its latest 1000 messages;
 * a project (environment) has at most 1000 channels; messages expire after 24 hours and a
 * channel with no activity for 24 hours goes with them. Kept in the stream port of
 * `platform.stores` (SQLite embedded, PostgreSQL with `--store postgres://`, NATS JetStream with
 * `--events nats://`), so they survive a restart within their day.
 */
import { randomUUID } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import type { ChannelLimits, StreamStore } from '../../store/streams/port.js';

export const LIMITS = {
  maxMessageLength: 512,
  maxMessagesPerChannel: 1000,
  maxChannels: 1000,
  maxChannelNameLength: 100,
  maxDescriptionLength: 1024,
  ttlMs: 24 * 3600 * 1000,
} as const;

export interface StreamMessage {
  id: string;
  channel: string;
  text: string;
  createdAt: number;
}

export interface StreamChannel {
  name: string;
  description: string;
  lastActive: number;
}

export class Streams {
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: StreamStore,
    private readonly now: () => number = Date.now,
  ) {}

  async createChannel(namespace: string, name: string, description: string): Promise<void> {
    const now = this.now();
    if (!(await this.store.touchChannel(namespace, name, description, now, this.channelLimits(now)))) throw tooManyChannels();
  }

  async sendMessage(namespace: string, channel: string, text: string): Promise<string> {
    const now = this.now();
    const id = randomUUID();
    const added = await this.store.addMessage(namespace, channel, { id, text, createdAt: now }, LIMITS.maxMessagesPerChannel, this.channelLimits(now));
    if (!added) throw tooManyChannels();
    return id;
  }

  /** The latest `limit` unexpired messages, oldest first. */
  async listMessages(namespace: string, channel: string, limit: number): Promise<StreamMessage[]> {
    const messages = await this.store.listMessages(namespace, channel, this.now() - LIMITS.ttlMs, limit);
    return messages.map((message) => ({ ...message, channel }));
  }

  listChannels(namespace: string): Promise<StreamChannel[]> {
    return this.store.listChannels(namespace, this.now() - LIMITS.ttlMs);
  }

  /** Removes expired messages and idle channels; returns how many rows went. */
  purgeExpired(): Promise<number> {
    return this.store.purge(this.now() - LIMITS.ttlMs);
  }

  startPurging(onError: (error: unknown) => void, intervalMs = 60_000): void {
    this.purgeTimer = setInterval(() => this.purgeExpired().catch(onError), intervalMs);
    this.purgeTimer.unref();
  }

  deleteProject(projectId: string): Promise<void> {
    return this.store.deleteProject(projectId);
  }

  close(): void {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
  }

  private channelLimits(now: number): ChannelLimits {
    return { liveAfter: now - LIMITS.ttlMs, maxChannels: LIMITS.maxChannels };
  }
}

function tooManyChannels() {
  return errors.badRequest(
    `channel: this project has ${LIMITS.maxChannels} active channels, the most it may have; ` +
      'a channel goes away after 24 hours without messages',
  );
}
