import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../kit/logger.js';
import { isSealedText, SecretCipher } from '../../kit/master-key.js';
import { SqliteCronStore } from '../../store/cron/sqlite.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { CronScheduler } from './scheduler.js';
import { verifySignature } from './signature.js';

interface Received {
  body: string;
  signature: string | undefined;
}

async function receiver(answer: (count: number) => number): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      received.push({ body, signature: request.headers['alto-signature'] as string | undefined });
      response.writeHead(answer(received.length)).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received };
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('two schedulers on one database file fire a due run once, signed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-cron-'));
  const { server, url, received } = await receiver(() => 200);
  const options = { allowPrivateCallbacks: true, log: silentLogger() };
  const first = new CronScheduler(new SqliteCronStore(openSqlite(join(dir, 'alto.db'))), options);
  const second = new CronScheduler(new SqliteCronStore(openSqlite(join(dir, 'alto.db'))), options);
  try {
    const job = await first.schedule('p/production', { id: 'every', name: 'every', interval: '* * * * *', callback: url });
    const due = Date.now() - 10;
    await first.store.save({ ...job, nextRun: due }, Date.now());
    await Promise.all([second.tick(), first.tick()]);
    await second.tick();
    await until(async () => (await first.store.runs('p/production', 'every')).length === 1, 'the run to be recorded');
    assert.equal(received.length, 1);
    const body = JSON.parse(received[0].body);
    assert.equal(body.scheduled, new Date(due).toISOString());
    assert.equal(body.attempt, 1);
    assert.ok(verifySignature(await second.signingSecrets.get('p/production'), received[0].signature, received[0].body));
    const [run] = await second.store.runs('p/production', 'every');
    assert.equal(run.status, 'succeeded');
    assert.equal(run.httpCode, 200);
    assert.ok((await first.store.list('p/production'))[0].nextRun! > Date.now(), 'the next run is in the future');
  } finally {
    await first.close();
    await second.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failing callback is retried with back-off; a private one is not called without permission', async () => {
  const { server, url, received } = await receiver((count) => (count < 3 ? 503 : 204));
  const store = new SqliteCronStore(openSqlite(':memory:'));
  const scheduler = new CronScheduler(store, { allowPrivateCallbacks: true, log: silentLogger(), retryDelaysMs: [10, 20, 40] });
  const strict = new CronScheduler(store, { allowPrivateCallbacks: false, log: silentLogger() });
  try {
    const job = await scheduler.schedule('p/production', { id: 'flaky', name: 'flaky', interval: '* * * * *', callback: url });
    await store.save({ ...job, nextRun: Date.now() - 1 }, Date.now());
    await scheduler.tick();
    await until(async () => (await store.runs('p/production', 'flaky')).length === 1, 'the run to be recorded');
    assert.deepEqual(received.map((call) => JSON.parse(call.body).attempt), [1, 2, 3]);
    const [run] = await store.runs('p/production', 'flaky');
    assert.deepEqual([run.status, run.httpCode, run.attempts], ['succeeded', 204, 3]);

    await assert.rejects(strict.schedule('p/production', { name: 'x', interval: '* * * * *', callback: url }), /loopback/);
    await store.save({ ...job, id: 'sneaky', nextRun: Date.now() - 1 }, Date.now());
    await strict.tick();
    await until(async () => (await store.runs('p/production', 'sneaky')).length === 1, 'the refusal to be recorded');
    assert.equal((await store.runs('p/production', 'sneaky'))[0].status, 'refused');
    // A host name is checked on the address the connection would use.
    await store.save({ ...job, id: 'by-name', callback: url.replace('127.0.0.1', 'localhost'), nextRun: Date.now() - 1 }, Date.now());
    await strict.tick();
    await until(async () => (await store.runs('p/production', 'by-name')).length === 1, 'the refusal by name to be recorded');
    assert.equal((await store.runs('p/production', 'by-name'))[0].status, 'refused');
    assert.equal(received.length, 3, 'the private callback was not called');
  } finally {
    await scheduler.close();
    await strict.close();
    server.close();
  }
});

test('signing secrets are sealed with the master key; a plain one still reads and is sealed by sealPlain', async () => {
  const store = new SqliteCronStore(openSqlite(':memory:'));
  const cipher = new SecretCipher(randomBytes(32));
  const plain = new CronScheduler(store, { allowPrivateCallbacks: false, log: silentLogger() });
  const sealed = new CronScheduler(store, { allowPrivateCallbacks: false, log: silentLogger(), cipher });
  const legacy = await plain.signingSecrets.get('p/production');
  assert.match(legacy, /^whsec_[0-9a-f]{64}$/);
  assert.equal(await sealed.signingSecrets.get('p/production'), legacy, 'a plain secret still reads');
  assert.equal(await sealed.signingSecrets.sealPlain(), 1);
  assert.equal(await sealed.signingSecrets.sealPlain(), 0, 'sealed once');
  const stored = await store.signingSecret('p/production', () => assert.fail('the secret exists'));
  assert.ok(isSealedText(stored) && !stored.includes(legacy), 'stored sealed');
  assert.equal(await sealed.signingSecrets.get('p/production'), legacy);
  const fresh = await sealed.signingSecrets.get('q/production');
  assert.ok(isSealedText(await store.signingSecret('q/production', () => assert.fail('the secret exists'))), 'a new secret is stored sealed');
  assert.match(fresh, /^whsec_[0-9a-f]{64}$/);
});

test('a run whose claimer died before delivering it is delivered by another scheduler once the claim runs out', async () => {
  const { server, url, received } = await receiver(() => 200);
  const store = new SqliteCronStore(openSqlite(':memory:'));
  const survivor = new CronScheduler(store, { allowPrivateCallbacks: true, log: silentLogger(), claimMs: 400 });
  try {
    const job = await survivor.schedule('p/production', { id: 'orphan', name: 'orphan', interval: '* * * * *', callback: url });
    const due = Date.now() - 10;
    await store.save({ ...job, nextRun: due }, Date.now());
    // What a process killed between its claim and its callback leaves behind.
    assert.equal(await store.claim({ ...job, nextRun: due }, due, job.nextRun, { owner: 'killed', until: Date.now() + 400 }), true);
    await until(async () => {
      await survivor.tick();
      return (await store.runs('p/production', 'orphan')).length === 1;
    }, 'the abandoned run to be delivered and recorded');
    assert.equal(received.length, 1);
    assert.equal(JSON.parse(received[0].body).scheduled, new Date(due).toISOString());
    assert.equal((await store.runs('p/production', 'orphan'))[0].status, 'succeeded');
    assert.deepEqual(await store.abandonedRuns(Number.MAX_SAFE_INTEGER, 10), [], 'the recorded run is no longer claimed');
  } finally {
    await survivor.close();
    server.close();
  }
});

test('a scheduler stopping mid-delivery releases the run, and another delivers it at once', async () => {
  const held: Array<() => void> = [];
  const received: string[] = [];
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      received.push(body);
      // The first delivery is never answered: its sender stops while waiting.
      if (received.length === 1) held.push(() => response.destroy());
      else response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const store = new SqliteCronStore(openSqlite(':memory:'));
  const options = { allowPrivateCallbacks: true, log: silentLogger(), claimMs: 60_000 };
  const stopping = new CronScheduler(store, options);
  const heir = new CronScheduler(store, options);
  try {
    const job = await stopping.schedule('p/production', { id: 'cut', name: 'cut', interval: '* * * * *', callback: url });
    const due = Date.now() - 10;
    await store.save({ ...job, nextRun: due }, Date.now());
    await stopping.tick();
    await until(() => received.length === 1, 'the first delivery to reach the callback');
    await stopping.close();
    assert.deepEqual(await store.runs('p/production', 'cut'), [], 'a cut-short run is not recorded');
    await until(async () => {
      await heir.tick();
      return (await store.runs('p/production', 'cut')).length === 1;
    }, 'the released run to be delivered by the other scheduler');
    assert.deepEqual(received.map((body) => JSON.parse(body).scheduled), [new Date(due).toISOString(), new Date(due).toISOString()]);
  } finally {
    for (const release of held) release();
    await heir.close();
    server.close();
  }
});
