/**
 * Quotas and limits end to end over HTTP: a key's rate limit with its RateLimit-* and
 * Retry-After headers, one key's limit held by two server processes on one data folder, a
 * monthly quota, a spend cap (402) and a db rows cap, each refusing with a clear error that
 * names the limit while the project's data stays intact.
 *
 * Timing: a token bucket refills while a test runs, so no test assumes how fast this machine
 * is. Each counts what passed against what the bucket can have handed out in the time that
 * actually elapsed (5 at once, plus one per 200 ms), and checks the exact "sixth call is
 * refused" only when the calls did fit in 200 ms.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startInProcess, startProcess, temporaryDataDir, type CallResult, type ServerProcess, type TestAlto } from './harness.js';

/** Calls until `condition` holds for a result, or fails after `timeoutMs`. */
async function callUntil(make: () => Promise<CallResult>, condition: (result: CallResult) => boolean, what: string, timeoutMs = 5000): Promise<CallResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await make();
    if (condition(result)) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last answer ${result.status} ${JSON.stringify(result.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Tokens a bucket of `rate` per second (full at the start) can hand out over `elapsedMs`. */
const tokensWithin = (rate: number, elapsedMs: number) => rate + Math.floor((elapsedMs * rate) / 1000);

describe('limits over HTTP', () => {
  let alto: TestAlto;
  before(async () => {
    alto = await startInProcess();
  });
  after(() => alto.close());

  test('a key with 5 req/s gets 429 with RateLimit-* and Retry-After on the sixth call in a second', async () => {
    await alto.call('projects', 'Create', { name: 'rated' });
    const generated = await alto.call('keys', 'Generate', { project: 'rated', scopes: ['id'], rate_limit: 5 });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    assert.deepEqual(generated.body.info.limits, { rate_limit: 5, monthly_quota: 0 });
    const key = generated.body.key as string;

    const started = performance.now();
    const answers: CallResult[] = [];
    for (let i = 0; i < 20; i++) {
      const answer = await alto.call('id', 'Generate', { type: 'uuid' }, key);
      answers.push(answer);
      if (answer.status === 429) break;
    }
    const elapsed = performance.now() - started;
    const refused = answers.at(-1)!;
    const passed = answers.length - 1;
    assert.equal(refused.status, 429, 'a call is refused');
    assert.ok(passed >= 5, `the first five pass (${passed} did)`);
    assert.ok(passed <= tokensWithin(5, elapsed), `${passed} calls passed in ${elapsed.toFixed(0)} ms`);
    if (elapsed < 200) assert.equal(passed, 5, 'all within 200 ms: exactly the sixth call is refused');

    for (const answer of answers.slice(0, -1)) {
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('ratelimit-limit'), '5');
      assert.ok(Number(answer.headers.get('ratelimit-remaining')) >= 0);
    }
    if (elapsed < 200) {
      assert.deepEqual(
        answers.slice(0, 5).map((answer) => answer.headers.get('ratelimit-remaining')),
        ['4', '3', '2', '1', '0'],
      );
    }
    assert.equal(refused.headers.get('ratelimit-limit'), '5');
    assert.equal(refused.headers.get('ratelimit-remaining'), '0');
    assert.equal(refused.headers.get('ratelimit-reset'), '1', 'the bucket is full again within a second');
    assert.equal(refused.headers.get('retry-after'), '1', 'the next token comes within 200 ms: retry after 1 s');
    assert.equal(refused.body.id, 'too_many_requests');
    assert.match(refused.body.detail, /rate limit reached: key \S+ may make 5 requests per second \(rate_limit 5\)/);

    // After waiting, calls pass again.
    const recovered = await callUntil(() => alto.call('id', 'Generate', {}, key), (answer) => answer.status === 200, 'a token');
    assert.equal(recovered.headers.get('ratelimit-limit'), '5');
  });

  test('keys/Update changes a key\'s rate limit; 0 removes it', async () => {
    await alto.call('projects', 'Create', { name: 'rated-later' });
    const generated = await alto.call('keys', 'Generate', { project: 'rated-later', scopes: ['id'] });
    const key = generated.body.key as string;
    assert.equal((await alto.call('id', 'Generate', {}, key)).headers.get('ratelimit-limit'), null, 'no limit, no headers');
    const updated = await alto.call('keys', 'Update', { id: generated.body.info.id, rate_limit: 2 });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.equal(updated.body.info.limits.rate_limit, 2);
    assert.equal((await alto.call('id', 'Generate', {}, key)).headers.get('ratelimit-limit'), '2');
    await alto.call('keys', 'Update', { id: generated.body.info.id, rate_limit: 0 });
    const statuses = await Promise.all(Array.from({ length: 10 }, () => alto.call('id', 'Generate', {}, key).then((r) => r.status)));
    assert.deepEqual(statuses, Array(10).fill(200));
    const listed = await alto.call('keys', 'List', { project: 'rated-later' });
    assert.deepEqual(listed.body.keys[0].limits, { rate_limit: 0, monthly_quota: 0 });
  });

  test('a project over its monthly quota is refused with 429 naming the quota; its data stays and comes back when raised', async () => {
    const created = await alto.call('projects', 'Create', { name: 'quota', monthly_quota: 3 });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal(created.body.project.limits.monthly_quota, 3);
    const key = (await alto.call('keys', 'Generate', { project: 'quota' })).body.key as string;

    assert.equal((await alto.call('db', 'Create', { table: 'notes', record: { id: 'n1', text: 'keep me' } }, key)).status, 200);
    assert.equal((await alto.call('db', 'Read', { table: 'notes' }, key)).status, 200);
    assert.equal((await alto.call('db', 'Count', { table: 'notes' }, key)).status, 200);
    const refused = await alto.call('db', 'Read', { table: 'notes' }, key);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.id, 'too_many_requests');
    assert.match(refused.body.detail, /monthly quota reached: project "quota" may make 3 requests a month \(monthly_quota 3\)/);
    assert.match(refused.body.detail, /Your data is kept/);
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 31 * 86_400, `Retry-After ${retryAfter} s points at the next month`);

    // The owner can still see usage and raise the limit: those calls are never refused for quota.
    const summary = await alto.call('usage', 'Summary', { project: 'quota' });
    assert.equal(summary.status, 200);
    assert.equal(summary.body.limits.monthly_quota, 3);
    const raised = await alto.call('projects', 'Update', { name: 'quota', monthly_quota: 10 });
    assert.equal(raised.status, 200, JSON.stringify(raised.body));
    assert.equal(raised.body.project.limits.monthly_quota, 10);
    const read = await alto.call('db', 'Read', { table: 'notes' }, key);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.records, [{ id: 'n1', text: 'keep me' }]);
  });

  test('a stream (websocket) over the quota is refused at the upgrade with the 429 and its Retry-After', async () => {
    await alto.call('projects', 'Create', { name: 'streams' });
    const generated = await alto.call('keys', 'Generate', { project: 'streams', scopes: ['db'], monthly_quota: 1 });
    assert.equal((await alto.call('db', 'Create', { table: 'x', record: { id: '1' } }, generated.body.key)).status, 200);
    const refused = await new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve, reject) => {
      const ws = new WebSocket(`${alto.url.replace('http', 'ws')}/v1/db/Watch`, { headers: { authorization: `Bearer ${generated.body.key}` } });
      ws.on('open', () => reject(new Error('the stream was accepted')));
      ws.on('error', () => {});
      ws.on('unexpected-response', (_request, response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, retryAfter: response.headers['retry-after'] as string | undefined, body }));
      });
    });
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.retryAfter) >= 1);
    assert.match(JSON.parse(refused.body).detail, /monthly quota reached: key \S+ may make 1 request a month/);
  });

  test("a key's monthly quota limits only that key", async () => {
    await alto.call('projects', 'Create', { name: 'key-quota' });
    const limited = await alto.call('keys', 'Generate', { project: 'key-quota', scopes: ['id'], monthly_quota: 2 });
    const other = (await alto.call('keys', 'Generate', { project: 'key-quota', scopes: ['id'] })).body.key as string;
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await alto.call('id', 'Generate', {}, limited.body.key)).status);
    assert.deepEqual(statuses, [200, 200, 429]);
    assert.equal((await alto.call('id', 'Generate', {}, other)).status, 200);
  });

  test('the spend cap answers 402 naming the cap; failed calls cost nothing', async () => {
    // id/Generate costs 1 micro-unit in the default price list.
    const prices = await alto.call('usage', 'Prices', {}, null);
    assert.equal(prices.body.requests.find((row: any) => row.service === 'id' && row.endpoint === 'Generate').price_micros, 1);
    await alto.call('projects', 'Create', { name: 'capped', monthly_spend_cap_micros: 3 });
    const key = (await alto.call('keys', 'Generate', { project: 'capped', scopes: ['id'] })).body.key as string;
    assert.equal((await alto.call('id', 'Generate', {}, key)).status, 200);
    assert.equal((await alto.call('id', 'Generate', { type: 'nonsense' }, key)).status, 400);
    assert.equal((await alto.call('id', 'Generate', {}, key)).status, 200);
    assert.equal((await alto.call('id', 'Generate', {}, key)).status, 200);
    const refused = await alto.call('id', 'Generate', {}, key);
    assert.equal(refused.status, 402);
    assert.equal(refused.body.id, 'payment_required');
    assert.match(refused.body.detail, /monthly spend cap reached: project "capped" may spend 0.000003 USD a month \(monthly_spend_cap_micros 3/);
    const summary = await alto.call('usage', 'Summary', { project: 'capped' });
    assert.equal(summary.body.requests_micros, 3);
    assert.equal(summary.body.calls, 5);
    assert.equal(summary.body.errors, 2, 'the bad request and the refused one');
  });

  test('a db rows cap refuses the write that would pass it with 402, and keeps the records', async () => {
    await alto.call('projects', 'Create', { name: 'rows', db_rows: 2 });
    const key = (await alto.call('keys', 'Generate', { project: 'rows', scopes: ['db'] })).body.key as string;
    const two = await alto.call('db', 'Create', { table: 't', record: [{ id: 'a' }, { id: 'b' }] }, key);
    assert.equal(two.status, 200, JSON.stringify(two.body));
    const third = await alto.call('db', 'Create', { table: 'u', record: { id: 'c' } }, key);
    assert.equal(third.status, 402);
    assert.match(third.body.detail, /storage cap reached: project "rows" may keep 2 records \(db_rows 2\); it keeps 2 and this call adds 1/);
    assert.equal((await alto.call('db', 'Count', { table: 't' }, key)).body.count, 2);
    assert.equal((await alto.call('db', 'Delete', { table: 't', id: 'a' }, key)).status, 200);
    assert.equal((await alto.call('db', 'Create', { table: 'u', record: { id: 'c' } }, key)).status, 200, 'room again after a delete');
  });

  test('a space bytes cap refuses inline writes, upload URLs and PUTs past it with 402, and keeps the objects', async () => {
    await alto.call('projects', 'Create', { name: 'bytes', space_bytes: 10 });
    const key = (await alto.call('keys', 'Generate', { project: 'bytes', scopes: ['space'] })).body.key as string;
    const put = (name: string, text: string) =>
      alto.call('space', 'Update', { name, object: Buffer.from(text).toString('base64') }, key);
    assert.equal((await put('a.txt', '123456')).status, 200);
    const over = await put('b.txt', '12345');
    assert.equal(over.status, 402);
    assert.match(over.body.detail, /storage cap reached: project "bytes" may keep 10 bytes \(space_bytes 10\); it keeps 6 and this call adds 5/);
    assert.equal((await put('a.txt', '1234567890')).status, 200, 'replacing an object counts only what it adds');
    // A presigned PUT of a known length is checked with its real size, and without a key.
    assert.equal((await alto.call('space', 'Delete', { name: 'a.txt' }, key)).status, 200);
    const upload = await alto.call('space', 'Upload', { name: 'big.bin' }, key);
    assert.equal(upload.status, 200, JSON.stringify(upload.body));
    const tooBig = await fetch(upload.body.url, { method: 'PUT', body: Buffer.alloc(11) });
    assert.equal(tooBig.status, 402);
    assert.match((await tooBig.json()).detail, /this project may keep 10 bytes/);
    const fits = await fetch(upload.body.url, { method: 'PUT', body: Buffer.alloc(10) });
    assert.equal(fits.status, 200);
    // At the cap: no more upload URLs, and what is kept is intact.
    assert.equal((await alto.call('space', 'Upload', { name: 'more.bin' }, key)).status, 402);
    const head = await alto.call('space', 'Head', { name: 'big.bin' }, key);
    assert.equal(head.body.object.size, 10);
  });

  test('limits are validated: whole numbers within range, and an owner cannot set one it may not', async () => {
    const fraction = await alto.call('projects', 'Create', { name: 'bad-limits', rate_limit: 1.5 });
    assert.equal(fraction.status, 400);
    assert.match(fraction.body.detail, /rate_limit: must be a whole number/);
    const negative = await alto.call('keys', 'Generate', { project: 'default', monthly_quota: -1 });
    assert.equal(negative.status, 400);
    assert.equal((await alto.call('projects', 'List', {})).body.projects.some((p: any) => p.name === 'bad-limits'), false);
  });
});

describe('one key, two server processes on one data folder', () => {
  const dataDir = temporaryDataDir();
  let first: ServerProcess;
  let second: ServerProcess;
  before(async () => {
    first = await startProcess({ dataDir });
    second = await startProcess({ dataDir });
  });
  after(async () => {
    await second?.close();
    await first?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("together they hold the key's 5 req/s", async () => {
    await first.call('projects', 'Create', { name: 'shared' });
    const key = (await first.call('keys', 'Generate', { project: 'shared', scopes: ['id'], rate_limit: 5 })).body.key as string;
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? second : first).call('id', 'Generate', {}, key)));
    const elapsed = performance.now() - started;
    const passed = answers.filter((answer) => answer.status === 200).length;
    // Each process alone would let 5 through: 10. Together they share one bucket.
    assert.ok(passed >= 5, `${passed} passed`);
    assert.ok(passed <= tokensWithin(5, elapsed), `${passed} calls passed in ${elapsed.toFixed(0)} ms across two processes`);
    assert.ok(answers.every((answer) => answer.status === 200 || answer.status === 429));
    if (elapsed < 200) assert.equal(passed, 5);
    const refusedBy = new Set(answers.map((answer, i) => (answer.status === 429 ? i % 2 : -1)).filter((who) => who >= 0));
    if (elapsed < 1000) assert.equal(refusedBy.size, 2, 'both processes refused calls');
  });
});
