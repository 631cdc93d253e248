/**
 * The user block's logic on the embedded store, with a clock the tests move: expiry of sessions
 * and tokens, single use, login limits per account and per address and their windows, mails
 * that do not tell whether an address is registered, and templates. Mails are read from the
 * outbox (no SMTP configured); delivery over SMTP is covered by test/user.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { silentLogger } from '../../kit/logger.js';
import { SecretCipher } from '../../kit/master-key.js';
import { Mailer } from '../../platform/mail.js';
import { SqliteMailStore } from '../../store/mail/sqlite.js';
import { openSqlite, type SqliteDatabase } from '../../store/sqlite/database.js';
import { SqliteUserStore } from '../../store/users/sqlite.js';
import { DEFAULT_USER_LIMITS, UserBlock, type MailRequest } from './users.js';

async function rejection(promise: Promise<unknown>): Promise<{ status: number; detail: string }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isAltoError(error), `expected an AltoError, got ${String(error)}`);
    return { status: error.status, detail: error.detail };
  }
  assert.fail('expected a rejection');
}

const MINUTE = 60_000;

describe('UserBlock', () => {
  let dir: string;
  let db: SqliteDatabase;
  let mailer: Mailer;
  let users: UserBlock;
  let now = Date.UTC(2030, 0, 1);
  let run = 0;
  /** A fresh namespace per test: limits and accounts never leak between tests. */
  const fresh = () => `project-${++run}/dev`;

  const mail = (email: string, extra: Partial<MailRequest> = {}): MailRequest => ({
    email,
    fromName: '',
    subject: '',
    textContent: '',
    expirationSeconds: 1800,
    ...extra,
  });
  // Read as a key with the user scope would: with the tokens the outbox keeps sealed.
  const outbox = (ns: string) => mailer.outbox(ns, { offset: 0, limit: 100, to: '' }, { revealSecrets: true });
  /** The last base-62 token of 30+ characters in the newest mail to `email`. */
  async function tokenFromMail(ns: string, email: string): Promise<string> {
    const [latest] = await mailer.outbox(ns, { offset: 0, limit: 1, to: email }, { revealSecrets: true });
    assert.ok(latest, `no mail to ${email}`);
    const tokens = latest.textBody.match(/[0-9A-Za-z]{30,}/g);
    assert.ok(tokens, `no token in: ${latest.textBody}`);
    return tokens.at(-1)!;
  }
  const signUp = (ns: string, email = 'ada@example.com', password = 'first-password') =>
    users.create(ns, { id: '', email, username: '', password, profile: {} });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'alto-user-'));
    db = openSqlite(join(dir, 'alto.db'));
    mailer = new Mailer(new SqliteMailStore(db), undefined, silentLogger(), undefined, () => now, new SecretCipher(randomBytes(32)));
    users = new UserBlock(new SqliteUserStore(db), mailer, silentLogger(), DEFAULT_USER_LIMITS, () => now);
  });
  after(async () => {
    await users.close();
    await mailer.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('accounts: checked, lower-cased, unique, and the password kept only as an argon2id hash', async () => {
    const ns = fresh();
    const account = await users.create(ns, { id: '', email: ' Ada@Example.COM ', username: 'Ada', password: 'correct horse', profile: { a: 'b' } });
    assert.equal(account.email, 'ada@example.com');
    assert.equal(account.username, 'ada');
    assert.match(account.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(account.profile, { a: 'b' });
    assert.equal(account.verified, false);
    const stored = await users.store.getUser(ns, account.id);
    assert.match(stored!.passwordHash, /^\$argon2id\$/);
    assert.ok(!stored!.passwordHash.includes('correct horse'));
    assert.deepEqual(await users.read(ns, { id: '', email: 'ADA@example.com', username: '' }), account);
    assert.deepEqual(await users.read(ns, { id: '', email: '', username: 'ADA' }), account);
    assert.equal((await rejection(users.read(ns, { id: 'nope', email: '', username: '' }))).status, 404);

    const conflicts = [
      await rejection(users.create(ns, { id: '', email: 'ada@example.com', username: '', password: 'long enough', profile: {} })),
      await rejection(users.create(ns, { id: '', email: 'bob@example.com', username: 'ada', password: 'long enough', profile: {} })),
      await rejection(users.create(ns, { id: account.id, email: 'bob@example.com', username: '', password: 'long enough', profile: {} })),
    ];
    assert.deepEqual(conflicts.map((conflict) => conflict.status), [409, 409, 409]);
    assert.match(conflicts[0].detail, /^email: /);
    assert.match(conflicts[1].detail, /^username: /);
    assert.match(conflicts[2].detail, /^id: /);
    assert.match((await rejection(signUp(ns, 'not-an-email'))).detail, /^email: /);
    assert.match((await rejection(signUp(ns, 'carol@example.com', 'short'))).detail, /^password: use at least 8/);
  });

  test('login: an unknown email and a wrong password fail alike; sessions expire', async () => {
    const ns = fresh();
    const account = await signUp(ns);
    const unknown = await rejection(users.login(ns, { email: 'nobody@example.com', username: '', password: 'first-password' }, '10.0.0.1'));
    const wrong = await rejection(users.login(ns, { email: 'ada@example.com', username: '', password: 'wrong-password' }, '10.0.0.1'));
    assert.deepEqual(unknown, wrong);
    assert.equal(wrong.status, 401);

    const session = await users.login(ns, { email: 'ADA@example.com', username: '', password: 'first-password' }, '10.0.0.1');
    assert.equal(session.userId, account.id);
    assert.equal(session.expires - session.created, 7 * 24 * 3600);
    assert.deepEqual(await users.readSession(ns, session.id), session);
    const stored = await users.store.getSession(ns, session.id, now);
    assert.equal(stored, undefined, 'the store holds only a hash of the session id');
    now += 7 * 24 * 3600 * 1000;
    assert.equal((await rejection(users.readSession(ns, session.id))).status, 404, 'expired after 7 days');
  });

  test('login limits: per account, then per address, each for its window', async () => {
    const ns = fresh();
    await signUp(ns);
    for (let i = 0; i < 5; i++) {
      assert.equal((await rejection(users.login(ns, { email: 'ada@example.com', username: '', password: `guess-${i}xx` }, '10.0.0.1'))).status, 401);
    }
    const limited = await rejection(users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.2'));
    assert.equal(limited.status, 429, 'even the right password, from another address, waits');
    // An unknown email is limited exactly the same way: the 429 does not tell either.
    for (let i = 0; i < 5; i++) await rejection(users.login(ns, { email: 'ghost@example.com', username: '', password: 'guess-guess' }, '10.0.0.3'));
    assert.equal((await rejection(users.login(ns, { email: 'ghost@example.com', username: '', password: 'guess-guess' }, '10.0.0.4'))).status, 429);

    now += 15 * MINUTE;
    const session = await users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.1');
    assert.ok(session.id, 'the window passed');

    // 20 failures from one address, each for a different account: the address is limited, others are not.
    for (let i = 0; i < 20; i++) {
      assert.equal((await rejection(users.login(ns, { email: `u${i}@example.com`, username: '', password: 'guess-guess' }, '10.9.9.9'))).status, 401);
    }
    assert.equal((await rejection(users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.9.9.9'))).status, 429);
    assert.ok(await users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.1'));
  });

  test('verification: the token works once, not after it expires, and not for a changed address', async () => {
    const ns = fresh();
    const account = await signUp(ns);
    await users.sendVerificationEmail(ns, { ...mail('ada@example.com'), redirectUrl: 'https://app.example/ok', failureRedirectUrl: '' }, 'http://alto.test');
    const [message] = await outbox(ns);
    assert.equal(message.subject, 'Verify your email address');
    assert.match(message.textBody, /http:\/\/alto\.test\/user\/verify\?ns=.+&token=/);
    const token = await tokenFromMail(ns, 'ada@example.com');
    assert.deepEqual(await users.verifyEmail(ns, token), { verified: true, redirectUrl: 'https://app.example/ok', failureRedirectUrl: '' });
    const verified = await users.read(ns, { id: account.id, email: '', username: '' });
    assert.equal(verified.verified, true);
    assert.equal(verified.verification_date, Math.floor(now / 1000));
    assert.equal((await users.verifyEmail(ns, token)).verified, false, 'single use');

    await users.sendVerificationEmail(ns, { ...mail('ada@example.com', { expirationSeconds: 60 }), redirectUrl: '', failureRedirectUrl: 'https://app.example/failed' }, 'http://alto.test');
    const late = await tokenFromMail(ns, 'ada@example.com');
    now += 60_000;
    assert.deepEqual(await users.verifyEmail(ns, late), { verified: false, redirectUrl: '', failureRedirectUrl: 'https://app.example/failed' });

    await users.sendVerificationEmail(ns, { ...mail('ada@example.com'), redirectUrl: '', failureRedirectUrl: '' }, 'http://alto.test');
    const stale = await tokenFromMail(ns, 'ada@example.com');
    await users.update(ns, { id: account.id, email: 'ada@new.example', username: '' });
    assert.equal((await users.read(ns, { id: account.id, email: '', username: '' })).verified, false, 'a new address is not verified');
    assert.equal((await users.verifyEmail(ns, stale)).verified, false, 'sent to the old address: void');
  });

  test('password reset: the same answer for unknown emails, one use, every session ends', async () => {
    const ns = fresh();
    await signUp(ns);
    const first = await users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.1');
    const second = await users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.2');

    assert.equal(await users.sendPasswordResetEmail(ns, mail('nobody@example.com')), undefined);
    assert.deepEqual(await outbox(ns), [], 'nothing is sent for an unknown address');
    await users.sendPasswordResetEmail(ns, mail('ada@example.com', { subject: 'Reset', textContent: 'Your code: $code' }));
    const [message] = await outbox(ns);
    assert.equal(message.subject, 'Reset');
    assert.equal(message.htmlBody, '', "M3O's text_content is sent as text only");
    const code = message.textBody.replace('Your code: ', '');
    assert.match(code, /^[0-9A-Za-z]{33}$/);

    const mismatch = await rejection(users.resetPassword(ns, { email: 'ada@example.com', code, new_password: 'second-password', confirm_password: 'other-password' }));
    assert.match(mismatch.detail, /^confirm_password: /);
    await users.resetPassword(ns, { email: 'ADA@example.com', code, new_password: 'second-password', confirm_password: 'second-password' });
    assert.equal((await rejection(users.readSession(ns, first.id))).status, 404);
    assert.equal((await rejection(users.readSession(ns, second.id))).status, 404);
    assert.equal((await rejection(users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.1'))).status, 401);
    assert.ok(await users.login(ns, { email: 'ada@example.com', username: '', password: 'second-password' }, '10.0.0.1'));
    const again = await rejection(users.resetPassword(ns, { email: 'ada@example.com', code, new_password: 'third-password', confirm_password: 'third-password' }));
    assert.equal(again.status, 400);
    assert.match(again.detail, /^code: not valid, already used, or expired/);

    await users.sendPasswordResetEmail(ns, mail('ada@example.com', { expirationSeconds: 1800 }));
    const expiring = await tokenFromMail(ns, 'ada@example.com');
    now += 1800 * 1000;
    assert.equal((await rejection(users.resetPassword(ns, { email: 'ada@example.com', code: expiring, new_password: 'third-password', confirm_password: 'third-password' }))).status, 400);
  });

  test('mails asked for one address are limited, registered or not', async () => {
    const ns = fresh();
    await signUp(ns);
    for (const email of ['ada@example.com', 'nobody@example.com']) {
      for (let i = 0; i < 5; i++) await users.sendPasswordResetEmail(ns, mail(email));
      const limited = await rejection(users.sendPasswordResetEmail(ns, mail(email)));
      assert.equal(limited.status, 429);
      assert.match(limited.detail, /too many password reset emails/);
    }
    assert.equal((await outbox(ns)).length, 5, 'only the registered address received mail');
    now += 15 * MINUTE;
    await users.sendPasswordResetEmail(ns, mail('ada@example.com'));
  });

  test('UpdatePassword keeps the session it names and ends the others', async () => {
    const ns = fresh();
    const account = await signUp(ns);
    const here = await users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.1');
    const elsewhere = await users.login(ns, { email: 'ada@example.com', username: '', password: 'first-password' }, '10.0.0.2');
    const wrong = await rejection(
      users.updatePassword(ns, { userId: account.id, old_password: 'nope-nope', new_password: 'second-password', confirm_password: 'second-password', session_id: '' }),
    );
    assert.equal(wrong.status, 401);
    await users.updatePassword(ns, {
      userId: account.id,
      old_password: 'first-password',
      new_password: 'second-password',
      confirm_password: 'second-password',
      session_id: here.id,
    });
    assert.ok(await users.readSession(ns, here.id));
    assert.equal((await rejection(users.readSession(ns, elsewhere.id))).status, 404);
    await users.logoutAll(ns, account.id);
    assert.equal((await rejection(users.readSession(ns, here.id))).status, 404);
  });

  test('magic link: the link has M3O\'s shape and its token becomes one session, once', async () => {
    const ns = fresh();
    const account = await signUp(ns);
    await users.sendMagicLink(ns, { ...mail('ada@example.com'), address: 'www.example.com', endpoint: 'verifytoken' });
    const [message] = await outbox(ns);
    const link = /https:\/\/www\.example\.com\/verifytoken\/([0-9A-Za-z]+)/.exec(message.textBody);
    assert.ok(link, message.textBody);
    const result = await users.verifyToken(ns, link[1]);
    assert.equal(result.is_valid, true);
    assert.equal(result.session?.userId, account.id);
    assert.ok(await users.readSession(ns, result.session!.id));
    assert.equal((await users.read(ns, { id: account.id, email: '', username: '' })).verified, true, 'opening the link proves the address');
    assert.deepEqual(await users.verifyToken(ns, link[1]), { is_valid: false, message: 'token not found' });
    assert.deepEqual(await users.verifyToken(ns, ''), { is_valid: false, message: 'token empty' });
    await users.sendMagicLink(ns, { ...mail('ada@example.com', { expirationSeconds: 600 }), address: 'https://app.example/', endpoint: '' });
    const token = await tokenFromMail(ns, 'ada@example.com');
    assert.match((await outbox(ns))[0].textBody, new RegExp(`https://app\\.example/${token}`));
    now += 600_000;
    assert.deepEqual(await users.verifyToken(ns, token), { is_valid: false, message: 'token expired' });
    assert.equal((await rejection(users.sendMagicLink(ns, { ...mail('nobody@example.com'), address: '', endpoint: '' }))).status, 400, 'address is checked before the account is looked up');
  });

  test("templates: the project's own wording, placeholders filled, HTML escaped", async () => {
    const ns = fresh();
    await users.create(ns, { id: '', email: 'ada@example.com', username: '<ada>', password: 'first-password', profile: {} });
    assert.equal((await users.template(ns, 'verification')).custom, false);
    await users.setTemplate(ns, 'verification', {
      subject: 'Welcome {{name}}',
      textBody: 'Hi {{username}} ({{email}}), open {{link}} within {{minutes}} minutes. Token: {{ token }}',
      htmlBody: '<p>Hi {{name}}</p><a href="{{link}}">go</a>',
      fromName: 'Acme',
    });
    await users.sendVerificationEmail(ns, { ...mail('ada@example.com', { expirationSeconds: 3600 }), redirectUrl: '', failureRedirectUrl: '' }, 'http://alto.test');
    const [message] = await outbox(ns);
    assert.equal(message.subject, 'Welcome <ada>');
    assert.equal(message.from, 'Acme <noreply@localhost>');
    const token = await tokenFromMail(ns, 'ada@example.com');
    assert.match(message.textBody, new RegExp(`^Hi <ada> \\(ada@example\\.com\\), open http://alto\\.test/user/verify\\?ns=\\S+ within 60 minutes\\. Token: ${token}$`));
    assert.match(message.htmlBody, /^<p>Hi &#60;ada&#62;<\/p><a href="http:\/\/alto\.test\/user\/verify\?ns=[^"]+&#38;token=/);

    const unknown = await rejection(users.setTemplate(ns, 'magic_link', { subject: '', textBody: 'see {{url}}', htmlBody: '', fromName: '' }));
    assert.match(unknown.detail, /^text_body: \{\{url\}\} is not a placeholder; use \{\{name\}\}/);
    await users.setTemplate(ns, 'verification', { subject: '', textBody: '', htmlBody: '', fromName: '' });
    assert.equal((await users.template(ns, 'verification')).custom, false, 'all empty: back to the built-in template');
  });
});
