/**
 * @module platform/mail
 * Sending email, for any block that needs it: the `email` block's Send and the `user` block's
 * verification, reset and magic-link mails. Every message is written to the project's outbox
 * first, then delivered over SMTP to the project's own server (`email/SetSmtp`), else the
 * instance's (`alto up --smtp`), else nowhere: the outbox is then where it went, which is what
 * local development needs.
 *
 * Why here and not in a block: two blocks send mail, and a block never imports another block's
 * internals. Like metering, mail is a platform facility with its storage behind a store port
 * (`store/mail`); the `email` block is only its public API.
 */
import { randomUUID } from 'node:crypto';
import nodemailer from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import { isIP } from 'node:net';
import { errors } from '../kit/errors.js';
import type { Logger } from '../kit/logger.js';
import { OutboundRefused, privateTargetsAllowed, resolveOutbound } from '../kit/outbound-guard.js';
import type { MailStore, OutboxMessage, OutboxQuery } from '../store/mail/port.js';
import { redactUrl } from '../store/index.js';
import { isSealedText, SecretCipher } from '../kit/master-key.js';
import { component } from './service.js';

export interface OutgoingMail {
  /** A display name ("Acme"), an address, or "Name <address>"; default: the server's sender address alone. */
  from?: string;
  /** One address, or several separated by commas. */
  to: string;
  replyTo?: string;
  subject: string;
  textBody?: string;
  htmlBody?: string;
  /** Which block asks, kept with the message: `email` or `user`. */
  source: string;
  /**
   * Values in the subject or bodies that only some keys may read back (a reset code, a magic
   * link's token): delivered as they are, but kept sealed in the outbox, where `outbox` shows
   * them only when asked to reveal them.
   */
  secrets?: string[];
}

/** What the outbox shows in place of a sealed value to a key that may not read it. */
export const HIDDEN_SECRET = '[hidden: read the outbox with a key that has the user scope]';
/** A sealed value inside a stored message, in brackets. */
const SEALED_MARKER = /\[(alto-sealed:v1:[A-Za-z0-9+/=]+)\]/g;

export interface SmtpSetting {
  /** Where the project's mail goes: its own server, the instance's, or only the outbox. */
  source: 'project' | 'instance' | 'none';
  /** The server's URL with the password hidden; "" when there is none. */
  url: string;
}

export interface MailLimits {
  maxRecipients: number;
  maxSubjectChars: number;
  /** Largest text plus HTML body, in UTF-8 bytes. */
  maxBodyBytes: number;
  /** How long the outbox keeps a message. */
  retentionMs: number;
  /** How long one SMTP delivery may take before it counts as failed. */
  smtpTimeoutMs: number;
}

export const DEFAULT_MAIL_LIMITS: MailLimits = {
  maxRecipients: 50,
  maxSubjectChars: 998,
  maxBodyBytes: 2 * 1024 * 1024,
  retentionMs: 30 * 24 * 3600 * 1000,
  smtpTimeoutMs: 30_000,
};

/** Used as the From address when no SMTP server is configured: the mail only reaches the outbox. */
const OUTBOX_ONLY_SENDER = 'noreply@localhost';
const PURGE_INTERVAL_MS = 3600 * 1000;
/** How long a shutdown waits for background deliveries; those unfinished stay `queued` in the outbox. */
const CLOSE_WAIT_MS = 10_000;

/** Checks an `smtp://` or `smtps://` URL, throwing a 400 that says what is wrong. */
export function checkSmtpUrl(url: string, field = 'url'): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw errors.badRequest(`${field}: not a URL; give smtp://user:password@host:port (or smtps:// for TLS from the start)`);
  }
  if (parsed.protocol !== 'smtp:' && parsed.protocol !== 'smtps:') {
    throw errors.badRequest(`${field}: the scheme must be smtp:// or smtps://, not ${parsed.protocol}//`);
  }
  if (!parsed.hostname) throw errors.badRequest(`${field}: the URL has no host name`);
  const from = parsed.searchParams.get('from');
  if (from !== null && !isEmailAddress(from)) {
    const shown = from.length > MAX_ADDRESS_CHARS ? `${from.slice(0, 40)}…" (${from.length} characters, more than ${MAX_ADDRESS_CHARS})` : `${from}"`;
    throw errors.badRequest(`${field}: ?from= must be an email address, not "${shown}`);
  }
  return parsed;
}

/** The address mail is sent from: `?from=` in the URL, else the user name when it is an address. */
export function senderAddressOf(smtpUrl: string | undefined): string {
  if (!smtpUrl) return OUTBOX_ONLY_SENDER;
  const parsed = new URL(smtpUrl);
  const from = parsed.searchParams.get('from');
  if (from) return from;
  const user = decodeURIComponent(parsed.username);
  return isEmailAddress(user) ? user : `noreply@${parsed.hostname}`;
}

/** RFC 5321's limits: an address (a path less its brackets) and the local part before the "@". */
export const MAX_ADDRESS_CHARS = 254;
export const MAX_LOCAL_PART_CHARS = 64;
/** Longest text a field that holds addresses (with display names) may have: a header line's length. */
export const MAX_ADDRESS_FIELD_CHARS = 998;

const NOT_IN_ADDRESS = /[\s@<>(),;:"]/;

/**
 * Whether `text` is a plain address: a local part and a domain with a dot inside it (or
 * `localhost`), neither holding spaces, brackets or quotes. Written without a backtracking
 * pattern: the one it replaces (`[^…]+@[^…]+\.[^…]+$`) took seconds on 100 kB of dots.
 */
export function isEmailAddress(text: string): boolean {
  if (text.length > MAX_ADDRESS_CHARS) return false;
  const at = text.indexOf('@');
  if (at < 1 || at > MAX_LOCAL_PART_CHARS) return false;
  const local = text.slice(0, at);
  const domain = text.slice(at + 1);
  if (domain === '' || NOT_IN_ADDRESS.test(local) || NOT_IN_ADDRESS.test(domain)) return false;
  return domain === 'localhost' || domain.slice(1, -1).includes('.');
}

/** A 400 when a field that holds addresses is longer than any header line may be; before any parsing. */
export function checkAddressFieldLength(text: string, field: string, max = MAX_ADDRESS_FIELD_CHARS): void {
  if (text.length > max) throw errors.badRequest(`${field}: ${text.length} characters is longer than the ${max} allowed`);
}

/** The addresses in a recipient list, or a 400 naming the field and the bad entry. */
export function parseAddresses(text: string, field: string, maxChars = MAX_ADDRESS_FIELD_CHARS): string[] {
  checkAddressFieldLength(text, field, maxChars);
  const parsed = addressparser(text, { flatten: true });
  const addresses: string[] = [];
  for (const entry of parsed) {
    if (!entry.address || !isEmailAddress(entry.address)) {
      throw errors.badRequest(`${field}: "${entry.address || entry.name}" is not an email address`);
    }
    addresses.push(entry.address);
  }
  if (addresses.length === 0) throw errors.badRequest(`${field}: missing; give an email address`);
  return addresses;
}

/** Quotes a display name for a header when it holds anything beyond plain words. */
function formatAddress(name: string, address: string): string {
  if (!name) return address;
  const quoted = /^[\w .!#$%&'*+/=?^`{|}~-]+$/.test(name) ? name : `"${name.replace(/["\\]/g, '\\$&')}"`;
  return `${quoted} <${address}>`;
}

/**
 * nodemailer's options for a URL: the URL itself, minus our `from`, plus timeouts. A project's
 * own server goes through the outbound guard: its host is resolved and checked once, and the
 * connection is made to that address (the name kept for TLS), so it cannot be re-pointed at a
 * private address after the check.
 */
async function transportOptions(smtpUrl: string, timeoutMs: number, guarded: boolean) {
  const parsed = new URL(smtpUrl);
  parsed.searchParams.delete('from');
  const pinned = guarded ? await resolveOutbound(parsed.hostname, { allowPrivate: privateTargetsAllowed() }) : undefined;
  if (pinned) {
    const address = pinned.addresses[0];
    parsed.hostname = address.family === 6 ? `[${address.address}]` : address.address;
  }
  return {
    url: parsed.toString(),
    // The name the certificate must carry, now that the URL holds the address.
    ...(pinned && !isIP(pinned.host) ? { servername: pinned.host } : {}),
    connectionTimeout: Math.min(timeoutMs, 10_000),
    greetingTimeout: Math.min(timeoutMs, 10_000),
    socketTimeout: timeoutMs,
  };
}

/**
 * What a failed delivery is recorded and answered as: nodemailer's error code, the SMTP reply
 * code and a fixed sentence, never the server's own words (a "server" may be anything that
 * listens, and its first line is not the project's to read).
 */
function describeSmtpFailure(failure: SmtpFailure, recipients: string[]): string {
  const sentences: Record<string, string> = {
    EDNS: 'the mail server\'s host does not resolve',
    ECONNECTION: 'the mail server could not be reached, or did not speak SMTP',
    ETIMEDOUT: 'the mail server did not answer in time',
    ESOCKET: 'the connection to the mail server failed',
    ETLS: 'the TLS handshake with the mail server failed',
    EAUTH: 'the mail server refused the credentials',
    EENVELOPE: 'the mail server refused the sender or a recipient',
    EMESSAGE: 'the mail server refused the message',
    EPROTOCOL: 'the mail server did not speak SMTP as expected',
  };
  if (failure instanceof OutboundRefused) return failure.message;
  const code = failure.code && /^E[A-Z]+$/.test(failure.code) ? failure.code : 'ESOCKET';
  const reply = typeof failure.responseCode === 'number' && failure.responseCode >= 200 && failure.responseCode < 600 ? ` (SMTP ${failure.responseCode})` : '';
  // Which of our own recipients were refused: our bytes, not the server's.
  const rejected = Array.isArray(failure.rejected) ? recipients.filter((recipient) => failure.rejected!.includes(recipient)) : [];
  return `${code}: ${sentences[code] ?? 'the delivery failed'}${reply}${rejected.length ? `: ${rejected.join(', ')}` : ''}`;
}

interface SmtpFailure {
  code?: string;
  responseCode?: number;
  response?: string;
  message: string;
  rejected?: string[];
}

export class Mailer {
  private readonly deliveries = new Set<Promise<unknown>>();
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly store: MailStore,
    private readonly instanceSmtpUrl: string | undefined,
    private readonly log: Logger,
    private readonly limits: MailLimits = DEFAULT_MAIL_LIMITS,
    private readonly now: () => number = Date.now,
    /**
     * Seals the projects' SMTP URLs and the outbox's secrets at rest (the platform's master key).
     * Without one, secrets are never kept at all and SMTP URLs are kept as given.
     */
    private readonly cipher?: SecretCipher,
  ) {
    if (instanceSmtpUrl) checkSmtpUrl(instanceSmtpUrl, '--smtp');
  }

  /**
   * Writes the message to the outbox and delivers it; resolves with the outbox entry once the
   * SMTP server answered. A refusal is recorded, then thrown: 400 when the server refused the
   * message or a recipient for good, 503 when it could not be reached or refused for now.
   */
  async send(namespace: string, mail: OutgoingMail): Promise<OutboxMessage> {
    const { message, smtpUrl } = await this.record(namespace, mail);
    if (!smtpUrl) return message;
    const delivered = await this.deliver(namespace, message, smtpUrl);
    if (delivered.failure) throw this.failureError(delivered.message, delivered.failure, smtpUrl);
    return delivered.message;
  }

  /**
   * Writes the message to the outbox and delivers it in the background; resolves once it is
   * written. For mails whose sender must answer at once whatever happens next (a password
   * reset answers the same for known and unknown addresses, so it cannot wait on SMTP).
   */
  async enqueue(namespace: string, mail: OutgoingMail): Promise<OutboxMessage> {
    const { message, smtpUrl } = await this.record(namespace, mail);
    if (smtpUrl) {
      const delivery = this.deliver(namespace, message, smtpUrl).finally(() => this.deliveries.delete(delivery));
      this.deliveries.add(delivery);
    }
    return message;
  }

  /** The outbox, newest first; sealed secrets shown only with `revealSecrets`, else hidden. */
  async outbox(namespace: string, query: OutboxQuery, options: { revealSecrets?: boolean } = {}): Promise<OutboxMessage[]> {
    const messages = await this.store.listMessages(namespace, query);
    return messages.map((message) => this.unsealed(namespace, message, options.revealSecrets ?? false));
  }

  async message(namespace: string, id: string, options: { revealSecrets?: boolean } = {}): Promise<OutboxMessage | undefined> {
    const message = await this.store.getMessage(namespace, id);
    return message && this.unsealed(namespace, message, options.revealSecrets ?? false);
  }

  async smtpSetting(namespace: string): Promise<SmtpSetting> {
    const own = await this.projectSmtpUrl(namespace);
    if (own) return { source: 'project', url: redactUrl(own) };
    if (this.instanceSmtpUrl) return { source: 'instance', url: redactUrl(this.instanceSmtpUrl) };
    return { source: 'none', url: '' };
  }

  /** Sets the project's own SMTP server; "" removes it, so the instance's is used again. */
  async setProjectSmtp(namespace: string, url: string): Promise<SmtpSetting> {
    if (url === '') await this.store.deleteSmtpUrl(namespace);
    else {
      const checked = checkSmtpUrl(url);
      await resolveOutbound(checked.hostname, { allowPrivate: privateTargetsAllowed() });
      await this.store.putSmtpUrl(namespace, this.sealSmtpUrl(namespace, url), this.now());
    }
    return this.smtpSetting(namespace);
  }

  /** The project's own SMTP URL with its password, opened (for a project archive); undefined when it uses the instance's. */
  ownSmtpUrl(namespace: string): Promise<string | undefined> {
    return this.projectSmtpUrl(namespace);
  }

  /** The project's own SMTP URL, opened; one stored in plain text (before URLs were sealed) is sealed now. */
  private async projectSmtpUrl(namespace: string): Promise<string | undefined> {
    const stored = await this.store.getSmtpUrl(namespace);
    if (!stored || !this.cipher) return stored;
    if (!isSealedText(stored)) {
      await this.store.putSmtpUrl(namespace, this.sealSmtpUrl(namespace, stored), this.now());
      return stored;
    }
    return this.cipher.openText(stored, ['mail.smtp_url', namespace]);
  }

  private sealSmtpUrl(namespace: string, url: string): string {
    return this.cipher ? this.cipher.sealText(url, ['mail.smtp_url', namespace]) : url;
  }

  /** The message as stored: each secret replaced by a sealed marker (or hidden for good without a cipher). */
  private sealedForOutbox(namespace: string, message: OutboxMessage, secrets: string[]): OutboxMessage {
    const hide = (text: string) =>
      secrets.reduce((result, secret) => {
        if (secret === '' || !result.includes(secret)) return result;
        const marker = this.cipher
          ? `[${this.cipher.sealText(secret, ['mail.outbox', namespace, message.id])}]`
          : HIDDEN_SECRET;
        return result.split(secret).join(marker);
      }, text);
    return { ...message, subject: hide(message.subject), textBody: hide(message.textBody), htmlBody: hide(message.htmlBody) };
  }

  /** A stored message with its sealed markers opened (`reveal`) or hidden; a marker that does not open is hidden. */
  private unsealed(namespace: string, message: OutboxMessage, reveal: boolean): OutboxMessage {
    if (message.source === 'email') return message;
    const show = (text: string) =>
      text.includes('[alto-sealed:v1:')
        ? text.replace(SEALED_MARKER, (_marker, sealed: string) => {
            if (!reveal || !this.cipher) return HIDDEN_SECRET;
            try {
              return this.cipher.openText(sealed, ['mail.outbox', namespace, message.id]);
            } catch {
              return HIDDEN_SECRET;
            }
          })
        : text;
    return { ...message, subject: show(message.subject), textBody: show(message.textBody), htmlBody: show(message.htmlBody) };
  }

  async deleteProject(projectId: string): Promise<number> {
    return this.store.deleteProject(projectId);
  }

  startPurging(): void {
    this.purgeTimer = setInterval(() => {
      this.store.purgeBefore(this.now() - this.limits.retentionMs).catch((error: unknown) => {
        this.log.warn({ err: error }, 'mail: purging the outbox failed; retrying at the next interval');
      });
    }, PURGE_INTERVAL_MS);
    this.purgeTimer.unref();
  }

  /** Waits (a while) for background deliveries, then stops. */
  async close(): Promise<void> {
    clearInterval(this.purgeTimer);
    if (this.deliveries.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)));
      await Promise.race([Promise.allSettled([...this.deliveries]), timeout]);
      clearTimeout(timer);
    }
    await this.store.close();
  }

  private async record(namespace: string, mail: OutgoingMail): Promise<{ message: OutboxMessage; smtpUrl: string | undefined }> {
    const recipients = parseAddresses(mail.to, 'to', this.limits.maxRecipients * (MAX_ADDRESS_CHARS + 64));
    if (recipients.length > this.limits.maxRecipients) {
      throw errors.badRequest(`to: ${recipients.length} recipients is more than the ${this.limits.maxRecipients} a message may have`);
    }
    const replyTo = mail.replyTo ? parseAddresses(mail.replyTo, 'reply_to').join(', ') : '';
    const subject = mail.subject.replace(/[\r\n]+/g, ' ').trim();
    if (subject.length > this.limits.maxSubjectChars) {
      throw errors.badRequest(`subject: ${subject.length} characters is longer than the ${this.limits.maxSubjectChars} allowed`);
    }
    const textBody = mail.textBody ?? '';
    const htmlBody = mail.htmlBody ?? '';
    if (textBody === '' && htmlBody === '') throw errors.badRequest('text_body: missing; give a text_body, an html_body or both');
    const bodyBytes = Buffer.byteLength(textBody) + Buffer.byteLength(htmlBody);
    if (bodyBytes > this.limits.maxBodyBytes) {
      throw errors.payloadTooLarge(`text_body and html_body: ${bodyBytes} bytes is more than the ${this.limits.maxBodyBytes} a message may have`);
    }
    const smtpUrl = (await this.projectSmtpUrl(namespace)) ?? this.instanceSmtpUrl;
    const at = this.now();
    const message: OutboxMessage = {
      id: randomUUID(),
      from: this.fromHeader(mail.from ?? '', senderAddressOf(smtpUrl)),
      to: recipients.join(', '),
      replyTo,
      subject,
      textBody,
      htmlBody,
      source: mail.source,
      status: smtpUrl ? 'queued' : 'kept',
      error: '',
      messageId: '',
      createdAt: at,
      updatedAt: at,
    };
    await this.store.addMessage(namespace, this.sealedForOutbox(namespace, message, mail.secrets ?? []));
    return { message, smtpUrl };
  }

  /** A display name gets the server's sender address; an address (or "Name <address>") is used as given. */
  private fromHeader(from: string, senderAddress: string): string {
    checkAddressFieldLength(from, 'from');
    const trimmed = from.replace(/[\r\n]+/g, ' ').trim();
    if (trimmed === '') return senderAddress;
    if (trimmed.includes('@')) {
      const [entry] = addressparser(trimmed, { flatten: true });
      if (entry?.address && isEmailAddress(entry.address)) return formatAddress(entry.name, entry.address);
      throw errors.badRequest(`from: "${trimmed}" is neither a name nor an email address`);
    }
    return formatAddress(trimmed, senderAddress);
  }

  /** One SMTP delivery; never throws: the outcome is written to the outbox and returned. */
  private async deliver(
    namespace: string,
    message: OutboxMessage,
    smtpUrl: string,
  ): Promise<{ message: OutboxMessage; failure?: SmtpFailure }> {
    let outcome: OutboxMessage;
    let failure: SmtpFailure | undefined;
    let transport: ReturnType<typeof nodemailer.createTransport> | undefined;
    try {
      transport = nodemailer.createTransport(await transportOptions(smtpUrl, this.limits.smtpTimeoutMs, smtpUrl !== this.instanceSmtpUrl));
      const info = await transport.sendMail({
        from: message.from,
        to: message.to,
        replyTo: message.replyTo || undefined,
        subject: message.subject,
        text: message.textBody || undefined,
        html: message.htmlBody || undefined,
      });
      outcome = { ...message, status: 'sent', messageId: info.messageId ?? '', updatedAt: this.now() };
    } catch (error) {
      failure = error as SmtpFailure;
      const reason = describeSmtpFailure(failure, message.to.split(', '));
      this.log.warn({ namespace, message_id: message.id, smtp: redactUrl(smtpUrl), reason }, 'mail: delivery failed');
      outcome = { ...message, status: 'failed', error: reason, updatedAt: this.now() };
    } finally {
      transport?.close();
    }
    try {
      await this.store.updateMessage(namespace, message.id, {
        status: outcome.status,
        error: outcome.error,
        messageId: outcome.messageId,
        updatedAt: outcome.updatedAt,
      });
    } catch (error) {
      this.log.error({ err: error, namespace, message_id: message.id }, 'mail: cannot record the delivery outcome');
    }
    return { message: outcome, failure };
  }

  private failureError(message: OutboxMessage, failure: SmtpFailure, smtpUrl: string) {
    if (failure instanceof OutboundRefused) return failure;
    const server = redactUrl(smtpUrl);
    const where = `(outbox message ${message.id})`;
    if (failure.responseCode && failure.responseCode >= 500 && failure.code !== 'EAUTH') {
      return errors.badRequest(`the mail server at ${server} refused the message: ${message.error} ${where}`);
    }
    return errors.unavailable(`the mail server at ${server} could not take the message now: ${message.error} ${where}`);
  }
}

/**
 * The instance's one Mailer. Services that send mail list this component; the platform creates
 * it once however many do, and closes it at shutdown.
 */
export const mailComponent = component('platform.mail', async (platform) => {
  const log = platform.log.child({ part: 'mail' });
  const mailer = new Mailer(platform.stores.mail, platform.config.smtpUrl, log, DEFAULT_MAIL_LIMITS, Date.now, platform.masterKey().cipher);
  mailer.startPurging();
  log.info({ smtp: platform.config.smtpUrl ? redactUrl(platform.config.smtpUrl) : 'none (outbox only)' }, 'mail: ready');
  return mailer;
});
