/**
 * JSON nesting (the issue's "Low" list): 100k-deep JSON gave 500 in search/Index, event/Publish
 * and mq/Publish. Nesting past 64 levels is refused with 400 before any handler runs, in HTTP
 * bodies, websocket messages and query-string values; brackets inside strings do not count.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startInProcess, waitFor, type TestAlto } from '../harness.js';

/** `[[...[0]...]]`, `depth` arrays deep. */
const nestedArrays = (depth: number) => '['.repeat(depth) + '0' + ']'.repeat(depth);
/** `{"a":{"a":...{}...}}`, `depth` objects deep. */
const nestedObjects = (depth: number) => '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);

describe('JSON nesting is bounded before any handler runs', () => {
  let alto: TestAlto;
  let key: string;
  before(async () => {
    alto = await startInProcess();
    key = await alto.projectKey('depth');
  });
  after(() => alto?.close());

  /** Bodies that put `value` (raw JSON text) `outer` levels below the top. */
  const bodies: Record<string, (value: string) => string> = {
    'search/Index': (value) => `{"index":"things","data":{"deep":${value}}}`,
    'event/Publish': (value) => `{"topic":"deep","message":{"deep":${value}}}`,
    'mq/Publish': (value) => `{"topic":"deep","message":{"deep":${value}}}`,
    'db/Create': (value) => `{"table":"deep","record":{"deep":${value}}}`,
    'cache/Set': (value) => `{"key":"deep","value":${value}}`,
  };

  for (const [endpoint, body] of Object.entries(bodies)) {
    test(`${endpoint}: 100k levels deep is a 400, not a 500`, async () => {
      const [service, name] = endpoint.split('/');
      for (const deep of [nestedArrays(100_000), nestedObjects(100_000), nestedArrays(65)]) {
        const answer = await alto.call(service, name, body(deep), key);
        assert.equal(answer.status, 400, `${endpoint}: ${JSON.stringify(answer.body).slice(0, 300)}`);
        assert.match(answer.body.detail, /more than 64 levels deep/);
      }
    });
  }

  test('64 levels in all are accepted; 65 are not', async () => {
    // The body's own object is level 1, "message" level 2: 62 more arrays make 64.
    const fits = await alto.call('event', 'Publish', `{"topic":"deep","message":{"deep":${nestedArrays(62)}}}`, key);
    assert.equal(fits.status, 200, JSON.stringify(fits.body));
    const over = await alto.call('event', 'Publish', `{"topic":"deep","message":{"deep":${nestedArrays(63)}}}`, key);
    assert.equal(over.status, 400);
  });

  test('brackets inside strings, escaped quotes included, do not count', async () => {
    const text = '[{'.repeat(50_000) + '\\"[[[' + '\\\\';
    const answer = await alto.call('event', 'Publish', `{"topic":"deep","message":{"text":"${text}"}}`, key);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
  });

  test('a query-string JSON value nested past 64 is a 400', async () => {
    const url = `${alto.url}/v1/event/Publish?topic=deep&message=${encodeURIComponent(`{"deep":${nestedArrays(2000)}}`)}`;
    const answer = await fetch(url, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(answer.status, 400);
    assert.match((await answer.json()).detail, /more than 64 levels deep/);
    const shallow = await fetch(`${alto.url}/v1/event/Publish?topic=deep&message=${encodeURIComponent('{"deep":[[1]]}')}`, {
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(shallow.status, 200);
  });

  test('a websocket request nested past 64 closes the stream with 4400', async () => {
    const ws = new WebSocket(`${alto.url.replace('http', 'ws')}/v1/event/Consume`, { headers: { authorization: `Bearer ${key}` } });
    const messages: any[] = [];
    let closeCode = 0;
    ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
    ws.on('close', (code) => (closeCode = code));
    ws.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', () => reject(new Error('the stream was refused')));
    });
    ws.send(`{"topic":"deep","group":${nestedObjects(100_000)}}`);
    await waitFor(() => closeCode !== 0, 'the stream to close');
    assert.equal(closeCode, 4400);
    assert.match(messages[0].detail, /more than 64 levels deep/);
  });
});
