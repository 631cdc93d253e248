/**
 * @module blocks/stream/stream
 * The `stream` block's storage and limits: ephemeral channels of short text messages, as M3O
 * had them. A message holds at most 512 characters; a channel keeps its latest 1000 messages;
 * a project (environment) has at most 1000 channels; messages expire after 24 hours and a
 * channel with no activity for 24 hours goes with them. Kept in the embedded SQLite file, so
 * they survive a restart within their day.
 */
import { randomUUID } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import { migrate, type SqliteDatabase } from '../../store/sqlite/database.js';

export const LIMITS = {
  maxMessageLength: 512,
  maxMessagesPerChannel: 1000,
  maxChannels: 1000,
  maxChannelNameLength: 100,
  maxDescriptionLength: 1024,
  ttlMs: 24 * 3600 * 1000,
} as const;

const MIGRATIONS = [
  `CREATE TABLE stream_channels (
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     last_active INTEGER NOT NULL,
     PRIMARY KEY (namespace, name)) WITHOUT ROWID;
   CREATE INDEX stream_channels_activity ON stream_channels(last_active);
   CREATE TABLE stream_messages (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     namespace TEXT NOT NULL,
     channel TEXT NOT NULL,
     id TEXT NOT NULL,
     text TEXT NOT NULL,
     created_at INTEGER NOT NULL);
   CREATE INDEX stream_messages_channel ON stream_messages(namespace, channel, seq);
   CREATE INDEX stream_messages_age ON stream_messages(created_at);`,
];

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

export class StreamStore {
  private readonly statements;
  private readonly touchChannel: (namespace: string, name: string, description: string | undefined, now: number) => void;
  private readonly send: (namespace: string, channel: string, text: string, now: number) => string;
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => number = Date.now,
  ) {
    migrate(db, 'stream', MIGRATIONS);
    const s = (this.statements = {
      channel: db.prepare('SELECT last_active FROM stream_channels WHERE namespace = ? AND name = ?'),
      liveChannels: db.prepare('SELECT COUNT(*) AS n FROM stream_channels WHERE namespace = ? AND last_active > ?'),
      upsertChannel: db.prepare(`INSERT INTO stream_channels (namespace, name, description, last_active) VALUES (?, ?, ?, ?)
        ON CONFLICT (namespace, name) DO UPDATE SET description = excluded.description, last_active = excluded.last_active`),
      activate: db.prepare(`INSERT INTO stream_channels (namespace, name, description, last_active) VALUES (?, ?, '', ?)
        ON CONFLICT (namespace, name) DO UPDATE SET last_active = excluded.last_active`),
      insert: db.prepare('INSERT INTO stream_messages (namespace, channel, id, text, created_at) VALUES (?, ?, ?, ?, ?)'),
      trim: db.prepare(`DELETE FROM stream_messages WHERE namespace = ? AND channel = ? AND seq <=
        (SELECT seq FROM stream_messages WHERE namespace = ? AND channel = ? ORDER BY seq DESC LIMIT 1 OFFSET ${LIMITS.maxMessagesPerChannel})`),
      latest: db.prepare(`SELECT id, text, created_at FROM (
        SELECT seq, id, text, created_at FROM stream_messages
        WHERE namespace = ? AND channel = ? AND created_at > ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`),
      channels: db.prepare(`SELECT name, description, last_active FROM stream_channels
        WHERE namespace = ? AND last_active > ? ORDER BY name`),
      purgeMessages: db.prepare('DELETE FROM stream_messages WHERE created_at <= ?'),
      idleChannels: db.prepare('SELECT namespace, name FROM stream_channels WHERE last_active <= ?'),
      dropChannel: db.prepare('DELETE FROM stream_channels WHERE namespace = ? AND name = ?'),
      dropChannelMessages: db.prepare('DELETE FROM stream_messages WHERE namespace = ? AND channel = ?'),
      deleteProject: ['stream_channels', 'stream_messages'].map((table) =>
        db.prepare(`DELETE FROM ${table} WHERE namespace >= ? AND substr(namespace, 1, length(?)) = ?`),
      ),
    });
    this.touchChannel = (namespace, name, description, now) => {
      const existing = s.channel.get(namespace, name) as { last_active: number } | undefined;
      if (!existing || existing.last_active <= now - LIMITS.ttlMs) {
        const live = (s.liveChannels.get(namespace, now - LIMITS.ttlMs) as { n: number }).n;
        if (live >= LIMITS.maxChannels) {
          throw errors.badRequest(
            `channel: this project has ${LIMITS.maxChannels} active channels, the most it may have; ` +
              'a channel goes away after 24 hours without messages',
          );
        }
      }
      if (description === undefined) s.activate.run(namespace, name, now);
      else s.upsertChannel.run(namespace, name, description, now);
    };
    const send = db.transaction((namespace: string, channel: string, text: string, now: number) => {
      this.touchChannel(namespace, channel, undefined, now);
      const id = randomUUID();
      s.insert.run(namespace, channel, id, text, now);
      s.trim.run(namespace, channel, namespace, channel);
      return id;
    });
    this.send = (namespace, channel, text, now) => send.immediate(namespace, channel, text, now);
  }

  createChannel(namespace: string, name: string, description: string): void {
    this.db.transaction(() => this.touchChannel(namespace, name, description, this.now())).immediate();
  }

  sendMessage(namespace: string, channel: string, text: string): string {
    return this.send(namespace, channel, text, this.now());
  }

  /** The latest `limit` unexpired messages, oldest first. */
  listMessages(namespace: string, channel: string, limit: number): StreamMessage[] {
    const rows = this.statements.latest.all(namespace, channel, this.now() - LIMITS.ttlMs, limit) as {
      id: string;
      text: string;
      created_at: number;
    }[];
    return rows.map((row) => ({ id: row.id, channel, text: row.text, createdAt: row.created_at }));
  }

  listChannels(namespace: string): StreamChannel[] {
    const rows = this.statements.channels.all(namespace, this.now() - LIMITS.ttlMs) as {
      name: string;
      description: string;
      last_active: number;
    }[];
    return rows.map((row) => ({ name: row.name, description: row.description, lastActive: row.last_active }));
  }

  /** Removes expired messages and idle channels; returns how many rows went. */
  purgeExpired(): number {
    const cutoff = this.now() - LIMITS.ttlMs;
    const s = this.statements;
    return this.db.transaction(() => {
      let removed = s.purgeMessages.run(cutoff).changes;
      for (const channel of s.idleChannels.all(cutoff) as { namespace: string; name: string }[]) {
        removed += s.dropChannelMessages.run(channel.namespace, channel.name).changes;
        removed += s.dropChannel.run(channel.namespace, channel.name).changes;
      }
      return removed;
    })();
  }

  startPurging(intervalMs = 60_000): void {
    this.purgeTimer = setInterval(() => this.purgeExpired(), intervalMs);
    this.purgeTimer.unref();
  }

  deleteProject(projectId: string): void {
    const prefix = `${projectId}/`;
    this.db.transaction(() => {
      for (const statement of this.statements.deleteProject) statement.run(prefix, prefix, prefix);
    })();
  }

  close(): void {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
  }
}
