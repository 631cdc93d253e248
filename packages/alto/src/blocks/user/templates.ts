/**
 * @module blocks/user/templates
 * The user block's mails (email verification, password reset, magic link): the built-in
 * wording, the placeholders a project's own templates may use, and rendering. Values are
 * HTML-escaped in HTML bodies. M3O's placeholders (`$micro_verification_link`, `$code`) work too,
 * so `text_content` written for M3O renders the same here.
 */
import { errors } from '../../kit/errors.js';

export const TEMPLATE_NAMES = ['verification', 'password_reset', 'magic_link'] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

export const PLACEHOLDERS = ['name', 'username', 'email', 'link', 'token', 'code', 'minutes'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];
export type TemplateValues = Record<Placeholder, string>;

export interface MailTemplate {
  subject: string;
  textBody: string;
  htmlBody: string;
  fromName: string;
}

export const DEFAULT_TEMPLATES: Record<TemplateName, MailTemplate> = {
  verification: {
    subject: 'Verify your email address',
    textBody:
      'Hello {{name}},\n\nPlease verify your email address by opening this link:\n\n{{link}}\n\n' +
      'The link works once and expires in {{minutes}} minutes. If you did not sign up, ignore this message.\n',
    htmlBody:
      '<p>Hello {{name}},</p><p>Please verify your email address: <a href="{{link}}">verify my address</a>.</p>' +
      '<p>The link works once and expires in {{minutes}} minutes. If you did not sign up, ignore this message.</p>',
    fromName: '',
  },
  password_reset: {
    subject: 'Your password reset code',
    textBody:
      'Hello {{name}},\n\nUse this code to reset your password:\n\n{{code}}\n\n' +
      'It works once and expires in {{minutes}} minutes. If you did not ask for it, ignore this message: your password stays as it is.\n',
    htmlBody:
      '<p>Hello {{name}},</p><p>Use this code to reset your password:</p><p><code>{{code}}</code></p>' +
      '<p>It works once and expires in {{minutes}} minutes. If you did not ask for it, ignore this message: your password stays as it is.</p>',
    fromName: '',
  },
  magic_link: {
    subject: 'Your sign-in link',
    textBody:
      'Hello {{name}},\n\nOpen this link to sign in:\n\n{{link}}\n\n' +
      'It works once and expires in {{minutes}} minutes. If you did not ask for it, ignore this message.\n',
    htmlBody:
      '<p>Hello {{name}},</p><p><a href="{{link}}">Sign in</a></p>' +
      '<p>It works once and expires in {{minutes}} minutes. If you did not ask for it, ignore this message.</p>',
    fromName: '',
  },
};

const PLACEHOLDER_PATTERN = /\{\{\s*([a-zA-Z_]+)\s*\}\}/g;

/** Refuses a template that names a placeholder we do not fill, saying which ones exist. */
export function checkTemplate(field: string, text: string): void {
  for (const match of text.matchAll(PLACEHOLDER_PATTERN)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(match[1])) {
      throw errors.badRequest(
        `${field}: {{${match[1]}}} is not a placeholder; use ${PLACEHOLDERS.map((name) => `{{${name}}}`).join(', ')}`,
      );
    }
  }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** Fills `{{placeholders}}` and M3O's `$micro_verification_link` / `$code`; HTML-escapes values in HTML. */
export function renderTemplate(text: string, values: TemplateValues, format: 'text' | 'html'): string {
  const value = (name: Placeholder) => (format === 'html' ? escapeHtml(values[name]) : values[name]);
  return text
    .replace(PLACEHOLDER_PATTERN, (whole, name: string) =>
      (PLACEHOLDERS as readonly string[]).includes(name) ? value(name as Placeholder) : whole,
    )
    .replaceAll('$micro_verification_link', value('link'))
    .replaceAll('$code', value('code'));
}
