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
import { InfoLine, type Logger } from '../kit/logger.js';
import { tracer, type Span } from '../kit/tracing.js';
import { admitCall, admitCallNow, finishCall, recordRefusedCall, type AdmittedCall } from '../platform/calls.js';
import type { Platform } from '../platform/platform.js';
import type { CallContext, EndpointDefinition, PublicCallContext, ServiceDefinition, Tenant } from '../platform/service.js';
import { ENVIRONMENT_HEADER } from '../platform/tenancy.js';
import { isTextPostgresCannotHold } from '../store/index.js';
import {
  credentialsFrom,
  credentialsOf,
  DEFAULT_BODY_TIMEOUT_MS,
  jsonNestsDeeperThan,
  MAX_JSON_DEPTH,
  originFrom,
  originOf,
  parseJsonObject,
  refuseUnportableText,
  requestIdFrom,
  requestIdOf,
  type BodyCallback,
  type RequestTarget,
} from './http.js';
import type { EdgeMetrics, RouteCallMetrics } from './metrics.js';
import { NodeExchange, type ApiExchange } from './exchange.js';
import { requestSchemaOf } from './openapi.js';
import { endApiSpan, endStreamSpan, runHandlerTraced, startApiSpan } from './traces.js';

interface Route {
  service: ServiceDefinition;
  endpointName: string;
  endpoint: EndpointDefinition;
  /** JSON types of the request's top-level fields, to coerce query-string values. */
  fieldTypes: Map<string, string>;
  /** The route's calls by status and their latency, for /metrics. */
  metrics: RouteCallMetrics;
  /** The line logged for each call, bound to the service and endpoint. */
  callLine: InfoLine;
}

/**
 * The context of an HTTP call. The logger bound to the request id, the abort signal, the origin
 * and the client's address cost a little each, and most calls need none: each is made the first
 * time a handler asks.
 */
class HttpCallContext implements PublicCallContext {
  private boundLog: Logger | undefined;
  private aborted: AbortController | undefined;

  constructor(
    readonly requestId: string,
    readonly tenant: Tenant | undefined,
    readonly platform: Platform,
    private readonly parentLog: Logger,
    private readonly exchange: ApiExchange,
  ) {}

  get log(): Logger {
    return (this.boundLog ??= this.parentLog.child({ req_id: this.requestId }));
  }

  get origin(): string | undefined {
    return originFrom(this.exchange.header('host'), this.exchange.header('x-forwarded-proto'));
  }

  get clientAddress(): string | undefined {
    return plainAddress(this.exchange.remoteAddress);
  }

  /** Aborted when the client goes away before the answer is sent (at once if it already has). */
  get signal(): AbortSignal {
    if (!this.aborted) {
      const controller = (this.aborted = new AbortController());
      this.exchange.onClientGone(() => controller.abort());
    }
    return this.aborted.signal;
  }
}

/**
 * One HTTP API call, step by step: route and key, body, admission, handler, answer. Each step
 * runs as soon as what it needs is known: at once when the key, the limits and the handler's
 * answer come from memory (the common case), or when the promise of a store lookup settles.
 * Awaiting at every step instead cost each call a trip through the microtask queue per step.
 */
class HttpApiCall {
  private readonly started = performance.now();
  private readonly requestId: string;
  private route: Route | undefined;
  private tenant: Tenant | undefined;
  private call: AdmittedCall | undefined;
  private context: HttpCallContext | undefined;
  private bytesIn = 0;
  private finished = false;
  /** The call's span when tracing is on (edge/traces.ts). */
  private readonly span: Span | undefined;

  constructor(
    private readonly api: Api,
    private readonly exchange: ApiExchange,
    private readonly url: RequestTarget,
  ) {
    this.requestId = requestIdFrom(exchange.header('x-request-id'));
    if (tracer !== undefined) this.span = startApiSpan(tracer, exchange.method, url.pathname, exchange.header('traceparent'), this.started);
  }

  start(): void {
    try {
      const route = (this.route = this.api.routeOf(this.url.pathname));
      const method = this.exchange.method;
      if (method !== 'POST' && method !== 'GET') {
        throw errors.methodNotAllowed(`use POST for ${this.url.pathname} (or GET with query-string parameters)`);
      }
      // Traced: the key's lookup in the store (when this process does not know it) is a child of the call's span.
      const tenant = this.span !== undefined ? tracer!.withSpan(this.span, () => this.authenticate(route)) : this.authenticate(route);
      if (isPromise(tenant)) tenant.then((known) => this.authenticated(known), (error) => this.fail(error));
      else this.authenticated(tenant);
    } catch (error) {
      this.fail(error);
    }
  }

  private authenticate(route: Route): Tenant | undefined | Promise<Tenant> {
    return this.api.authenticate(route, credentialsFrom(this.exchange.header('authorization')), this.exchange.header(ENVIRONMENT_HEADER));
  }

  private authenticated(tenant: Tenant | undefined): void {
    try {
      this.tenant = tenant;
      // A valid key refused here is still a call it made: metered, so usage counts every call.
      this.api.authorize(this.route!, tenant);
      // Only after the key is checked: a caller without one gets a small body, a bad key none.
      this.api.readBody(this.route!.endpoint, this.exchange, tenant !== undefined, (error, body) => (error ? this.fail(error) : this.bodyRead(body!)));
    } catch (error) {
      this.fail(error);
    }
  }

  private bodyRead(body: Buffer): void {
    try {
      this.bytesIn = body.length;
      // After the body is read, so a refusal keeps the connection usable for the retry.
      const call = this.span !== undefined ? tracer!.withSpan(this.span, () => this.api.admit(this.route!, this.tenant)) : this.api.admit(this.route!, this.tenant);
      if (isPromise(call)) call.then((admitted) => this.admitted(admitted, body), (error) => this.fail(error));
      else this.admitted(call, body);
    } catch (error) {
      this.fail(error);
    }
  }

  private admitted(call: AdmittedCall | undefined, body: Buffer): void {
    try {
      this.call = call;
      const route = this.route!;
      const input = this.api.validate(route, parseJsonObject(body), this.url.searchParams);
      if (route.endpoint.stream) {
        throw errors.badRequest(`${route.service.name}/${route.endpointName} streams: open a websocket on this path`);
      }
      const context = (this.context = new HttpCallContext(this.requestId, this.tenant, this.api.platform, this.api.log, this.exchange));
      const output =
        this.span !== undefined
          ? runHandlerTraced(tracer!, this.span, `${route.service.name}/${route.endpointName}`, () => (route.endpoint.access === 'public' ? route.endpoint.handler(input, context) : route.endpoint.handler(input, keyed(context))))
          : route.endpoint.access === 'public'
            ? route.endpoint.handler(input, context)
            : route.endpoint.handler(input, keyed(context));
      if (isPromise(output)) output.then((value) => this.answer(value), (error) => this.fail(error));
      else this.answer(output);
    } catch (error) {
      this.fail(error);
    }
  }

  private answer(output: unknown): void {
    let bytesOut: number;
    try {
      const headers = ['x-request-id', this.requestId];
      const rateHeaders = this.call?.admission?.headers;
      if (rateHeaders) for (const name in rateHeaders) headers.push(name, rateHeaders[name]);
      bytesOut = this.exchange.send(200, JSON.stringify(output), headers, false);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.finish(200, bytesOut);
  }

  private fail(error: unknown): void {
    if (this.finished) return;
    const { exchange, requestId } = this;
    const failure = this.api.toAltoError(error, requestId, this.context?.log);
    let bytesOut = 0;
    if (!exchange.answered) {
      const headers: string[] = [];
      const named = { ...this.call?.admission?.headers, ...failure.headers };
      for (const name in named) if (name !== 'x-request-id') headers.push(name, named[name]);
      headers.push('x-request-id', requestId);
      try {
        // Answering before the body was read would leave it in the socket: close after replying.
        bytesOut = exchange.send(failure.status, JSON.stringify(failure.toBody(requestId)), headers, !exchange.complete);
      } catch (sendError) {
        this.api.log.error({ err: sendError, req_id: requestId }, 'answering an API call with its error failed');
        exchange.destroy();
      }
    } else {
      exchange.destroy();
    }
    this.finish(failure.status, bytesOut);
  }

  /** Meters, counts and logs the call, and puts it in its project's request log, once. */
  private finish(status: number, bytesOut: number): void {
    if (this.finished) return;
    this.finished = true;
    if (this.span !== undefined) endApiSpan(this.span, status, this.requestId, this.route?.service.name, this.route?.endpointName, this.tenant?.projectId);
    try {
      this.api.finish(this.route, this.tenant, status, this.bytesIn, bytesOut, this.started, this.requestId, this.call);
      const tenant = this.tenant;
      if (tenant) {
        const exchange = this.exchange;
        this.api.platform.requestLog?.recordApi(tenant.projectId, tenant.keyPrefix, exchange.method, this.url.pathname, status, this.started, this.bytesIn, bytesOut, exchange.remoteAddress, this.requestId);
      }
    } catch (error) {
      this.api.log.error({ err: error, req_id: this.requestId }, 'finishing an API call failed');
    }
  }
}

/**
 * The largest body read for a call without a key (public endpoints: sign-up, login, prices), so
 * callers nobody knows hold little memory however many connections they open.
 */
export const UNAUTHENTICATED_BODY_BYTES = 64 * 1024;
/** Paths remembered by `routeOf` at most (a few per endpoint in practice); past it, it starts again. */
const MAX_ROUTE_PATHS = 4096;
/** Bytes queued on a websocket before a stream waits for the client to read. */
const MAX_STREAM_BUFFER = 1 << 20;
/** How long a new websocket may wait before sending its request. */
const FIRST_MESSAGE_TIMEOUT_MS = 30_000;
/** How long a stream waits for a client that reads nothing before closing it as too slow. */
export const STREAM_STALL_TIMEOUT_MS = 30_000;

export class Api {
  private readonly routes = new Map<string, Route>();
  /** Routes by the paths callers used for them, so a path is split once, not on every call. */
  private readonly routesByPath = new Map<string, Route>();
  private readonly sockets = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  /** The line logged for a call that matched no route. */
  private readonly unroutedCallLine: InfoLine;

  constructor(
    readonly platform: Platform,
    private readonly metrics: EdgeMetrics,
    readonly log: Logger,
    private readonly streamStallTimeoutMs = STREAM_STALL_TIMEOUT_MS,
    private readonly bodyTimeoutMs = DEFAULT_BODY_TIMEOUT_MS,
  ) {
    this.unroutedCallLine = new InfoLine(log, 'api call');
    for (const service of platform.listServices()) {
      for (const [endpointName, endpoint] of Object.entries(service.endpoints)) {
        this.routes.set(`${service.name}/${endpointName}`, {
          service,
          endpointName,
          endpoint,
          fieldTypes: fieldTypesOf(endpoint),
          metrics: metrics.calls.route(service.name, endpointName),
          callLine: new InfoLine(log.child({ service: service.name, endpoint: endpointName }), 'api call'),
        });
      }
    }
  }

  /** Splits `/v1/id/Generate` or `/v1/id/Id/Generate` into the route, or throws 404. */
  routeOf(pathname: string): Route {
    const known = this.routesByPath.get(pathname);
    if (known) return known;
    const parts = pathname.slice('/v1/'.length).split('/').filter(Boolean);
    let serviceName: string | undefined;
    let endpointName: string | undefined;
    if (parts.length === 2) [serviceName, endpointName] = parts;
    else if (parts.length === 3 && parts[0].toLowerCase() === parts[1].toLowerCase()) [serviceName, , endpointName] = parts;
    if (!serviceName || !endpointName) {
      throw errors.notFound(`"${pathname}" is not an API path; use /v1/{service}/{Endpoint}`);
    }
    const route = this.routes.get(`${serviceName}/${endpointName}`);
    if (route) {
      if (this.routesByPath.size >= MAX_ROUTE_PATHS) this.routesByPath.clear();
      this.routesByPath.set(pathname, route);
      return route;
    }
    this.platform.findEndpoint(serviceName, endpointName); // throws the precise 404
    throw errors.notFound(`no endpoint at ${pathname}`);
  }

  /**
   * The tenant of a valid key (undefined for a public call without one), or 401/403: at once for
   * a key this process knows, else a promise of the store's answer. `environment` is the
   * X-Alto-Environment header: the environment of its project an admin or owner key acts in,
   * recorded for the project the first time this process sees it (a promise then, at once after).
   */
  authenticate(route: Route, credentials: string | undefined, environment?: string): Tenant | undefined | Promise<Tenant> {
    const access = route.endpoint.access ?? 'key';
    if (access === 'public' && credentials === undefined) return undefined;
    if (credentials === undefined) {
      throw errors.unauthorized('an API key is required: send "Authorization: Bearer <key>"');
    }
    const { tenancy } = this.platform;
    const tenant = tenancy.knownTenant(credentials) ?? tenancy.authenticate(credentials);
    if (environment === undefined) return tenant;
    return isPromise(tenant) ? tenant.then((known) => tenancy.actInEnvironment(known, environment)) : tenancy.actInEnvironment(tenant, environment);
  }

  /** Whether the key may call this endpoint (its role and scopes), or 403. */
  authorize(route: Route, tenant: Tenant | undefined): void {
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

  validate(route: Route, body: Record<string, unknown>, query: URLSearchParams): unknown {
    if (query.size > 0) {
      for (const [name, value] of query) {
        if (name === 'key') continue;
        body[name] = coerceQueryValue(value, route.fieldTypes.get(name));
      }
      // `%00` in a query string decodes to a NUL; the body was checked as it was parsed.
      refuseUnportableText(body, 'the query');
    }
    const parsed = route.endpoint.request.safeParse(body);
    if (!parsed.success) throw errors.badRequest(describeIssues(parsed.error));
    return parsed.data;
  }

  /**
   * Checks the call against its limits; undefined for a call without a key (nothing to count).
   * At once when this process's leases decide, else a promise of the store's answer.
   */
  admit(route: Route, tenant: Tenant | undefined): AdmittedCall | undefined | Promise<AdmittedCall> {
    if (!tenant) return undefined;
    const { service, endpointName } = route;
    return admitCallNow(this.platform, tenant, service.name, endpointName) ?? admitCall(this.platform, tenant, service.name, endpointName);
  }

  /** Reads the call's body within its limit (see `readBodyFor`), then tells `done`. */
  readBody(endpoint: EndpointDefinition, exchange: ApiExchange, withKey: boolean, done: BodyCallback): void {
    readBodyFor(endpoint, exchange, this.platform.config.maxBodyBytes, withKey, this.bodyTimeoutMs, done);
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

  /** Answers an HTTP API call on Node's HTTP server. */
  handleHttp(request: IncomingMessage, response: ServerResponse, url: RequestTarget): void {
    new HttpApiCall(this, new NodeExchange(request, response), url).start();
  }

  /** Answers an API call however it came (edge/lane.ts reads them off raw connections). */
  serve(exchange: ApiExchange, url: RequestTarget): void {
    new HttpApiCall(this, exchange, url).start();
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
    // Traced: the stream is one span from the upgrade to its close; the key's and limits' store calls are its children.
    const traceparent = request.headers.traceparent;
    const span = tracer === undefined ? undefined : startApiSpan(tracer, 'GET', url.pathname, typeof traceparent === 'string' ? traceparent : undefined, performance.now());
    try {
      route = knownRoute = this.routeOf(url.pathname);
      if (!route.endpoint.stream) {
        throw errors.badRequest(`${route.service.name}/${route.endpointName} is not a stream: call it with POST, not a websocket`);
      }
      // Browsers cannot set a websocket's headers: the environment may come in the query, as the key may.
      const environment = request.headers[ENVIRONMENT_HEADER] ?? url.searchParams.get('environment') ?? undefined;
      const checkKey = async () => {
        tenant = await this.authenticate(route, credentialsOf(request, url.searchParams), typeof environment === 'string' ? environment : undefined);
        this.authorize(route, tenant);
        call = await this.admit(route, tenant);
      };
      await (span !== undefined ? tracer!.withSpan(span, checkKey) : checkKey());
    } catch (error) {
      const failure = this.toAltoError(error, requestId, log);
      const payload = JSON.stringify(failure.toBody(requestId));
      const extraHeaders = Object.entries(failure.headers ?? {})
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join('');
      socket.end(
        `HTTP/1.1 ${failure.status} ${failure.toBody().status}\r\ncontent-type: application/json\r\n${extraHeaders}` +
          `content-length: ${Buffer.byteLength(payload)}\r\nconnection: close\r\n\r\n${payload}`,
      );
      // A call refused for its limits is metered (with no price); one with no valid key is not.
      this.finish(tenant && knownRoute, tenant, failure.status, 0, payload.length, performance.now(), requestId);
      if (span !== undefined) endApiSpan(span, failure.status, requestId, knownRoute?.service.name, knownRoute?.endpointName, (tenant as Tenant | undefined)?.projectId);
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
      // Closed before its request came: the stream's span ends with it.
      let requested = false;
      if (span !== undefined) ws.once('close', () => requested || endStreamSpan(span, 499, requestId, route.service.name, route.endpointName, tenant?.projectId, 0, 0, 0));
      ws.once('message', (data) => {
        requested = true;
        clearTimeout(waiting);
        const serve = () => this.serveStream(ws, route, tenant, data, url, requestId, log, call, originOf(request), clientAddressOf(request), span);
        void (span !== undefined ? tracer!.withSpan(span, serve) : serve());
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
    span?: Span,
  ): Promise<void> {
    const started = performance.now();
    let messages = 0;
    const aborted = new AbortController();
    ws.once('close', () => aborted.abort());
    let status = 200;
    let bytesOut = 0;
    const raw = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    try {
      const query = new URLSearchParams(url.searchParams);
      // The key and the environment in the query are the connection's, not the stream's request.
      query.delete('environment');
      const input = this.validate(route, parseJsonObject(raw), query);
      const context = this.context(requestId, tenant, aborted.signal, log, origin, clientAddress);
      // handleUpgrade upgrades stream endpoints only.
      if (!route.endpoint.stream) throw errors.badRequest(`${route.service.name}/${route.endpointName} is not a stream`);
      for await (const item of route.endpoint.handler(input, keyed(context))) {
        if (aborted.signal.aborted) break;
        const message = JSON.stringify(item);
        bytesOut += message.length;
        messages += 1;
        await sendWithBackpressure(ws, message, this.streamStallTimeoutMs);
        // Closed while we waited (the client left, or read too slowly): stop pulling items.
        if (ws.readyState !== ws.OPEN) break;
      }
      if (ws.readyState === ws.OPEN) ws.close(1000, 'end of stream');
    } catch (error) {
      const failure = this.toAltoError(error, requestId, log);
      status = failure.status;
      if (ws.readyState === ws.OPEN) {
        ws.send(JSON.stringify(failure.toBody(requestId)));
        // 4000 + HTTP status, so clients can tell a 400 from a 500 without parsing the reason.
        ws.close(4000 + failure.status, failure.detail.slice(0, 120));
      }
    } finally {
      this.finish(route, tenant, status, raw.length, bytesOut, started, requestId, call);
      if (span !== undefined) endStreamSpan(span, status, requestId, route.service.name, route.endpointName, tenant?.projectId, raw.length, bytesOut, messages);
      // A stream is in the request log once it ends, with its status and how long it lasted.
      if (tenant) this.platform.requestLog?.recordApi(tenant.projectId, tenant.keyPrefix, 'GET', url.pathname, status, started, raw.length, bytesOut, clientAddress, requestId);
    }
  }

  /** The error to answer; one that is not the caller's fault is logged (with `log`, else bound to the request id). */
  toAltoError(error: unknown, requestId: string, log?: Logger): AltoError {
    if (isAltoError(error)) return error;
    if (error instanceof z.ZodError) return errors.badRequest(describeIssues(error));
    if (isTextPostgresCannotHold(error)) {
      return errors.badRequest('a text value of the request holds a NUL character (\\u0000) or half of a surrogate pair, which the PostgreSQL store cannot keep; remove it');
    }
    (log ?? this.log.child({ req_id: requestId })).error({ err: error }, 'unexpected error while serving a request');
    return errors.internal();
  }

  finish(
    route: Route | undefined,
    tenant: Tenant | undefined,
    status: number,
    bytesIn: number,
    bytesOut: number,
    /** When the call began, from `performance.now()`. */
    started: number,
    requestId: string,
    call?: AdmittedCall,
  ): void {
    const seconds = (performance.now() - started) / 1e3;
    const service = route?.service.name ?? 'unknown';
    const endpoint = route?.endpointName ?? 'unknown';
    (route?.metrics ?? this.metrics.calls.route(service, endpoint)).record(status, seconds);
    if (call) finishCall(this.platform, call, status, bytesIn, bytesOut);
    // A valid key refused before admission (scopes, limits) is still a call it made.
    else if (route && tenant) recordRefusedCall(this.platform, tenant, service, endpoint, status, bytesIn, bytesOut);
    const ms = Math.round(seconds * 1e6) / 1e3;
    if (route) route.callLine.write({ req_id: requestId, status, ms });
    else this.unroutedCallLine.write({ req_id: requestId, service, endpoint, status, ms });
  }

  closeStreams(): void {
    for (const client of this.sockets.clients) client.close(1001, 'server shutting down');
  }
}

/**
 * Reads a body within the server's limit, or the endpoint's larger one (a 413 carries its hint);
 * without a key, within UNAUTHENTICATED_BODY_BYTES.
 */
function readBodyFor(endpoint: EndpointDefinition, exchange: ApiExchange, serverLimit: number, withKey: boolean, stallTimeoutMs: number, done: BodyCallback): void {
  const largeBody = endpoint.largeBody;
  if (!withKey) return exchange.readBody(Math.min(serverLimit, UNAUTHENTICATED_BODY_BYTES), stallTimeoutMs, done);
  if (!largeBody) return exchange.readBody(serverLimit, stallTimeoutMs, done);
  exchange.readBody(Math.max(serverLimit, largeBody.maxBytes), stallTimeoutMs, (error, body) =>
    done(isAltoError(error) && error.status === 413 ? errors.payloadTooLarge(`${error.detail}; ${largeBody.hint}`) : error, body),
  );
}

/** Whether a step's result is still to come (a promise, or any thenable `await` would wait for). */
function isPromise<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function';
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
  return plainAddress(request.socket.remoteAddress);
}

function plainAddress(address: string | undefined): string | undefined {
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
