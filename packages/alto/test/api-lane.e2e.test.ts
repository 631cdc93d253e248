/**
 * The API lane (edge/lane.ts): plain API calls are answered off the raw connection, everything
 * else through Node's HTTP server, and a client cannot tell which but by speed. Calls are sent on
 * raw sockets, as a client library would and as one never would (pipelined, split, stalled).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApiLane, LANE_MAX_BODY_BYTES } from '../src/edge/lane.js';
import { parseRequestHead, headEnd, type RequestHead } from '../src/edge/h1.js';
import { startInProcess, waitFor, type TestAlto } from './harness.js';
import { rawConnect } from './security/raw-http.js';
import type { Api } from '../src/edge/api.js';

const MAX_BODY = 2048;

function post(path: string, body: string, key: string, extra = ''): string {
  return `POST ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

/** The answers in `text`, each as its status, headers (lower-case names) and body. */
function answersIn(text: string): { status: number; headers: Map<string, string>; body: string }[] {
  const answers = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const lines = rest.slice(0, end).split('\r\n');
    const status = Number(lines[0].split(' ')[1]);
    const headers = new Map(lines.slice(1).map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()] as [string, string]));
    if (status === 100) {
      rest = rest.slice(end + 4);
      continue;
    }
    const length = Number(headers.get('content-length') ?? 0);
    answers.push({ status, headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return answers;
}

function headOf(text: string): RequestHead {
  const buffer = Buffer.from(text, 'latin1');
  const head = parseRequestHead(buffer, headEnd(buffer, 0));
  assert.ok(head, `a valid head: ${text}`);
  return head;
}

describe('the API lane', () => {
  let alto: TestAlto;
  let key: string;
  before(async () => {
    alto = await startInProcess({ maxBodyBytes: MAX_BODY });
    key = await alto.projectKey('lane', ['id']);
  });
  after(() => alto?.close());

  test('takes plain API calls and leaves the rest to Node', () => {
    const lane = new ApiLane({} as Api, 5000, 30_000);
    const accepted = [
      'POST /v1/id/Generate HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n',
      'GET /v1/id/Generate?type=ulid HTTP/1.1\r\nHost: a\r\n\r\n',
      'POST /v1/id/Id/Generate HTTP/1.1\r\nHost: a\r\n\r\n',
      `POST /v1/db/Create HTTP/1.1\r\nHost: a\r\nContent-Length: ${LANE_MAX_BODY_BYTES}\r\n\r\n`,
    ];
    const declined = [
      'POST /v1/id/Generate HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n',
      'POST /v1/id/Generate HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n',
      `POST /v1/db/Create HTTP/1.1\r\nHost: a\r\nContent-Length: ${LANE_MAX_BODY_BYTES + 1}\r\n\r\n`,
      'PUT /v1/id/Generate HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /v1/openapi.json HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /v1/../livez HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /v1/stream/Subscribe HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
      'GET /console HTTP/1.1\r\nHost: a\r\n\r\n',
    ];
    for (const text of accepted) assert.equal(lane.accepts(headOf(text)), true, text);
    for (const text of declined) assert.equal(lane.accepts(headOf(text)), false, text);
  });

  test('pipelined calls are answered in order on one connection, each with its request id', async () => {
    const connection = await rawConnect(alto.url);
    const ids = ['first-call', 'second-call', 'third-call'];
    connection.socket.write(ids.map((id) => post('/v1/id/Generate', '{"type":"uuid"}', key, `X-Request-Id: ${id}\r\n`)).join(''));
    await waitFor(() => answersIn(connection.received()).length === 3, 'three answers');
    const answers = answersIn(connection.received());
    assert.deepEqual(answers.map((answer) => answer.headers.get('x-request-id')), ids);
    for (const answer of answers) {
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('connection'), 'keep-alive');
      assert.match(JSON.parse(answer.body).id, /^[0-9a-f-]{36}$/);
    }
    assert.equal(connection.isClosed(), false);
    connection.socket.destroy();
  });

  test('a body that comes in pieces is read whole', async () => {
    const connection = await rawConnect(alto.url);
    const request = post('/v1/id/Generate', '{"type":"ulid"}', key);
    const cut = request.length - 6;
    connection.socket.write(request.slice(0, cut));
    // The head and part of the body are there; nothing may be answered yet.
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(connection.received(), '');
    connection.socket.write(request.slice(cut));
    await waitFor(() => answersIn(connection.received()).length === 1, 'the answer');
    const [answer] = answersIn(connection.received());
    assert.equal(answer.status, 200);
    assert.equal(JSON.parse(answer.body).type, 'ulid');
    connection.socket.destroy();
  });

  test('a body over the server limit gets 413, and the connection serves the next call', async () => {
    const connection = await rawConnect(alto.url);
    const big = JSON.stringify({ type: 'uuid', pad: 'x'.repeat(MAX_BODY) });
    connection.socket.write(post('/v1/id/Generate', big, key) + post('/v1/id/Generate', '{"type":"uuid"}', key));
    await waitFor(() => answersIn(connection.received()).length === 2, 'two answers');
    const [refused, served] = answersIn(connection.received());
    assert.equal(refused.status, 413);
    assert.match(JSON.parse(refused.body).detail, new RegExp(`larger than ${MAX_BODY} bytes`));
    assert.equal(served.status, 200);
    connection.socket.destroy();
  });

  test('a call refused before its body was read closes the connection after the answer', async () => {
    const connection = await rawConnect(alto.url);
    connection.socket.write(post('/v1/id/Generate', '{"type":"uuid"}', 'not-a-key') + post('/v1/id/Generate', '{"type":"uuid"}', key));
    await connection.closed;
    const answers = answersIn(connection.received());
    assert.equal(answers.length, 1, 'only the refusal: the rest of that connection is not read');
    assert.equal(answers[0].status, 401);
    assert.equal(answers[0].headers.get('connection'), 'close');
  });

  test('Connection: close is honoured', async () => {
    const connection = await rawConnect(alto.url);
    connection.socket.write(post('/v1/id/Generate', '{"type":"uuid"}', key, 'Connection: close\r\n'));
    await connection.closed;
    const [answer] = answersIn(connection.received());
    assert.equal(answer.status, 200);
    assert.equal(answer.headers.get('connection'), 'close');
  });

  test('after a call Node serves (Expect: 100-continue, chunked), the connection still answers API calls', async () => {
    const connection = await rawConnect(alto.url);
    const body = '{"type":"uuid"}';
    connection.socket.write(post('/v1/id/Generate', '{"type":"uuid"}', key) + post('/v1/id/Generate', body, key, 'Expect: 100-continue\r\n').replace(body, ''));
    await waitFor(() => connection.received().includes('100 Continue'), 'Node to ask for the body');
    const chunked = `POST /v1/id/Generate HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${key}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    connection.socket.write(body + chunked + post('/v1/id/Generate', body, key));
    await waitFor(() => answersIn(connection.received()).length === 4, 'four answers');
    assert.deepEqual(answersIn(connection.received()).map((answer) => answer.status), [200, 200, 200, 200]);
    connection.socket.destroy();
  });

  test('a client that leaves mid-body costs nothing and the server keeps serving', async () => {
    const connection = await rawConnect(alto.url);
    const request = post('/v1/id/Generate', '{"type":"uuid"}', key);
    connection.socket.write(request.slice(0, -4));
    connection.socket.destroy();
    await connection.closed;
    const { status } = await alto.call('id', 'Generate', { type: 'uuid' });
    assert.equal(status, 200);
  });
});
