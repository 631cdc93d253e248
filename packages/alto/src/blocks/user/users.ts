/**
 * @module blocks/user/users
 * The user block's logic: accounts with argon2id password hashes, sessions that expire, one-time
 * tokens (email verification, password reset, magic link) that are random, stored only as
 * SHA-256 hashes, single use and expiring, and failed logins limited per account and per client
 * address. No answer tells whether an email is registered, except Create's (and the lookups
 * Read and List, which exist to find accounts): Login fails the same way, at the same cost, for
 * an unknown email and a wrong password; the Send* endpoints answer the same for unknown emails.
 */
import { hash, verify } from '@node-rs/argon2';
import { createHash, randomUUID } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { baseUrlOf } from '../../kit/public-url.js';
import { randomBase62 } from '../../kit/random.js';
import { FailedLoginLimiter, tooManyRequests, verifyPasswordEvenIfUnknown } from '../../platform/failed-logins.js';
import { isEmailAddress, MAX_ADDRESS_CHARS, type Mailer } from '../../platform/mail.js';
import type { StoredSession, StoredToken, StoredUser, TokenPurpose, UserStore } from '../../store/users/port.js';
import {
  checkTemplate,
  DEFAULT_TEMPLATES,
  renderTemplate,
  type MailTemplate,
  type TemplateName,
  type TemplateValues,
} from './templates.js';
import { trimBoth, trimEnd } from '../../kit/text.js';

export interface UserLimits {
  minPasswordChars: number;
  maxPasswordChars: number;
  sessionTtlMs: number;
  /** Failed logins for one email or username (and for one account) within the window before 429. */
  loginFailuresPerAccount: number;
  /** Failed logins from one client address within the window before 429. */
  loginFailuresPerAddress: number;
  loginWindowMs: number;
  /** Mails of one kind asked for one address within the window before 429 (known and unknown alike). */
  mailsPerAddress: number;
  mailWindowMs: number;
  /** Longest `expiration` a mail's token may be given, in seconds. */
  maxTokenSeconds: number;
  maxProfileBytes: number;
  maxNameChars: number;
}

export const DEFAULT_USER_LIMITS: UserLimits = {
  minPasswordChars: 8,
  maxPasswordChars: 1024,
  sessionTtlMs: 7 * 24 * 3600 * 1000,
  loginFailuresPerAccount: 5,
  loginFailuresPerAddress: 20,
  loginWindowMs: 15 * 60 * 1000,
  mailsPerAddress: 5,
  mailWindowMs: 15 * 60 * 1000,
  maxTokenSeconds: 7 * 24 * 3600,
  maxProfileBytes: 64 * 1024,
  maxNameChars: 254,
};

/** The account as the wire shows it (no password hash). */
export interface AccountView {
  id: string;
  username: string;
  email: string;
  verified: boolean;
  verification_date: number;
  created: number;
  updated: number;
  profile: Record<string, string>;
}

export interface SessionView {
  id: string;
  created: number;
  expires: number;
  userId: string;
}

/** What every mail-sending call shares: the words may come from the request, else the project's template. */
export interface MailRequest {
  email: string;
  fromName: string;
  subject: string;
  textContent: string;
  expirationSeconds: number;
}

const TOKEN_BYTES = 24;

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

const seconds = (ms: number) => Math.floor(ms / 1000);

function accountView(user: StoredUser): AccountView {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    verified: user.verified,
    verification_date: seconds(user.verifiedAt),
    created: seconds(user.createdAt),
    updated: seconds(user.updatedAt),
    profile: user.profile,
  };
}

function sessionView(id: string, session: StoredSession): SessionView {
  return { id, created: seconds(session.createdAt), expires: seconds(session.expiresAt), userId: session.userId };
}

export function invalidToken(field: string, what: string) {
  return errors.badRequest(`${field}: not valid, already used, or expired; ${what}`);
}

export class UserBlock {
  private purgeTimer: NodeJS.Timeout | undefined;
  private readonly failedLogins: FailedLoginLimiter;

  constructor(
    readonly store: UserStore,
    private readonly mailer: Mailer,
    private readonly log: Logger,
    private readonly limits: UserLimits = DEFAULT_USER_LIMITS,
    private readonly now: () => number = Date.now,
    /** ALTO_PUBLIC_URL: the base of the verification link; undefined to use each caller's origin. */
    private readonly publicUrl: string | undefined = undefined,
  ) {
    this.failedLogins = new FailedLoginLimiter(
      store,
      { perAccount: limits.loginFailuresPerAccount, perAddress: limits.loginFailuresPerAddress, windowMs: limits.loginWindowMs },
      now,
    );
  }

  // ---- accounts ----

  async create(
    namespace: string,
    request: { id: string; email: string; username: string; password: string; profile: Record<string, string> },
  ): Promise<AccountView> {
    const email = this.checkEmail(request.email);
    const username = this.checkUsername(request.username);
    this.checkPassword(request.password, 'password');
    this.checkProfile(request.profile);
    const id = request.id.trim() || randomUUID();
    if (id.length > this.limits.maxNameChars) throw errors.badRequest(`id: longer than ${this.limits.maxNameChars} characters`);
    const at = this.now();
    const user: StoredUser = {
      id,
      username,
      email,
      passwordHash: await hash(request.password),
      verified: false,
      verifiedAt: 0,
      profile: request.profile,
      createdAt: at,
      updatedAt: at,
    };
    const outcome = await this.store.createUser(namespace, user);
    if (outcome === 'id_taken') throw errors.conflict(`id: an account with id "${id}" already exists`);
    if (outcome === 'email_taken') throw errors.conflict(`email: ${email} is already registered`);
    if (outcome === 'username_taken') throw errors.conflict(`username: "${username}" is already taken`);
    return accountView(user);
  }

  async read(namespace: string, by: { id: string; email: string; username: string }): Promise<AccountView> {
    let user: StoredUser | undefined;
    if (by.id) user = await this.store.getUser(namespace, by.id);
    else if (by.username) user = await this.store.findUser(namespace, 'username', by.username.trim().toLowerCase());
    else if (by.email) user = await this.store.findUser(namespace, 'email', by.email.trim().toLowerCase());
    else throw errors.badRequest('id: missing; give the id, username or email of the account');
    if (!user) throw errors.notFound('account not found');
    return accountView(user);
  }

  async update(
    namespace: string,
    request: { id: string; email: string; username: string; profile?: Record<string, string> },
  ): Promise<void> {
    if (!request.id) throw errors.badRequest('id: missing; give the id of the account to update');
    const current = await this.store.getUser(namespace, request.id);
    if (!current) throw errors.notFound(`account "${request.id}" not found`);
    const email = request.email ? this.checkEmail(request.email) : undefined;
    const username = request.username ? this.checkUsername(request.username) : undefined;
    if (request.profile) this.checkProfile(request.profile);
    const emailChanged = email !== undefined && email !== current.email;
    const outcome = await this.store.updateUser(namespace, request.id, {
      email,
      username,
      profile: request.profile,
      // A new address is not verified: whoever owns it has not proved it yet.
      ...(emailChanged ? { verified: false, verifiedAt: 0 } : {}),
      updatedAt: this.now(),
    });
    if (outcome === 'not_found') throw errors.notFound(`account "${request.id}" not found`);
    if (outcome === 'email_taken') throw errors.conflict(`email: ${email} is already registered`);
    if (outcome === 'username_taken') throw errors.conflict(`username: "${username}" is already taken`);
    if (emailChanged) await this.store.deleteTokens(namespace, request.id, ['verification', 'password_reset', 'magic_link']);
  }

  async delete(namespace: string, id: string): Promise<void> {
    if (!id) throw errors.badRequest('id: missing; give the id of the account to delete');
    await this.store.deleteUser(namespace, id);
  }

  async list(namespace: string, offset: number, limit: number): Promise<AccountView[]> {
    if (limit > 1000) throw errors.badRequest(`limit: ${limit} is more than the maximum of 1000`);
    if (limit < 0 || offset < 0) throw errors.badRequest('limit and offset: must not be negative');
    const users = await this.store.listUsers(namespace, offset, limit === 0 ? 25 : limit);
    return users.map(accountView);
  }

  // ---- sessions ----

  async login(
    namespace: string,
    request: { email: string; username: string; password: string },
    clientAddress: string,
  ): Promise<SessionView> {
    const field = request.email ? 'email' : request.username ? 'username' : undefined;
    if (!field) throw errors.badRequest('email: missing; give the email (or username) and password to log in');
    if (!request.password) throw errors.badRequest('password: missing');
    const identifier = (field === 'email' ? request.email : request.username).trim().toLowerCase();
    const user = await this.store.findUser(namespace, field, identifier);
    const subjects = { identifier: `login:${field}:${identifier}`, address: `address:${clientAddress}`, account: user && `account:${user.id}` };
    await this.failedLogins.check(namespace, subjects);
    // Verified whether or not the user exists (against a decoy hash when not): the time taken
    // does not tell which.
    const valid = await verifyPasswordEvenIfUnknown(user?.passwordHash, request.password);
    if (!user || !valid) {
      await this.failedLogins.recordFailure(namespace, subjects);
      throw errors.unauthorized(`${field} or password is wrong`);
    }
    await this.failedLogins.recordSuccess(namespace, subjects);
    return this.startSession(namespace, user.id);
  }

  async readSession(namespace: string, sessionId: string): Promise<SessionView> {
    if (!sessionId) throw errors.badRequest('session_id: missing');
    const session = await this.store.getSession(namespace, sha256(sessionId), this.now());
    if (!session) throw errors.notFound('session not found or expired');
    return sessionView(sessionId, session);
  }

  async logout(namespace: string, sessionId: string): Promise<void> {
    if (!sessionId) throw errors.badRequest('session_id: missing');
    await this.store.deleteSession(namespace, sha256(sessionId));
  }

  async logoutAll(namespace: string, userId: string): Promise<void> {
    if (!userId) throw errors.badRequest('user_id: missing');
    await this.store.deleteSessions(namespace, userId);
  }

  async updatePassword(
    namespace: string,
    request: { userId: string; old_password: string; new_password: string; confirm_password: string; session_id: string },
  ): Promise<void> {
    if (!request.userId) throw errors.badRequest('userId: missing; give the id of the account');
    this.checkNewPassword(request.new_password, request.confirm_password);
    const user = await this.store.getUser(namespace, request.userId);
    if (!user) throw errors.notFound(`account "${request.userId}" not found`);
    const subject = `account:${user.id}`;
    if ((await this.store.countAttempts(namespace, subject, this.now() - this.limits.loginWindowMs + 1)) >= this.limits.loginFailuresPerAccount) {
      throw tooManyRequests('too many wrong passwords for this account; try again later, or reset the password', this.limits.loginWindowMs);
    }
    if (!(await verify(user.passwordHash, request.old_password).catch(() => false))) {
      await this.store.recordAttempt(namespace, subject, this.now());
      throw errors.unauthorized('old_password: wrong password');
    }
    await this.setPassword(namespace, user.id, request.new_password, request.session_id ? sha256(request.session_id) : undefined);
  }

  // ---- mails and their tokens ----

  async sendVerificationEmail(
    namespace: string,
    request: MailRequest & { redirectUrl: string; failureRedirectUrl: string },
    origin: string | undefined,
  ): Promise<void> {
    const redirects = {
      redirect_url: this.checkRedirect(request.redirectUrl, 'redirect_url'),
      failure_redirect_url: this.checkRedirect(request.failureRedirectUrl, 'failure_redirect_url'),
    };
    const user = await this.beforeMail(namespace, 'verification', request);
    if (!user) return;
    const token = await this.issueToken(namespace, 'verification', user, request.expirationSeconds, redirects);
    const link = `${baseUrlOf(this.publicUrl, origin)}/user/verify?${new URLSearchParams({ ns: namespace, token })}`;
    await this.mail(namespace, 'verification', user, request, { link, token, code: token });
  }

  /**
   * Marks the account verified when the token is good. Never throws for a bad token: the API
   * answers 400, the verification page redirects to the failure URL the token carried.
   */
  async verifyEmail(namespace: string, token: string): Promise<{ verified: boolean; redirectUrl: string; failureRedirectUrl: string }> {
    const stored = token ? await this.store.consumeToken(namespace, 'verification', sha256(token)) : undefined;
    const redirectUrl = stored?.data.redirect_url ?? '';
    const failureRedirectUrl = stored?.data.failure_redirect_url ?? '';
    if (!stored || stored.expiresAt <= this.now()) return { verified: false, redirectUrl, failureRedirectUrl };
    const user = await this.store.getUser(namespace, stored.userId);
    if (!user || user.email !== stored.data.email) return { verified: false, redirectUrl, failureRedirectUrl };
    await this.store.updateUser(namespace, user.id, { verified: true, verifiedAt: this.now(), updatedAt: this.now() });
    await this.store.deleteTokens(namespace, user.id, ['verification']);
    return { verified: true, redirectUrl, failureRedirectUrl };
  }

  async sendPasswordResetEmail(namespace: string, request: MailRequest): Promise<void> {
    const user = await this.beforeMail(namespace, 'password_reset', request);
    if (!user) return;
    const code = await this.issueToken(namespace, 'password_reset', user, request.expirationSeconds, {});
    await this.mail(namespace, 'password_reset', user, request, { link: '', token: code, code });
  }

  async resetPassword(
    namespace: string,
    request: { email: string; code: string; new_password: string; confirm_password: string },
  ): Promise<void> {
    if (!request.email) throw errors.badRequest('email: missing');
    if (!request.code) throw errors.badRequest('code: missing; give the code from the password reset email');
    this.checkNewPassword(request.new_password, request.confirm_password);
    const { user } = await this.useToken(namespace, 'password_reset', request.code, 'code', 'ask for a new password reset email', {
      email: request.email.trim().toLowerCase(),
    });
    await this.setPassword(namespace, user.id, request.new_password, undefined);
    await this.store.clearAttempts(namespace, `login:email:${user.email}`);
    if (user.username) await this.store.clearAttempts(namespace, `login:username:${user.username}`);
  }

  async sendMagicLink(namespace: string, request: MailRequest & { address: string; endpoint: string }): Promise<void> {
    const address = trimEnd(request.address.trim(), '/');
    if (!address) throw errors.badRequest('address: missing; give your web site address, e.g. www.example.com');
    const user = await this.beforeMail(namespace, 'magic_link', request);
    if (!user) return;
    const token = await this.issueToken(namespace, 'magic_link', user, request.expirationSeconds, {});
    const base = /^https?:\/\//i.test(address) ? address : `https://${address}`;
    const path = [trimBoth(request.endpoint, '/'), token].filter(Boolean).join('/');
    await this.mail(namespace, 'magic_link', user, request, { link: `${base}/${path}`, token, code: token });
  }

  /** M3O's VerifyToken: a valid magic-link token becomes a session; an invalid one says why, without an error. */
  async verifyToken(namespace: string, token: string): Promise<{ is_valid: boolean; message: string; session?: SessionView }> {
    if (!token) return { is_valid: false, message: 'token empty' };
    const stored = await this.store.consumeToken(namespace, 'magic_link', sha256(token));
    if (!stored) return { is_valid: false, message: 'token not found' };
    if (stored.expiresAt <= this.now()) return { is_valid: false, message: 'token expired' };
    const user = await this.store.getUser(namespace, stored.userId);
    if (!user || user.email !== stored.data.email) return { is_valid: false, message: 'token not found' };
    if (!user.verified) {
      // Opening the link proved the user reads that mailbox: the address is verified.
      await this.store.updateUser(namespace, user.id, { verified: true, verifiedAt: this.now(), updatedAt: this.now() });
    }
    return { is_valid: true, message: '', session: await this.startSession(namespace, user.id) };
  }

  // ---- templates ----

  async setTemplate(namespace: string, name: TemplateName, template: MailTemplate): Promise<void> {
    checkTemplate('subject', template.subject);
    checkTemplate('text_body', template.textBody);
    checkTemplate('html_body', template.htmlBody);
    if (template.subject === '' && template.textBody === '' && template.htmlBody === '' && template.fromName === '') {
      await this.store.deleteTemplate(namespace, name);
      return;
    }
    if (template.textBody === '' && template.htmlBody === '') {
      throw errors.badRequest('text_body: missing; give a text_body or an html_body (or nothing at all to go back to the built-in template)');
    }
    await this.store.putTemplate(namespace, { name, ...template, updatedAt: this.now() });
  }

  async template(namespace: string, name: TemplateName): Promise<MailTemplate & { custom: boolean }> {
    const own = await this.store.getTemplate(namespace, name);
    if (!own) return { ...DEFAULT_TEMPLATES[name], custom: false };
    return {
      subject: own.subject || DEFAULT_TEMPLATES[name].subject,
      textBody: own.textBody,
      htmlBody: own.htmlBody,
      fromName: own.fromName,
      custom: true,
    };
  }

  async deleteProject(projectId: string): Promise<number> {
    return this.store.deleteProject(projectId);
  }

  startPurging(intervalMs = 60_000): void {
    this.purgeTimer = setInterval(() => {
      const now = this.now();
      const oldestWindow = Math.max(this.limits.loginWindowMs, this.limits.mailWindowMs);
      this.store.purgeExpired(now, now - oldestWindow).catch((error: unknown) => {
        this.log.warn({ err: error }, 'user: purging expired sessions and tokens failed; retrying at the next interval');
      });
    }, intervalMs);
    this.purgeTimer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.purgeTimer);
    await this.store.close();
  }

  // ---- helpers ----

  private async startSession(namespace: string, userId: string): Promise<SessionView> {
    const id = randomBase62(32);
    const createdAt = this.now();
    const session: StoredSession = { idHash: sha256(id), userId, createdAt, expiresAt: createdAt + this.limits.sessionTtlMs };
    await this.store.createSession(namespace, session);
    return sessionView(id, session);
  }

  /** New hash; every session ends but `keepIdHash`; pending resets and magic links are void. */
  private async setPassword(namespace: string, userId: string, password: string, keepIdHash: string | undefined): Promise<void> {
    await this.store.updateUser(namespace, userId, { passwordHash: await hash(password), updatedAt: this.now() });
    await this.store.deleteSessions(namespace, userId, keepIdHash);
    await this.store.deleteTokens(namespace, userId, ['password_reset', 'magic_link']);
    await this.store.clearAttempts(namespace, `account:${userId}`);
  }

  /**
   * Checks the request and counts it against the address's mail limit, then finds the account.
   * Both happen whether or not the email is registered, so the answer never tells.
   */
  private async beforeMail(namespace: string, purpose: TokenPurpose, request: MailRequest): Promise<StoredUser | undefined> {
    const email = this.checkEmail(request.email);
    if (request.expirationSeconds < 1 || request.expirationSeconds > this.limits.maxTokenSeconds) {
      throw errors.badRequest(`expiration: must be 1 to ${this.limits.maxTokenSeconds} seconds, not ${request.expirationSeconds}`);
    }
    checkTemplate('subject', request.subject);
    checkTemplate('text_content', request.textContent);
    const subject = `mail:${purpose}:${email}`;
    const now = this.now();
    if ((await this.store.countAttempts(namespace, subject, now - this.limits.mailWindowMs + 1)) >= this.limits.mailsPerAddress) {
      throw tooManyRequests(
        `too many ${purpose.replace('_', ' ')} emails asked for this address; try again in up to ${Math.round(this.limits.mailWindowMs / 60_000)} minutes`,
        this.limits.mailWindowMs,
      );
    }
    await this.store.recordAttempt(namespace, subject, now);
    return this.store.findUser(namespace, 'email', email);
  }

  private async issueToken(
    namespace: string,
    purpose: TokenPurpose,
    user: StoredUser,
    expirationSeconds: number,
    data: Record<string, string>,
  ): Promise<string> {
    const token = randomBase62(TOKEN_BYTES);
    const createdAt = this.now();
    await this.store.createToken(namespace, {
      hash: sha256(token),
      purpose,
      userId: user.id,
      createdAt,
      expiresAt: createdAt + expirationSeconds * 1000,
      // The email it was sent to: a token for an address the account no longer has is void.
      data: { ...data, email: user.email },
    });
    return token;
  }

  /** Consumes a token (single use even when it then fails a check) and returns it with its account. */
  private async useToken(
    namespace: string,
    purpose: TokenPurpose,
    token: string,
    field: string,
    remedy: string,
    expect: { email?: string } = {},
  ): Promise<{ stored: StoredToken; user: StoredUser }> {
    if (!token) throw errors.badRequest(`${field}: missing`);
    const stored = await this.store.consumeToken(namespace, purpose, sha256(token));
    if (!stored || stored.expiresAt <= this.now()) throw invalidToken(field, remedy);
    const user = await this.store.getUser(namespace, stored.userId);
    if (!user || user.email !== stored.data.email || (expect.email !== undefined && expect.email !== user.email)) {
      throw invalidToken(field, remedy);
    }
    return { stored, user };
  }

  private async mail(
    namespace: string,
    name: TemplateName,
    user: StoredUser,
    request: MailRequest,
    values: Pick<TemplateValues, 'link' | 'token' | 'code'>,
  ): Promise<void> {
    const template = await this.template(namespace, name);
    const all: TemplateValues = {
      ...values,
      name: user.username || user.email,
      username: user.username,
      email: user.email,
      minutes: String(Math.max(1, Math.round(request.expirationSeconds / 60))),
    };
    // M3O's text_content replaces the whole body, and M3O sent it as text only.
    const textBody = request.textContent || template.textBody;
    const htmlBody = request.textContent ? '' : template.htmlBody;
    await this.mailer.enqueue(namespace, {
      from: request.fromName || template.fromName,
      to: user.email,
      subject: renderTemplate(request.subject || template.subject, all, 'text'),
      textBody: renderTemplate(textBody, all, 'text'),
      htmlBody: renderTemplate(htmlBody, all, 'html'),
      source: 'user',
      // The token is live: the outbox keeps it sealed and shows it only to keys with the user scope.
      secrets: [values.token],
    });
  }

  private checkEmail(raw: string): string {
    const email = raw.trim().toLowerCase();
    if (!email) throw errors.badRequest('email: missing');
    if (email.length > MAX_ADDRESS_CHARS) throw errors.badRequest(`email: ${email.length} characters is longer than the ${MAX_ADDRESS_CHARS} an address may have`);
    if (!isEmailAddress(email)) throw errors.badRequest(`email: "${raw}" is not an email address`);
    return email;
  }

  private checkUsername(raw: string): string {
    const username = raw.trim().toLowerCase();
    if (username.length > this.limits.maxNameChars) throw errors.badRequest(`username: longer than ${this.limits.maxNameChars} characters`);
    if (/[\s\u0000-\u001f]/.test(username)) throw errors.badRequest('username: must not contain spaces or control characters');
    return username;
  }

  private checkPassword(password: string, field: string): void {
    if (password.length < this.limits.minPasswordChars) {
      throw errors.badRequest(`${field}: use at least ${this.limits.minPasswordChars} characters`);
    }
    if (password.length > this.limits.maxPasswordChars) {
      throw errors.badRequest(`${field}: longer than ${this.limits.maxPasswordChars} characters`);
    }
  }

  private checkNewPassword(password: string, confirmation: string): void {
    this.checkPassword(password, 'new_password');
    if (password !== confirmation) throw errors.badRequest('confirm_password: does not match new_password');
  }

  private checkProfile(profile: Record<string, string>): void {
    const bytes = Buffer.byteLength(JSON.stringify(profile));
    if (bytes > this.limits.maxProfileBytes) {
      throw errors.payloadTooLarge(`profile: ${bytes} bytes is more than the ${this.limits.maxProfileBytes} allowed`);
    }
  }

  private checkRedirect(url: string, field: string): string {
    if (!url) return '';
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw errors.badRequest(`${field}: "${url}" is not an absolute URL`);
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw errors.badRequest(`${field}: must be an http(s) URL`);
    return parsed.toString();
  }
}
