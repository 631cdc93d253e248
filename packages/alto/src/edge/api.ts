/**
 * @module edge/api
 * The API front door: `POST /v1/{service}/{Endpoint}` (and the long form
 * `/v1/{service}/{Service}/{Endpoint}`) over HTTP, and the same paths over websocket for
 * streams. For every call: find the endpoint, check the key and its scopes, read the body, admit
 * the call under the project's and key's limits (rate, monthly quota, spend cap), validate the
 * body (query-string parameters merged in), run the handler, meter, and answer JSON; every
 * failure answers micro's error shape.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { z } from 'zod';
import { AltoError, errors, isAltoError } from '../kit/errors.js';
import type { Logger } from '../kit/logger.js';
import { admitCall, finishCall, recordRefusedCall, type AdmittedCall } from '../platform/calls.js';
import type { Platform } from '../platform/platform.js';
import type { CallContext, EndpointDefinition, PublicCallContext, ServiceDefinition, Tenant } from '../platform/service.js';
import { credentialsOf, DEFAULT_BODY_TIMEOUT_MS, jsonNestsDeeperThan, MAX_JSON_DEPTH, originOf, parseJsonObject, readBody, requestIdOf, sendJson, type RequestTarget } from './http.js';
import type { EdgeMetrics } from './metrics.js';
import { requestSchemaOf } from './openapi.js';

interface Route {
  service: ServiceDefinition;
  endpointName: string;
  endpoint: EndpointDefinition;
  /** JSON types of the request's top-level fields, to coerce query-string values. */
  fieldTypes: Map<string, string>;
  /** The route's request counters by status and its duration histogram, made on first use. */
  counters: Map<number, CounterChild>;
  duration?: HistogramChild;
}

type CounterChild = ReturnType<EdgeMetrics['requests']['labels']>;
type HistogramChild = ReturnType<EdgeMetrics['duration']['labels']>;

/**
 * The context of an HTTP call. The logger bound to the request id and the abort signal cost a
 * little each, and most calls need neither: both are made the first time a handler asks.
 */
class HttpCallContext implements PublicCallContext {
  private boundLog: Logger | undefined;
  private aborted: AbortController | undefined;

  constructor(
    readonly requestId: string,
    readonly tenant: Tenant | undefined,
    readonly platform: Platform,
    private readonly parentLog: Logger,
    private readonly response: ServerResponse,
    readonly origin: string | undefined,
    readonly clientAddress: string | undefined,
  ) {}

  get log(): Logger {
    return (this.boundLog ??= this.parentLog.child({ req_id: this.requestId }));
  }

  /** Aborted when the client goes away before the answer is sent (at once if it already has). */
  get signal(): AbortSignal {
    if (!this.aborted) {
      const controller = (this.aborted = new AbortController());
      const response = this.response;
      if (response.destroyed) {
        if (!response.writableFinished) controller.abort();
      } else {
        response.once('close', () => {
          if (!response.writableFinished) controller.abort();
        });
      }
    }
    return this.aborted.signal;
  }
}

/**
 * The largest body read for a call without a key (public endpoints: sign-up, login, prices), so
 * callers nobody knows hold little memory however many connections they open.
 */
export const UNAUTHENTICATED_BODY_BYTES = 64 * 1024;
/** Bytes queued on a websocket before a stream waits for the client to read. */
const MAX_STREAM_BUFFER = 1 << 20;
/** How long a new websocket may wait before sending its request. */
const FIRST_MESSAGE_TIMEOUT_MS = 30_000;
/** How long a stream waits for a client that reads nothing before closing it as too slow. */
export const STREAM_STALL_TIMEOUT_MS = 30_000;

export class Api {
  private readonly routes = new Map<string, Route>();
  private readonly sockets = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });

  constructor(
    private readonly platform: Platform,
    private readonly metrics: EdgeMetrics,
    private readonly log: Logger,
    private readonly streamStallTimeoutMs = STREAM_STALL_TIMEOUT_MS,
    private readonly bodyTimeoutMs = DEFAULT_BODY_TIMEOUT_MS,
  ) {
    for (const service of platform.listServices()) {
      for (const [endpointName, endpoint] of Object.entries(service.endpoints)) {
        this.routes.set(`${service.name}/${endpointName}`, {
          service,
          endpointName,
          endpoint,
          fieldTypes: fieldTypesOf(endpoint),
          counters: new Map(),
        });
      }
    }
  }

  /** Splits `/v1/id/Generate` or `/v1/id/Id/Generate` into the route, or throws 404. */
  private routeOf(pathname: string): Route {
    const parts = pathname.slice('/v1/'.length).split('/').filter(Boolean);
    let serviceName: string | undefined;
    let endpointName: string | undefined;
    if (parts.length === 2) [serviceName, endpointName] = parts;
    else if (parts.length === 3 && parts[0].toLowerCase() === parts[1].toLowerCase()) [serviceName, , endpointName] = parts;
    if (!serviceName || !endpointName) {
      throw errors.notFound(`"${pathname}" is not an API path; use /v1/{service}/{Endpoint}`);
    }
    const route = this.routes.get(`${serviceName}/${endpointName}`);
    if (route) return route;
    this.platform.findEndpoint(serviceName, endpointName); // throws the precise 404
    throw errors.notFound(`no endpoint at ${pathname}`);
  }

  /** The tenant of a valid key (undefined for a public call without one), or 401/403. */
  private async authenticate(route: Route, credentials: string | undefined): Promise<Tenant | undefined> {
    const access = route.endpoint.access ?? 'key';
    if (access === 'public' && credentials === undefined) return undefined;
    if (credentials === undefined) {
      throw errors.unauthorized('an API key is required: send "Authorization: Bearer <key>"');
    }
    return this.platform.tenancy.authenticate(credentials);
  }

  /** Whether the key may call this endpoint (its role and scopes), or 403. */
  private authorize(route: Route, tenant: Tenant | undefined): void {
    if (!tenant) return;
    const access = route.endpoint.access ?? 'key';
    if (access === 'manage' && tenant.role === 'project') {
      throw errors.forbidden(`${route.service.name}/${route.endpointName} needs an admin or account owner key, not a project key`);
    }
    if (access === 'key' && !tenant.scopes.includes('*') && !tenant.scopes.includes(route.service.name)) {
      throw errors.forbidden(
        `this key may not call the "${route.service.name}" service; its scopes are ${tenant.scopes.join(', ')}`,
      );
    }
  }

  private validate(route: Route, body: Record<string, unknown>, query: URLSearchParams): unknown {
    for (const [name, value] of query) {
      if (name === 'key') continue;
      body[name] = coerceQueryValue(value, route.fieldTypes.get(name));
    }
    const parsed = route.endpoint.request.safeParse(body);
    if (!parsed.success) throw errors.badRequest(describeIssues(parsed.error));
    return parsed.data;
  }

  /** Checks the call against its limits; undefined for a call without a key (nothing to count). */
  private async admit(route: Route, tenant: Tenant | undefined): Promise<AdmittedCall | undefined> {
    if (!tenant) return undefined;
    return admitCall(this.platform, tenant, route.service.name, route.endpointName);
  }

  private context(
    requestId: string,
    tenant: Tenant | undefined,
    signal: AbortSignal,
    log: Logger,
    origin?: string,
    clientAddress?: string,
  ): PublicCallContext {
    return { requestId, tenant, platform: this.platform, log, signal, origin, clientAddress };
  }

  /** Answers an HTTP API call. */
  async handleHttp(request: IncomingMessage, response: ServerResponse, url: RequestTarget): Promise<void> {
    const started = process.hrtime.bigint();
    const requestId = requestIdOf(request);
    let route: Route | undefined;
    let tenant: Tenant | undefined;
    let context: HttpCallContext | undefined;
    let status = 200;
    let bytesIn = 0;
    let bytesOut = 0;
    let call: AdmittedCall | undefined;
    try {
      route = this.routeOf(url.pathname);
      if (request.method !== 'POST' && request.method !== 'GET') {
        throw errors.methodNotAllowed(`use POST for ${url.pathname} (or GET with query-string parameters)`);
      }
      tenant = await this.authenticate(route, credentialsOf(request));
      // A valid key refused here is still a call it made: metered, so usage counts every call.
      this.authorize(route, tenant);
      // Only after the key is checked: a caller without one gets a small body, a bad key none.
      const body = await readBodyFor(route.endpoint, request, this.platform.config.maxBodyBytes, tenant !== undefined, this.bodyTimeoutMs);
      bytesIn = body.length;
      // After the body is read, so a refusal keeps the connection usable for the retry.
      call = await this.admit(route, tenant);
      const input = this.validate(route, parseJsonObject(body), url.searchParams);
      if (route.endpoint.stream) {
        throw errors.badRequest(`${route.service.name}/${route.endpointName} streams: open a websocket on this path`);
      }
      context = new HttpCallContext(requestId, tenant, this.platform, this.log, response, originOf(request), clientAddressOf(request));
      const output = route.endpoint.access === 'public' ? await route.endpoint.handler(input, context) : await route.endpoint.handler(input, keyed(context));
      const rateHeaders = call?.admission?.headers;
      bytesOut = sendJson(response, 200, output, rateHeaders ? { ...rateHeaders, 'x-request-id': requestId } : { 'x-request-id': requestId });
    } catch (error) {
      const failure = this.toAltoError(error, context?.log ?? this.log.child({ req_id: requestId }));
      status = failure.status;
      if (!response.headersSent) {
        // Answering before the body was read would leave it in the socket: close after replying.
        const headers: Record<string, string> = { ...call?.admission?.headers, ...failure.headers, 'x-request-id': requestId };
        if (!request.complete) headers.connection = 'close';
        bytesOut = sendJson(response, status, failure.toBody(requestId), headers);
      } else {
        response.destroy();
      }
    } finally {
      this.finish(route, tenant, status, bytesIn, bytesOut, started, requestId, call);
    }
  }

  /**
   * Accepts a websocket on the path of a stream endpoint: checks route and key before upgrading.
   * Any other path is refused with a plain HTTP answer and the socket closed, never taken over.
   */
  async handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer, url: RequestTarget): Promise<void> {
    const requestId = requestIdOf(request);
    const log = this.log.child({ req_id: requestId });
    let route: Route;
    let knownRoute: Route | undefined;
    let tenant: Tenant | undefined;
    let call: AdmittedCall | undefined;
    try {
      route = knownRoute = this.routeOf(url.pathname);
      if (!route.endpoint.stream) {
        throw errors.badRequest(`${route.service.name}/${route.endpointName} is not a stream: call it with POST, not a websocket`);
      }
      tenant = await this.authenticate(route, credentialsOf(request, url.searchParams));
      this.authorize(route, tenant);
      call = await this.admit(route, tenant);
    } catch (error) {
      const failure = this.toAltoError(error, log);
      const payload = JSON.stringify(failure.toBody(requestId));
      const extraHeaders = Object.entries(failure.headers ?? {})
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join('');
      socket.end(
        `HTTP/1.1 ${failure.status} ${failure.toBody().status}\r\ncontent-type: application/json\r\n${extraHeaders}` +
          `content-length: ${Buffer.byteLength(payload)}\r\nconnection: close\r\n\r\n${payload}`,
      );
      // A call refused for its limits is metered (with no price); one with no valid key is not.
      this.finish(tenant && knownRoute, tenant, failure.status, 0, payload.length, process.hrtime.bigint(), requestId);
      return;
    }
    this.sockets.handleUpgrade(request, socket, head, (ws) => {
      // A malformed frame (bad opcode, reserved bits, unmasked, oversize) is an 'error' here:
      // ws has already begun closing the connection with the matching code; nothing else to do.
      ws.on('error', (error) => log.info({ err: error }, 'websocket closed on a protocol error'));
      this.metrics.streamsOpen.inc();
      ws.once('close', () => this.metrics.streamsOpen.dec());
      const waiting = setTimeout(() => ws.close(4408, 'send the request as the first message'), FIRST_MESSAGE_TIMEOUT_MS);
      ws.once('close', () => clearTimeout(waiting));
      ws.once('message', (data) => {
        clearTimeout(waiting);
        void this.serveStream(ws, route, tenant, data, url, requestId, log, call, originOf(request), clientAddressOf(request));
      });
    });
  }

  private async serveStream(
    ws: WebSocket,
    route: Route,
    tenant: Tenant | undefined,
    data: RawData,
    url: RequestTarget,
    requestId: string,
    log: Logger,
    call: AdmittedCall | undefined,
    origin?: string,
    clientAddress?: string,
  ): Promise<void> {
    const started = process.hrtime.bigint();
    const aborted = new AbortController();
    ws.once('close', () => aborted.abort());
    let status = 200;
    let bytesOut = 0;
    const raw = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    try {
      const input = this.validate(route, parseJsonObject(raw), url.searchParams);
      const context = this.context(requestId, tenant, aborted.signal, log, origin, clientAddress);
      // handleUpgrade upgrades stream endpoints only.
      if (!route.endpoint.stream) throw errors.badRequest(`${route.service.name}/${route.endpointName} is not a stream`);
      for await (const item of route.endpoint.handler(input, keyed(context))) {
        if (aborted.signal.aborted) break;
        const message = JSON.stringify(item);
        bytesOut += message.length;
        await sendWithBackpressure(ws, message, this.streamStallTimeoutMs);
        // Closed while we waited (the client left, or read too slowly): stop pulling items.
        if (ws.readyState !== ws.OPEN) break;
      }
      if (ws.readyState === ws.OPEN) ws.close(1000, 'end of stream');
    } catch (error) {
      const failure = this.toAltoError(error, log);
      status = failure.status;
      if (ws.readyState === ws.OPEN) {
        ws.send(JSON.stringify(failure.toBody(requestId)));
        // 4000 + HTTP status, so clients can tell a 400 from a 500 without parsing the reason.
        ws.close(4000 + failure.status, failure.detail.slice(0, 120));
      }
    } finally {
      this.finish(route, tenant, status, raw.length, bytesOut, started, requestId, call);
    }
  }

  private toAltoError(error: unknown, log: Logger): AltoError {
    if (isAltoError(error)) return error;
    if (error instanceof z.ZodError) return errors.badRequest(describeIssues(error));
    log.error({ err: error }, 'unexpected error while serving a request');
    return errors.internal();
  }

  private finish(
    route: Route | undefined,
    tenant: Tenant | undefined,
    status: number,
    bytesIn: number,
    bytesOut: number,
    started: bigint,
    requestId: string,
    call?: AdmittedCall,
  ): void {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const service = route?.service.name ?? 'unknown';
    const endpoint = route?.endpointName ?? 'unknown';
    if (route) {
      let counter = route.counters.get(status);
      if (!counter) route.counters.set(status, (counter = this.metrics.requests.labels(service, endpoint, String(status))));
      counter.inc();
      (route.duration ??= this.metrics.duration.labels(service, endpoint)).observe(seconds);
    } else {
      this.metrics.requests.inc({ service, endpoint, code: String(status) });
      this.metrics.duration.observe({ service, endpoint }, seconds);
    }
    if (call) finishCall(this.platform, call, status, bytesIn, bytesOut);
    // A valid key refused before admission (scopes, limits) is still a call it made.
    else if (route && tenant) recordRefusedCall(this.platform, tenant, service, endpoint, status, bytesIn, bytesOut);
    this.log.info({ req_id: requestId, service, endpoint, status, ms: Math.round(seconds * 1e6) / 1e3 }, 'api call');
  }

  closeStreams(): void {
    for (const client of this.sockets.clients) client.close(1001, 'server shutting down');
  }
}

/**
 * Reads a body within the server's limit, or the endpoint's larger one (a 413 carries its hint);
 * without a key, within UNAUTHENTICATED_BODY_BYTES.
 */
async function readBodyFor(endpoint: EndpointDefinition, request: IncomingMessage, serverLimit: number, withKey: boolean, stallTimeoutMs: number): Promise<Buffer> {
  const largeBody = endpoint.largeBody;
  if (!withKey) return readBody(request, Math.min(serverLimit, UNAUTHENTICATED_BODY_BYTES), stallTimeoutMs);
  if (!largeBody) return readBody(request, serverLimit, stallTimeoutMs);
  try {
    return await readBody(request, Math.max(serverLimit, largeBody.maxBytes), stallTimeoutMs);
  } catch (error) {
    if (isAltoError(error) && error.status === 413) throw errors.payloadTooLarge(`${error.detail}; ${largeBody.hint}`);
    throw error;
  }
}

/**
 * Sends at once while little is queued; past MAX_STREAM_BUFFER, waits until this message is
 * flushed, so the producer slows to the client's pace. A client that reads nothing for
 * `stallTimeoutMs` is closed (4408, "slow consumer"): it would otherwise hold the stream open
 * and its data in memory for ever. The reason reaches it after what it has not read yet.
 */
async function sendWithBackpressure(ws: WebSocket, message: string, stallTimeoutMs: number): Promise<void> {
  if (ws.readyState !== ws.OPEN) return;
  if (ws.bufferedAmount < MAX_STREAM_BUFFER) {
    ws.send(message);
    return;
  }
  await new Promise<void>((resolve) => {
    const stalled = setTimeout(() => {
      ws.close(4408, `slow consumer: the client read nothing for ${Math.round(stallTimeoutMs / 1000)} s`);
      resolve();
    }, stallTimeoutMs);
    ws.send(message, () => {
      clearTimeout(stalled);
      resolve();
    });
  });
}

/**
 * The context of an endpoint that needs a key. The edge authenticated the key before reading
 * the body, so the tenant is there; a call that reached here without one is refused, not served.
 */
function keyed(context: PublicCallContext): CallContext {
  if (!context.tenant) throw errors.unauthorized('an API key is required: send "Authorization: Bearer <key>"');
  return context as CallContext;
}

/** The TCP peer's address; `::ffff:127.0.0.1` is written `127.0.0.1`, so one client has one address. */
function clientAddressOf(request: IncomingMessage): string | undefined {
  const address = request.socket.remoteAddress;
  return address?.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address;
}

function fieldTypesOf(endpoint: EndpointDefinition): Map<string, string> {
  const schema = requestSchemaOf(endpoint) as { properties?: Record<string, { type?: string }> };
  const types = new Map<string, string>();
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    if (typeof property.type === 'string') types.set(name, property.type);
  }
  return types;
}

/** Query strings carry text; give each value the JSON type its field expects. */
function coerceQueryValue(value: string, type: string | undefined): unknown {
  switch (type) {
    case 'number':
    case 'integer':
      return value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
    case 'boolean':
      return value === 'true' ? true : value === 'false' ? false : value;
    case 'object':
    case 'array':
      if (jsonNestsDeeperThan(value, MAX_JSON_DEPTH)) {
        throw errors.badRequest(`a query-string value nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep; flatten it`);
      }
      try {
        return JSON.parse(value);
      } catch {
        return type === 'array' ? value.split(',') : value;
      }
    default:
      return value;
  }
}

/** `type: expected string, received number; count: too big: expected <=10000` */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const path = issue.path.length > 0 ? issue.path.join('.') : 'body';
      const message = issue.message.replace(/^Invalid input: /, '');
      return `${path}: ${message}`;
    })
    .join('; ');
}
