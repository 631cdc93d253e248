/**
 * The Mailer against a real SMTP server on loopback: outbox-only mode, delivery with the sender
 * address and display name, the project's server over the instance's, refusals recorded and
 * answered 400 or 503, and background delivery.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startSmtpServer, type TestSmtpServer } from '../../test/smtp-server.js';
import { waitFor } from '../../test/harness.js';
import { isAltoError } from '../kit/errors.js';
import { silentLogger } from '../kit/logger.js';
import { SqliteMailStore } from '../store/mail/sqlite.js';
import { openSqlite, type SqliteDatabase } from '../store/sqlite/database.js';
import { checkSmtpUrl, Mailer, senderAddressOf } from './mail.js';

const NS = 'project-1/dev';

async function rejection(promise: Promise<unknown>): Promise<{ status: number; detail: string }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isAltoError(error), `expected an AltoError, got ${String(error)}`);
    return { status: error.status, detail: error.detail };
  }
  assert.fail('expected a rejection');
}

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('Mailer', () => {
  let dir: string;
  let db: SqliteDatabase;
  let smtp: TestSmtpServer;
  let projectSmtp: TestSmtpServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'alto-mail-'));
    db = openSqlite(join(dir, 'alto.db'));
    smtp = await startSmtpServer('instance', 'instance-pass');
    projectSmtp = await startSmtpServer('project', 'project-pass');
  });
  after(async () => {
    await smtp.close();
    await projectSmtp.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('without SMTP every message is kept in the outbox', async () => {
    const mailer = new Mailer(new SqliteMailStore(db), undefined, silentLogger());
    const message = await mailer.send('outbox-only/dev', { from: 'Acme', to: 'ada@example.com', subject: 'Hi', textBody: 'hello', source: 'email' });
    assert.equal(message.status, 'kept');
    assert.equal(message.from, 'Acme <noreply@localhost>');
    const [listed] = await mailer.outbox('outbox-only/dev', { offset: 0, limit: 10, to: '' });
    assert.deepEqual(listed, message);
    assert.deepEqual(await mailer.smtpSetting('outbox-only/dev'), { source: 'none', url: '' });
    await mailer.close();
  });

  test('with the instance SMTP a message is delivered as written', async () => {
    const mailer = new Mailer(new SqliteMailStore(db), `${smtp.url}?from=noreply%40acme.example`, silentLogger());
    const before = smtp.messages.length;
    const message = await mailer.send(NS, {
      from: 'Acme Support',
      to: 'ada@example.com, bob@example.com',
      replyTo: 'help@acme.example',
      subject: 'Welcome ✓',
      textBody: 'Hello Ada, ünïcode and a long line '.repeat(5),
      htmlBody: '<p>Hello <b>Ada</b></p>',
      source: 'email',
    });
    assert.equal(message.status, 'sent');
    assert.match(message.messageId, /^<.+@.+>$/);
    assert.equal(smtp.messages.length, before + 1);
    const received = smtp.messages.at(-1)!;
    assert.equal(received.envelopeFrom, 'noreply@acme.example');
    assert.deepEqual(received.envelopeTo, ['ada@example.com', 'bob@example.com']);
    assert.equal(received.subject, 'Welcome ✓');
    assert.equal(received.text, 'Hello Ada, ünïcode and a long line '.repeat(5));
    assert.equal(received.html, '<p>Hello <b>Ada</b></p>');
    assert.match(received.headers.get('from')!, /Acme Support.*<noreply@acme\.example>/);
    assert.equal(received.headers.get('reply-to'), 'help@acme.example');
    assert.equal((await mailer.message(NS, message.id))?.status, 'sent');
    assert.deepEqual(await mailer.smtpSetting(NS), { source: 'instance', url: smtp.url.replace('instance-pass', '***') + '?from=noreply%40acme.example' });
    await mailer.close();
  });

  test("a project's own SMTP server wins over the instance's, and its password is never shown", async (t) => {
    const mailer = new Mailer(new SqliteMailStore(db), smtp.url, silentLogger());
    const ns = 'own-smtp/dev';
    // The test's server is on loopback, where a project's connections may go only in development.
    process.env.ALTO_ALLOW_PRIVATE_CALLBACKS = '1';
    t.after(() => delete process.env.ALTO_ALLOW_PRIVATE_CALLBACKS);
    const setting = await mailer.setProjectSmtp(ns, projectSmtp.url);
    assert.deepEqual(setting, { source: 'project', url: projectSmtp.url.replace('project-pass', '***') });
    const instanceBefore = smtp.messages.length;
    await mailer.send(ns, { to: 'ada@example.com', subject: 'via project', textBody: 'x', source: 'email' });
    assert.equal(projectSmtp.messages.at(-1)?.subject, 'via project');
    assert.equal(projectSmtp.messages.at(-1)?.envelopeFrom, 'noreply@127.0.0.1', 'no ?from= and no address as user name');
    assert.equal(smtp.messages.length, instanceBefore, 'the instance server saw nothing');
    assert.equal((await mailer.setProjectSmtp(ns, '')).source, 'instance');
    await mailer.send(ns, { to: 'ada@example.com', subject: 'via instance', textBody: 'x', source: 'email' });
    assert.equal(smtp.messages.at(-1)?.subject, 'via instance');
    await mailer.close();
  });

  test('refusals are recorded in the outbox and answered 400 or 503', async () => {
    const store = new SqliteMailStore(db);
    const ns = 'refusals/dev';
    const refusing = new Mailer(store, smtp.url, silentLogger());
    const refused = await rejection(refusing.send(ns, { to: 'ghost@refused.example', subject: 's', textBody: 't', source: 'email' }));
    assert.equal(refused.status, 400);
    assert.match(refused.detail, /refused the message: .*550/);
    assert.doesNotMatch(refused.detail, /instance-pass/, 'the password never reaches the caller');
    let [latest] = await refusing.outbox(ns, { offset: 0, limit: 1, to: '' });
    assert.equal(latest.status, 'failed');
    assert.match(latest.error, /ghost@refused\.example/);

    const wrongPassword = new Mailer(store, smtp.url.replace('instance-pass', 'wrong'), silentLogger());
    assert.equal((await rejection(wrongPassword.send(ns, { to: 'a@example.com', subject: 's', textBody: 't', source: 'email' }))).status, 503);
    [latest] = await refusing.outbox(ns, { offset: 0, limit: 1, to: '' });
    assert.match(latest.error, /EAUTH/);

    const nobodyThere = new Mailer(store, `smtp://127.0.0.1:${await closedPort()}`, silentLogger());
    const unreachable = await rejection(nobodyThere.send(ns, { to: 'a@example.com', subject: 's', textBody: 't', source: 'email' }));
    assert.equal(unreachable.status, 503);
    [latest] = await refusing.outbox(ns, { offset: 0, limit: 1, to: '' });
    assert.equal(latest.status, 'failed');
    assert.match(latest.error, /ECONNREFUSED|ECONNECTION|ESOCKET/);
  });

  test('enqueue answers once the message is recorded and delivers it in the background', async () => {
    const mailer = new Mailer(new SqliteMailStore(db), smtp.url, silentLogger());
    const ns = 'background/dev';
    const message = await mailer.enqueue(ns, { to: 'later@example.com', subject: 'later', textBody: 't', source: 'user' });
    assert.equal(message.status, 'queued');
    await waitFor(() => smtp.messages.some((received) => received.subject === 'later'), 'the queued message to arrive');
    let status = '';
    for (let i = 0; i < 200 && status !== 'sent'; i++) {
      status = (await mailer.message(ns, message.id))!.status;
      if (status !== 'sent') await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(status, 'sent');
    await mailer.close();
  });

  test('bad input is refused before anything is recorded', async () => {
    const mailer = new Mailer(new SqliteMailStore(db), undefined, silentLogger());
    const ns = 'invalid/dev';
    assert.match((await rejection(mailer.send(ns, { to: 'not an address', subject: 's', textBody: 't', source: 'email' }))).detail, /^to: /);
    assert.match((await rejection(mailer.send(ns, { to: 'a@example.com', subject: 's', source: 'email' }))).detail, /text_body: missing/);
    assert.match((await rejection(mailer.send(ns, { from: 'x@', to: 'a@example.com', subject: 's', textBody: 't', source: 'email' }))).detail, /^from: /);
    assert.deepEqual(await mailer.outbox(ns, { offset: 0, limit: 10, to: '' }), []);
    assert.equal((await rejection(mailer.setProjectSmtp(ns, 'http://mail.example'))).status, 400);
    assert.throws(() => checkSmtpUrl('smtp://host?from=nope'), /from= must be an email address/);
  });

  test('the sender address comes from ?from=, else an address-like user name, else the host', () => {
    assert.equal(senderAddressOf('smtp://u:p@mail.example:587?from=hi%40acme.example'), 'hi@acme.example');
    assert.equal(senderAddressOf('smtp://ada%40acme.example:p@mail.example'), 'ada@acme.example');
    assert.equal(senderAddressOf('smtps://apikey:p@smtp.example'), 'noreply@smtp.example');
    assert.equal(senderAddressOf(undefined), 'noreply@localhost');
  });
});
