/**
 * @module edge/proxy.test
 * The app proxy and TCP forwarder against plain local Node servers: routing by Host, streaming
 * both ways, forwarded headers, websockets, error answers, and release exactly once per exchange.
 */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { errors } from '../kit/errors.js';
import { silentLogger } from '../kit/logger.js';
import { AppProxy, appUnreachable, TcpForwarder } from './proxy.js';
import { PeerHandshakeError } from '../compute/cluster/peers.js';
import { ConnectionForwarder } from './forward.js';
import { closedPort, close, listen, TestResolver, waitFor } from '../../test/proxy-fixture.js';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

let edgePort = 0;
function send(host: string, path: string, options: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      { host: '127.0.0.1', port: edgePort, path, method: options.method ?? 'GET', headers: { host, ...options.headers }, agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString() }));
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(options.body);
  });
}

describe('AppProxy.addressOf', () => {
  const proxy = new AppProxy({ domain: 'localhost', resolver: new TestResolver(), log: silentLogger() });

  test('reads <app>.<project>.<domain>, with a port, in any case', () => {
    assert.deepEqual(proxy.addressOf('web.demo.localhost'), { app: 'web', project: 'demo' });
    assert.deepEqual(proxy.addressOf('Web.DEMO.LocalHost:8080'), { app: 'web', project: 'demo' });
    assert.deepEqual(proxy.addressOf('my-app-2.team-1.localhost'), { app: 'my-app-2', project: 'team-1' });
  });

  test('is undefined for every other host', () => {
    for (const host of [undefined, '', 'localhost', 'localhost:8080', 'demo.localhost', 'a.b.web.demo.localhost', 'web.demo.example.com', 'web..demo.localhost',
      `${'a'.repeat(64)}.demo.localhost`, `web.${'s'.repeat(64)}.demo.localhost`, `web.demo.${'p'.repeat(64)}.localhost`, 'web.stag_ing.demo.localhost',
      'web_1.demo.localhost', '127.0.0.1:8080', '[::1]:8080', 'web.demo.localhost.evil.com', 'webdemo.localhost', '.demo.localhost']) {
      assert.equal(proxy.addressOf(host), undefined, String(host));
    }
  });

  test('reads <app>.<env>.<project>.<domain> as the app of that environment, and the default environment named as none', () => {
    assert.deepEqual(proxy.addressOf('web.staging.demo.localhost'), { app: 'web', project: 'demo', environment: 'staging' });
    assert.deepEqual(proxy.addressOf('WEB.Staging.demo.localhost:8080'), { app: 'web', project: 'demo', environment: 'staging' });
    assert.deepEqual(proxy.addressOf('web.dev.demo.localhost'), { app: 'web', project: 'demo' }, 'the default environment is the same app as <app>.<project>');
    const longest = 'e'.repeat(63);
    assert.deepEqual(proxy.addressOf(`web.${longest}.demo.localhost`), { app: 'web', project: 'demo', environment: longest }, 'a label of 63 characters is a label');
  });

  test('honours a configured base domain', () => {
    const served = new AppProxy({ domain: 'apps.example.com', resolver: new TestResolver(), log: silentLogger() });
    assert.deepEqual(served.addressOf('web.demo.apps.example.com'), { app: 'web', project: 'demo' });
    assert.equal(served.addressOf('web.demo.localhost'), undefined);
    assert.equal(served.addressOf('apps.example.com'), undefined);
  });
});

// Each behaviour holds on both of the edge's ways to serve an app: Node's HTTP server with the
// proxy, and the connection forwarder in front of it (edge/forward.ts), which the edge uses.
for (const way of ['http server', 'connection forwarder'] as const)
describe(`AppProxy over HTTP (${way})`, () => {
  const resolver = new TestResolver();
  const proxy = new AppProxy({ domain: 'localhost', resolver, log: silentLogger() });
  const forwarder = way === 'connection forwarder'
    ? new ConnectionForwarder({ addressOf: (host) => proxy.addressOf(host), resolver, log: silentLogger(), headersTimeoutMs: 10_000, keepAliveTimeoutMs: 5_000, idleTimeoutMs: 60_000 })
    : undefined;
  let upstream: Server;
  let edge: Server;
  let sockets: WebSocketServer;
  /** Lets the test end a streaming response once it has seen the first chunk. */
  let finishStream: () => void = () => {};
  let uploadStarted = false;
  let upstreamSawAbort = false;
  let hangingRequestArrived = false;
  let lastUpgradeHeaders: IncomingHttpHeaders = {};

  before(async () => {
    upstream = createServer((request, response) => {
      switch (request.url) {
        case '/headers':
          response.setHeader('x-app', 'yes');
          response.setHeader('keep-alive', 'timeout=99');
          response.setHeader('set-cookie', ['a=1', 'b=2']);
          response.end(JSON.stringify(request.headers));
          return;
        case '/stream':
          response.writeHead(200, { 'content-type': 'text/event-stream' });
          response.write('data: first\n\n');
          finishStream = () => response.end('data: last\n\n');
          return;
        case '/upload': {
          let size = 0;
          request.on('data', (chunk: Buffer) => {
            size += chunk.length;
            uploadStarted = true;
          });
          request.on('end', () => response.end(JSON.stringify({ size })));
          return;
        }
        case '/hang':
          hangingRequestArrived = true;
          response.once('close', () => (upstreamSawAbort = !response.writableFinished));
          return;
        case '/die':
          request.socket.destroy();
          return;
        default:
          response.end(`hello from ${request.url}`);
      }
    });
    sockets = new WebSocketServer({ server: upstream });
    sockets.on('connection', (socket, request) => {
      lastUpgradeHeaders = request.headers;
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
    const upstreamPort = await listen(upstream);
    resolver.targets.set('web', { host: '127.0.0.1', port: upstreamPort });
    resolver.targets.set('peer', { host: '127.0.0.1', port: upstreamPort, via: 'node-a' });
    resolver.targets.set('down', { host: '127.0.0.1', port: await closedPort() });
    resolver.failures.set('busy', () => errors.unavailable('app "busy" has no ready instance yet').withHeaders({ 'retry-after': '2' }));

    edge = createServer((request, response) => {
      if (proxy.handleRequest(request, response)) return;
      response.end('edge itself');
    });
    edge.on('upgrade', (request: IncomingMessage, socket, head) => {
      if (proxy.handleUpgrade(request, socket, head)) return;
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    forwarder?.interpose(edge);
    edgePort = await listen(edge);
  });

  after(async () => {
    forwarder?.close();
    await proxy.close();
    sockets.close();
    edge.closeAllConnections();
    upstream.closeAllConnections();
    await Promise.all([close(edge), close(upstream)]);
  });

  test('routes by Host and leaves other hosts to the edge', async () => {
    const before = resolver.acquired;
    assert.equal((await send('localhost', '/x')).body, 'edge itself');
    assert.equal((await send('demo.localhost', '/x')).body, 'edge itself');
    assert.equal(resolver.acquired, before, 'non-app hosts never reach the resolver');
    const answer = await send(`web.demo.localhost:${edgePort}`, '/path?q=1');
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'hello from /path?q=1');
    assert.equal(resolver.kinds.at(-1), 'web.demo:http');
    await resolver.allReleasedOnce();
  });

  test('sets X-Forwarded-*, keeps Host and drops hop-by-hop headers', async () => {
    const answer = await send(`Web.demo.localhost:${edgePort}`, '/headers', {
      headers: { 'x-forwarded-for': '203.0.113.9', te: 'trailers', 'proxy-authorization': 'secret', 'x-custom': 'kept', connection: 'keep-alive, x-hop', 'x-hop': 'gone' },
    });
    const seen = JSON.parse(answer.body) as Record<string, string>;
    assert.equal(seen.host, `Web.demo.localhost:${edgePort}`);
    assert.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], `Web.demo.localhost:${edgePort}`);
    assert.equal(seen['x-custom'], 'kept');
    assert.equal(seen.te, undefined);
    assert.equal(seen['proxy-authorization'], undefined);
    assert.equal(seen['x-hop'], undefined, 'headers named by Connection are hop-by-hop');
    assert.equal(answer.headers['x-app'], 'yes');
    assert.deepEqual(answer.headers['set-cookie'], ['a=1', 'b=2']);
    assert.notEqual(answer.headers['keep-alive'], 'timeout=99', "the app's keep-alive header is not passed on");
    await resolver.allReleasedOnce();
  });

  test('relays to another node with x-alto-via, and never passes a received x-alto-via to an instance', async () => {
    const relayedAnswer = await send('peer.demo.localhost', '/headers');
    assert.equal(JSON.parse(relayedAnswer.body)['x-alto-via'], 'node-a', "the other node's edge learns the request was relayed");
    assert.equal(resolver.relayed.at(-1), false);
    const arrived = await send('web.demo.localhost', '/headers', { headers: { 'x-alto-via': 'node-b' } });
    assert.equal(JSON.parse(arrived.body)['x-alto-via'], undefined, 'an instance never sees it');
    assert.equal(resolver.relayed.at(-1), true, 'the resolver is told, so it relays no further');
    await resolver.allReleasedOnce();
  });

  test('streams a response: the first event arrives before the app ends it', { timeout: 10_000 }, async () => {
    const received: string[] = [];
    let ended = false;
    await new Promise<void>((resolve, reject) => {
      const outgoing = httpRequest({ host: '127.0.0.1', port: edgePort, path: '/stream', headers: { host: 'web.demo.localhost' }, agent: false }, (response) => {
        assert.equal(response.headers['content-type'], 'text/event-stream');
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          received.push(chunk);
          // Only once the first event came through does the app finish its response.
          if (received.length === 1) {
            assert.equal(ended, false);
            finishStream();
          }
        });
        response.on('end', () => {
          ended = true;
          resolve();
        });
      });
      outgoing.on('error', reject);
      outgoing.end();
    });
    assert.equal(received.join(''), 'data: first\n\ndata: last\n\n');
    await resolver.allReleasedOnce();
  });

  test('streams a large upload: the app sees bytes before the client finishes sending', async () => {
    uploadStarted = false;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const chunks = 48;
    const answer = await new Promise<Answer>((resolve, reject) => {
      const outgoing = httpRequest(
        { host: '127.0.0.1', port: edgePort, path: '/upload', method: 'POST', headers: { host: 'web.demo.localhost', 'content-length': String(chunk.length * chunks) }, agent: false },
        (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (text: string) => (body += text));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
        },
      );
      outgoing.on('error', reject);
      void (async () => {
        outgoing.write(chunk);
        // The body is far from complete, yet the app already reads it: nothing buffers it whole.
        await waitFor(() => uploadStarted, 'the app to receive the first bytes of the upload');
        for (let sent = 1; sent < chunks; sent++) {
          if (!outgoing.write(chunk)) await new Promise((drained) => outgoing.once('drain', drained));
        }
        outgoing.end();
      })().catch(reject);
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), { size: chunk.length * chunks });
    await resolver.allReleasedOnce();
  });

  test('passes a websocket through and releases at close', async () => {
    const acquiredBefore = resolver.acquired;
    const socket = new WebSocket(`ws://127.0.0.1:${edgePort}/chat`, { headers: { host: 'web.demo.localhost' } });
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    const echoed = new Promise<string>((resolve) => socket.once('message', (data) => resolve(String(data))));
    socket.send('ping through the edge');
    assert.equal(await echoed, 'ping through the edge');
    assert.equal(lastUpgradeHeaders['x-forwarded-host'], 'web.demo.localhost');
    assert.equal(resolver.acquired, acquiredBefore + 1);
    assert.equal(resolver.releases.at(-1), 0, 'an open websocket holds its instance');
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.close();
    await closed;
    await resolver.allReleasedOnce();
  });

  test('refuses a websocket to an unknown app with 404 and leaves other hosts alone', async () => {
    for (const [host, status] of [['nope.demo.localhost', 404], ['localhost', 404]] as const) {
      const socket = new WebSocket(`ws://127.0.0.1:${edgePort}/chat`, { headers: { host } });
      const answered = await new Promise<number>((resolve) => {
        socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
        socket.once('open', () => resolve(101));
        socket.once('error', () => {});
      });
      assert.equal(answered, status, host);
      socket.terminate();
    }
  });

  test("answers the resolver's errors in micro's JSON shape with their headers", async () => {
    const missing = await send('nope.demo.localhost', '/');
    assert.equal(missing.status, 404);
    assert.match(missing.headers['content-type'] ?? '', /application\/json/);
    const missingBody = JSON.parse(missing.body) as Record<string, unknown>;
    assert.equal(missingBody.id, 'not_found');
    assert.equal(missingBody.code, 404);
    assert.match(String(missingBody.detail), /nope/);

    const busy = await send('busy.demo.localhost', '/');
    assert.equal(busy.status, 503);
    assert.equal(busy.headers['retry-after'], '2');
    assert.equal((JSON.parse(busy.body) as { id: string }).id, 'unavailable');
  });

  test('answers 502 naming the app when the instance refuses or dies, and releases', async () => {
    const refused = await send('down.demo.localhost', '/');
    assert.equal(refused.status, 502);
    assert.match((JSON.parse(refused.body) as { detail: string }).detail, /"down"/);
    const died = await send('web.demo.localhost', '/die');
    assert.equal(died.status, 502);
    assert.match((JSON.parse(died.body) as { detail: string }).detail, /"web"/);
    await resolver.allReleasedOnce();
  });

  test('a client that goes away aborts the upstream request and releases', async () => {
    hangingRequestArrived = false;
    upstreamSawAbort = false;
    const outgoing = httpRequest({ host: '127.0.0.1', port: edgePort, path: '/hang', headers: { host: 'web.demo.localhost' }, agent: false });
    outgoing.on('error', () => {});
    outgoing.end();
    await waitFor(() => hangingRequestArrived, 'the request to reach the app');
    assert.equal(resolver.releases.at(-1), 0, 'a request in flight holds its instance');
    outgoing.destroy();
    await waitFor(() => upstreamSawAbort, 'the app to see the request aborted');
    await resolver.allReleasedOnce();
  });
});

describe('TcpForwarder', () => {
  const resolver = new TestResolver();
  let echo: TcpServer;
  const forwarders: TcpForwarder[] = [];

  before(async () => {
    echo = createTcpServer((socket) => socket.pipe(socket));
    resolver.targets.set('redis', { host: '127.0.0.1', port: await listen(echo) });
  });

  after(async () => {
    await Promise.all(forwarders.map((forwarder) => forwarder.close()));
    await close(echo);
  });

  async function forwarderFor(app: string): Promise<number> {
    const forwarder = new TcpForwarder({ host: '127.0.0.1', port: 0, address: { app, project: 'demo' }, resolver, log: silentLogger() });
    forwarders.push(forwarder);
    return forwarder.listen();
  }

  test('pipes a connection to the instance both ways and releases on close', async () => {
    const port = await forwarderFor('redis');
    assert.ok(port > 0);
    const client = connect(port, '127.0.0.1');
    client.setEncoding('utf8');
    let received = '';
    client.on('data', (text: string) => (received += text));
    client.write('PING one\n');
    await waitFor(() => received === 'PING one\n', 'the echo of the first line');
    client.write('PING two\n');
    await waitFor(() => received === 'PING one\nPING two\n', 'the echo of the second line');
    assert.equal(resolver.kinds.at(-1), 'redis.demo:tcp');
    assert.equal(resolver.releases.at(-1), 0, 'an open connection holds its instance');
    client.end();
    await resolver.allReleasedOnce();
  });

  test('closes connections past the per-client cap at once; other clients still connect', async () => {
    const forwarder = new TcpForwarder({
      host: '127.0.0.1',
      port: 0,
      address: { app: 'redis', project: 'demo' },
      resolver,
      connectionCaps: { maxConnections: 100, maxConnectionsPerClient: 3 },
      log: silentLogger(),
    });
    forwarders.push(forwarder);
    const port = await forwarder.listen();
    const clients = Array.from({ length: 5 }, () => connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' }));
    const closed = new Set<number>();
    clients.forEach((client, index) => {
      client.on('error', () => {});
      client.once('close', () => closed.add(index));
    });
    await waitFor(() => closed.size === 2, 'the two connections past the cap of 3 to close');
    const other = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.3' });
    other.setEncoding('utf8');
    let received = '';
    other.on('data', (text: string) => (received += text));
    other.write('PING\n');
    await waitFor(() => received === 'PING\n', 'another client to be served');
    for (const client of [...clients, other]) client.destroy();
  });

  test('closes the client connection when acquire fails', async () => {
    const port = await forwarderFor('missing');
    const client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    let closed = false;
    client.once('close', () => (closed = true));
    await waitFor(() => closed, 'the forwarder to close the connection');
  });

  test('close() ends open connections and stops listening', async () => {
    const forwarder = new TcpForwarder({ host: '127.0.0.1', port: 0, address: { app: 'redis', project: 'demo' }, resolver, log: silentLogger() });
    const port = await forwarder.listen();
    const client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    client.setEncoding('utf8');
    let received = '';
    client.on('data', (text: string) => (received += text));
    client.write('hi');
    await waitFor(() => received === 'hi', 'the echo');
    let closed = false;
    client.once('close', () => (closed = true));
    await forwarder.close();
    await waitFor(() => closed, 'the connection to be closed');
    await resolver.allReleasedOnce();
    const refused = await new Promise<boolean>((resolve) => {
      const again = connect(port, '127.0.0.1');
      again.once('error', () => resolve(true));
      again.once('connect', () => {
        again.destroy();
        resolve(false);
      });
    });
    assert.ok(refused, 'the port no longer accepts connections');
  });
});

test("an app that did not answer: the caller is told the error's code, never the address inside the cloud it names", () => {
  const address = { project: 'shop', app: 'web', environment: 'dev' } as Parameters<typeof appUnreachable>[0];
  const refused = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:8080'), { code: 'ECONNREFUSED' });
  assert.equal(appUnreachable(address, refused).detail, 'app "web" in project "shop" did not answer (ECONNREFUSED); try again');
  const peer = { id: 'n2', name: 'node-b', host: '10.0.0.5', port: 4443, tls: true };
  const altname = Object.assign(new Error("Hostname/IP does not match certificate's altnames: IP: 10.0.0.5 is not in the cert's list"), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  const handshake = appUnreachable(address, new PeerHandshakeError(peer, altname.code, altname));
  assert.equal(handshake.detail, 'app "web" in project "shop" did not answer (the TLS handshake with node node-b failed: ERR_TLS_CERT_ALTNAME_INVALID); try again');
  // Alto's own sentences, which name no address, are kept.
  assert.match(appUnreachable(address, new Error('node node-b did not accept a connection within 5000 ms')).detail, /\(node node-b did not accept a connection within 5000 ms\)/);
});
