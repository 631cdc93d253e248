/**
 * Property-based fuzzing of what every API call starts with: the JSON body and, for streams, the
 * websocket frames. Alto runs as its own process, so a crash shows. Whatever comes in (valid
 * JSON of any shape, JSON cut or garbled, bytes that are no text at all, frames of any bits), the
 * answer is a 4xx (or 200 for a request that happens to be valid), and the server stays up.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import { startProcess, waitFor, type ServerProcess } from '../harness.js';
import { frame, rawConnect, upgradeRequest } from './raw-http.js';

/** Endpoints across blocks, public ones included (called without a key). */
const ENDPOINTS = [
  'id/Generate',
  'db/Create',
  'db/Read',
  'db/Update',
  'search/Index',
  'search/Search',
  'event/Publish',
  'event/Read',
  'mq/Publish',
  'cache/Set',
  'cache/Get',
  'url/Shorten',
  'otp/Generate',
  'file/Save',
  'space/Create',
  'keys/List',
  'usage/Summary',
];
const PUBLIC_ENDPOINTS = ['usage/Prices', 'accounts/Login', 'accounts/Signup'];

/** JSON text, then cut, spliced or flipped: what a broken client or an attacker sends. */
const garbledJson = fc
  .tuple(fc.json({ depthSize: 'medium' }), fc.nat(), fc.nat(), fc.string({ maxLength: 8 }))
  .map(([text, at, length, insert]) => {
    const start = at % (text.length + 1);
    return text.slice(0, start) + insert + text.slice(start + (length % 4));
  });

const body = fc.oneof(
  fc.json({ depthSize: 'medium' }),
  fc.jsonValue().map((value) => JSON.stringify({ value })),
  garbledJson,
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
  fc.nat({ max: 5000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
  fc.nat({ max: 5000 }).map((depth) => '{"a":'.repeat(depth)),
);

describe('fuzzed JSON bodies and websocket frames', () => {
  let alto: ServerProcess;
  let key: string;
  before(async () => {
    alto = await startProcess();
    key = await alto.projectKey('fuzz');
  });
  after(() => alto?.close());

  const assertUp = async () => {
    assert.equal(alto.child.exitCode, null, `the server exited:\n${alto.stderr().slice(-2000)}`);
    assert.equal((await fetch(`${alto.url}/livez`)).status, 200);
  };

  test('any body to any endpoint answers 200 or 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ENDPOINTS, ...PUBLIC_ENDPOINTS), body, fc.constantFrom('application/json', 'text/plain', ''), async (endpoint, payload, contentType) => {
        const headers: Record<string, string> = {};
        if (contentType) headers['content-type'] = contentType;
        if (!PUBLIC_ENDPOINTS.includes(endpoint)) headers.authorization = `Bearer ${key}`;
        const answer = await fetch(`${alto.url}/v1/${endpoint}`, { method: 'POST', headers, body: payload });
        const text = await answer.text();
        assert.ok(answer.status === 200 || (answer.status >= 400 && answer.status < 500), `${endpoint} answered ${answer.status}: ${text.slice(0, 300)}`);
        if (answer.status >= 400) assert.ok(JSON.parse(text).detail, 'a refusal says why');
      }),
      { numRuns: 300 },
    );
    await assertUp();
  });

  test('any frames after a handshake close that connection at worst', async () => {
    const frames = fc.array(
      fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => Buffer.from(bytes)),
        fc
          .tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 140 }), fc.boolean())
          .map(([first, payload, masked]) => frame(first, Buffer.from(payload), { masked })),
        body.map((text) => frame(0x81, Buffer.from(text))),
      ),
      { minLength: 1, maxLength: 4 },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('/v1/id/Stream', '/v1/event/Consume', '/v1/db/Watch', '/v1/mq/Subscribe'), frames, async (path, sent) => {
        const connection = await rawConnect(alto.url);
        connection.socket.write(upgradeRequest(path, key));
        await waitFor(() => connection.received().includes('\r\n\r\n') || connection.isClosed(), 'the handshake');
        assert.match(connection.received(), /^HTTP\/1\.1 101 /);
        for (const bytes of sent) connection.socket.write(bytes);
        // The server may close (a protocol error, a bad request) or wait for more; either way it lives.
        connection.socket.destroy();
        await assertUp();
      }),
      { numRuns: 150 },
    );
  });
});
