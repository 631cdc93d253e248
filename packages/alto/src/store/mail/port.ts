/**
 * @module store/mail/port
 * The mail storage port: every message a project sends (its outbox, newest first) and the
 * project's own SMTP server, per tenant namespace. Adapters: `sqlite.ts` (embedded) and
 * `postgres.ts` (scale-out). Every tenant method takes the namespace first, so one project can
 * never read another's mail.
 */

/**
 * - `queued`: recorded, delivery not finished yet.
 * - `sent`: the SMTP server accepted it.
 * - `failed`: the SMTP server refused it or could not be reached; `error` says why.
 * - `kept`: no SMTP server is configured: the outbox is where it went (local development).
 */
export type MailStatus = 'queued' | 'sent' | 'failed' | 'kept';

export interface OutboxMessage {
  id: string;
  /** The From header as sent, e.g. `Acme <noreply@acme.example>`. */
  from: string;
  /** One address or several separated by commas, as given. */
  to: string;
  replyTo: string;
  subject: string;
  textBody: string;
  htmlBody: string;
  /** Which block asked for it: `email` (email/Send) or `user` (verification, reset, magic link). */
  source: string;
  status: MailStatus;
  /** Why delivery failed; "" otherwise. */
  error: string;
  /** The Message-ID the message was sent with; "" until sent. */
  messageId: string;
  createdAt: number;
  updatedAt: number;
}

export interface MessageUpdate {
  status: MailStatus;
  error: string;
  messageId: string;
  updatedAt: number;
}

export interface OutboxQuery {
  offset: number;
  limit: number;
  /** Only messages whose recipients contain this text, ignoring case; "" for all. */
  to: string;
}

export interface MailStore {
  readonly backend: 'sqlite' | 'postgres';
  addMessage(namespace: string, message: OutboxMessage): Promise<void>;
  /** Returns false when there is no such message. */
  updateMessage(namespace: string, id: string, update: MessageUpdate): Promise<boolean>;
  getMessage(namespace: string, id: string): Promise<OutboxMessage | undefined>;
  /** Newest first: the order messages were added, last one first. */
  listMessages(namespace: string, query: OutboxQuery): Promise<OutboxMessage[]>;

  /** The project's SMTP server URL (with its password), or undefined to use the instance's. */
  getSmtpUrl(namespace: string): Promise<string | undefined>;
  putSmtpUrl(namespace: string, url: string, at: number): Promise<void>;
  deleteSmtpUrl(namespace: string): Promise<boolean>;

  /** Deletes the mail of every environment of a project (namespaces `${projectId}/...`); returns the messages deleted. */
  deleteProject(projectId: string): Promise<number>;
  /** Removes messages added before `at` (outbox retention); returns how many. */
  purgeBefore(at: number): Promise<number>;
  /** Leaves the shared connection open. */
  close(): Promise<void>;
}
