/**
 * @module blocks/email/schema
 * The wire schema of the `email` block, compatible with M3O's `email` service (`Send` with
 * from, to, reply_to, subject, text_body, html_body; `Parse`; `Validate`), plus the outbox every
 * message is kept in and the project's own SMTP server.
 */
import { z } from 'zod';
import { MAX_ADDRESS_FIELD_CHARS } from '../../platform/mail.js';

const Text = (description: string) => z.string({ error: `expected a string: ${description}` }).describe(description);

/**
 * A field that holds addresses, capped before anything parses it: RFC 5321 allows 254
 * characters for an address, a header line 998; a list of recipients gets 64 per address.
 */
const AddressText = (description: string, max = MAX_ADDRESS_FIELD_CHARS) =>
  z
    .string({ error: `expected a string: ${description}` })
    .max(max, { error: `at most ${max} characters` })
    .describe(`${description} (at most ${max} characters)`);
const MAX_RECIPIENTS_CHARS = 16 * 1024;
const MAX_SMTP_URL_CHARS = 2048;

export const SendRequest = z.object({
  from: AddressText('the name of the sender ("Acme"); an address or "Name <address>" sends from that address').default(''),
  to: AddressText('the email address of the recipient; several separated by commas', MAX_RECIPIENTS_CHARS).default(''),
  reply_to: AddressText('an email address for replies').default(''),
  subject: Text('the email subject').default(''),
  text_body: Text('the text body').default(''),
  html_body: Text('the HTML body').default(''),
});
export const SendResponse = z.object({
  id: z.string().describe('the id of the message in the outbox (Alto addition)'),
  status: z
    .enum(['sent', 'kept', 'queued', 'failed'])
    .describe('"sent" when the SMTP server took it, "kept" when no SMTP server is configured and the outbox holds it'),
});

export const ParseRequest = z.object({ address: AddressText('an RFC 5322 address, e.g. "Joe Blogs <joe@example.com>"').default('') });
export const ParseResponse = z.object({
  name: z.string().describe('the display name, e.g. "Joe Blogs"'),
  address: z.string().describe('the email address, e.g. joe@example.com'),
});

export const ValidateRequest = z.object({ address: AddressText('an email address to check').default('') });
export const ValidateResponse = z.object({ is_valid: z.boolean().describe('whether the address is well formed') });

export const OutboxMessage = z.object({
  id: z.string(),
  from: z.string().describe('the From header as sent'),
  to: z.string(),
  reply_to: z.string(),
  subject: z.string(),
  text_body: z.string(),
  html_body: z.string(),
  source: z.string().describe('"email" for email/Send, "user" for the user block\'s mails'),
  status: z.enum(['sent', 'kept', 'queued', 'failed']),
  error: z.string().describe('why delivery failed; empty otherwise'),
  message_id: z.string().describe('the Message-ID header it was sent with; empty until sent'),
  created: z.string().describe('when it was sent, RFC 3339'),
});

export const OutboxRequest = z.object({
  limit: z.number().int().min(1).max(1000).default(25).describe('how many messages, newest first (default 25, at most 1000)'),
  offset: z.number().int().min(0).default(0).describe('how many of the newest to skip'),
  to: AddressText('only messages to addresses containing this text').default(''),
});
export const OutboxResponse = z.object({ messages: z.array(OutboxMessage) });

const SmtpSetting = z.object({
  source: z.enum(['project', 'instance', 'none']).describe("where the project's mail goes: its own server, the instance's, or only the outbox"),
  url: z.string().describe('the SMTP server, its password hidden; empty when there is none'),
});
export const SetSmtpRequest = z.object({
  url: Text('smtp://user:password@host:port or smtps://... (add ?from=address to choose the sender); empty to use the instance\'s')
    .max(MAX_SMTP_URL_CHARS, { error: `at most ${MAX_SMTP_URL_CHARS} characters` })
    .default(''),
});
export const SetSmtpResponse = SmtpSetting;
export const ReadSmtpRequest = z.object({});
export const ReadSmtpResponse = SmtpSetting;
