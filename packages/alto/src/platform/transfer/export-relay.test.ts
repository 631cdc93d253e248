/**
 * The relay of an export request to the node that wrote the export, against a stand-in writer
 * (a plain HTTP server) behind a front node that relays every request: what goes on, what comes
 * back, and the bounds on a writer that refuses, stalls or sends without end.
 */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { silentLogger } from '../../kit/logger.js';
import type { ListedNode, NodeStore } from '../../store/nodes/port.js';
import { findExportWriter, relayExport, type ExportWriter, type RelayOptions } from './export-relay.js';

const servers: Server[] = [];
after(() => Promise.all(servers.map((server) => new Promise((done) => server.close(done)))));

async function listen(handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A node that relays every request to `writer`, answering a failed relay as the route does. */
function frontOf(writer: ExportWriter, options: Partial<RelayOptions> = {}): Promise<string> {
  return listen((request, response) => {
    relayExport(writer, request.url!, request, response, { via: 'node-front', log: silentLogger(), ...options }).catch((error: unknown) => {
      if (response.headersSent || !isAltoError(error)) return void response.destroy();
      response.writeHead(error.status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(error.toBody()));
    });
  });
}

interface Received {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Set when the body was cut. */
  error?: Error;
}

/** A request with node:http; the body's first `keep` bytes, then the client goes away (or all of it). */
function send(url: string, options: { method?: string; headers?: Record<string, string>; keep?: number } = {}): Promise<Received> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      const done = (error?: Error) => resolve({ status: response.statusCode!, headers: response.headers, body: Buffer.concat(chunks), error });
      response.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        if (Buffer.concat(chunks).length >= (options.keep ?? Infinity)) {
          outgoing.destroy();
          done();
        }
      });
      response.on('end', () => done());
      response.on('error', (error) => done(error));
      response.on('aborted', () => done(new Error('aborted')));
    });
    outgoing.on('error', (error) => (outgoing.destroyed && options.keep !== undefined ? undefined : reject(error)));
    outgoing.end();
  });
}

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('the request goes on with only its Authorization, Range, path and x-alto-via; the answer comes back as the writer gave it', async () => {
  const seen: { method?: string; url?: string; headers?: IncomingHttpHeaders }[] = [];
  const body = Buffer.from('0123456789'.repeat(1000));
  const writer = await listen((request, response) => {
    seen.push({ method: request.method, url: request.url, headers: request.headers });
    response.writeHead(206, {
      'content-type': 'application/gzip',
      'content-length': String(body.length - 5),
      'content-range': `bytes 5-${body.length - 1}/${body.length}`,
      'x-alto-export': 'node-w.0123456789abcdef0123456789abcdef',
      'x-alto-offset': '5',
      'x-alto-export-sha256': 'ab'.repeat(32),
      'set-cookie': 'writer=1',
      'x-powered-by': 'a writer',
    });
    response.end(body.subarray(5));
  });
  const front = await frontOf({ id: 'node-w', name: 'writer', url: `${writer}/` });
  const answer = await send(`${front}/admin/projects/exports/node-w.0123456789abcdef0123456789abcdef?info`, {
    headers: { authorization: 'Bearer key-1', range: 'bytes=5-', cookie: 'session=1', 'x-forwarded-for': '10.9.9.9', 'x-alto-passphrase': 'c2VjcmV0' },
  });
  assert.equal(answer.status, 206);
  assert.deepEqual(answer.body, body.subarray(5));
  assert.equal(answer.headers['content-length'], String(body.length - 5));
  assert.equal(answer.headers['content-range'], `bytes 5-${body.length - 1}/${body.length}`);
  assert.equal(answer.headers['content-type'], 'application/gzip');
  assert.equal(answer.headers['x-alto-offset'], '5');
  assert.equal(answer.headers['x-alto-export-sha256'], 'ab'.repeat(32));
  assert.equal(answer.headers['set-cookie'], undefined);
  assert.equal(answer.headers['x-powered-by'], undefined);

  assert.equal(seen.length, 1);
  assert.equal(seen[0].method, 'GET');
  assert.equal(seen[0].url, '/admin/projects/exports/node-w.0123456789abcdef0123456789abcdef?info');
  assert.equal(seen[0].headers!.authorization, 'Bearer key-1');
  assert.equal(seen[0].headers!.range, 'bytes=5-');
  assert.equal(seen[0].headers!['x-alto-via'], 'node-front', 'the writer learns the request was relayed');
  for (const name of ['cookie', 'x-forwarded-for', 'x-alto-passphrase']) assert.equal(seen[0].headers![name], undefined, name);

  // A refusal and a DELETE pass through the same way.
  const refusing = await listen((request, response) => {
    response.writeHead(request.method === 'DELETE' ? 409 : 404, { 'content-type': 'application/json; charset=utf-8' });
    response.end(JSON.stringify({ id: request.method === 'DELETE' ? 'conflict' : 'not_found', detail: 'as the writer says' }));
  });
  const refusingFront = await frontOf({ id: 'node-r', name: 'refusing', url: refusing });
  const deleted = await send(`${refusingFront}/admin/projects/exports/x`, { method: 'DELETE', headers: { authorization: 'Bearer key-1' } });
  assert.equal(deleted.status, 409);
  assert.deepEqual(JSON.parse(deleted.body.toString()), { id: 'conflict', detail: 'as the writer says' });
  assert.equal((await send(`${refusingFront}/admin/projects/exports/x`)).status, 404);
});

test('a client that goes away part way ends the read from the writer', async () => {
  let writerClosed = false;
  const writer = await listen((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/gzip' });
    // Writes while the front reads, as long as the connection lasts.
    const chunk = Buffer.alloc(64 * 1024, 1);
    const more = () => {
      while (!response.destroyed && response.write(chunk));
    };
    response.on('drain', more);
    response.on('close', () => (writerClosed = true));
    more();
  });
  const front = await frontOf({ id: 'node-w', name: 'writer', url: writer });
  const answer = await send(`${front}/admin/projects/exports/x`, { keep: 200_000 });
  assert.equal(answer.status, 200);
  assert.ok(answer.body.length >= 200_000);
  await waitUntil(() => writerClosed, 'the writer’s answer to be closed once the client left');
});

test('a writer that does not answer is a 503 naming it; one that stalls mid-answer cuts the download', async () => {
  // A port nobody listens on (the server closed at once).
  const closed = createServer();
  await new Promise<void>((done) => closed.listen(0, '127.0.0.1', done));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise((done) => closed.close(done));
  const refused = await send(`${await frontOf({ id: 'node-gone', name: 'gone-node', url: `http://127.0.0.1:${closedPort}` })}/admin/projects/exports/x`);
  assert.equal(refused.status, 503);
  const refusal = JSON.parse(refused.body.toString()) as { detail: string };
  assert.match(refusal.detail, /node gone-node, which holds this export, did not answer/);
  assert.match(refusal.detail, /export again/);

  // Accepts, never answers.
  const silent = await listen(() => undefined);
  const waited = await send(`${await frontOf({ id: 'node-s', name: 'silent-node', url: silent }, { idleTimeoutMs: 200 })}/admin/projects/exports/x`);
  assert.equal(waited.status, 503);
  assert.match(JSON.parse(waited.body.toString()).detail, /silent-node.*nothing sent for 200 ms/);

  // Answers part of the body, then nothing.
  const stalling = await listen((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/gzip', 'content-length': '1000' });
    response.write(Buffer.alloc(100, 2));
  });
  const cut = await send(`${await frontOf({ id: 'node-t', name: 'stalling-node', url: stalling }, { idleTimeoutMs: 200 })}/admin/projects/exports/x`);
  assert.equal(cut.status, 200);
  assert.equal(cut.body.length, 100);
  assert.ok(cut.error, 'the client sees the download cut, not a short archive ended cleanly');
});

test('a writer sending more than any export is cut', async () => {
  const endless = await listen((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/gzip' });
    // In parts, so the first pass before the bound is reached.
    let sent = 0;
    const next = () => {
      if (response.destroyed || sent >= 10_000) return void response.end();
      sent += 100;
      response.write(Buffer.alloc(100, 3), () => setImmediate(next));
    };
    next();
  });
  const answer = await send(`${await frontOf({ id: 'node-e', name: 'endless', url: endless }, { maxBytes: 1_000 })}/admin/projects/exports/x`);
  assert.equal(answer.status, 200);
  assert.ok(answer.body.length > 0 && answer.body.length <= 1_000, String(answer.body.length));
  assert.ok(answer.error, 'cut, not ended');
});

test('the writer is a live node of the store: unknown is 404, not running is 410', async () => {
  const node = (id: string, live: boolean): ListedNode =>
    ({ id, name: `name-${id}`, advertiseUrl: `http://10.0.0.1:4000`, live, version: '0', startedAt: 0, heartbeatAt: 0, leaseExpiresAt: 0, draining: false, capacity: {} }) as unknown as ListedNode;
  const nodes = { list: async () => [node('up', true), node('down', false)] } as unknown as NodeStore;
  assert.deepEqual(await findExportWriter(nodes, 'up', 'up.x'), { id: 'up', name: 'name-up', url: 'http://10.0.0.1:4000' });
  await assert.rejects(findExportWriter(nodes, 'down', 'down.x'), (error: unknown) => isAltoError(error) && error.status === 410 && /name-down, which is not running.*export again/.test(error.detail));
  await assert.rejects(findExportWriter(nodes, 'nobody', 'nobody.x'), (error: unknown) => isAltoError(error) && error.status === 404);
});
