/**
 * @module blocks/email
 * The `email` block: M3O-compatible `Send`, `Parse` and `Validate`, plus `Outbox` (every message
 * a project sent, newest first, so local development needs no mail server) and the project's own
 * SMTP server (`SetSmtp`, `ReadSmtp`). Sending itself is the platform's Mailer, which the `user`
 * block uses too: without SMTP configured, messages are kept in the outbox only.
 */
import addressparser from 'nodemailer/lib/addressparser';
import { mailComponent, parseAddresses } from '../../platform/mail.js';
import { defineService, endpoint, type CallContext } from '../../platform/service.js';
import type { OutboxMessage } from '../../store/mail/port.js';
import {
  OutboxRequest,
  OutboxResponse,
  ParseRequest,
  ParseResponse,
  ReadSmtpRequest,
  ReadSmtpResponse,
  SendRequest,
  SendResponse,
  SetSmtpRequest,
  SetSmtpResponse,
  ValidateRequest,
  ValidateResponse,
} from './schema.js';
import { emailSection } from './transfer.js';

function use(context: CallContext) {
  return { mailer: context.platform.use(mailComponent), namespace: context.tenant.namespace };
}

function wireMessage(message: OutboxMessage) {
  return {
    id: message.id,
    from: message.from,
    to: message.to,
    reply_to: message.replyTo,
    subject: message.subject,
    text_body: message.textBody,
    html_body: message.htmlBody,
    source: message.source,
    status: message.status,
    error: message.error,
    message_id: message.messageId,
    created: new Date(message.createdAt).toISOString(),
  };
}

export const emailService = defineService({
  name: 'email',
  description: 'Send email over SMTP, with every message kept in an outbox the project can read.',
  priceMicros: 1,
  components: [mailComponent],
  endpoints: {
    Send: endpoint({
      description:
        'Send an email by passing in from, to, subject and a text or html body. It goes to the project\'s SMTP server, ' +
        'else the instance\'s; with none configured it is kept in the outbox only (status "kept").',
      request: SendRequest,
      response: SendResponse,
      // A message costs more than a lookup: it is stored and goes out over SMTP.
      priceMicros: 100,
      example: { from: 'Awesome Dot Com', to: 'joe@example.com', subject: 'Email verification', text_body: 'Hi there,\n\nWelcome!' },
      async handler(request, context) {
        const { mailer, namespace } = use(context);
        const message = await mailer.send(namespace, {
          from: request.from,
          to: request.to,
          replyTo: request.reply_to,
          subject: request.subject,
          textBody: request.text_body,
          htmlBody: request.html_body,
          source: 'email',
        });
        return { id: message.id, status: message.status };
      },
    }),
    Parse: endpoint({
      description: 'Parse an RFC 5322 address, e.g. "Joe Blogs <joe@example.com>", into its name and address.',
      request: ParseRequest,
      response: ParseResponse,
      example: { address: 'Joe Blogs <joe@example.com>' },
      handler(request) {
        const [address] = parseAddresses(request.address, 'address');
        const [entry] = addressparser(request.address, { flatten: true });
        return { name: entry?.name ?? '', address };
      },
    }),
    Validate: endpoint({
      description: 'Check whether an email address is well formed.',
      request: ValidateRequest,
      response: ValidateResponse,
      example: { address: 'joe@example.com' },
      handler(request) {
        try {
          return { is_valid: parseAddresses(request.address, 'address').length === 1 };
        } catch {
          return { is_valid: false };
        }
      },
    }),
    Outbox: endpoint({
      description:
        'The messages the project sent (by email/Send and by the user block), newest first, with how each went. ' +
        "The user block's codes and links are shown only to keys with the user scope.",
      request: OutboxRequest,
      response: OutboxResponse,
      example: { limit: 10 },
      async handler(request, context) {
        const { mailer, namespace } = use(context);
        // The user block's mails carry live tokens (reset codes, magic links): only a key that
        // could use the user block anyway may read them back.
        const scopes = context.tenant.scopes;
        const revealSecrets = scopes.includes('*') || scopes.includes('user');
        const messages = await mailer.outbox(namespace, { offset: request.offset, limit: request.limit, to: request.to }, { revealSecrets });
        return { messages: messages.map(wireMessage) };
      },
    }),
    SetSmtp: endpoint({
      description:
        "Set the project's own SMTP server (smtp:// or smtps://, with ?from=address for the sender). Its password is " +
        "never shown again. An empty url goes back to the instance's server.",
      request: SetSmtpRequest,
      response: SetSmtpResponse,
      example: { url: 'smtp://apikey:secret@smtp.example.com:587?from=noreply%40example.com' },
      async handler(request, context) {
        const { mailer, namespace } = use(context);
        return mailer.setProjectSmtp(namespace, request.url);
      },
    }),
    ReadSmtp: endpoint({
      description: "Where the project's mail goes: its own SMTP server, the instance's, or only the outbox (password hidden).",
      request: ReadSmtpRequest,
      response: ReadSmtpResponse,
      example: {},
      async handler(_request, context) {
        const { mailer, namespace } = use(context);
        return mailer.smtpSetting(namespace);
      },
    }),
  },
  transfer: emailSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(mailComponent).deleteProject(projectId);
  },
});
