/**
 * The cron block through real servers: two `alto up` processes sharing one data folder fire
 * each tick of a per-second job exactly once, on time, signed; private callbacks are refused
 * without ALTO_ALLOW_PRIVATE_CALLBACKS; M3O's client schedules, lists and deletes jobs; with
 * `--store postgres://...` two processes on their own data folders share the jobs in PostgreSQL.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import Database from 'better-sqlite3';
import pg from 'pg';
import { verifySignature } from '../src/blocks/cron/signature.js';
import { createTestDatabase } from '../src/store/postgres/test-database.js';
import { startInProcess, startProcess, waitFor, waitForAsync, type CallResult, type ServerProcess, type TestAlto } from './harness.js';

interface Delivery {
  receivedAt: number;
  body: string;
  signature: string | undefined;
}

let receiver: Server;
let callbackUrl: string;
const deliveries: Delivery[] = [];
let alto: TestAlto | undefined;

before(async () => {
  // The in-process server must apply the default rule, whatever the shell running the tests says.
  delete process.env.ALTO_ALLOW_PRIVATE_CALLBACKS;
  receiver = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      deliveries.push({ receivedAt: Date.now(), body, signature: request.headers['alto-signature'] as string | undefined });
      response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/cron`;
});
after(async () => {
  receiver.close();
  await alto?.close();
});

test('two processes on one data folder: every tick fires once, on time, signed', async () => {
  const env = { ALTO_ALLOW_PRIVATE_CALLBACKS: '1' };
  const first = await startProcess({ env });
  let second: ServerProcess | undefined;
  try {
    second = await startProcess({ env, dataDir: first.dataDir });
    const key = await first.projectKey('ticks', ['cron']);
    const scheduled = await second.call('cron', 'Schedule', { id: 'tick', name: 'tick', interval: '*/1 * * * * *', callback: callbackUrl }, key);
    assert.equal(scheduled.status, 200, JSON.stringify(scheduled.body));
    assert.deepEqual(scheduled.body.job, { id: 'tick', name: 'tick', description: '', interval: '*/1 * * * * *', callback: callbackUrl });
    const secret: string = scheduled.body.signingSecret;
    assert.equal((await first.call('cron', 'SigningSecret', {}, key)).body.signingSecret, secret, 'both processes share the secret');

    await waitFor(() => deliveries.length >= 5, 'five ticks to arrive', 20_000);
    assert.equal((await first.call('cron', 'Delete', { id: 'tick' }, key)).status, 200);
    // A tick claimed just before the Delete may still be on its way.
    const settled = Date.now() + 1500;
    await waitFor(() => Date.now() > settled, 'in-flight ticks to land');

    const ticks = deliveries.map((delivery) => JSON.parse(delivery.body) as { id: string; scheduled: string; attempt: number });
    const distinct = new Set(ticks.map((tick) => tick.scheduled));
    assert.equal(distinct.size, deliveries.length, `each tick once: ${ticks.map((tick) => tick.scheduled).join(', ')}`);
    for (const [index, delivery] of deliveries.entries()) {
      assert.equal(ticks[index].id, 'tick');
      assert.equal(ticks[index].attempt, 1);
      assert.ok(verifySignature(secret, delivery.signature, delivery.body), `signature of ${delivery.body}`);
      const lateness = delivery.receivedAt - Date.parse(ticks[index].scheduled);
      assert.ok(lateness >= 0 && lateness < 1000, `tick ${ticks[index].scheduled} arrived ${lateness} ms after its time`);
    }
    const sorted = [...distinct].map(Date.parse).sort((a, b) => a - b);
    for (let index = 1; index < sorted.length; index++) assert.equal(sorted[index] - sorted[index - 1], 1000, 'no tick skipped');
    assert.deepEqual((await second.call('cron', 'Jobs', {}, key)).body, { jobs: [] });
  } finally {
    await second?.close();
    await first.close();
  }
});

test('jobs survive a restart and show their runs', async () => {
  const env = { ALTO_ALLOW_PRIVATE_CALLBACKS: '1' };
  const first = await startProcess({ env });
  let restarted: ServerProcess | undefined;
  try {
    const key = await first.projectKey('durable', ['cron']);
    const scheduled = await first.call('cron', 'Schedule', { id: 'later', name: 'later', interval: '*/1 * * * * *', callback: `${callbackUrl}?durable` }, key);
    assert.equal(scheduled.status, 200, JSON.stringify(scheduled.body));
    await first.stop();
    const seenBeforeRestart = deliveries.length;
    restarted = await startProcess({ env, dataDir: first.dataDir });
    const firedAfterRestart = () => deliveries.slice(seenBeforeRestart).some((delivery) => JSON.parse(delivery.body).id === 'later');
    await waitFor(firedAfterRestart, 'a tick after the restart', 20_000);
    // The run is recorded once the callback's answer is read, just after the receiver saw it.
    let runs: { status: string; code: number }[] = [];
    const deadline = Date.now() + 10_000;
    while (runs.length === 0 && Date.now() < deadline) {
      runs = (await restarted.call('cron', 'Jobs', {}, key)).body.jobs[0].runs;
    }
    assert.equal(runs[0].status, 'succeeded');
    assert.equal(runs[0].code, 200);
    await restarted.call('cron', 'Delete', { id: 'later' }, key);
  } finally {
    await restarted?.close();
    await first.close();
  }
});

test('without ALTO_ALLOW_PRIVATE_CALLBACKS, private callbacks and bad expressions are a 400', async () => {
  alto = await startInProcess();
  const key = await alto.projectKey('strict', ['cron']);
  for (const callback of [callbackUrl, 'http://localhost:9/x', 'http://10.0.0.1/x', 'http://[::1]/x', 'http://169.254.169.254/latest']) {
    const refused: CallResult = await alto.call('cron', 'Schedule', { name: 'x', interval: '* * * * *', callback }, key);
    assert.equal(refused.status, 400, callback);
    assert.match(refused.body.detail, /^callback: ".*" is \(or resolves to\) a (loopback|private|link-local)/);
  }
  const badInterval = await alto.call('cron', 'Schedule', { name: 'x', interval: '61 * * * *', callback: 'https://example.com/' }, key);
  assert.equal(badInterval.status, 400);
  assert.match(badInterval.body.detail, /interval: "61 \* \* \* \*" is not a valid cron expression: 61 is out of range for the minute field/);
  const never = await alto.call('cron', 'Schedule', { name: 'x', interval: '0 0 31 2 *', callback: 'https://example.com/' }, key);
  assert.match(never.body.detail, /never fires/);
  assert.equal((await alto.call('cron', 'Schedule', { interval: '* * * * *', callback: 'https://example.com/' }, key)).status, 400);
  assert.equal((await alto.call('cron', 'Jobs', {}, null)).status, 401);
});

test('M3O client: Schedule, Jobs, Delete; deleting the project deletes its jobs', async () => {
  assert.ok(alto, 'started by the previous test');
  const key = await alto.projectKey('m3o', ['cron']);
  const client = new Client({ token: key, address: `${alto.url}/` });
  const scheduled = await client.call<object, { job: { id: string; name: string; interval: string } }>('cron', 'Schedule', {
    name: 'nightly',
    description: 'the nightly report',
    interval: '0 3 * * *',
    callback: 'https://93.184.216.34/hooks/cron',
  });
  assert.equal(scheduled.job.name, 'nightly');
  assert.match(scheduled.job.id, /^[0-9A-Za-z]{16}$/);
  const listed = await client.call<object, { jobs: { id: string; description: string; interval: string; next: string; runs: unknown[] }[] }>('cron', 'Jobs', {});
  assert.equal(listed.jobs.length, 1);
  assert.equal(listed.jobs[0].description, 'the nightly report');
  assert.match(listed.jobs[0].next, /T03:00:00\.000Z$/);
  assert.deepEqual(listed.jobs[0].runs, []);
  await client.call('cron', 'Delete', { id: scheduled.job.id });
  assert.deepEqual(await client.call('cron', 'Jobs', {}), { jobs: [] });
  const missing = await client.call('cron', 'Delete', { id: scheduled.job.id }).then(
    () => assert.fail('expected an error'),
    (body: any) => body,
  );
  assert.equal(missing.code, 404);

  const doomedKey = await alto.projectKey('doomed', ['cron']);
  await alto.call('cron', 'Schedule', { id: 'd', name: 'd', interval: '@daily', callback: 'https://93.184.216.34/' }, doomedKey);
  assert.equal((await alto.call('projects', 'Delete', { name: 'doomed' })).status, 200);
  const recreatedKey = await alto.projectKey('doomed', ['cron']);
  assert.deepEqual((await alto.call('cron', 'Jobs', {}, recreatedKey)).body, { jobs: [] });
});

test('with --store postgres, two processes on their own data folders fire each tick once, and the jobs live in PostgreSQL', async () => {
  const database = await createTestDatabase('cron_e2e');
  // One cloud: the same master key (the secrets are sealed with it) and admin key in both.
  const env = { ALTO_ALLOW_PRIVATE_CALLBACKS: '1', ALTO_MASTER_KEY: randomBytes(32).toString('hex'), ALTO_ADMIN_KEY: `admin-${randomBytes(16).toString('hex')}` };
  const args = ['--store', database.url];
  let first: ServerProcess | undefined;
  let second: ServerProcess | undefined;
  const direct = new pg.Client({ connectionString: database.url });
  try {
    first = await startProcess({ env, args });
    second = await startProcess({ env, args });
    assert.notEqual(first.dataDir, second.dataDir);
    const key = await first.projectKey('shared', ['cron']);
    const callback = `${callbackUrl}?postgres`;
    const scheduled = await second.call('cron', 'Schedule', { id: 'pg-tick', name: 'pg-tick', interval: '*/1 * * * * *', callback }, key);
    assert.equal(scheduled.status, 200, JSON.stringify(scheduled.body));
    const secret: string = scheduled.body.signingSecret;
    assert.equal((await first.call('cron', 'SigningSecret', {}, key)).body.signingSecret, secret, 'both processes share the secret');

    const ours = () => deliveries.filter((delivery) => JSON.parse(delivery.body).id === 'pg-tick');
    await waitFor(() => ours().length >= 4, 'four ticks to arrive', 20_000);
    let runs: { status: string }[] = [];
    await waitForAsync(async () => {
      runs = (await first!.call('cron', 'Jobs', {}, key)).body.jobs[0].runs;
      return runs.length >= 2;
    }, 'runs to be recorded');
    assert.ok(runs.every((run) => run.status === 'succeeded'), JSON.stringify(runs));

    await direct.connect();
    const jobs = await direct.query('SELECT id, callback, next_run FROM alto_cron_jobs');
    assert.deepEqual(jobs.rows.map((row) => [row.id, row.callback]), [['pg-tick', callback]]);
    const stored = await direct.query<{ count: string }>("SELECT count(*) FROM alto_cron_runs WHERE job_id = 'pg-tick'");
    assert.ok(Number(stored.rows[0].count) >= 2, 'the runs are in PostgreSQL');
    const secrets = await direct.query<{ secret: string }>('SELECT secret FROM alto_cron_signing_secrets');
    assert.equal(secrets.rows.length, 1);
    assert.ok(secrets.rows[0].secret.startsWith('alto-sealed:v1:') && !secrets.rows[0].secret.includes(secret), 'the secret is sealed');
    for (const dataDir of [first.dataDir, second.dataDir]) {
      const path = `${dataDir}/alto.db`;
      if (!existsSync(path)) continue;
      const local = new Database(path, { readonly: true });
      const tables = local.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'cron_%'").all();
      local.close();
      assert.deepEqual(tables, [], "no cron tables in the node's SQLite file");
    }

    assert.equal((await first.call('cron', 'Delete', { id: 'pg-tick' }, key)).status, 200);
    const settled = Date.now() + 1500;
    await waitFor(() => Date.now() > settled, 'in-flight ticks to land');
    const ticks = ours().map((delivery) => JSON.parse(delivery.body) as { scheduled: string; attempt: number });
    assert.equal(new Set(ticks.map((tick) => tick.scheduled)).size, ticks.length, `each tick once: ${ticks.map((tick) => tick.scheduled).join(', ')}`);
    for (const delivery of ours()) assert.ok(verifySignature(secret, delivery.signature, delivery.body));
    assert.deepEqual((await second.call('cron', 'Jobs', {}, key)).body, { jobs: [] });
    assert.equal((await direct.query('SELECT 1 FROM alto_cron_jobs')).rowCount, 0);
  } finally {
    await direct.end().catch(() => undefined);
    await second?.close();
    await first?.close();
    await database.drop();
  }
});
