/**
 * @module store/streams/postgres
 * The PostgreSQL adapter of the stream port, for Alto running with `--store postgres://`: every
 * process of one cloud sees the same channels and messages. Touching a channel and adding a
 * message hold an advisory lock on the namespace for their transaction, so the live-channel
 * count is exact and messages of one namespace take their `seq` in the order they commit.
 * Names use the "C" collation so channels list in the same order as on SQLite.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
import type { ChannelLimits, StreamChannelRecord, StreamMessageRecord, StreamStore } from './port.js';

/** Applied in order, each once; see `PostgresStreamStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_stream_channels (
     namespace TEXT COLLATE "C" NOT NULL,
     name TEXT COLLATE "C" NOT NULL,
     description TEXT NOT NULL,
     last_active BIGINT NOT NULL,
     PRIMARY KEY (namespace, name));
   CREATE INDEX IF NOT EXISTS alto_stream_channels_activity ON alto_stream_channels (last_active);
   CREATE TABLE IF NOT EXISTS alto_stream_messages (
     seq BIGSERIAL PRIMARY KEY,
     namespace TEXT COLLATE "C" NOT NULL,
     channel TEXT COLLATE "C" NOT NULL,
     id TEXT NOT NULL,
     text TEXT NOT NULL,
     created_at BIGINT NOT NULL);
   CREATE INDEX IF NOT EXISTS alto_stream_messages_channel ON alto_stream_messages (namespace, channel, seq);
   CREATE INDEX IF NOT EXISTS alto_stream_messages_age ON alto_stream_messages (created_at);`,
];

export class PostgresStreamStore implements StreamStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresStreamStore> {
    await migratePostgres(pool, 'stream', MIGRATIONS);
    return new PostgresStreamStore(pool);
  }

  async touchChannel(namespace: string, name: string, description: string | undefined, now: number, limits: ChannelLimits): Promise<boolean> {
    return this.inNamespace(namespace, (client) => this.touch(client, namespace, name, description, now, limits));
  }

  async addMessage(namespace: string, channel: string, message: StreamMessageRecord, keep: number, limits: ChannelLimits): Promise<boolean> {
    return this.inNamespace(namespace, async (client) => {
      if (!(await this.touch(client, namespace, channel, undefined, message.createdAt, limits))) return false;
      await client.query('INSERT INTO alto_stream_messages (namespace, channel, id, text, created_at) VALUES ($1, $2, $3, $4, $5)', [
        namespace,
        channel,
        message.id,
        message.text,
        message.createdAt,
      ]);
      await client.query(
        `DELETE FROM alto_stream_messages WHERE namespace = $1 AND channel = $2 AND seq <=
           (SELECT seq FROM alto_stream_messages WHERE namespace = $1 AND channel = $2 ORDER BY seq DESC LIMIT 1 OFFSET $3)`,
        [namespace, channel, keep],
      );
      return true;
    });
  }

  async listMessages(namespace: string, channel: string, since: number, limit: number): Promise<StreamMessageRecord[]> {
    const { rows } = await this.pool.query<{ id: string; text: string; created_at: string }>(
      `SELECT id, text, created_at FROM (
         SELECT seq, id, text, created_at FROM alto_stream_messages
         WHERE namespace = $1 AND channel = $2 AND created_at > $3 ORDER BY seq DESC LIMIT $4) AS latest ORDER BY seq`,
      [namespace, channel, since, limit],
    );
    return rows.map((row) => ({ id: row.id, text: row.text, createdAt: Number(row.created_at) }));
  }

  async listChannels(namespace: string, since: number): Promise<StreamChannelRecord[]> {
    const { rows } = await this.pool.query<{ name: string; description: string; last_active: string }>(
      'SELECT name, description, last_active FROM alto_stream_channels WHERE namespace = $1 AND last_active > $2 ORDER BY name',
      [namespace, since],
    );
    return rows.map((row) => ({ name: row.name, description: row.description, lastActive: Number(row.last_active) }));
  }

  async purge(cutoff: number): Promise<number> {
    const messages = await this.pool.query('DELETE FROM alto_stream_messages WHERE created_at <= $1', [cutoff]);
    // An idle channel goes with its messages, in one statement.
    const channels = await this.pool.query<{ channels: string; messages: string }>(
      `WITH idle AS (DELETE FROM alto_stream_channels WHERE last_active <= $1 RETURNING namespace, name),
            gone AS (DELETE FROM alto_stream_messages m USING idle WHERE m.namespace = idle.namespace AND m.channel = idle.name RETURNING 1)
       SELECT (SELECT count(*) FROM idle) AS channels, (SELECT count(*) FROM gone) AS messages`,
      [cutoff],
    );
    return (messages.rowCount ?? 0) + Number(channels.rows[0].channels) + Number(channels.rows[0].messages);
  }

  async deleteProject(projectId: string): Promise<void> {
    const prefix = `${projectId}/`;
    await this.pool.query('DELETE FROM alto_stream_channels WHERE starts_with(namespace, $1)', [prefix]);
    await this.pool.query('DELETE FROM alto_stream_messages WHERE starts_with(namespace, $1)', [prefix]);
  }

  private async touch(
    client: pg.PoolClient,
    namespace: string,
    name: string,
    description: string | undefined,
    now: number,
    limits: ChannelLimits,
  ): Promise<boolean> {
    const existing = await client.query<{ last_active: string }>(
      'SELECT last_active FROM alto_stream_channels WHERE namespace = $1 AND name = $2',
      [namespace, name],
    );
    if (!existing.rows[0] || Number(existing.rows[0].last_active) <= limits.liveAfter) {
      const live = await client.query<{ n: string }>(
        'SELECT count(*) AS n FROM alto_stream_channels WHERE namespace = $1 AND last_active > $2',
        [namespace, limits.liveAfter],
      );
      if (Number(live.rows[0].n) >= limits.maxChannels) return false;
    }
    if (description === undefined) {
      await client.query(
        `INSERT INTO alto_stream_channels (namespace, name, description, last_active) VALUES ($1, $2, '', $3)
         ON CONFLICT (namespace, name) DO UPDATE SET last_active = excluded.last_active`,
        [namespace, name, now],
      );
    } else {
      await client.query(
        `INSERT INTO alto_stream_channels (namespace, name, description, last_active) VALUES ($1, $2, $3, $4)
         ON CONFLICT (namespace, name) DO UPDATE SET description = excluded.description, last_active = excluded.last_active`,
        [namespace, name, description, now],
      );
    }
    return true;
  }

  /** Runs `work` in one transaction holding the namespace's stream lock. */
  private inNamespace<T>(namespace: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('alto.stream'), hashtext($1))", [namespace]);
      return work(client);
    });
  }
}
