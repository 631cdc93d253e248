/**
 * `accounts/Login` through the real server: an unknown email costs what a wrong password does
 * (one argon2 verification either way), failed logins are limited per account (also when the
 * right password follows) and per client address, with Retry-After; a good login clears the
 * account's count. Neighbours: upper-case spelling of the same email, unknown emails from the
 * same address, the right password after the limit.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startInProcess } from '../harness.js';

const PASSWORD = 'correct horse battery';

describe('accounts/Login', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  const login = (email: string, password: string) => alto.call('accounts', 'Login', { email, password }, null);

  before(async () => {
    alto = await startInProcess({ openSignup: true });
    for (const email of ['timing@example.com', 'limited@example.com', 'cleared@example.com']) {
      const signup = await alto.call('accounts', 'Signup', { email, password: PASSWORD }, null);
      assert.equal(signup.status, 200, JSON.stringify(signup.body));
    }
  });
  after(() => alto.close());

  /** The median of a list of times. */
  const median = (times: number[]) => [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];

  test('an unknown email takes as long as a wrong password (both verify an argon2 hash), and fails the same way', async () => {
    // Four of each, interleaved so both see the same load: 8 of the 20 failures an address may
    // have, and 4 of the 5 the account may.
    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let index = 0; index < 4; index++) {
      for (const [email, times] of [[`nobody-${index}@example.com`, unknown], ['timing@example.com', wrong]] as const) {
        const started = performance.now();
        const answer = await login(email, 'wrong password');
        times.push(performance.now() - started);
        assert.equal(answer.status, 401);
        assert.equal(answer.body.detail, 'email or password is wrong');
      }
    }
    // Without the decoy hash an unknown email answered in about a millisecond, a wrong password
    // in tens: the ratio was below 0.1. With it both pay one verification.
    assert.ok(median(unknown) > median(wrong) * 0.3, `unknown email ${unknown.join(', ')} ms; wrong password ${wrong.join(', ')} ms`);
    assert.equal((await login('timing@example.com', PASSWORD)).status, 200, 'two failures do not lock the account');
  });

  test('five failures lock the account, even for the right password and another spelling; a good login clears the count', async () => {
    for (let index = 0; index < 4; index++) assert.equal((await login('cleared@example.com', 'wrong password')).status, 401);
    assert.equal((await login('cleared@example.com', PASSWORD)).status, 200, 'four failures, then the right password');
    assert.equal((await login('cleared@example.com', 'wrong password')).status, 401, 'the count started again');

    for (let index = 0; index < 5; index++) assert.equal((await login('limited@example.com', 'wrong password')).status, 401);
    for (const [email, password] of [
      ['limited@example.com', 'wrong password'],
      ['limited@example.com', PASSWORD],
      ['LIMITED@example.com', PASSWORD],
    ]) {
      const locked = await login(email, password);
      assert.equal(locked.status, 429, `${email}: ${JSON.stringify(locked.body)}`);
      assert.match(locked.body.detail, /too many failed logins for this account/);
      assert.equal(locked.headers.get('retry-after'), '900');
    }
  });

  test('twenty failures from one address stop every login from it, unknown emails included', async () => {
    // 8 + 5 + 5 failures so far; unknown emails make up the rest (each under 5 of its own).
    let failures = 18;
    let index = 0;
    while (failures < 20) {
      assert.equal((await login(`spray-${index++}@example.com`, 'wrong password')).status, 401);
      failures += 1;
    }
    const blocked = await login(`spray-${index}@example.com`, 'wrong password');
    assert.equal(blocked.status, 429, JSON.stringify(blocked.body));
    assert.match(blocked.body.detail, /too many failed logins from this address/);
  });
});

test('user/Login: an unknown email costs what a wrong password does too', async () => {
  const alto = await startInProcess();
  try {
    const key = await alto.projectKey('timing', ['user']);
    const created = await alto.call('user', 'Create', { id: 'ada', email: 'ada@example.com', username: 'ada', password: PASSWORD }, key);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const unknown: number[] = [];
    const wrong: number[] = [];
    // Interleaved, 4 of each: under the 5 failures one account may have and the 20 of an address.
    for (let index = 0; index < 4; index++) {
      for (const [email, times] of [[`nobody-${index}@example.com`, unknown], ['ada@example.com', wrong]] as const) {
        const started = performance.now();
        const answer = await alto.call('user', 'Login', { email, password: 'wrong password' }, key);
        times.push(performance.now() - started);
        assert.equal(answer.status, 401, JSON.stringify(answer.body));
      }
    }
    const median = (times: number[]) => [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
    // Without the decoy verification an unknown email answered in a fraction of the time.
    assert.ok(median(unknown) > median(wrong) * 0.3, `unknown email ${unknown.join(', ')} ms; wrong password ${wrong.join(', ')} ms`);
  } finally {
    await alto.close();
  }
});
