/**
 * @module edge/traces
 * The edge's spans, when tracing is on (kit/tracing.ts): one SERVER span per API call with the
 * block's handler as its child (store calls inside are the handler's children, store/traced.ts),
 * and one SERVER span per app request with two children, the instance acquire (with
 * `alto.wake_ms` when it woke a suspended instance) and the upstream exchange, whose
 * `traceparent` the app receives. A `traceparent` the client sent is the parent of the edge's
 * span. Connections that stay open are spans of their own, from start to close, with the bytes
 * each way: an API stream (a websocket on a stream endpoint), an app's websocket after its 101
 * (a child of the upgrade request's span), a TCP connection through an app's edge port (with its
 * acquire, and the wake time). Callers reach these only after testing `tracer !== undefined`, so
 * with tracing off none of this runs.
 */
import type { Duplex } from 'node:stream';
import type { AppAddress } from '../compute/apps/gateway.js';
import type { Span, Tracer } from '../kit/tracing.js';
import type { RequestHead } from './h1.js';

/** The span of an API call, its parent the client's `traceparent` if it sent one. */
export function startApiSpan(tracer: Tracer, method: string, path: string, traceparent: string | undefined, startMs: number): Span {
  const span = tracer.startSpan(`${method} ${path}`, 'server', traceparent ?? ROOT, startMs);
  span.setAttribute('http.request.method', method);
  span.setAttribute('url.path', path);
  return span;
}

/** Ends an API call's span with its answer. */
export function endApiSpan(span: Span, status: number, requestId: string, service: string | undefined, endpoint: string | undefined, projectId: string | undefined): void {
  span.setAttribute('http.response.status_code', status);
  span.setAttribute('alto.request_id', requestId);
  if (service !== undefined) span.setAttribute('alto.service', service);
  if (endpoint !== undefined) span.setAttribute('alto.endpoint', endpoint);
  if (projectId !== undefined) span.setAttribute('alto.project_id', projectId);
  if (status >= 500) span.fail(`answered ${status}`);
  span.end();
}

/** Runs a block's handler in its own span, current while it runs so its store calls are its children. */
export function runHandlerTraced(tracer: Tracer, parent: Span, name: string, run: () => unknown): unknown {
  const span = tracer.startSpan(name, 'internal', parent);
  let output: unknown;
  try {
    output = tracer.withSpan(span, run);
  } catch (error) {
    span.fail(messageOf(error));
    span.end();
    throw error;
  }
  if (output instanceof Promise) {
    output.then(
      () => span.end(),
      (error: unknown) => {
        span.fail(messageOf(error));
        span.end();
      },
    );
  } else span.end();
  return output;
}

/** Ends an API stream's span (its websocket closed), with the bytes each way and the messages sent. */
export function endStreamSpan(span: Span, status: number, requestId: string, service: string | undefined, endpoint: string | undefined, projectId: string | undefined, bytesIn: number, bytesOut: number, messages: number): void {
  span.setAttribute('alto.stream', true);
  span.setAttribute('alto.bytes_in', bytesIn);
  span.setAttribute('alto.bytes_out', bytesOut);
  span.setAttribute('alto.messages_out', messages);
  endApiSpan(span, status, requestId, service, endpoint, projectId);
}

/**
 * An app's websocket, from the 101 to the close of either side: a child of the upgrade request's
 * span, with the bytes each way (past the 101 head) and `alto.wake_ms` when the request woke the
 * instance. `client` and `upstream` are the two ends being piped; `alreadyIn` and `alreadyOut`
 * the bytes each way handed over with the tunnel (read with the upgrade, or after the 101 head).
 */
export function traceAppWebsocket(tracer: Tracer, parent: Span, address: AppAddress, requestStartMs: number, client: Duplex, upstream: Duplex, alreadyIn = 0, alreadyOut = 0): void {
  const span = tracer.startSpan(`websocket ${address.app}.${address.project}`, 'internal', parent);
  span.setAttribute('alto.app', address.app);
  span.setAttribute('alto.project', address.project);
  const woke = wakes.get(wakeKey(address.project, address.app));
  if (woke && woke.atMs >= requestStartMs) span.setAttribute('alto.wake_ms', woke.ms);
  countUntilClose(span, client, upstream, alreadyIn, alreadyOut);
}

/** A TCP connection through an app's edge port, from accept to close; its acquire is a child (with the wake time). */
export function startTcpSpan(tracer: Tracer, address: AppAddress, startMs: number): Span {
  const span = tracer.startSpan(`tcp ${address.app}.${address.project}`, 'server', ROOT, startMs);
  span.setAttribute('network.transport', 'tcp');
  span.setAttribute('alto.app', address.app);
  span.setAttribute('alto.project', address.project);
  return span;
}

/** Counts the bytes each way on the two piped ends (past those already passed on), and ends `span` when the client's end closes. */
export function countUntilClose(span: Span, client: Duplex, upstream: Duplex, alreadyIn = 0, alreadyOut = 0): void {
  let bytesIn = alreadyIn;
  let bytesOut = alreadyOut;
  client.on('data', (chunk: Buffer) => (bytesIn += chunk.length));
  upstream.on('data', (chunk: Buffer) => (bytesOut += chunk.length));
  client.once('close', () => {
    span.setAttribute('alto.bytes_in', bytesIn);
    span.setAttribute('alto.bytes_out', bytesOut);
    span.end();
  });
}

/** An empty parent: a new trace rather than the span current in this async context. */
const ROOT = '';

/** The span of an app request read off the connection (edge/forward.ts), from when its head was read. */
export function startAppSpan(tracer: Tracer, head: RequestHead, address: AppAddress, startMs: number): Span {
  return startAppRequestSpan(tracer, head.method, head.target, headerIn(head, 'traceparent'), address, startMs);
}

/** The span of an app request, from when it arrived. */
export function startAppRequestSpan(tracer: Tracer, method: string, target: string, traceparent: string | undefined, address: AppAddress, startMs: number): Span {
  const span = tracer.startSpan(`${method} ${address.app}.${address.project}`, 'server', traceparent ?? ROOT, startMs);
  span.setAttribute('http.request.method', method);
  span.setAttribute('url.path', pathOf(target));
  span.setAttribute('alto.app', address.app);
  span.setAttribute('alto.project', address.project);
  return span;
}

/** The acquire of an instance as a child span; `alto.wake_ms` (on it and its parent) when an instance of the app woke meanwhile. */
export function traceAcquire(tracer: Tracer, parent: Span, address: AppAddress, startMs: number, failure?: string): void {
  const span = tracer.startSpan('acquire instance', 'internal', parent, startMs);
  const woke = wakes.get(wakeKey(address.project, address.app));
  if (woke && woke.atMs >= startMs) {
    span.setAttribute('alto.wake_ms', woke.ms);
    span.setAttribute('alto.wake_from', woke.from);
    parent.setAttribute('alto.wake_ms', woke.ms);
  }
  if (failure !== undefined) span.fail(failure);
  span.end();
}

/** The exchange with the instance, a CLIENT span; its `traceparent` goes to the app. */
export function startUpstreamSpan(tracer: Tracer, parent: Span): Span {
  return tracer.startSpan('upstream', 'client', parent);
}

/** Ends an app request's spans with its status. */
export function endAppSpans(span: Span, upstream: Span | undefined, status: number): void {
  if (upstream) {
    upstream.setAttribute('http.response.status_code', status);
    if (status >= 500) upstream.fail(`answered ${status}`);
    upstream.end();
  }
  span.setAttribute('http.response.status_code', status);
  if (status >= 500) span.fail(`answered ${status}`);
  span.end();
}

const wakes = new Map<string, { atMs: number; ms: number; from: string }>();

function wakeKey(project: string, app: string): string {
  return `${project}\0${app}`;
}

/** An app's instance woke (compute's activation event): remembered for the acquire span of the requests that waited on it. */
export function recordWake(activation: { app: string; project: string; from: string; ms: number }): void {
  wakes.set(wakeKey(activation.project, activation.app), { atMs: performance.now(), ms: activation.ms, from: activation.from });
}

/** The first value of a header among a head's raw pairs (`name` in lower case). */
function headerIn(head: RequestHead, name: string): string | undefined {
  const headers = head.headers;
  for (let i = 0; i < headers.length; i += 2) {
    const candidate = headers[i];
    if (candidate.length === name.length && candidate.toLowerCase() === name) return headers[i + 1];
  }
  return undefined;
}

function pathOf(target: string): string {
  const query = target.indexOf('?');
  return query < 0 ? target : target.slice(0, query);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
