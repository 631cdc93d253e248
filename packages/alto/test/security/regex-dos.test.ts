/**
 * Regular-expression denial of service, through the real server: a 120 kB address (dots
 * between two "@", which made the old address pattern backtrack for seconds) is refused at once
 * by its length on every field that checks addresses, and other calls are answered meanwhile.
 * Neighbours: the fields whose trailing slashes or stars were trimmed with `/x+$/` (quadratic
 * when the run does not end the string), cron expressions and callbacks.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isEmailAddress } from '../../src/platform/mail.js';
import { trimBoth, trimEnd } from '../../src/kit/text.js';
import { startInProcess } from '../harness.js';

/** The attack: 120 kB of dots between two "@". */
const HOSTILE_ADDRESS = `a@${'.'.repeat(120_000)}@`;
/** 200 kB of a character followed by another: what `/x+$/` retried from every position. */
const run = (char: string) => `${char.repeat(200_000)}x`;

describe('regex denial of service', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let key: string;
  const call = (service: string, endpoint: string, body: unknown) => alto.call(service, endpoint, body, key);

  before(async () => {
    alto = await startInProcess({ maxBodyBytes: 4 * 1024 * 1024 });
    key = await alto.projectKey('regex', ['*']);
  });
  after(() => alto.close());

  test('the address check is linear and keeps its meaning', () => {
    assert.equal(isEmailAddress(HOSTILE_ADDRESS), false);
    assert.equal(isEmailAddress(`${'a'.repeat(64)}@example.com`), true);
    assert.equal(isEmailAddress(`${'a'.repeat(65)}@example.com`), false, 'RFC 5321: 64 characters in the local part');
    assert.equal(isEmailAddress(`a@${'b'.repeat(250)}.com`), false, 'RFC 5321: 254 characters in all');
    for (const good of ['joe@example.com', 'a.b+c@sub.example.co', 'dev@localhost']) assert.equal(isEmailAddress(good), true, good);
    for (const bad of ['joe', '@example.com', 'joe@', 'joe@example', 'joe@.com', 'joe@example.', 'a b@example.com', 'a@b@example.com', 'a<b@example.com']) {
      assert.equal(isEmailAddress(bad), false, bad);
    }
    assert.equal(trimEnd(run('/'), '/'), run('/'));
    assert.equal(trimBoth('//a/b//', '/'), 'a/b');
  });

  test('a 120 kB address is refused by its length on every field that takes one, while another call is answered', async () => {
    const attempts: [string, string, unknown, string][] = [
      ['email', 'Validate', { address: HOSTILE_ADDRESS }, 'address: at most 998 characters'],
      ['email', 'Parse', { address: HOSTILE_ADDRESS }, 'address: at most 998 characters'],
      ['email', 'Send', { to: HOSTILE_ADDRESS, subject: 's', text_body: 'b' }, 'to: at most 16384 characters'],
      ['email', 'Send', { from: HOSTILE_ADDRESS, to: 'joe@example.com', subject: 's', text_body: 'b' }, 'from: at most 998 characters'],
      ['email', 'Send', { reply_to: HOSTILE_ADDRESS, to: 'joe@example.com', subject: 's', text_body: 'b' }, 'reply_to: at most 998 characters'],
      ['email', 'Outbox', { to: HOSTILE_ADDRESS }, 'to: at most 998 characters'],
      ['email', 'SetSmtp', { url: `smtp://mail.example.com:25?from=${encodeURIComponent(HOSTILE_ADDRESS)}` }, 'url: at most 2048 characters'],
      ['user', 'Create', { email: HOSTILE_ADDRESS, password: 'long enough password' }, 'email: 120003 characters is longer than the 254'],
      ['user', 'SendPasswordResetEmail', { email: HOSTILE_ADDRESS }, 'email: 120003 characters is longer than the 254'],
      ['user', 'SendMagicLink', { email: HOSTILE_ADDRESS, address: 'www.example.com' }, 'email: 120003 characters is longer than the 254'],
    ];
    const hostile = Promise.all(attempts.map(([service, endpoint, body]) => call(service, endpoint, body)));
    // Answered while the hostile calls are in flight (before the fix it waited for all of them).
    const meanwhile = await call('email', 'Validate', { address: 'joe@example.com' });
    assert.deepEqual(meanwhile.body, { is_valid: true });
    const answers = await hostile;
    answers.forEach((answer, index) => {
      const [service, endpoint, , detail] = attempts[index];
      assert.equal(answer.status, 400, `${service}/${endpoint}: ${JSON.stringify(answer.body).slice(0, 300)}`);
      assert.ok(answer.body.detail.includes(detail), `${service}/${endpoint}: ${answer.body.detail.slice(0, 300)}`);
    });
  });

  test('the SMTP ?from= and a longest legal address still work', async () => {
    const local = 'a'.repeat(64);
    const valid = await call('email', 'Validate', { address: `${local}@${'b'.repeat(170)}.example.com` });
    assert.deepEqual(valid.body, { is_valid: true });
    const badFrom = await call('email', 'SetSmtp', { url: `smtp://mail.example.com:25?from=${'.'.repeat(1500)}` });
    assert.equal(badFrom.status, 400);
    assert.match(badFrom.body.detail, /\?from= must be an email address/);
    assert.ok(badFrom.body.detail.length < 400, 'the error does not echo the whole value');
  });

  test('trailing runs are trimmed in linear time: magic-link address and endpoint, secret paths, file folders, search stars, cron', async () => {
    await call('user', 'Create', { email: 'magic@example.com', password: 'long enough password' });
    const magic = await call('user', 'SendMagicLink', { email: 'magic@example.com', address: run('/'), endpoint: run('/') });
    assert.ok(magic.status === 200 || magic.status === 400, JSON.stringify(magic.body).slice(0, 300));
    const secret = await call('secret', 'Set', { path: run('/'), key: 'k', value: 'v' });
    assert.ok(secret.status < 500, JSON.stringify(secret.body).slice(0, 300));
    const folder = await call('file', 'List', { project: 'p', path: run('/') });
    assert.ok(folder.status < 500, JSON.stringify(folder.body).slice(0, 300));
    await call('search', 'CreateIndex', { index: 'stars' });
    const search = await call('search', 'Search', { index: 'stars', query: `${'*'.repeat(4000)}a` });
    assert.equal(search.status, 400);
    const interval = await call('cron', 'Schedule', { name: 'n', interval: `${'* '.repeat(100_000)}`, callback: 'https://example.com/' });
    assert.equal(interval.status, 400);
    assert.match(interval.body.detail, /interval: at most 256 characters/);
    const callback = await call('cron', 'Schedule', { name: 'n', interval: '* * * * *', callback: `app://${'a'.repeat(100_000)}/\nx` });
    assert.equal(callback.status, 400);
    assert.match(callback.body.detail, /callback: at most 2048 characters/);
  });
});
