/**
 * @module edge/forward.test
 * The connection forwarder on raw sockets, where its byte handling shows: instance connections
 * reused across client connections, pipelined requests, chunked bodies both ways, answers
 * without bodies, 100-continue, hand-over to Node's HTTP server (other hosts, HTTP/1.0, ambiguous
 * framing, oversized heads) at any request boundary, broken instance answers, a kept connection
 * the instance closed, the head and keep-alive timeouts, and draining. What proxy.test.ts checks
 * of both ways to serve an app (routing, headers, streaming, websockets, errors) runs on the
 * forwarder there.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../kit/logger.js';
import { ConnectionForwarder, type ConnectionForwarderOptions } from './forward.js';
import { AppProxy } from './proxy.js';
import { close, listen, TestResolver, waitFor } from '../../test/proxy-fixture.js';

/** A raw client connection: writes bytes, collects what comes back. */
class RawClient {
  readonly socket: Socket;
  received = '';
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => (this.received += text));
    socket.on('error', () => undefined);
    socket.on('close', () => (this.closed = true));
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  send(text: string): void {
    this.socket.write(text, 'latin1');
  }

  /** Waits until `count` whole answers (heads with their bodies, by Content-Length or chunks) came. */
  async answers(count: number): Promise<Answer[]> {
    await waitFor(() => parseAnswers(this.received).length >= count || this.closed, `${count} answers`);
    const answers = parseAnswers(this.received);
    assert.ok(answers.length >= count, `expected ${count} answers, got: ${JSON.stringify(this.received.slice(0, 400))}`);
    return answers;
  }

  close(): void {
    this.socket.destroy();
  }
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits raw answer bytes into answers (interim 1xx ones included), bodies by Content-Length or chunks. */
function parseAnswers(text: string): Answer[] {
  const answers: Answer[] = [];
  let at = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end < 0) return answers;
    const [statusLine, ...lines] = text.slice(at, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(statusLine.split(' ')[1]);
    let bodyAt = end + 4;
    let body = '';
    if (status >= 200 && status !== 204 && status !== 304 && headers['x-no-body'] === undefined) {
      if (headers['transfer-encoding'] === 'chunked') {
        for (;;) {
          const lineEnd = text.indexOf('\r\n', bodyAt);
          if (lineEnd < 0) return answers;
          const size = parseInt(text.slice(bodyAt, lineEnd), 16);
          if (size === 0) {
            const trailersEnd = text.indexOf('\r\n\r\n', lineEnd);
            if (trailersEnd < 0) return answers;
            bodyAt = trailersEnd + 4;
            break;
          }
          if (text.length < lineEnd + 2 + size + 2) return answers;
          body += text.slice(lineEnd + 2, lineEnd + 2 + size);
          bodyAt = lineEnd + 2 + size + 2;
        }
      } else {
        const length = Number(headers['content-length'] ?? 0);
        if (text.length < bodyAt + length) return answers;
        body = text.slice(bodyAt, bodyAt + length);
        bodyAt += length;
      }
    }
    answers.push({ status, headers, body });
    at = bodyAt;
  }
}

function get(path: string, host = 'web.demo.localhost', extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
}

describe('ConnectionForwarder', () => {
  const resolver = new TestResolver();
  const proxy = new AppProxy({ domain: 'localhost', resolver, log: silentLogger() });
  let forwarder: ConnectionForwarder;
  let app: Server;
  let raw: TcpServer;
  let edge: Server;
  let edgePort = 0;
  let appConnections = 0;
  let rawConnections = 0;
  let rawClosedSide = 0;
  const requestsSeen: string[] = [];

  function startEdge(options: Partial<ConnectionForwarderOptions> = {}): Promise<void> {
    forwarder = new ConnectionForwarder({
      addressOf: (host) => proxy.addressOf(host),
      resolver,
      log: silentLogger(),
      headersTimeoutMs: 400,
      keepAliveTimeoutMs: 600,
      idleTimeoutMs: 60_000,
      ...options,
    });
    edge = createServer((request, response) => {
      if (proxy.handleRequest(request, response)) return;
      response.end(`edge itself: HTTP/${request.httpVersion} ${request.url}`);
    });
    forwarder.interpose(edge);
    return listen(edge).then((port) => void (edgePort = port));
  }

  before(async () => {
    app = createServer((request, response) => {
      requestsSeen.push(`${request.method} ${request.url}`);
      switch (request.url) {
        case '/chunked':
          response.write('one,');
          setImmediate(() => response.end('two'));
          return;
        case '/echo': {
          const chunks: Buffer[] = [];
          request.on('data', (chunk: Buffer) => chunks.push(chunk));
          request.on('end', () => response.end(JSON.stringify({ body: Buffer.concat(chunks).toString(), trailers: request.trailers, te: request.headers['transfer-encoding'] ?? null })));
          return;
        }
        case '/nocontent':
          response.writeHead(204).end();
          return;
        case '/notmodified':
          response.writeHead(304, { etag: '"x"' }).end();
          return;
        default:
          response.end(`hello ${request.method} ${request.url}`);
      }
    });
    app.on('connection', () => appConnections++);
    raw = createTcpServer((socket) => {
      rawConnections++;
      socket.on('error', () => undefined);
      socket.once('close', () => rawClosedSide++);
      let seen = '';
      socket.on('data', (chunk: Buffer) => {
        seen += chunk.toString('latin1');
        if (!seen.includes('\r\n\r\n')) return;
        const path = seen.split(' ')[1];
        seen = '';
        switch (path) {
          case '/garbage':
            socket.end('HELLO THERE\r\n\r\n');
            return;
          case '/bighead':
            socket.write(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70 * 1024)}\r\ncontent-length: 0\r\n\r\n`);
            return;
          case '/extra':
            socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged');
            return;
          case '/then-close':
            // Keeps the connection as an answer says, then closes it unannounced once idle.
            socket.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\nkeep-alive: timeout=60\r\n\r\nkept');
            setTimeout(() => socket.end(), 50);
            return;
          default:
            socket.write('HTTP/1.1 200 OK\r\ncontent-length: 3\r\nkeep-alive: timeout=60\r\n\r\nraw');
        }
      });
    });
    resolver.targets.set('web', { host: '127.0.0.1', port: await listen(app) });
    resolver.targets.set('raw', { host: '127.0.0.1', port: await listen(raw) });
    await startEdge();
  });

  after(async () => {
    forwarder.close();
    await proxy.close();
    for (const server of [edge, app]) server.closeAllConnections();
    await Promise.all([close(edge), close(app), close(raw)]);
  });

  test('reuses one instance connection across client connections, one exchange at a time', async () => {
    const before = appConnections;
    for (let round = 0; round < 3; round++) {
      const client = await RawClient.open(edgePort);
      client.send(get(`/round-${round}`));
      const [answer] = await client.answers(1);
      assert.equal(answer.body, `hello GET /round-${round}`);
      client.close();
    }
    assert.equal(appConnections - before, 1, 'one connection to the instance served all three clients');
    await resolver.allReleasedOnce();
  });

  test('answers pipelined requests in order, each acquired and released once', async () => {
    const acquired = resolver.acquired;
    const client = await RawClient.open(edgePort);
    client.send(get('/a') + get('/b') + get('/c'));
    const answers = await client.answers(3);
    assert.deepEqual(answers.map((answer) => answer.body), ['hello GET /a', 'hello GET /b', 'hello GET /c']);
    assert.equal(resolver.acquired - acquired, 3);
    client.close();
    await resolver.allReleasedOnce();
  });

  test('passes chunked bodies both ways, extensions and trailers included', async () => {
    const client = await RawClient.open(edgePort);
    client.send(`POST /echo HTTP/1.1\r\nHost: web.demo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n`);
    client.send(`6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n`);
    const [echo] = await client.answers(1);
    assert.deepEqual(JSON.parse(echo.body), { body: 'hello world', trailers: { 'x-sum': '11' }, te: 'chunked' });
    client.send(get('/chunked'));
    const [, streamed] = await client.answers(2);
    assert.equal(streamed.headers['transfer-encoding'], 'chunked');
    assert.equal(streamed.body, 'one,two');
    client.close();
    await resolver.allReleasedOnce();
  });

  test('answers HEAD, 204 and 304 without a body and keeps the connection for the next request', async () => {
    const client = await RawClient.open(edgePort);
    client.send('HEAD / HTTP/1.1\r\nHost: web.demo.localhost\r\n\r\n');
    await waitFor(() => client.received.includes('\r\n\r\n'), 'the HEAD answer');
    assert.match(client.received, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(client.received.endsWith('\r\n\r\n'), 'no body after the head');
    client.received = '';
    client.send(get('/nocontent') + get('/notmodified') + get('/after'));
    const answers = await client.answers(3);
    assert.deepEqual(answers.map((answer) => answer.status), [204, 304, 200]);
    assert.equal(answers[2].body, 'hello GET /after', 'the bodiless answers took no bytes of the next one');
    client.close();
    await resolver.allReleasedOnce();
  });

  test("passes the instance's 100 Continue before its answer", async () => {
    const client = await RawClient.open(edgePort);
    client.send('POST /echo HTTP/1.1\r\nHost: web.demo.localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
    await waitFor(() => client.received.startsWith('HTTP/1.1 100 Continue\r\n'), 'the 100 Continue');
    client.send('body');
    const answers = await client.answers(2);
    assert.deepEqual(answers.map((answer) => answer.status), [100, 200]);
    assert.equal(JSON.parse(answers[1].body).body, 'body');
    client.close();
    await resolver.allReleasedOnce();
  });

  test("hands a connection to Node's HTTP server at the first request for another host, mid-connection too", async () => {
    const client = await RawClient.open(edgePort);
    client.send(get('/first') + get('/api-call', 'localhost') + get('/third'));
    const answers = await client.answers(3);
    assert.equal(answers[0].body, 'hello GET /first');
    assert.equal(answers[1].body, 'edge itself: HTTP/1.1 /api-call');
    // From the hand-over on, Node's server serves the connection, app requests through AppProxy.
    assert.equal(answers[2].body, 'hello GET /third');
    client.close();
    await resolver.allReleasedOnce();
  });

  test("leaves HTTP/1.0, ambiguous framing and oversized heads to Node's HTTP server", async () => {
    const old = await RawClient.open(edgePort);
    old.send('GET /old HTTP/1.0\r\nHost: web.demo.localhost\r\n\r\n');
    await waitFor(() => old.closed, 'the HTTP/1.0 answer and close');
    assert.match(old.received, /hello GET \/old$/, 'served through AppProxy');

    const seenBefore = requestsSeen.length;
    const smuggler = await RawClient.open(edgePort);
    smuggler.send('POST /echo HTTP/1.1\r\nHost: web.demo.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.demo.localhost\r\n\r\n');
    const [refused] = await smuggler.answers(1);
    assert.equal(refused.status, 400);
    await waitFor(() => smuggler.closed, 'the connection to close');
    assert.equal(requestsSeen.length, seenBefore, 'the app saw nothing of it');

    const big = await RawClient.open(edgePort);
    big.send(`GET / HTTP/1.1\r\nHost: web.demo.localhost\r\nx-big: ${'b'.repeat(20 * 1024)}\r\n\r\n`);
    const [tooBig] = await big.answers(1);
    assert.equal(tooBig.status, 431);
    for (const client of [old, smuggler, big]) client.close();
    await resolver.allReleasedOnce();
  });

  test('answers 502 for a broken instance answer and never reuses a connection that sent too much', async () => {
    for (const path of ['/garbage', '/bighead']) {
      const client = await RawClient.open(edgePort);
      client.send(get(path, 'raw.demo.localhost'));
      const [answer] = await client.answers(1);
      assert.equal(answer.status, 502, path);
      assert.match(JSON.parse(answer.body).detail, /"raw"/);
      client.close();
    }
    const connectionsBefore = rawConnections;
    const client = await RawClient.open(edgePort);
    client.send(get('/extra', 'raw.demo.localhost'));
    const [first] = await client.answers(1);
    assert.equal(first.body, 'ok');
    client.send(get('/next', 'raw.demo.localhost'));
    const [, second] = await client.answers(2);
    assert.equal(second.body, 'raw', 'the forged answer never reached the client');
    assert.equal(rawConnections - connectionsBefore, 2, 'the connection that sent bytes past its answer was dropped');
    client.close();
    await resolver.allReleasedOnce();
  });

  test('sends a request again on a new connection when a kept one was closed by the instance', async () => {
    const client = await RawClient.open(edgePort);
    client.send(get('/then-close', 'raw.demo.localhost'));
    await client.answers(1);
    const closedBefore = rawClosedSide;
    // The instance closes the kept connection; the edge has not yet seen it when the next request goes.
    await waitFor(() => rawClosedSide > closedBefore, 'the instance to close its side');
    client.send(get('/again', 'raw.demo.localhost'));
    const [, again] = await client.answers(2);
    assert.equal(again.status, 200);
    assert.equal(again.body, 'raw');
    client.close();
    await resolver.allReleasedOnce();
  });

  test('answers 408 to a head that does not arrive in time, and closes idle connections', async () => {
    const slow = await RawClient.open(edgePort);
    slow.send('GET / HTTP/1.1\r\nHost: web.demo.localhost\r\n');
    await waitFor(() => slow.closed, 'the slow client to be cut off', 5_000);
    assert.match(slow.received, /^HTTP\/1\.1 408 /);

    const idle = await RawClient.open(edgePort);
    idle.send(get('/once'));
    await idle.answers(1);
    await waitFor(() => idle.closed, 'the idle connection to be closed', 5_000);
  });

  test('drain closes idle connections at once and ends busy ones after their answer', async () => {
    const idle = await RawClient.open(edgePort);
    idle.send(get('/warm'));
    await idle.answers(1);
    const busy = await RawClient.open(edgePort);
    busy.send('POST /echo HTTP/1.1\r\nHost: web.demo.localhost\r\nContent-Length: 4\r\n\r\nab');
    await waitFor(() => requestsSeen.at(-1) === 'POST /echo', 'the busy request to reach the app');
    forwarder.drain();
    await waitFor(() => idle.closed, 'the idle connection to close');
    busy.send('cd');
    const [answer] = await busy.answers(1);
    assert.equal(answer.headers.connection, 'close');
    assert.equal(JSON.parse(answer.body).body, 'abcd');
    await waitFor(() => busy.closed, 'the busy connection to close after its answer');
    await resolver.allReleasedOnce();
  });
});
