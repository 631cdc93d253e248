/**
 * Item 7 of the security issue: the plain HTTP routes services serve outside /v1 (`/space/...`,
 * `/files/...`) act for a key or a signed URL, so they are admitted, rate-limited and metered as
 * the API is. Before, a key with rate_limit 5 made 100 of 100 requests there.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startInProcess, type TestAlto } from '../harness.js';

/** Tokens a bucket of `rate` per second (full at the start) can hand out over `elapsedMs`. */
const tokensWithin = (rate: number, elapsedMs: number) => rate + Math.floor((elapsedMs * rate) / 1000);

interface Burst {
  passed: number;
  refused: Response | undefined;
  elapsed: number;
}

/** Makes `count` requests one after another; counts the 2xx/3xx and keeps the first 429. */
async function burst(count: number, request: (index: number) => Promise<Response>): Promise<Burst> {
  const started = performance.now();
  let passed = 0;
  let refused: Response | undefined;
  for (let index = 0; index < count; index++) {
    const response = await request(index);
    await response.arrayBuffer();
    if (response.status < 400) passed++;
    else if (response.status === 429) refused ??= response;
    else assert.fail(`unexpected ${response.status} on request ${index}`);
  }
  return { passed, refused, elapsed: performance.now() - started };
}

function assertLimited(result: Burst, rate: number, what: string): void {
  assert.ok(result.refused, `${what}: some requests are refused with 429`);
  assert.ok(result.passed <= tokensWithin(rate, result.elapsed), `${what}: ${result.passed} passed in ${result.elapsed.toFixed(0)} ms at ${rate}/s`);
  assert.equal(result.refused.headers.get('ratelimit-limit'), String(rate));
  assert.ok(Number(result.refused.headers.get('retry-after')) >= 1, `${what}: the 429 says when to retry`);
}

describe('plain HTTP routes are admitted, rate-limited and metered like the API', () => {
  let alto: TestAlto;
  let setupKey: string;
  let limitedKey: string;
  let objectUrl: string;
  let permalink: string;

  before(async () => {
    alto = await startInProcess();
    setupKey = await alto.projectKey('routes');
    const generated = await alto.call('keys', 'Generate', { project: 'routes', scopes: ['space', 'file'], rate_limit: 5 });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    limitedKey = generated.body.key;
    const created = await alto.call('space', 'Create', { name: 'limited.txt', object: Buffer.from('hello').toString('base64'), visibility: 'public' }, setupKey);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    objectUrl = created.body.url;
    const saved = await alto.call('file', 'Save', { file: { project: 'site', path: '/a.txt', content: 'a' }, public: true }, setupKey);
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    permalink = saved.body.url;
  });
  after(() => alto?.close());

  test('GET and HEAD /space/... with a key of rate_limit 5', async () => {
    const auth = { authorization: `Bearer ${limitedKey}` };
    const result = await burst(40, (index) => fetch(objectUrl, { method: index % 2 ? 'HEAD' : 'GET', headers: auth }));
    assertLimited(result, 5, 'GET /space');
  });

  test('PUT /space/... with a key of rate_limit 5', async () => {
    const auth = { authorization: `Bearer ${limitedKey}` };
    const result = await burst(40, (index) => fetch(`${objectUrl.replace('limited.txt', `put-${index}.txt`)}`, { method: 'PUT', headers: auth, body: 'x' }));
    assertLimited(result, 5, 'PUT /space');
  });

  test('GET /files/... with a key of rate_limit 5', async () => {
    const result = await burst(40, () => fetch(permalink, { headers: { authorization: `Bearer ${limitedKey}` } }));
    assertLimited(result, 5, 'GET /files');
  });

  test("a presigned URL counts against its project's rate limit", async () => {
    const created = await alto.call('projects', 'Create', { name: 'signed', rate_limit: 5 });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const key = (await alto.call('keys', 'Generate', { project: 'signed', scopes: ['space'] })).body.key as string;
    assert.equal((await alto.call('space', 'Create', { name: 'private.txt', object: Buffer.from('secret').toString('base64') }, key)).status, 200);
    const download = await alto.call('space', 'Download', { name: 'private.txt' }, key);
    assert.equal(download.status, 200, JSON.stringify(download.body));
    const result = await burst(40, () => fetch(download.body.url));
    assertLimited(result, 5, 'a presigned download');
  });

  test('calls through the routes are metered under the endpoint they stand for', async () => {
    const key = await alto.projectKey('metered-routes', ['space', 'file']);
    const created = await alto.call('space', 'Create', { name: 'm.txt', object: Buffer.from('12345').toString('base64'), visibility: 'public' }, key);
    const saved = await alto.call('file', 'Save', { file: { project: 'p', path: '/m.txt', content: 'm' }, public: true }, key);
    const auth = { authorization: `Bearer ${key}` };
    for (let index = 0; index < 3; index++) assert.equal((await fetch(created.body.url, { headers: auth })).status, 200);
    assert.equal((await fetch(`${created.body.url}?visibility=public`, { method: 'PUT', headers: auth, body: 'abc' })).status, 200);
    assert.equal((await fetch(saved.body.url, { headers: auth })).status, 200);
    assert.equal((await fetch(created.body.url)).status, 200, 'an anonymous read of a public object acts for nobody');
    const rowsOf = async () => {
      const summary = await alto.call('usage', 'Summary', { project: 'metered-routes' });
      return new Map<string, number>(summary.body.endpoints.map((row: any) => [`${row.service}/${row.endpoint}`, row.calls]));
    };
    // Usage is written in batches (every second): ask until it shows.
    let rows = await rowsOf();
    const deadline = Date.now() + 10_000;
    while (!(rows.get('space/Read') === 3 && rows.get('space/Update') === 1 && rows.get('file/Read') === 1)) {
      assert.ok(Date.now() < deadline, `usage shows the routes' calls: ${JSON.stringify([...rows])}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      rows = await rowsOf();
    }
  });
});
