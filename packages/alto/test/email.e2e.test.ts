/**
 * The `email` block through the real server over HTTP: with no SMTP configured every message
 * (from email/Send and from the user block) is kept in the outbox, newest first and paged; a
 * project's own SMTP server (set through the API, its password never shown again) receives the
 * mail; the instance's server from ALTO_SMTP_URL on `alto up`; refusals; M3O's client; and two
 * projects never see each other's outbox.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import { startInProcess, startProcess, waitFor } from './harness.js';
import { startSmtpServer, type TestSmtpServer } from './smtp-server.js';

describe('email without SMTP: the outbox', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let key: string;
  const call = (service: string, endpoint: string, body: unknown, withKey = key) => alto.call(service, endpoint, body, withKey);

  before(async () => {
    alto = await startInProcess();
    key = await alto.projectKey('local', ['email', 'user']);
  });
  after(() => alto.close());

  test('sent messages are kept in the outbox, newest first, paged and filtered', async () => {
    assert.deepEqual((await call('email', 'ReadSmtp', {})).body, { source: 'none', url: '' });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const sent = await call('email', 'Send', {
        from: 'Awesome Dot Com',
        to: i % 2 === 0 ? 'even@example.com' : 'odd@example.com',
        reply_to: 'help@example.com',
        subject: `Message ${i}`,
        text_body: `Hello ${i}`,
        html_body: `<p>Hello ${i}</p>`,
      });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      assert.equal(sent.body.status, 'kept');
      ids.push(sent.body.id);
    }
    const all = (await call('email', 'Outbox', {})).body.messages;
    assert.deepEqual(all.map((message: { id: string }) => message.id), [...ids].reverse());
    const [newest] = all;
    assert.deepEqual(
      { ...newest, created: undefined },
      {
        id: ids[4],
        from: 'Awesome Dot Com <noreply@localhost>',
        to: 'even@example.com',
        reply_to: 'help@example.com',
        subject: 'Message 4',
        text_body: 'Hello 4',
        html_body: '<p>Hello 4</p>',
        source: 'email',
        status: 'kept',
        error: '',
        message_id: '',
        created: undefined,
      },
    );
    assert.ok(Math.abs(Date.parse(newest.created) - Date.now()) < 60_000);
    const page = (await call('email', 'Outbox', { limit: 2, offset: 1 })).body.messages;
    assert.deepEqual(page.map((message: { subject: string }) => message.subject), ['Message 3', 'Message 2']);
    const odd = (await call('email', 'Outbox', { to: 'ODD@example.com' })).body.messages;
    assert.deepEqual(odd.map((message: { subject: string }) => message.subject), ['Message 3', 'Message 1']);
    assert.equal((await call('email', 'Outbox', { limit: 1001 })).status, 400);
  });

  test("the user block's mails land in the outbox, so local sign-up works with no mail server", async () => {
    const email = 'local-dev@example.com';
    await call('user', 'Create', { email, password: 'first-password' });
    assert.equal((await call('user', 'SendPasswordResetEmail', { email })).status, 200);
    const [mail] = (await call('email', 'Outbox', { to: email, limit: 1 })).body.messages;
    assert.equal(mail.source, 'user');
    assert.equal(mail.status, 'kept');
    assert.equal(mail.subject, 'Your password reset code');
    const code = /^([0-9A-Za-z]{30,})$/m.exec(mail.text_body)?.[1];
    assert.ok(code, mail.text_body);
    const reset = await call('user', 'ResetPassword', { email, code, new_password: 'second-password', confirm_password: 'second-password' });
    assert.equal(reset.status, 200);
    assert.equal((await call('user', 'Login', { email, password: 'second-password' })).status, 200);
  });

  test('bad messages are refused with the field named', async () => {
    const cases: [object, RegExp][] = [
      [{ to: 'not an address', subject: 's', text_body: 't' }, /^to: /],
      [{ to: '', subject: 's', text_body: 't' }, /^to: /],
      [{ to: 'a@example.com', subject: 's' }, /^text_body: missing/],
      [{ to: 'a@example.com', reply_to: 'nope', subject: 's', text_body: 't' }, /^reply_to: /],
      [{ to: 'a@example.com', subject: 's', text_body: 5 }, /^text_body: /],
    ];
    for (const [body, detail] of cases) {
      const refused = await call('email', 'Send', body);
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.match(refused.body.detail, detail);
    }
    assert.equal((await call('email', 'SetSmtp', { url: 'http://mail.example' })).status, 400);
  });

  test('two projects never see each other\'s outbox', async () => {
    const other = await alto.projectKey('other', ['email']);
    await call('email', 'Send', { to: 'private@example.com', subject: 'mine', text_body: 'x' });
    const theirs = (await call('email', 'Outbox', { to: 'private@example.com' }, other)).body.messages;
    assert.deepEqual(theirs, []);
    const onlyUser = await alto.projectKey('only-user', ['user']);
    assert.equal((await call('email', 'Outbox', {}, onlyUser)).status, 403, 'a key without the email scope cannot read mail');
  });

  test("M3O's JS client drives Send, Parse and Validate", async () => {
    const client = new Client({ token: key, address: `${alto.url}/` });
    const sent = await client.call<object, { id: string; status: string }>('email', 'Send', {
      from: 'Awesome Dot Com',
      to: 'joe@example.com',
      subject: 'Email verification',
      text_body: 'Hi there,\n\nPlease verify your email by clicking this link: $micro_verification_link',
    });
    assert.equal(sent.status, 'kept');
    assert.deepEqual(await client.call('email', 'Parse', { address: 'Joe Blogs <joe@example.com>' }), { name: 'Joe Blogs', address: 'joe@example.com' });
    assert.deepEqual(await client.call('email', 'Validate', { address: 'joe@example.com' }), { is_valid: true });
    assert.deepEqual(await client.call('email', 'Validate', { address: 'joe@' }), { is_valid: false });
  });
});

describe("email through the project's own SMTP server", () => {
  let smtp: TestSmtpServer;
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let key: string;
  const call = (endpoint: string, body: unknown) => alto.call('email', endpoint, body, key);

  before(async () => {
    smtp = await startSmtpServer('project-user', 'project-secret');
    // The test's server is on loopback, where a project's connections may go only in development.
    process.env.ALTO_ALLOW_PRIVATE_CALLBACKS = '1';
    alto = await startInProcess();
    key = await alto.projectKey('own-smtp', ['email']);
  });
  after(async () => {
    delete process.env.ALTO_ALLOW_PRIVATE_CALLBACKS;
    await alto.close();
    await smtp.close();
  });

  test('SetSmtp sends through it, shows it without the password, and can be undone', async () => {
    const set = await call('SetSmtp', { url: `${smtp.url}?from=team%40acme.example` });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.equal(set.body.source, 'project');
    assert.doesNotMatch(JSON.stringify(set.body), /project-secret/);
    assert.match(set.body.url, /^smtp:\/\/project-user:\*\*\*@127\.0\.0\.1:\d+/);
    assert.deepEqual((await call('ReadSmtp', {})).body, set.body);

    const sent = await call('Send', { from: 'Acme', to: 'joe@example.com', subject: 'Over SMTP', text_body: 'Hello Joe', html_body: '<p>Hello Joe</p>' });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    assert.equal(sent.body.status, 'sent');
    await waitFor(() => smtp.messages.some((message) => message.subject === 'Over SMTP'), 'the message at the SMTP server');
    const received = smtp.messages.find((message) => message.subject === 'Over SMTP')!;
    assert.equal(received.envelopeFrom, 'team@acme.example');
    assert.deepEqual(received.envelopeTo, ['joe@example.com']);
    assert.equal(received.text, 'Hello Joe');
    assert.equal(received.html, '<p>Hello Joe</p>');
    const [kept] = (await call('Outbox', { limit: 1 })).body.messages;
    assert.equal(kept.id, sent.body.id);
    assert.equal(kept.status, 'sent');
    assert.match(kept.message_id, /^<.+>$/);

    const refused = await call('Send', { to: 'ghost@refused.example', subject: 'Refused', text_body: 'x' });
    assert.equal(refused.status, 400);
    assert.match(refused.body.detail, /refused the message: .*550/);
    const [failed] = (await call('Outbox', { limit: 1 })).body.messages;
    assert.equal(failed.status, 'failed');
    assert.match(failed.error, /ghost@refused\.example/);

    assert.deepEqual((await call('SetSmtp', { url: '' })).body, { source: 'none', url: '' });
    assert.equal((await call('Send', { to: 'joe@example.com', subject: 'Outbox only', text_body: 'x' })).body.status, 'kept');
  });
});

describe('email through the instance SMTP server (ALTO_SMTP_URL on alto up)', () => {
  let smtp: TestSmtpServer;
  let alto: Awaited<ReturnType<typeof startProcess>>;

  before(async () => {
    smtp = await startSmtpServer();
    alto = await startProcess({ env: { ALTO_SMTP_URL: smtp.url } });
  });
  after(async () => {
    await alto.close();
    await smtp.close();
  });

  test('every project without its own server uses the instance one; its password stays hidden', async () => {
    const key = await alto.projectKey('shop', ['email']);
    const setting = (await alto.call('email', 'ReadSmtp', {}, key)).body;
    assert.equal(setting.source, 'instance');
    assert.doesNotMatch(setting.url, /smtp-secret/);
    const sent = await alto.call('email', 'Send', { to: 'buyer@example.com', subject: 'Order shipped', text_body: 'On its way' }, key);
    assert.equal(sent.body.status, 'sent', JSON.stringify(sent.body));
    await waitFor(() => smtp.messages.some((message) => message.subject === 'Order shipped'), 'the message at the SMTP server');
    assert.equal(smtp.messages.find((message) => message.subject === 'Order shipped')!.envelopeFrom, 'noreply@127.0.0.1');
    assert.doesNotMatch(alto.stdout() + alto.stderr(), /smtp-secret/, 'the password is not in the logs');
  });
});
