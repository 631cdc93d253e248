/**
 * OpenTelemetry traces (issue 27): Alto started with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an
 * OTLP/HTTP receiver this test runs (JSON bodies on /v1/traces) exports one trace per request.
 * An API call (db/Create, db/Read) is an edge span with the block's handler as its child and the
 * store round trip under that; the traceparent the client sent is the edge span's parent. A
 * request to a suspended app is an edge span with the instance acquire (carrying `alto.wake_ms`)
 * and the upstream exchange as children, and the app receives the upstream span's traceparent.
 * The service name, resource attributes and export headers come from the standard variables.
 * The platform's own store calls are spans too: a key the process looks up is a `control.*` span
 * of the call, projects/Update's limits a `quota.*` span of its handler. Connections that stay
 * open are spans from start to close with their bytes: an API stream (app/FollowLogs), an app's
 * websocket (a child of its upgrade request, with the wake time) and a TCP connection through an
 * app's edge port (its acquire a child, the wake time on it).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually, privateSandboxCache, webImage } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { sleepyImage, slotsOf } from './serverless-fixture.js';
import WebSocket from 'ws';

const PROJECT = 'traced';

interface ReceivedSpan {
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string;
  doubleValue?: number;
  boolValue?: boolean;
}

function valueOf(value: OtlpValue): string | number | boolean {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  return value.boolValue ?? '';
}

function attributesOf(list: { key: string; value: OtlpValue }[] = []): Record<string, string | number | boolean> {
  return Object.fromEntries(list.map((pair) => [pair.key, valueOf(pair.value)]));
}

/** An OTLP/HTTP receiver: every span of every JSON export, and the headers of the last one. */
class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  lastHeaders: IncomingHttpHeaders = {};
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        if (request.method !== 'POST' || request.url !== '/v1/traces' || request.headers['content-type'] !== 'application/json') {
          response.writeHead(400).end();
          return;
        }
        this.lastHeaders = request.headers;
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: (Omit<ReceivedSpan, 'attributes' | 'resource'> & { attributes: { key: string; value: OtlpValue }[] })[] }[] }[];
        };
        for (const resourceSpans of body.resourceSpans) {
          const resource = attributesOf(resourceSpans.resource.attributes);
          for (const scopeSpans of resourceSpans.scopeSpans)
            for (const span of scopeSpans.spans) this.spans.push({ ...span, attributes: attributesOf(span.attributes), resource });
        }
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  inTrace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((span) => span.traceId === traceId);
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** A CGI that answers the traceparent the app received. */
const TRACEPARENT_CGI = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"traceparent=$HTTP_TRACEPARENT\"\n";

function get(port: number, host: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers: { host, ...headers }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    outgoing.setTimeout(30_000, () => outgoing.destroy(new Error('request timed out')));
    outgoing.on('error', reject);
    outgoing.end();
  });
}

/** How long a span lasted, in ms. */
const durationMs = (span: ReceivedSpan) => Number(BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano)) / 1e6;

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** An HTTP/1.0 request (the connection forwarder leaves those to Node's server and edge/proxy.ts); resolves with the whole answer. */
function getHttp10(port: number, host: string, path: string, traceparent: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\ntraceparent: ${traceparent}\r\n\r\n`));
    let answer = '';
    socket.setTimeout(30_000, () => socket.destroy(new Error('no answer within 30 s')));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('OpenTelemetry traces over OTLP/HTTP (JSON)', () => {
  const receiver = new OtlpReceiver();
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    const endpoint = await receiver.start();
    registry = await startRegistry();
    await registry.push('traced/web', 'v1', await webImage('traced', 'hello\n', { traceparent: TRACEPARENT_CGI }));
    await registry.push('traced/sleepy', 'v1', await sleepyImage('awake\n'));
    alto = await startProcess({
      dataDir,
      args: ['--sandbox', 'process'],
      env: {
        ALTO_SANDBOX_CACHE: cache.dir,
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-token=s3cret%20token',
        OTEL_SERVICE_NAME: 'alto-under-test',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=e2e',
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    key = await alto.projectKey(PROJECT, ['db', 'app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    await receiver.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function callDb(endpoint: string, body: unknown, traceparent?: string): Promise<unknown> {
    const response = await fetch(`${alto.url}/v1/db/${endpoint}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(traceparent ? { traceparent } : {}) },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    assert.equal(response.status, 200, JSON.stringify(answer));
    return answer;
  }

  test('an API call is an edge span, its handler a child, the store round trip a grandchild; the client traceparent is the parent', async () => {
    const clientTrace = hex(16);
    const clientSpan = hex(8);
    await callDb('Create', { table: 'notes', record: { id: 'n1', text: 'traced' } }, `00-${clientTrace}-${clientSpan}-01`);
    const edge = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'POST /v1/db/Create'), 'the db/Create edge span');
    assert.equal(edge.parentSpanId, clientSpan, 'the traceparent the client sent is the parent');
    assert.equal(edge.kind, 2, 'SERVER');
    assert.equal(edge.attributes['http.request.method'], 'POST');
    assert.equal(edge.attributes['url.path'], '/v1/db/Create');
    assert.equal(edge.attributes['http.response.status_code'], 200);
    assert.equal(edge.attributes['alto.service'], 'db');
    assert.equal(edge.resource['service.name'], 'alto-under-test');
    assert.equal(edge.resource['deployment.environment'], 'e2e');
    assert.equal(receiver.lastHeaders['x-collector-token'], 's3cret token');

    const handler = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'db/Create'), 'the db/Create handler span');
    assert.equal(handler.parentSpanId, edge.spanId);
    const store = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name.startsWith('documents.')), 'a store span under db/Create');
    assert.equal(store.parentSpanId, handler.spanId);
    assert.equal(store.kind, 3, 'CLIENT');
    assert.equal(store.attributes['db.system'], 'sqlite');

    // db/Read without a traceparent: a trace of its own, rooted at the edge.
    const read = (await callDb('Read', { table: 'notes', id: 'n1' })) as { records: { text: string }[] };
    assert.equal(read.records[0].text, 'traced');
    const readEdge = await eventually(async () => receiver.spans.find((span) => span.name === 'POST /v1/db/Read'), 'the db/Read edge span');
    assert.notEqual(readEdge.traceId, clientTrace, 'one trace per request');
    assert.equal(readEdge.parentSpanId ?? '', '', 'a root span');
    const readHandler = await eventually(async () => receiver.inTrace(readEdge.traceId).find((span) => span.name === 'db/Read'), 'the db/Read handler span');
    assert.equal(readHandler.parentSpanId, readEdge.spanId);
    const readStore = await eventually(async () => receiver.inTrace(readEdge.traceId).find((span) => span.name.startsWith('documents.')), 'a store span under db/Read');
    assert.equal(readStore.parentSpanId, readHandler.spanId);
    // Nothing of the Create trace leaked into the Read one, nor the other way.
    for (const span of receiver.inTrace(readEdge.traceId)) assert.ok([readEdge.spanId, readHandler.spanId].includes(span.parentSpanId ?? readEdge.spanId), `${span.name} in the db/Read trace`);
    for (const span of receiver.inTrace(clientTrace)) assert.ok([clientSpan, edge.spanId, handler.spanId].includes(span.parentSpanId ?? ''), `${span.name} in the db/Create trace`);
  });

  test('a request that wakes a suspended app: edge span, acquire with alto.wake_ms, upstream span whose traceparent the app receives', async () => {
    const run = await alto.call('app', 'Run', { name: 'web', image: `${registry.host}/traced/web:v1`, memory: 64, min_instances: 0, idle_timeout: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    await eventually(async () => {
      const slot = (await slotsOf(alto, key, 'web'))[0];
      return slot?.state === 'suspended' && slot.frozen === true;
    }, 'the app suspended, and frozen by the kernel');

    const clientTrace = hex(16);
    const clientSpan = hex(8);
    const edgePort = Number(new URL(alto.url).port);
    const answer = await get(edgePort, `web.${PROJECT}.localhost`, '/cgi-bin/traceparent', { traceparent: `00-${clientTrace}-${clientSpan}-01` });
    assert.equal(answer.status, 200, answer.body);
    const received = /traceparent=(\S*)/.exec(answer.body)?.[1] ?? '';
    const parts = received.split('-');
    assert.equal(parts.length, 4, `the app received a traceparent: ${JSON.stringify(answer.body)}`);
    assert.equal(parts[1], clientTrace, 'the app is in the client trace');
    assert.notEqual(parts[2], clientSpan, "the app's parent is the edge's span, not the client's");

    const edge = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.kind === 2), 'the app request edge span');
    assert.equal(edge.name, `GET web.${PROJECT}`);
    assert.equal(edge.parentSpanId, clientSpan);
    assert.equal(edge.attributes['alto.app'], 'web');
    assert.equal(edge.attributes['alto.project'], PROJECT);
    assert.equal(edge.attributes['http.response.status_code'], 200);
    const acquire = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'acquire instance'), 'the acquire span');
    assert.equal(acquire.parentSpanId, edge.spanId);
    assert.ok(typeof acquire.attributes['alto.wake_ms'] === 'number' && acquire.attributes['alto.wake_ms'] > 0, `alto.wake_ms: ${JSON.stringify(acquire.attributes)}`);
    assert.equal(acquire.attributes['alto.wake_from'], 'suspended');
    const upstream = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'upstream'), 'the upstream span');
    assert.equal(upstream.parentSpanId, edge.spanId);
    assert.equal(upstream.kind, 3, 'CLIENT');
    assert.equal(parts[2], upstream.spanId, "the app's traceparent names the upstream span");
    assert.equal(receiver.inTrace(clientTrace).length, 3, 'the app request is one trace of three spans');
  });

  test("an app request Node's server proxies (HTTP/1.0): the same spans, the app gets the upstream span's traceparent", async () => {
    const clientTrace = hex(16);
    const clientSpan = hex(8);
    const answer = await getHttp10(Number(new URL(alto.url).port), `web.${PROJECT}.localhost`, '/cgi-bin/traceparent', `00-${clientTrace}-${clientSpan}-01`);
    assert.match(answer, /^HTTP\/1\.[01] 200/, answer);
    const received = (/traceparent=(\S*)/.exec(answer)?.[1] ?? '').split('-');
    assert.equal(received[1], clientTrace, `the app is in the client trace: ${JSON.stringify(answer)}`);
    const edge = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.kind === 2), 'the proxied request edge span');
    assert.equal(edge.name, `GET web.${PROJECT}`);
    assert.equal(edge.parentSpanId, clientSpan);
    assert.equal(edge.attributes['http.response.status_code'], 200);
    const upstream = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'upstream'), 'the upstream span');
    assert.equal(upstream.parentSpanId, edge.spanId);
    assert.equal(received[2], upstream.spanId, "the app's traceparent names the upstream span");
    const acquire = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'acquire instance'), 'the acquire span');
    assert.equal(acquire.parentSpanId, edge.spanId);
  });
  test("the platform's store calls: a key looked up is a control span of the call; projects/Update's limits a quota span of its handler", async () => {
    const generated = await alto.call('keys', 'Generate', { project: PROJECT, scopes: ['db'] });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    const clientTrace = hex(16);
    const response = await fetch(`${alto.url}/v1/db/Count`, {
      method: 'POST',
      headers: { authorization: `Bearer ${generated.body.key}`, 'content-type': 'application/json', traceparent: `00-${clientTrace}-${hex(8)}-01` },
      body: JSON.stringify({ table: 'notes' }),
    });
    assert.equal(response.status, 200, await response.text());
    const edge = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'POST /v1/db/Count'), 'the db/Count edge span');
    const lookup = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name.startsWith('control.')), "the new key's lookup");
    assert.equal(lookup.parentSpanId, edge.spanId, 'the key lookup is a child of the call');
    assert.equal(lookup.kind, 3, 'CLIENT');
    assert.equal(lookup.attributes['db.system'], 'sqlite');

    const updateTrace = hex(16);
    const update = await fetch(`${alto.url}/v1/projects/Update`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alto.adminKey}`, 'content-type': 'application/json', traceparent: `00-${updateTrace}-${hex(8)}-01` },
      body: JSON.stringify({ name: PROJECT, rate_limit: 500 }),
    });
    assert.equal(update.status, 200, await update.text());
    const handler = await eventually(async () => receiver.inTrace(updateTrace).find((span) => span.name === 'projects/Update'), 'the projects/Update handler span');
    const quota = await eventually(async () => receiver.inTrace(updateTrace).find((span) => span.name === 'quota.updateLimits'), 'the quota.updateLimits span');
    assert.equal(quota.parentSpanId, handler.spanId);
    const project = await eventually(async () => receiver.inTrace(updateTrace).find((span) => span.name.startsWith('control.') && span.parentSpanId === handler.spanId), "the project's lookup under the handler");
    assert.equal(project.kind, 3, 'CLIENT');
  });

  test('an API stream (app/FollowLogs) is one span from the upgrade to its close, with its bytes and messages', async () => {
    const clientTrace = hex(16);
    const clientSpan = hex(8);
    const follow = new WebSocket(`${alto.url.replace('http', 'ws')}/v1/app/FollowLogs`, { headers: { authorization: `Bearer ${key}`, traceparent: `00-${clientTrace}-${clientSpan}-01` } });
    const lines: string[] = [];
    follow.on('message', (data) => lines.push(data.toString()));
    await new Promise<void>((resolve, reject) => {
      follow.once('open', () => follow.send(JSON.stringify({ name: 'web', since: '1h' }), (error) => (error ? reject(error) : resolve())));
      follow.once('error', reject);
    });
    await eventually(async () => lines.length >= 1, 'a followed line');
    const openedAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const closed = new Promise((resolve) => follow.once('close', resolve));
    follow.close();
    await closed;
    const stream = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === 'GET /v1/app/FollowLogs'), 'the stream span');
    assert.equal(stream.parentSpanId, clientSpan);
    assert.equal(stream.kind, 2, 'SERVER');
    assert.equal(stream.attributes['alto.stream'], true);
    assert.equal(stream.attributes['alto.endpoint'], 'FollowLogs');
    assert.ok(Number(stream.attributes['alto.messages_out']) >= lines.length, JSON.stringify(stream.attributes));
    assert.ok(Number(stream.attributes['alto.bytes_out']) >= lines.join('').length, JSON.stringify(stream.attributes));
    assert.ok(Number(stream.attributes['alto.bytes_in']) > 0);
    assert.ok(durationMs(stream) >= 300 - 50, `the span lasted ${durationMs(stream)} ms, the stream at least ${Date.now() - openedAt}`);
  });

  test("an app's websocket after waking it: a span from the 101 to its close, child of the upgrade request, with bytes and alto.wake_ms", async () => {
    const run = await alto.call('app', 'Run', { name: 'sleepy', image: `${registry.host}/traced/sleepy:v1`, memory: 64, min_instances: 0, idle_timeout: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    await eventually(async () => (await slotsOf(alto, key, 'sleepy'))[0]?.state === 'suspended', 'the app suspended');
    const clientTrace = hex(16);
    const socket = connect(Number(new URL(alto.url).port), '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.write(
      `GET /cgi-bin/ws HTTP/1.1\r\nHost: sleepy.${PROJECT}.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\ntraceparent: 00-${clientTrace}-${hex(8)}-01\r\n\r\n`,
    );
    // Sent before the 101 comes: the edge hands these bytes to the app with the tunnel, counted too.
    socket.write('hello app');
    await eventually(async () => received.split('tick').length > 3, 'ticks through the websocket');
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.destroy();
    await closed;
    const upgrade = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === `GET sleepy.${PROJECT}`), 'the upgrade request span');
    assert.equal(upgrade.attributes['http.response.status_code'], 101);
    const websocket = await eventually(async () => receiver.inTrace(clientTrace).find((span) => span.name === `websocket sleepy.${PROJECT}`), 'the websocket span');
    assert.equal(websocket.parentSpanId, upgrade.spanId);
    assert.equal(websocket.attributes['alto.app'], 'sleepy');
    assert.ok(Number(websocket.attributes['alto.bytes_out']) >= 3 * 'tick\n'.length, JSON.stringify(websocket.attributes));
    assert.equal(websocket.attributes['alto.bytes_in'], 'hello app'.length);
    assert.ok(Number(websocket.attributes['alto.wake_ms']) > 0, `alto.wake_ms: ${JSON.stringify(websocket.attributes)}`);
    assert.ok(durationMs(websocket) >= 400, `three ticks 200 ms apart, ${durationMs(websocket)} ms`);
  });

  test("a TCP connection through an app's edge port: a span from accept to close, its acquire a child, with bytes and the wake time", async () => {
    const run = await alto.call('app', 'Run', { name: 'raw', image: `${registry.host}/traced/sleepy:v1`, memory: 64, tcp: 8080, min_instances: 0, idle_timeout: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const port = run.body.service.tcp_port as number;
    assert.ok(port > 0, JSON.stringify(run.body.service));
    await eventually(async () => (await slotsOf(alto, key, 'raw'))[0]?.state === 'suspended', 'the TCP app suspended');
    const before = new Set(receiver.spans.map((span) => span.spanId));
    const request = 'GET / HTTP/1.0\r\n\r\n';
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(request));
      let text = '';
      socket.setTimeout(30_000, () => socket.destroy(new Error('no answer within 30 s')));
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(answer, /awake/);
    const tcp = await eventually(async () => receiver.spans.find((span) => !before.has(span.spanId) && span.name === `tcp raw.${PROJECT}`), 'the TCP connection span');
    assert.equal(tcp.kind, 2, 'SERVER');
    assert.equal(tcp.attributes['alto.bytes_in'], request.length);
    assert.equal(tcp.attributes['alto.bytes_out'], answer.length);
    assert.ok(Number(tcp.attributes['alto.wake_ms']) > 0, `alto.wake_ms: ${JSON.stringify(tcp.attributes)}`);
    const acquire = await eventually(async () => receiver.inTrace(tcp.traceId).find((span) => span.name === 'acquire instance'), 'the acquire span');
    assert.equal(acquire.parentSpanId, tcp.spanId);
    assert.equal(acquire.attributes['alto.wake_from'], 'suspended');
  });
});
