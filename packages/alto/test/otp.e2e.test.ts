/**
 * The otp block through the real server: Generate and Validate over HTTP and through M3O's
 * client, replay protection, wrong codes, the 429 after too many of them, project isolation;
 * with `--store postgres://...` the secrets, replay records and counters live in PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import pg from 'pg';
import { base32Decode, totp } from '../src/blocks/otp/totp.js';
import { createTestDatabase } from '../src/store/postgres/test-database.js';
import { startInProcess, type TestAlto } from './harness.js';

let alto: TestAlto;
let shopKey: string;
let blogKey: string;

before(async () => {
  alto = await startInProcess();
  shopKey = await alto.projectKey('shop', ['otp']);
  blogKey = await alto.projectKey('blog', ['otp']);
});
after(() => alto.close());

test('Generate then Validate succeeds once; the same code again fails', async () => {
  const generated = await alto.call('otp', 'Generate', { id: 'ada@example.com' }, shopKey);
  assert.equal(generated.status, 200, JSON.stringify(generated.body));
  const { code, secret, uri } = generated.body;
  assert.match(code, /^\d{6}$/);
  assert.match(secret, /^[A-Z2-7]{32}$/);
  const parsed = new URL(uri);
  assert.equal(parsed.protocol, 'otpauth:');
  assert.equal(parsed.host, 'totp');
  assert.equal(decodeURIComponent(parsed.pathname), '/shop:ada@example.com');
  assert.equal(parsed.searchParams.get('secret'), secret);
  assert.equal(parsed.searchParams.get('period'), '60');

  const valid = await alto.call('otp', 'Validate', { id: 'ada@example.com', code }, shopKey);
  assert.deepEqual(valid.body, { success: true });
  const replay = await alto.call('otp', 'Validate', { id: 'ada@example.com', code }, shopKey);
  assert.deepEqual(replay.body, { success: false });
});

test('an authenticator app computing codes from the secret is accepted', async () => {
  const generated = await alto.call('otp', 'Generate', { id: 'app-user', size: 8, expiry: 30 }, shopKey);
  assert.match(generated.body.code, /^\d{8}$/);
  const fromApp = totp(base32Decode(generated.body.secret), Date.now(), { digits: 8, periodSeconds: 30, algorithm: 'SHA1' });
  const valid = await alto.call('otp', 'Validate', { id: 'app-user', code: fromApp }, shopKey);
  assert.equal(valid.body.success, true);
});

test('a wrong code fails, and after 5 wrong codes validation answers 429', async () => {
  const { code } = (await alto.call('otp', 'Generate', { id: 'mallory-target' }, shopKey)).body;
  const wrong = code === '000000' ? '111111' : '000000';
  for (let i = 0; i < 5; i++) {
    const answer = await alto.call('otp', 'Validate', { id: 'mallory-target', code: wrong }, shopKey);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.body, { success: false });
  }
  const blocked = await alto.call('otp', 'Validate', { id: 'mallory-target', code }, shopKey);
  assert.equal(blocked.status, 429);
  assert.equal(blocked.body.id, 'too_many_requests');
  assert.match(blocked.body.detail, /5 wrong codes for "mallory-target"/);
  // Other ids and other projects are not affected.
  const other = (await alto.call('otp', 'Generate', { id: 'someone-else' }, shopKey)).body.code;
  assert.equal((await alto.call('otp', 'Validate', { id: 'someone-else', code: other }, shopKey)).body.success, true);
});

test('the block lifts when the window passes', async () => {
  // A 1-second period makes the failure window 1 second.
  await alto.call('otp', 'Generate', { id: 'short-window', expiry: 1 }, shopKey);
  for (let i = 0; i < 5; i++) await alto.call('otp', 'Validate', { id: 'short-window', code: 'x' }, shopKey);
  assert.equal((await alto.call('otp', 'Validate', { id: 'short-window', code: 'x' }, shopKey)).status, 429);
  const deadline = Date.now() + 10_000;
  let status = 429;
  while (status === 429) {
    assert.ok(Date.now() < deadline, 'still blocked after 10 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
    status = (await alto.call('otp', 'Validate', { id: 'short-window', code: 'x' }, shopKey)).status;
  }
  assert.equal(status, 200);
});

test('ids are per project, and bad requests say what is wrong', async () => {
  const { code } = (await alto.call('otp', 'Generate', { id: 'shared-name' }, shopKey)).body;
  const elsewhere = await alto.call('otp', 'Validate', { id: 'shared-name', code }, blogKey);
  assert.equal(elsewhere.status, 404);
  assert.match(elsewhere.body.detail, /call Generate first/);
  const blogCode = (await alto.call('otp', 'Generate', { id: 'shared-name' }, blogKey)).body;
  assert.notEqual(blogCode.secret, undefined);
  const shopSecret = (await alto.call('otp', 'Generate', { id: 'shared-name' }, shopKey)).body.secret;
  assert.notEqual(blogCode.secret, shopSecret);

  assert.equal((await alto.call('otp', 'Generate', { id: 'x', size: 3 }, shopKey)).status, 400);
  assert.equal((await alto.call('otp', 'Generate', { id: 'x', expiry: 100_000 }, shopKey)).status, 400);
  assert.equal((await alto.call('otp', 'Generate', {}, shopKey)).status, 400);
  assert.equal((await alto.call('otp', 'Validate', { id: 'x' }, shopKey)).status, 400);
  assert.equal((await alto.call('otp', 'Generate', { id: 'x' }, null)).status, 401);
});

test('Generate and Validate through the M3O client', async () => {
  const client = new Client({ token: shopKey, address: `${alto.url}/` });
  const generated = await client.call<object, { code: string }>('otp', 'Generate', { id: 'm3o-user', size: 6, expiry: 60 });
  assert.match(generated.code, /^\d{6}$/);
  const wrong = generated.code === '123456' ? '654321' : '123456';
  const failed = await client.call<object, { success?: boolean }>('otp', 'Validate', { id: 'm3o-user', code: wrong });
  assert.equal(failed.success, false);
  const valid = await client.call<object, { success: boolean }>('otp', 'Validate', { id: 'm3o-user', code: generated.code });
  assert.equal(valid.success, true);
  for (let i = 0; i < 5; i++) await client.call('otp', 'Validate', { id: 'm3o-user', code: wrong });
  const error = await client.call('otp', 'Validate', { id: 'm3o-user', code: wrong }).then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
  assert.equal(error.code, 429);
  assert.equal(error.status, 'Too Many Requests');
});

test('with --store postgres the secret (sealed), the replay record and the failure count live in PostgreSQL', async () => {
  const database = await createTestDatabase('otp_e2e');
  let onPostgres: TestAlto | undefined;
  const direct = new pg.Client({ connectionString: database.url });
  try {
    onPostgres = await startInProcess({ postgresUrl: database.url });
    const key = await onPostgres.projectKey('pg', ['otp']);
    const stepAtGenerate = Math.floor(Date.now() / 60_000);
    const generated = await onPostgres.call('otp', 'Generate', { id: 'ada@example.com' }, key);
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    const seed = Buffer.from(base32Decode(generated.body.secret));
    for (let i = 0; i < 2; i++) assert.deepEqual((await onPostgres.call('otp', 'Validate', { id: 'ada@example.com', code: 'wrong' }, key)).body, { success: false });

    await direct.connect();
    const row = async () =>
      (
        await direct.query<{ secret: Buffer; failures: number; last_step: string }>(
          "SELECT secret, failures, last_step FROM alto_otp_secrets WHERE id = 'ada@example.com'",
        )
      ).rows;
    const [stored] = await row();
    assert.ok(stored, 'the id is in PostgreSQL');
    assert.ok(!stored.secret.includes(seed), 'the seed is sealed');
    assert.equal(stored.failures, 2);
    assert.equal(stored.last_step, '-1');

    assert.deepEqual((await onPostgres.call('otp', 'Validate', { id: 'ada@example.com', code: generated.body.code }, key)).body, { success: true });
    const [validated] = await row();
    assert.equal(validated.failures, 0);
    assert.ok([stepAtGenerate, stepAtGenerate + 1].includes(Number(validated.last_step)), `the accepted step ${validated.last_step}`);
    assert.deepEqual((await onPostgres.call('otp', 'Validate', { id: 'ada@example.com', code: generated.body.code }, key)).body, { success: false }, 'a replay');
  } finally {
    await direct.end().catch(() => undefined);
    await onPostgres?.close();
    await database.drop();
  }
});
