/**
 * @module store/streams/sqlite
 * The embedded adapter of the stream port: the `stream_channels` and `stream_messages` tables
 * the stream block created before it had a port (existing data folders keep their channels).
 * Touching a channel and adding a message run in IMMEDIATE transactions, so the channel count
 * and the trim hold with several processes on one file. Message order is the rowid `seq`.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { ChannelLimits, StreamChannelRecord, StreamMessageRecord, StreamStore } from './port.js';

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

function prepareStatements(db: SqliteDatabase) {
  return {
    channel: db.prepare('SELECT last_active FROM stream_channels WHERE namespace = ? AND name = ?'),
    liveChannels: db.prepare('SELECT COUNT(*) AS n FROM stream_channels WHERE namespace = ? AND last_active > ?'),
    upsertChannel: db.prepare(`INSERT INTO stream_channels (namespace, name, description, last_active) VALUES (?, ?, ?, ?)
      ON CONFLICT (namespace, name) DO UPDATE SET description = excluded.description, last_active = excluded.last_active`),
    activate: db.prepare(`INSERT INTO stream_channels (namespace, name, description, last_active) VALUES (?, ?, '', ?)
      ON CONFLICT (namespace, name) DO UPDATE SET last_active = excluded.last_active`),
    insert: db.prepare('INSERT INTO stream_messages (namespace, channel, id, text, created_at) VALUES (?, ?, ?, ?, ?)'),
    trim: db.prepare(`DELETE FROM stream_messages WHERE namespace = ? AND channel = ? AND seq <=
      (SELECT seq FROM stream_messages WHERE namespace = ? AND channel = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`),
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
  };
}

export class SqliteStreamStore implements StreamStore {
  readonly backend = 'sqlite';
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'stream', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  async touchChannel(namespace: string, name: string, description: string | undefined, now: number, limits: ChannelLimits): Promise<boolean> {
    return this.db.transaction(() => this.touch(namespace, name, description, now, limits)).immediate();
  }

  async addMessage(namespace: string, channel: string, message: StreamMessageRecord, keep: number, limits: ChannelLimits): Promise<boolean> {
    const s = this.statements;
    return this.db
      .transaction(() => {
        if (!this.touch(namespace, channel, undefined, message.createdAt, limits)) return false;
        s.insert.run(namespace, channel, message.id, message.text, message.createdAt);
        s.trim.run(namespace, channel, namespace, channel, keep);
        return true;
      })
      .immediate();
  }

  async listMessages(namespace: string, channel: string, since: number, limit: number): Promise<StreamMessageRecord[]> {
    const rows = this.statements.latest.all(namespace, channel, since, limit) as { id: string; text: string; created_at: number }[];
    return rows.map((row) => ({ id: row.id, text: row.text, createdAt: row.created_at }));
  }

  async listChannels(namespace: string, since: number): Promise<StreamChannelRecord[]> {
    const rows = this.statements.channels.all(namespace, since) as { name: string; description: string; last_active: number }[];
    return rows.map((row) => ({ name: row.name, description: row.description, lastActive: row.last_active }));
  }

  async purge(cutoff: number): Promise<number> {
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

  async deleteProject(projectId: string): Promise<void> {
    const prefix = `${projectId}/`;
    this.db.transaction(() => {
      for (const statement of this.statements.deleteProject) statement.run(prefix, prefix, prefix);
    })();
  }

  /** Inside a transaction: false when the channel would be one live channel too many. */
  private touch(namespace: string, name: string, description: string | undefined, now: number, limits: ChannelLimits): boolean {
    const s = this.statements;
    const existing = s.channel.get(namespace, name) as { last_active: number } | undefined;
    if (!existing || existing.last_active <= limits.liveAfter) {
      const live = (s.liveChannels.get(namespace, limits.liveAfter) as { n: number }).n;
      if (live >= limits.maxChannels) return false;
    }
    if (description === undefined) s.activate.run(namespace, name, now);
    else s.upsertChannel.run(namespace, name, description, now);
    return true;
  }
}
