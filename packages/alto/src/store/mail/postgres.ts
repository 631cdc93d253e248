/**
 * @module store/mail/postgres
 * The scale-out mail adapter: the outbox and the projects' SMTP settings in PostgreSQL, shared
 * by several Alto replicas. A sequence orders the outbox, newest first.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import type { MailStore, MessageUpdate, OutboxMessage, OutboxQuery } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE alto_mail_outbox (
     seq BIGSERIAL PRIMARY KEY,
     namespace TEXT NOT NULL,
     id TEXT NOT NULL,
     from_header TEXT NOT NULL,
     to_header TEXT NOT NULL,
     reply_to TEXT NOT NULL,
     subject TEXT NOT NULL,
     text_body TEXT NOT NULL,
     html_body TEXT NOT NULL,
     source TEXT NOT NULL,
     status TEXT NOT NULL,
     error TEXT NOT NULL,
     message_id TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL);
   CREATE UNIQUE INDEX alto_mail_outbox_id ON alto_mail_outbox (namespace, id);
   CREATE INDEX alto_mail_outbox_namespace ON alto_mail_outbox (namespace, seq);
   CREATE INDEX alto_mail_outbox_created ON alto_mail_outbox (created_at);
   CREATE TABLE alto_mail_settings (
     namespace TEXT PRIMARY KEY,
     smtp_url TEXT NOT NULL,
     updated_at BIGINT NOT NULL);`,
];

const COLUMNS =
  'id, from_header, to_header, reply_to, subject, text_body, html_body, source, status, error, message_id, created_at, updated_at';

interface MessageRow {
  id: string;
  from_header: string;
  to_header: string;
  reply_to: string;
  subject: string;
  text_body: string;
  html_body: string;
  source: string;
  status: OutboxMessage['status'];
  error: string;
  message_id: string;
  created_at: string;
  updated_at: string;
}

function messageOf(row: MessageRow): OutboxMessage {
  return {
    id: row.id,
    from: row.from_header,
    to: row.to_header,
    replyTo: row.reply_to,
    subject: row.subject,
    textBody: row.text_body,
    htmlBody: row.html_body,
    source: row.source,
    status: row.status,
    error: row.error,
    messageId: row.message_id,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** LIKE pattern matching text that starts with `prefix` literally. */
function startsWith(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (char) => `\\${char}`) + '%';
}

export class PostgresMailStore implements MailStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  static async open(pool: pg.Pool): Promise<PostgresMailStore> {
    await migratePostgres(pool, 'mail', MIGRATIONS);
    return new PostgresMailStore(pool);
  }

  async addMessage(namespace: string, message: OutboxMessage): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_mail_outbox (namespace, ${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      [
        namespace,
        message.id,
        message.from,
        message.to,
        message.replyTo,
        message.subject,
        message.textBody,
        message.htmlBody,
        message.source,
        message.status,
        message.error,
        message.messageId,
        message.createdAt,
        message.updatedAt,
      ],
    );
  }

  async updateMessage(namespace: string, id: string, update: MessageUpdate): Promise<boolean> {
    const result = await this.pool.query(
      'UPDATE alto_mail_outbox SET status = $3, error = $4, message_id = $5, updated_at = $6 WHERE namespace = $1 AND id = $2',
      [namespace, id, update.status, update.error, update.messageId, update.updatedAt],
    );
    return (result.rowCount ?? 0) > 0;
  }

  async getMessage(namespace: string, id: string): Promise<OutboxMessage | undefined> {
    const result = await this.pool.query<MessageRow>(`SELECT ${COLUMNS} FROM alto_mail_outbox WHERE namespace = $1 AND id = $2`, [namespace, id]);
    return result.rows[0] && messageOf(result.rows[0]);
  }

  async listMessages(namespace: string, query: OutboxQuery): Promise<OutboxMessage[]> {
    const result = await this.pool.query<MessageRow>(
      `SELECT ${COLUMNS} FROM alto_mail_outbox
       WHERE namespace = $1 AND ($2 = '' OR position(lower($2) in lower(to_header)) > 0)
       ORDER BY seq DESC LIMIT $3 OFFSET $4`,
      [namespace, query.to, query.limit, query.offset],
    );
    return result.rows.map(messageOf);
  }

  async getSmtpUrl(namespace: string): Promise<string | undefined> {
    const result = await this.pool.query<{ smtp_url: string }>('SELECT smtp_url FROM alto_mail_settings WHERE namespace = $1', [namespace]);
    return result.rows[0]?.smtp_url;
  }

  async putSmtpUrl(namespace: string, url: string, at: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO alto_mail_settings (namespace, smtp_url, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (namespace) DO UPDATE SET smtp_url = EXCLUDED.smtp_url, updated_at = EXCLUDED.updated_at`,
      [namespace, url, at],
    );
  }

  async deleteSmtpUrl(namespace: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_mail_settings WHERE namespace = $1', [namespace]);
    return (result.rowCount ?? 0) > 0;
  }

  async deleteProject(projectId: string): Promise<number> {
    const pattern = startsWith(`${projectId}/`);
    await this.pool.query('DELETE FROM alto_mail_settings WHERE namespace LIKE $1', [pattern]);
    const result = await this.pool.query('DELETE FROM alto_mail_outbox WHERE namespace LIKE $1', [pattern]);
    return result.rowCount ?? 0;
  }

  async purgeBefore(at: number): Promise<number> {
    const result = await this.pool.query('DELETE FROM alto_mail_outbox WHERE created_at < $1', [at]);
    return result.rowCount ?? 0;
  }

  async close(): Promise<void> {
    // The pool is shared; `Stores.close()` ends it.
  }
}
