/**
 * @module store/mail/sqlite
 * The embedded mail adapter: the outbox and the projects' SMTP settings as tables in the shared
 * SQLite file. A rowid orders the outbox, so "newest first" holds even within one millisecond.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { MailStore, MessageUpdate, OutboxMessage, OutboxQuery } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE mail_outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL);
   CREATE UNIQUE INDEX mail_outbox_id ON mail_outbox (namespace, id);
   CREATE INDEX mail_outbox_created ON mail_outbox (created_at);
   CREATE TABLE mail_settings (
     namespace TEXT PRIMARY KEY,
     smtp_url TEXT NOT NULL,
     updated_at INTEGER NOT NULL) WITHOUT ROWID;`,
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
  created_at: number;
  updated_at: number;
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

export class SqliteMailStore implements MailStore {
  readonly backend = 'sqlite';
  private readonly statements;

  constructor(db: SqliteDatabase) {
    migrate(db, 'mail', MIGRATIONS);
    this.statements = {
      add: db.prepare(`INSERT INTO mail_outbox (namespace, ${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      update: db.prepare('UPDATE mail_outbox SET status = ?, error = ?, message_id = ?, updated_at = ? WHERE namespace = ? AND id = ?'),
      get: db.prepare(`SELECT ${COLUMNS} FROM mail_outbox WHERE namespace = ? AND id = ?`),
      list: db.prepare(`SELECT ${COLUMNS} FROM mail_outbox WHERE namespace = ? AND (? = '' OR instr(lower(to_header), lower(?)) > 0)
        ORDER BY seq DESC LIMIT ? OFFSET ?`),
      getSmtp: db.prepare('SELECT smtp_url FROM mail_settings WHERE namespace = ?'),
      putSmtp: db.prepare(`INSERT INTO mail_settings (namespace, smtp_url, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (namespace) DO UPDATE SET smtp_url = excluded.smtp_url, updated_at = excluded.updated_at`),
      deleteSmtp: db.prepare('DELETE FROM mail_settings WHERE namespace = ?'),
      deleteProjectMessages: db.prepare('DELETE FROM mail_outbox WHERE namespace >= ? AND substr(namespace, 1, length(?)) = ?'),
      deleteProjectSettings: db.prepare('DELETE FROM mail_settings WHERE namespace >= ? AND substr(namespace, 1, length(?)) = ?'),
      purge: db.prepare('DELETE FROM mail_outbox WHERE created_at < ?'),
    };
  }

  async addMessage(namespace: string, message: OutboxMessage): Promise<void> {
    this.statements.add.run(
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
    );
  }

  async updateMessage(namespace: string, id: string, update: MessageUpdate): Promise<boolean> {
    return this.statements.update.run(update.status, update.error, update.messageId, update.updatedAt, namespace, id).changes > 0;
  }

  async getMessage(namespace: string, id: string): Promise<OutboxMessage | undefined> {
    const row = this.statements.get.get(namespace, id) as MessageRow | undefined;
    return row && messageOf(row);
  }

  async listMessages(namespace: string, query: OutboxQuery): Promise<OutboxMessage[]> {
    const rows = this.statements.list.all(namespace, query.to, query.to, query.limit, query.offset) as MessageRow[];
    return rows.map(messageOf);
  }

  async getSmtpUrl(namespace: string): Promise<string | undefined> {
    return (this.statements.getSmtp.get(namespace) as { smtp_url: string } | undefined)?.smtp_url;
  }

  async putSmtpUrl(namespace: string, url: string, at: number): Promise<void> {
    this.statements.putSmtp.run(namespace, url, at);
  }

  async deleteSmtpUrl(namespace: string): Promise<boolean> {
    return this.statements.deleteSmtp.run(namespace).changes > 0;
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    this.statements.deleteProjectSettings.run(prefix, prefix, prefix);
    return this.statements.deleteProjectMessages.run(prefix, prefix, prefix).changes;
  }

  async purgeBefore(at: number): Promise<number> {
    return this.statements.purge.run(at).changes;
  }

  async close(): Promise<void> {
    // The database handle is shared with other adapters; `Stores.close()` closes it.
  }
}
