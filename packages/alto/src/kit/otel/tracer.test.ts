import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { silentLogger } from '../logger.js';
import { createTracer, OtlpTracer, samplerFrom, tracerConfigFrom } from './tracer.js';

/** Protobuf wire fields of one message: field number → raw values (varint as bigint, length-delimited as Buffer, fixed as Buffer). */
function fieldsOf(message: Buffer): Map<number, (bigint | Buffer)[]> {
  const fields = new Map<number, (bigint | Buffer)[]>();
  let at = 0;
  const varint = (): bigint => {
    let value = 0n;
    let shift = 0n;
    for (;;) {
      const byte = message[at++];
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
      shift += 7n;
    }
  };
  while (at < message.length) {
    const tag = Number(varint());
    const field = tag >> 3;
    const wire = tag & 7;
    let value: bigint | Buffer;
    if (wire === 0) value = varint();
    else if (wire === 1) value = message.subarray(at, (at += 8));
    else if (wire === 5) value = message.subarray(at, (at += 4));
    else if (wire === 2) {
      const length = Number(varint());
      value = message.subarray(at, (at += length));
    } else throw new Error(`wire type ${wire}`);
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

const one = (fields: Map<number, (bigint | Buffer)[]>, field: number) => fields.get(field)?.[0];
const text = (fields: Map<number, (bigint | Buffer)[]>, field: number) => (one(fields, field) as Buffer | undefined)?.toString('utf8');
const hexOf = (fields: Map<number, (bigint | Buffer)[]>, field: number) => (one(fields, field) as Buffer | undefined)?.toString('hex');

interface DecodedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  kind: number;
  startNanos: bigint;
  endNanos: bigint;
  attributes: Record<string, string | bigint | boolean | number>;
  statusCode: number;
}

function decodeRequest(body: Buffer): { resource: Record<string, unknown>; spans: DecodedSpan[] } {
  const keyValues = (list: (bigint | Buffer)[] = []) =>
    Object.fromEntries(
      list.map((pair) => {
        const kv = fieldsOf(pair as Buffer);
        const any = fieldsOf(one(kv, 2) as Buffer);
        const value = any.has(1) ? text(any, 1) : any.has(2) ? one(any, 2) === 1n : any.has(3) ? (one(any, 3) as bigint) : (one(any, 4) as Buffer).readDoubleLE();
        return [text(kv, 1), value];
      }),
    );
  const resourceSpans = fieldsOf(one(fieldsOf(body), 1) as Buffer);
  const resource = keyValues(fieldsOf(one(resourceSpans, 1) as Buffer).get(1));
  const scopeSpans = fieldsOf(one(resourceSpans, 2) as Buffer);
  const spans = (scopeSpans.get(2) ?? []).map((raw) => {
    const span = fieldsOf(raw as Buffer);
    const status = span.has(15) ? fieldsOf(one(span, 15) as Buffer) : undefined;
    return {
      traceId: hexOf(span, 1)!,
      spanId: hexOf(span, 2)!,
      parentSpanId: hexOf(span, 4),
      name: text(span, 5)!,
      kind: Number(one(span, 6)),
      startNanos: (one(span, 7) as Buffer).readBigUInt64LE(),
      endNanos: (one(span, 8) as Buffer).readBigUInt64LE(),
      attributes: keyValues(span.get(9)),
      statusCode: status ? Number(one(status, 3)) : 0,
    };
  });
  return { resource, spans };
}

async function collector(): Promise<{ url: string; bodies: { body: Buffer; headers: IncomingHttpHeaders }[]; close(): Promise<void> }> {
  const bodies: { body: Buffer; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      bodies.push({ body: Buffer.concat(chunks), headers: request.headers });
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('samplers: always_on, always_off, traceidratio and parent-based', () => {
  const traceId = 'ab'.repeat(16);
  assert.equal(samplerFrom('always_on', undefined)(traceId, false), true);
  assert.equal(samplerFrom('always_off', undefined)(traceId, true), false);
  assert.equal(samplerFrom('traceidratio', '0')(traceId, undefined), false);
  assert.equal(samplerFrom('traceidratio', '1')(traceId, undefined), true);
  assert.equal(samplerFrom('traceidratio', '0.5')('0'.repeat(18) + '00000000000001', undefined), true);
  assert.equal(samplerFrom('traceidratio', '0.5')('0'.repeat(18) + 'ffffffffffffff', undefined), false);
  assert.equal(samplerFrom('parentbased_always_off', undefined)(traceId, true), true);
  assert.equal(samplerFrom('parentbased_always_off', undefined)(traceId, undefined), false);
  assert.equal(samplerFrom(undefined, undefined)(traceId, false), false, 'the default follows an unsampled parent');
  assert.equal(samplerFrom(undefined, undefined)(traceId, undefined), true);
  assert.throws(() => samplerFrom('jaeger_remote', undefined), /not supported/);
});

test('configuration from the standard variables', () => {
  const config = tracerConfigFrom({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
    OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc, x-team = core',
    OTEL_RESOURCE_ATTRIBUTES: 'service.name=ignored,deployment.environment=prod',
    OTEL_SERVICE_NAME: 'edge-1',
  });
  assert.equal(config.url.href, 'http://collector:4318/v1/traces');
  assert.equal(config.protocol, 'http/protobuf', 'the spec default');
  assert.deepEqual(config.headers, { authorization: 'Bearer abc', 'x-team': 'core' });
  assert.equal(Object.fromEntries(config.resource.attributes)['service.name'], 'edge-1');
  assert.equal(Object.fromEntries(config.resource.attributes)['deployment.environment'], 'prod');
  assert.equal(Object.fromEntries(tracerConfigFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).resource.attributes)['service.name'], 'alto');
  assert.equal(tracerConfigFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://d:9999/custom' }).url.href, 'http://d:9999/custom');
  assert.throws(() => tracerConfigFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), /not supported/);
});

test('spans are exported as OTLP protobuf: ids, parents from traceparent and from the current span, kinds, attributes, status', async () => {
  const sink = await collector();
  const tracer = createTracer({ OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_EXPORTER_OTLP_HEADERS: 'x-token=t', OTEL_BSP_SCHEDULE_DELAY: '60000' }, silentLogger(), '1.2.3');
  const parentTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const server = tracer.startSpan('POST /v1/db/Create', 'server', `00-${parentTrace}-00f067aa0ba902b7-01`);
  server.setAttribute('http.response.status_code', 200);
  server.setAttribute('alto.ratio', 0.5);
  server.setAttribute('alto.cached', true);
  const handler = tracer.startSpan('db/Create', 'internal', server);
  tracer.withSpan(handler, () => {
    const store = tracer.startSpan('documents.create', 'client');
    store.fail('disk full');
    store.end();
  });
  handler.end();
  server.end();
  assert.equal(server.traceparent(), `00-${parentTrace}-${server.spanId}-01`);
  await tracer.shutdown();
  await sink.close();

  assert.equal(sink.bodies.length, 1);
  assert.equal(sink.bodies[0].headers['content-type'], 'application/x-protobuf');
  assert.equal(sink.bodies[0].headers['x-token'], 't');
  const { resource, spans } = decodeRequest(sink.bodies[0].body);
  assert.equal(resource['service.name'], 'alto');
  assert.equal(resource['service.version'], '1.2.3');
  const byName = Object.fromEntries(spans.map((span) => [span.name, span]));
  assert.deepEqual(Object.keys(byName).sort(), ['POST /v1/db/Create', 'db/Create', 'documents.create']);
  const edge = byName['POST /v1/db/Create'];
  assert.equal(edge.traceId, parentTrace);
  assert.equal(edge.parentSpanId, '00f067aa0ba902b7');
  assert.equal(edge.kind, 2);
  assert.equal(edge.attributes['http.response.status_code'], 200n);
  assert.equal(edge.attributes['alto.ratio'], 0.5);
  assert.equal(edge.attributes['alto.cached'], true);
  assert.ok(edge.endNanos >= edge.startNanos && edge.startNanos > BigInt(Date.now() - 60_000) * 1_000_000n);
  assert.equal(byName['db/Create'].parentSpanId, edge.spanId);
  assert.equal(byName['db/Create'].kind, 1);
  assert.equal(byName['documents.create'].parentSpanId, byName['db/Create'].spanId);
  assert.equal(byName['documents.create'].kind, 3);
  assert.equal(byName['documents.create'].statusCode, 2);
  assert.equal(new Set(spans.map((span) => span.traceId)).size, 1);
});

test('an unsampled parent: its trace is carried on, nothing is exported; an invalid traceparent starts a new trace', async () => {
  const sink = await collector();
  const tracer = createTracer({ OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_BSP_SCHEDULE_DELAY: '60000', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, silentLogger());
  const trace = 'a'.repeat(32);
  const unsampled = tracer.startSpan('GET web.p', 'server', `00-${trace}-${'b'.repeat(16)}-00`);
  assert.equal(unsampled.sampled, false);
  const child = tracer.startSpan('upstream', 'client', unsampled);
  assert.match(child.traceparent(), new RegExp(`^00-${trace}-[0-9a-f]{16}-00$`));
  child.end();
  unsampled.end();
  const fresh = tracer.startSpan('GET web.p', 'server', '00-00000000000000000000000000000000-bbbbbbbbbbbbbbbb-01');
  assert.notEqual(fresh.traceId, '0'.repeat(32));
  fresh.end();
  await tracer.shutdown();
  await sink.close();
  assert.equal(sink.bodies.length, 1);
  const body = JSON.parse(sink.bodies[0].body.toString()) as { resourceSpans: { scopeSpans: { spans: { name: string; traceId: string; parentSpanId?: string }[] }[] }[] };
  const spans = body.resourceSpans[0].scopeSpans[0].spans;
  assert.equal(spans.length, 1, 'only the sampled span');
  assert.equal(spans[0].traceId, fresh.traceId);
  assert.equal(spans[0].parentSpanId, undefined);
});

test('a full queue drops spans and counts them; an export that fails never throws', async () => {
  // Nothing listens on port 1: every export fails.
  const tracer = createTracer({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_BSP_MAX_QUEUE_SIZE: '3', OTEL_BSP_SCHEDULE_DELAY: '60000' }, silentLogger()) as OtlpTracer;
  for (let i = 0; i < 5; i++) tracer.startSpan(`span ${i}`, 'internal').end();
  assert.equal(tracer.dropped, 2);
  await tracer.shutdown();
});
