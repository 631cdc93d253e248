/**
 * The user block's live tokens in the outbox, through the real server: a key with only the
 * `email` scope reads the project's outbox but never a reset code, a magic link's token or a
 * verification token (they are hidden); a key with the `user` scope (which could use them
 * anyway) still reads them, so local development needs no mail server; the SQLite file holds
 * none of them in plain text. Neighbours: all three mails, subject, text and HTML bodies, the
 * `to` filter, and a forged marker sent through email/Send.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startInProcess } from '../harness.js';

const HIDDEN = '[hidden: read the outbox with a key that has the user scope]';

describe('outbox entries of the user block keep their tokens from email-only keys', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let userKey: string;
  let emailOnly: string;
  const email = 'victim@example.com';

  before(async () => {
    alto = await startInProcess();
    userKey = await alto.projectKey('tokens', ['user', 'email']);
    emailOnly = await alto.projectKey('tokens', ['email']);
    const created = await alto.call('user', 'Create', { email, password: 'first password' }, userKey);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    for (const [endpoint, body] of [
      ['SendPasswordResetEmail', { email }],
      ['SendMagicLink', { email, address: 'www.example.com', endpoint: 'login' }],
      ['SendVerificationEmail', { email }],
    ] as const) {
      const sent = await alto.call('user', endpoint, body, userKey);
      assert.equal(sent.status, 200, `${endpoint}: ${JSON.stringify(sent.body)}`);
    }
  });
  after(() => alto.close());

  test('an email-only key sees the mails but none of their tokens; a user key sees them and they work', async () => {
    const full = (await alto.call('email', 'Outbox', { to: email }, userKey)).body.messages;
    const redacted = (await alto.call('email', 'Outbox', { to: email }, emailOnly)).body.messages;
    assert.equal(full.length, 3);
    assert.deepEqual(redacted.map((message: { id: string }) => message.id), full.map((message: { id: string }) => message.id));

    const reset = full.find((message: { subject: string }) => message.subject === 'Your password reset code');
    const code = /^([0-9A-Za-z]{30,})$/m.exec(reset.text_body)?.[1];
    assert.ok(code, reset.text_body);
    const magic = full.find((message: { text_body: string }) => message.text_body.includes('https://www.example.com/login/'));
    const magicToken = /https:\/\/www\.example\.com\/login\/([0-9A-Za-z]+)/.exec(magic.text_body)![1];
    const verification = full.find((message: { text_body: string }) => message.text_body.includes('/user/verify?'));
    const verifyToken = /token=([0-9A-Za-z]+)/.exec(verification.text_body)![1];
    const tokens = [code, magicToken, verifyToken];

    const seenByEmailKey = JSON.stringify(redacted);
    for (const token of tokens) assert.ok(!seenByEmailKey.includes(token), 'an email-only key never reads a live token');
    for (const message of redacted) assert.ok(message.text_body.includes(HIDDEN), message.text_body);
    const magicHtml = redacted.find((message: { id: string }) => message.id === magic.id).html_body;
    assert.ok(magicHtml.includes(HIDDEN) && !magicHtml.includes(magicToken), 'the HTML link is hidden too');

    // The user key's copy is the real one: the code resets the password, the magic token logs in.
    // (The magic link first: a password reset voids pending magic links.)
    const magicLogin = await alto.call('user', 'VerifyToken', { token: magicToken }, userKey);
    assert.equal(magicLogin.body.is_valid, true, JSON.stringify(magicLogin.body));
    const resetDone = await alto.call('user', 'ResetPassword', { email, code, new_password: 'second password', confirm_password: 'second password' }, userKey);
    assert.equal(resetDone.status, 200, JSON.stringify(resetDone.body));

    // At rest: the database file holds none of the tokens.
    const database = ['alto.db', 'alto.db-wal']
      .map((name) => join(alto.dataDir, name))
      .filter((path) => existsSync(path))
      .map((path) => readFileSync(path).toString('latin1'))
      .join('');
    for (const token of tokens) assert.ok(!database.includes(token), 'the outbox keeps tokens sealed');
  });

  test('a forged marker sent through email/Send is shown as sent, never opened', async () => {
    const [reset] = (await alto.call('email', 'Outbox', { to: email, limit: 3 }, userKey)).body.messages;
    const forged = `[alto-sealed:v1:${Buffer.from('not a sealed value, but long enough to look like one').toString('base64')}]`;
    const sent = await alto.call('email', 'Send', { to: 'someone@example.com', subject: 's', text_body: forged }, emailOnly);
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const [mine] = (await alto.call('email', 'Outbox', { to: 'someone@example.com' }, userKey)).body.messages;
    assert.equal(mine.text_body, forged);
    assert.ok(reset, 'the user mails are still listed');
  });
});
