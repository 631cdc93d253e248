/**
 * The `user` block through the real server over HTTP, with its mails delivered over SMTP to a
 * real SMTP server on loopback (smtp-server from npm): sign up, verify with the token from the
 * mail, log in, reset the password with the code from the mail, and the old sessions stop
 * working; tokens are single use and expire; failed logins answer 429; a reset for an unknown
 * email looks the same as for a known one; the verification page; templates; M3O's own client;
 * and the same journey on PostgreSQL with `alto up --store ... --smtp ...`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import pg from 'pg';
import { startInProcess, startProcess, waitFor, type TestAlto } from './harness.js';
import { startSmtpServer, type ReceivedMail, type TestSmtpServer } from './smtp-server.js';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';

const PASSWORD = 'first-password';
const NEW_PASSWORD = 'second-password';

/** Waits for the next mail to `email` (after the `seen` first ones) and returns it. */
async function nextMail(smtp: TestSmtpServer, email: string, seen: number): Promise<ReceivedMail> {
  const toHim = () => smtp.messages.filter((message) => message.envelopeTo.includes(email));
  await waitFor(() => toHim().length > seen, `mail number ${seen + 1} to ${email}`);
  return toHim()[seen];
}

function mailsTo(smtp: TestSmtpServer, email: string): number {
  return smtp.messages.filter((message) => message.envelopeTo.includes(email)).length;
}

/** The code on a line of its own in the built-in password reset mail. */
function codeIn(mail: ReceivedMail): string {
  const code = /^([0-9A-Za-z]{30,})$/m.exec(mail.text)?.[1];
  assert.ok(code, `no code in the mail:\n${mail.text}`);
  return code;
}

function verificationLinkIn(mail: ReceivedMail): URL {
  const link = /(https?:\/\/\S+\/user\/verify\?\S+)/.exec(mail.text)?.[1];
  assert.ok(link, `no verification link in the mail:\n${mail.text}`);
  return new URL(link);
}

/**
 * Sign up, verify by email, log in twice, reset the password by email: the old sessions stop
 * working, the old password fails, the new one works, the code works once.
 */
async function signUpVerifyResetJourney(
  alto: TestAlto,
  smtp: TestSmtpServer,
  key: string,
  email: string,
): Promise<{ secrets: string[] }> {
  const call = (endpoint: string, body: unknown) => alto.call('user', endpoint, body, key);
  const created = await call('Create', { email, password: PASSWORD, username: email.split('@')[0], profile: { plan: 'free' } });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const account = created.body.account;
  assert.equal(account.email, email);
  assert.equal(account.verified, false);
  assert.deepEqual(account.profile, { plan: 'free' });

  let seen = mailsTo(smtp, email);
  assert.deepEqual((await call('SendVerificationEmail', { email, subject: 'Verify', from_name: 'Acme' })).body, {});
  const verification = await nextMail(smtp, email, seen++);
  assert.equal(verification.subject, 'Verify');
  assert.match(verification.headers.get('from')!, /^Acme <noreply@alto\.test>$/);
  const token = verificationLinkIn(verification).searchParams.get('token')!;
  assert.equal((await call('VerifyEmail', { token })).status, 200);
  const verified = (await call('Read', { email })).body.account;
  assert.equal(verified.verified, true);
  assert.ok(verified.verification_date >= account.created);
  assert.equal((await call('VerifyEmail', { token })).status, 400, 'a verification token works once');

  const login = async (password: string) => call('Login', { email, password });
  const first = await login(PASSWORD);
  const second = await login(PASSWORD);
  assert.equal(first.status, 200);
  assert.equal(first.body.session.userId, account.id);
  assert.notEqual(first.body.session.id, second.body.session.id);
  assert.equal((await call('ReadSession', { session_id: first.body.session.id })).status, 200);

  assert.deepEqual((await call('SendPasswordResetEmail', { email })).body, {});
  const reset = await nextMail(smtp, email, seen++);
  assert.equal(reset.subject, 'Your password reset code');
  const code = codeIn(reset);
  const resetDone = await call('ResetPassword', { email, code, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
  assert.equal(resetDone.status, 200, JSON.stringify(resetDone.body));

  for (const old of [first, second]) {
    const read = await call('ReadSession', { session_id: old.body.session.id });
    assert.equal(read.status, 404, 'the sessions from before the reset stop working');
  }
  assert.equal((await login(PASSWORD)).status, 401, 'the old password fails');
  const fresh = await login(NEW_PASSWORD);
  assert.equal(fresh.status, 200, 'the new password works');
  assert.equal((await call('ReadSession', { session_id: fresh.body.session.id })).body.session.userId, account.id);
  const reused = await call('ResetPassword', { email, code, new_password: 'third-password', confirm_password: 'third-password' });
  assert.equal(reused.status, 400, 'a reset code works once');
  assert.match(reused.body.detail, /^code: not valid, already used, or expired/);
  assert.equal((await login(NEW_PASSWORD)).status, 200, 'the reused code changed nothing');
  return { secrets: [token, code, first.body.session.id, fresh.body.session.id] };
}

describe('user with mail over SMTP (embedded SQLite)', () => {
  let smtp: TestSmtpServer;
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let key: string;
  const call = (endpoint: string, body: unknown, withKey = key) => alto.call('user', endpoint, body, withKey);

  before(async () => {
    smtp = await startSmtpServer();
    alto = await startInProcess({ smtpUrl: `${smtp.url}?from=noreply%40alto.test` });
    key = await alto.projectKey('app', ['user', 'email']);
  });
  after(async () => {
    await alto.close();
    await smtp.close();
  });

  test('sign up, verify from the mail, log in, reset from the mail: old sessions stop working', async () => {
    await signUpVerifyResetJourney(alto, smtp, key, 'ada@example.com');
  });

  test('tokens expire', async () => {
    const email = 'expiry@example.com';
    await call('Create', { email, password: PASSWORD });
    let seen = mailsTo(smtp, email);
    await call('SendPasswordResetEmail', { email, expiration: 1 });
    const sentAt = Date.now();
    const code = codeIn(await nextMail(smtp, email, seen++));
    // The code lives one second; wait until that second has surely passed.
    await waitFor(() => Date.now() > sentAt + 1200, 'the reset code to expire');
    const expired = await call('ResetPassword', { email, code, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
    assert.equal(expired.status, 400);
    assert.equal((await call('Login', { email, password: PASSWORD })).status, 200, 'the password is unchanged');

    await call('SendVerificationEmail', { email, expiration: 1 });
    const verifySentAt = Date.now();
    const token = verificationLinkIn(await nextMail(smtp, email, seen++)).searchParams.get('token')!;
    await waitFor(() => Date.now() > verifySentAt + 1200, 'the verification token to expire');
    assert.equal((await call('VerifyEmail', { token })).status, 400);
    assert.equal((await call('Read', { email })).body.account.verified, false);
  });

  test('failed logins answer 429 per account, and per client address', async () => {
    const email = 'limited@example.com';
    await call('Create', { email, password: PASSWORD });
    for (let i = 0; i < 5; i++) assert.equal((await call('Login', { email, password: `wrong-${i}-password` })).status, 401);
    const limited = await call('Login', { email, password: PASSWORD });
    assert.equal(limited.status, 429);
    assert.equal(limited.body.id, 'too_many_requests');
    assert.equal(limited.headers.get('retry-after'), '900');
    assert.match(limited.body.detail, /too many failed logins for this account/);

    // Per address: 20 failures from one end-user address, each for another account.
    for (let i = 0; i < 20; i++) {
      const failed = await call('Login', { email: `nobody-${i}@example.com`, password: 'wrong-password', client_address: '203.0.113.7' });
      assert.equal(failed.status, 401);
    }
    await call('Create', { email: 'other@example.com', password: PASSWORD });
    assert.equal((await call('Login', { email: 'other@example.com', password: PASSWORD, client_address: '203.0.113.7' })).status, 429);
    assert.equal((await call('Login', { email: 'other@example.com', password: PASSWORD, client_address: '203.0.113.8' })).status, 200);
  });

  test('without client_address the address is the one the edge saw', async () => {
    // A project of its own: its loopback address gets limited here.
    const own = await alto.projectKey('edge-address', ['user']);
    await call('Create', { email: 'edge@example.com', password: PASSWORD }, own);
    for (let i = 0; i < 20; i++) await call('Login', { email: `x${i}@example.com`, password: 'wrong-password' }, own);
    assert.equal((await call('Login', { email: 'edge@example.com', password: PASSWORD }, own)).status, 429);
    // Those failures were counted under the loopback address the edge saw, not under some default.
    assert.equal((await call('Login', { email: 'edge@example.com', password: PASSWORD, client_address: '127.0.0.1' }, own)).status, 429);
    assert.equal((await call('Login', { email: 'edge@example.com', password: PASSWORD, client_address: '198.51.100.1' }, own)).status, 200);
  });

  test('a reset, verification or magic link for an unknown email looks the same as for a known one', async () => {
    const known = 'known@example.com';
    const unknown = 'unknown@example.com';
    await call('Create', { email: known, password: PASSWORD });
    const requests: [string, object][] = [
      ['SendPasswordResetEmail', {}],
      ['SendVerificationEmail', {}],
      ['SendMagicLink', { address: 'www.example.com', endpoint: 'verify' }],
    ];
    const seenKnown = mailsTo(smtp, known);
    for (const [endpoint, extra] of requests) {
      const forKnown = await call(endpoint, { email: known, ...extra });
      const forUnknown = await call(endpoint, { email: unknown, ...extra });
      assert.equal(forKnown.status, 200);
      assert.equal(forUnknown.status, forKnown.status, endpoint);
      assert.deepEqual(forUnknown.body, forKnown.body, endpoint);
      const headersOf = (headers: Headers) =>
        [...headers].filter(([name]) => !['x-request-id', 'date'].includes(name)).sort();
      assert.deepEqual(headersOf(forUnknown.headers), headersOf(forKnown.headers), endpoint);
    }
    await nextMail(smtp, known, seenKnown + requests.length - 1);
    assert.equal(mailsTo(smtp, unknown), 0, 'nothing is sent to an unregistered address');
    const wrongPassword = await call('Login', { email: known, password: 'wrong-password' });
    const noAccount = await call('Login', { email: unknown, password: 'wrong-password' });
    assert.deepEqual([noAccount.status, noAccount.body.detail], [wrongPassword.status, wrongPassword.body.detail]);
  });

  test('the verification link: GET asks, POST verifies once and redirects', async () => {
    const email = 'page@example.com';
    await call('Create', { email, password: PASSWORD });
    const seen = mailsTo(smtp, email);
    await call('SendVerificationEmail', {
      email,
      redirect_url: 'https://app.example/welcome',
      failure_redirect_url: 'https://app.example/sorry',
    });
    const link = verificationLinkIn(await nextMail(smtp, email, seen));
    assert.equal(link.origin, alto.url.replace('localhost', '127.0.0.1'));
    const shown = await fetch(link);
    assert.equal(shown.status, 200);
    assert.equal(shown.headers.get('referrer-policy'), 'no-referrer');
    assert.match(await shown.text(), /<form method="post"/);
    assert.equal((await call('Read', { email })).body.account.verified, false, 'opening the link (GET) verifies nothing');
    const confirmed = await fetch(link, { method: 'POST', redirect: 'manual' });
    assert.equal(confirmed.status, 303);
    assert.equal(confirmed.headers.get('location'), 'https://app.example/welcome');
    assert.equal((await call('Read', { email })).body.account.verified, true);
    const again = await fetch(link, { method: 'POST', redirect: 'manual' });
    assert.equal(again.status, 400, 'used: the page says the link does not work');
  });

  test("the project's own template is what the user receives", async () => {
    const email = 'templated@example.com';
    await call('Create', { email, password: PASSWORD, username: 'tem' });
    const set = await call('SetTemplate', {
      name: 'password_reset',
      subject: 'Reset for {{name}}',
      text_body: 'Code: {{code}} (valid {{minutes}} min)',
      html_body: '<p>Code: <b>{{code}}</b></p>',
      from_name: 'Acme Security',
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.equal(set.body.custom, true);
    assert.equal((await call('ReadTemplate', { name: 'password_reset' })).body.subject, 'Reset for {{name}}');
    assert.equal((await call('SetTemplate', { name: 'welcome' })).status, 400);
    const seen = mailsTo(smtp, email);
    await call('SendPasswordResetEmail', { email, expiration: 600 });
    const mail = await nextMail(smtp, email, seen);
    assert.equal(mail.subject, 'Reset for tem');
    assert.match(mail.headers.get('from')!, /^"?Acme Security"? <noreply@alto\.test>$/);
    const code = /^Code: ([0-9A-Za-z]+) \(valid 10 min\)$/.exec(mail.text)?.[1];
    assert.ok(code, mail.text);
    assert.equal(mail.html, `<p>Code: <b>${code}</b></p>`);
    assert.equal((await call('ResetPassword', { email, code, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD })).status, 200);
  });

  test('two projects keep separate users, sessions and limits', async () => {
    const other = await alto.projectKey('other-app', ['user']);
    const email = 'shared@example.com';
    assert.equal((await call('Create', { email, password: PASSWORD })).status, 200);
    assert.equal((await call('Create', { email, password: NEW_PASSWORD }, other)).status, 200, 'the same email in another project');
    const session = (await call('Login', { email, password: PASSWORD })).body.session;
    assert.equal((await call('ReadSession', { session_id: session.id }, other)).status, 404);
    assert.equal((await call('Login', { email, password: PASSWORD }, other)).status, 401, 'each project has its own password');
    assert.equal((await call('Create', { email, password: PASSWORD })).status, 409);
  });

  test("M3O's JS client drives Create, Login, ReadSession and Logout", async () => {
    const client = new Client({ token: key, address: `${alto.url}/` });
    const email = 'm3o@example.com';
    const created = await client.call<object, { account: { id: string; email: string; username: string } }>('user', 'Create', {
      id: 'usrid-1',
      username: 'usrname-1',
      email,
      password: 'mySecretPass123',
    });
    assert.deepEqual([created.account.id, created.account.username, created.account.email], ['usrid-1', 'usrname-1', email]);
    const login = await client.call<object, { session: { id: string; userId: string; expires: number; created: number } }>('user', 'Login', {
      username: 'usrname-1',
      password: 'mySecretPass123',
    });
    assert.equal(login.session.userId, 'usrid-1');
    assert.ok(login.session.expires > login.session.created);
    // M3O's own User() helper sends `sessionId`, protobuf's JSON name: both spellings work.
    for (const body of [{ session_id: login.session.id }, { sessionId: login.session.id }]) {
      const read = await client.call<object, { session: { id: string; userId: string } }>('user', 'ReadSession', body);
      assert.deepEqual([read.session.id, read.session.userId], [login.session.id, 'usrid-1']);
    }
    assert.deepEqual(await client.call('user', 'Logout', { sessionId: login.session.id }), {});
    const gone = await client.call('user', 'ReadSession', { session_id: login.session.id }).then(
      () => assert.fail('expected an error'),
      (body: any) => body,
    );
    assert.equal(gone.code, 404);
    assert.equal(gone.id, 'not_found');
    const wrong = await client.call('user', 'Login', { email, password: 'nope-nope-nope' }).then(
      () => assert.fail('expected an error'),
      (body: any) => body,
    );
    assert.equal(wrong.code, 401);
    const listed = await client.call<object, { users: { id: string }[] }>('user', 'List', { limit: 1000 });
    assert.ok(listed.users.some((user) => user.id === 'usrid-1'));
    const tooMany = await client.call('user', 'List', { limit: 1001 }).then(
      () => assert.fail('expected an error'),
      (body: any) => body,
    );
    assert.equal(tooMany.code, 400);
  });
});

describe('user on PostgreSQL with alto up --store and --smtp', () => {
  let database: TestDatabase | undefined;
  let smtp: TestSmtpServer;
  let alto: Awaited<ReturnType<typeof startProcess>> | undefined;

  before(async () => {
    database = await createTestDatabase('user_e2e');
    smtp = await startSmtpServer();
    alto = await startProcess({ args: ['--store', database.url, '--smtp', `${smtp.url}?from=noreply%40alto.test`] });
  });
  after(async () => {
    await alto?.close();
    await smtp?.close();
    await database?.drop();
  });

  test('the same journey, and no password, session id or token in the database', async () => {
    const key = await alto!.projectKey('app', ['user']);
    const { secrets } = await signUpVerifyResetJourney(alto!, smtp, key, 'grace@example.com');
    // A token waiting to be used is in the database too: only as a hash.
    const seen = mailsTo(smtp, 'grace@example.com');
    await alto!.call('user', 'SendPasswordResetEmail', { email: 'grace@example.com' }, key);
    secrets.push(codeIn(await nextMail(smtp, 'grace@example.com', seen)));
    const client = new pg.Client({ connectionString: database!.url });
    await client.connect();
    try {
      const dump = (await client.query<{ dump: string }>(
        `SELECT string_agg(t::text, ' ') AS dump FROM (
           SELECT a::text AS t FROM alto_user_accounts a UNION ALL SELECT s::text FROM alto_user_sessions s
           UNION ALL SELECT k::text FROM alto_user_tokens k) rows`,
      )).rows[0].dump;
      assert.match(dump, /grace@example\.com/);
      assert.doesNotMatch(dump, new RegExp(`${PASSWORD}|${NEW_PASSWORD}`));
      for (const secret of secrets) assert.ok(!dump.includes(secret), 'session ids and tokens are stored as hashes');
      assert.match(dump, /password_reset/, 'the pending reset is there, as a hash');
    } finally {
      await client.end();
    }
  });
});
