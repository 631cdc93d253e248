import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { limitsFromEnvironment, OneTimePasswords, type OtpLimits } from './passwords.js';
import { SqliteOtpStore } from '../../store/otp/sqlite.js';
import { base32Decode, hotp, totp } from './totp.js';

const NS = 'project-1/production';
const ISSUER = 'shop';
/** The start of a 60-second step, so tests know exactly where step boundaries are. */
const START = 1_800_000_000_000 - (1_800_000_000_000 % 60_000);

function fixture(limits?: OtpLimits) {
  const db = openSqlite(':memory:');
  const clock = { now: START };
  const passwords = new OneTimePasswords(new SqliteOtpStore(db), { limits, now: () => clock.now });
  return { db, clock, passwords };
}

async function statusOf(run: () => Promise<unknown>): Promise<number> {
  try {
    await run();
  } catch (error) {
    if (isAltoError(error)) return error.status;
    throw error;
  }
  assert.fail('expected an error');
}

test('a generated code validates once; the same code again is a replay and fails', async () => {
  const { passwords } = fixture();
  const { code } = await passwords.generate(NS, 'ada', { issuer: ISSUER });
  assert.match(code, /^\d{6}$/);
  assert.equal(await passwords.validate(NS, 'ada', code), true);
  assert.equal(await passwords.validate(NS, 'ada', code), false);
});

test('a second Generate in a used step hands out the next step, which validates; a third waits', async () => {
  const { passwords, clock } = fixture();
  const first = await passwords.generate(NS, 'ada', { issuer: ISSUER });
  assert.equal(await passwords.validate(NS, 'ada', first.code), true);
  clock.now += 10_000;
  const second = await passwords.generate(NS, 'ada', { issuer: ISSUER });
  const secret = base32Decode(second.secret);
  assert.equal(second.code, hotp(secret, START / 60_000 + 1, 6));
  assert.equal(await passwords.validate(NS, 'ada', second.code), true);
  assert.equal(await statusOf(() => passwords.generate(NS, 'ada', { issuer: ISSUER })), 429);
  clock.now = START + 120_000; // two steps later every code is fresh again
  assert.equal(await passwords.validate(NS, 'ada', (await passwords.generate(NS, 'ada', { issuer: ISSUER })).code), true);
});

test('codes of one step either side are accepted, two steps are not', async () => {
  const { passwords, clock } = fixture();
  const { secret } = await passwords.generate(NS, 'ada', { issuer: ISSUER });
  const key = base32Decode(secret);
  const codeAt = (ms: number) => totp(key, ms, { digits: 6, periodSeconds: 60, algorithm: 'SHA1' });
  clock.now = START + 10 * 60_000 + 30_000;
  assert.equal(await passwords.validate(NS, 'ada', codeAt(clock.now - 120_000)), false, 'two steps behind');
  assert.equal(await passwords.validate(NS, 'ada', codeAt(clock.now - 60_000)), true, 'one step behind');
  assert.equal(await passwords.validate(NS, 'ada', codeAt(clock.now)), true, 'current step');
  assert.equal(await passwords.validate(NS, 'ada', codeAt(clock.now + 60_000)), true, 'one step ahead');
  assert.equal(await passwords.validate(NS, 'ada', codeAt(clock.now + 120_000)), false, 'two steps ahead');
  // Once a later step was accepted, an earlier step's code is refused too (RFC 6238 §5.2).
  clock.now += 60_000;
  assert.equal(await passwords.validate(NS, 'ada', codeAt(clock.now - 60_000)), false, 'older than the last accepted');
});

test('after 5 wrong codes validation answers 429 until the window passes', async () => {
  const { passwords, clock } = fixture();
  await passwords.generate(NS, 'ada', { issuer: ISSUER, expiry: 60 });
  for (let i = 0; i < 5; i++) {
    assert.equal(await passwords.validate(NS, 'ada', 'wrong'), false);
    clock.now += 1_000;
  }
  const right = async () => (await passwords.generate(NS, 'ada', { issuer: ISSUER })).code;
  assert.equal(await statusOf(async () => passwords.validate(NS, 'ada', await right())), 429, 'even the right code is refused');
  assert.equal(await statusOf(() => passwords.validate(NS, 'other-user-not-generated', '1')), 404);
  clock.now = START + 59_000;
  assert.equal(await statusOf(async () => passwords.validate(NS, 'ada', await right())), 429, 'still inside the window');
  clock.now = START + 60_000;
  assert.equal(await passwords.validate(NS, 'ada', await right()), true, 'the window passed');
});

test('a right code clears the failures; other ids are not blocked', async () => {
  const { passwords } = fixture();
  await passwords.generate(NS, 'ada', { issuer: ISSUER });
  await passwords.generate(NS, 'bob', { issuer: ISSUER });
  for (let i = 0; i < 4; i++) assert.equal(await passwords.validate(NS, 'ada', 'wrong'), false);
  assert.equal(await passwords.validate(NS, 'ada', (await passwords.generate(NS, 'ada', { issuer: ISSUER })).code), true);
  for (let i = 0; i < 4; i++) assert.equal(await passwords.validate(NS, 'ada', 'wrong'), false);
  for (let i = 0; i < 5; i++) await passwords.validate(NS, 'bob', 'wrong');
  assert.equal(await statusOf(() => passwords.validate(NS, 'bob', 'wrong')), 429);
  assert.equal(await passwords.validate(NS, 'ada', 'wrong'), false, 'ada had 4 failures: the fifth is still answered');
});

test('the failure limit and window are configurable', async () => {
  const { passwords, clock } = fixture({ maxFailures: 2, failureWindowSeconds: 10 });
  await passwords.generate(NS, 'ada', { issuer: ISSUER, expiry: 300 });
  await passwords.validate(NS, 'ada', 'wrong');
  await passwords.validate(NS, 'ada', 'wrong');
  assert.equal(await statusOf(() => passwords.validate(NS, 'ada', 'wrong')), 429);
  clock.now += 10_000;
  assert.equal(await passwords.validate(NS, 'ada', 'wrong'), false);
  assert.deepEqual(limitsFromEnvironment({ ALTO_OTP_MAX_FAILURES: '3', ALTO_OTP_FAILURE_WINDOW_SECONDS: '30' }), {
    maxFailures: 3,
    failureWindowSeconds: 30,
  });
  assert.deepEqual(limitsFromEnvironment({}), { maxFailures: 5 });
  assert.throws(() => limitsFromEnvironment({ ALTO_OTP_MAX_FAILURES: 'five' }), /ALTO_OTP_MAX_FAILURES/);
  assert.throws(() => limitsFromEnvironment({ ALTO_OTP_FAILURE_WINDOW_SECONDS: '0' }), /ALTO_OTP_FAILURE_WINDOW_SECONDS/);
});

test('the secret is made once per id and namespace and survives a restart', async () => {
  const { db, passwords, clock } = fixture();
  const first = await passwords.generate(NS, 'ada', { issuer: ISSUER });
  const again = await passwords.generate(NS, 'ada', { issuer: ISSUER });
  assert.equal(again.secret, first.secret);
  assert.equal(base32Decode(first.secret).length, 20);
  const elsewhere = await passwords.generate('project-2/production', 'ada', { issuer: ISSUER });
  assert.notEqual(elsewhere.secret, first.secret);
  assert.equal(await passwords.validate('project-2/production', 'ada', first.code === elsewhere.code ? 'x' : first.code), false);

  const restarted = new OneTimePasswords(new SqliteOtpStore(db), { now: () => clock.now });
  assert.equal((await restarted.generate(NS, 'ada', { issuer: ISSUER })).secret, first.secret);
  assert.equal(await restarted.validate(NS, 'ada', first.code), true);
});

test('size, expiry and algorithm shape the code and the otpauth URI', async () => {
  const { passwords } = fixture();
  const generated = await passwords.generate(NS, 'ada@example.com', { issuer: ISSUER, size: 8, expiry: 30, algorithm: 'SHA256' });
  assert.match(generated.code, /^\d{8}$/);
  assert.equal(base32Decode(generated.secret).length, 32);
  const uri = new URL(generated.uri);
  assert.equal(uri.protocol, 'otpauth:');
  assert.equal(uri.host, 'totp');
  assert.equal(decodeURIComponent(uri.pathname), '/shop:ada@example.com');
  assert.equal(uri.searchParams.get('secret'), generated.secret);
  assert.equal(uri.searchParams.get('digits'), '8');
  assert.equal(uri.searchParams.get('period'), '30');
  assert.equal(uri.searchParams.get('algorithm'), 'SHA256');
  assert.equal(
    generated.code,
    totp(base32Decode(generated.secret), START, { digits: 8, periodSeconds: 30, algorithm: 'SHA256' }),
    'an authenticator app computes the same code',
  );
  // size and expiry 0 mean the defaults, as M3O clients send them.
  assert.match((await passwords.generate(NS, 'zero', { issuer: ISSUER, size: 0, expiry: 0 })).code, /^\d{6}$/);
  assert.equal(await statusOf(() => passwords.generate(NS, 'ada', { issuer: ISSUER, size: 3 })), 400);
  assert.equal(await statusOf(() => passwords.generate(NS, 'ada', { issuer: ISSUER, size: 11 })), 400);
  assert.equal(await statusOf(() => passwords.generate(NS, 'ada', { issuer: ISSUER, expiry: -5 })), 400);
  assert.equal(await statusOf(() => passwords.generate(NS, 'ada', { issuer: ISSUER, expiry: 86_401 })), 400);
});

test('a new expiry starts the replay record over in the new period', async () => {
  const { passwords } = fixture();
  const short = await passwords.generate(NS, 'ada', { issuer: ISSUER, expiry: 1 });
  assert.equal(await passwords.validate(NS, 'ada', short.code), true);
  // With a 1 s period the accepted step is ~1.8e9; with 3600 s the steps are ~5e5: not replays.
  const long = await passwords.generate(NS, 'ada', { issuer: ISSUER, expiry: 3600 });
  assert.equal(await passwords.validate(NS, 'ada', long.code), true);
});

test('deleteProject forgets every environment of the project only', async () => {
  const { passwords } = fixture();
  await passwords.generate('p1/production', 'ada', { issuer: ISSUER });
  await passwords.generate('p1/development', 'ada', { issuer: ISSUER });
  await passwords.generate('p10/production', 'ada', { issuer: ISSUER });
  assert.equal(await passwords.deleteProject('p1'), 2);
  assert.equal(await statusOf(() => passwords.validate('p1/production', 'ada', '123456')), 404);
  assert.equal(await passwords.validate('p10/production', 'ada', 'wrong'), false);
});
