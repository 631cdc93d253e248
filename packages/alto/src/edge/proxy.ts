/**
 * @module edge/proxy
 * Serves apps through the edge. `AppProxy` forwards HTTP requests and websocket upgrades whose
 * Host is `<app>.<project>.<domain>` to an instance the resolver hands out; `TcpForwarder`
 * listens on one edge port per TCP app and pipes each connection to an instance.
 *
 * Bodies stream both ways and are never buffered, so uploads, downloads and server-sent events
 * pass through as they come. Every exchange acquires a target from the resolver and releases it
 * exactly once when the exchange ends, whatever the cause: that is how the scheduler counts
 * activity, so every path below ends in `release()`.
 */
import { request as httpRequest, type ClientRequest, type ClientRequestArgs, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Socket, createServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { AltoError, errors, isAltoError } from '../kit/errors.js';
import type { Logger } from '../kit/logger.js';
import { tracer, type Span } from '../kit/tracing.js';
import type { RequestRecorder } from '../platform/request-log.js';
import { DEFAULT_ENVIRONMENT } from '../platform/tenancy.js';
import type { AppAddress, AppResolver, ProxyTarget } from '../compute/apps/manager.js';
import { PeerHandshakeError } from '../compute/cluster/peers.js';
import { capConnections, DEFAULT_CONNECTION_CAPS, type ConnectionCaps } from './connections.js';
import { REQUEST_ID_PATTERN, requestIdOf } from './http.js';
import { VIA_HEADER } from './h1.js';
import { HSTS_VALUE, isTlsRequest } from './tls.js';
import { countUntilClose, endAppSpans, startAppRequestSpan, startTcpSpan, startUpstreamSpan, traceAcquire, traceAppWebsocket } from './traces.js';

// The port between the edge and compute: compute's app manager resolves an app to an instance.
export type { AppAddress, AppResolver, ProxyTarget } from '../compute/apps/manager.js';

export interface AppProxyOptions {
  /** The base domain apps live under, e.g. `localhost` for `<app>.<project>.localhost`. */
  domain: string;
  resolver: AppResolver;
  log: Logger;
  /** The app a custom domain names (edge/custom-domains.ts), for hosts outside `domain`. */
  aliasOf?: (host: string) => AppAddress | undefined;
  /** Where each app request is recorded as its answer ends (the project's request log). */
  requestLog?: RequestRecorder;
}

/** Headers that describe one hop, not the message: never forwarded (RFC 9110 section 7.6.1). */
const HOP_BY_HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const LABEL_PATTERN = /^[a-z0-9-]+$/;
/** A DNS label's limit (RFC 1035). */
const MAX_LABEL_LENGTH = 63;

/** Node's asynchronous `createConnection` form: no socket now, `oncreate` once the target's connect settles. */
function connectLater(target: ProxyTarget, oncreate: (error: Error | null, socket: Duplex) => void): undefined {
  target.connect().then(
    (socket) => oncreate(null, socket),
    (error: Error) => oncreate(error, undefined as unknown as Duplex),
  );
  return undefined;
}

/** `createConnection` for a request without an agent: the target's own way to connect. */
function connectionTo(target: ProxyTarget): NonNullable<ClientRequestArgs['createConnection']> {
  return (_options, oncreate) => connectLater(target, oncreate);
}
const PORT_SUFFIX_PATTERN = /:\d{1,5}$/;
/** Host headers whose app address is kept, so that a request's Host is read once. */
const MAX_KNOWN_HOSTS = 4096;
/** A pool to an instance address that served nothing for this long is closed. */
const POOL_IDLE_MS = 60_000;

/**
 * Keep-alive connections to one instance address (undici, HTTP/1.1), opened the way the
 * instance's driver needs (`ProxyTarget.connect`: a microVM's user-mode stack takes handshakes
 * slowly). `target` is the latest one handed out for the address.
 */
interface InstancePool {
  pool: Pool;
  target: ProxyTarget;
  usedAt: number;
}

export class AppProxy {
  private readonly domainSuffix: string;
  private readonly resolver: AppResolver;
  private readonly log: Logger;
  private readonly aliasOf: ((host: string) => AppAddress | undefined) | undefined;
  private readonly requestLog: RequestRecorder | undefined;
  /** Reuses connections to instances, by address: a warm request does not pay for a TCP handshake. */
  private readonly pools = new Map<string, InstancePool>();
  private readonly poolSweep: NodeJS.Timeout;
  /** Open upgrade requests and upgraded connections, ended by `close()`. */
  private readonly open = new Set<ClientRequest | Duplex>();
  /** Host headers read as an app's address, as they came (at most MAX_KNOWN_HOSTS, then forgotten at once). */
  private readonly hosts = new Map<string, AppAddress>();

  constructor(options: AppProxyOptions) {
    this.domainSuffix = '.' + options.domain.toLowerCase().replace(/^\.+|\.+$/g, '');
    this.resolver = options.resolver;
    this.log = options.log;
    this.aliasOf = options.aliasOf;
    this.requestLog = options.requestLog;
    this.poolSweep = setInterval(() => this.closeIdlePools(), POOL_IDLE_MS).unref();
  }

  /**
   * `<app>.<project>.<domain>` with an optional port, case-insensitive; labels are lower-case
   * letters, digits and dashes. Undefined for any other host (including `<domain>` itself).
   */
  addressOf(hostHeader: string | undefined): AppAddress | undefined {
    if (!hostHeader) return undefined;
    // Hosts under the apps domain are read once (every request names one); custom domains can
    // change, so are asked each time.
    const known = this.hosts.get(hostHeader);
    if (known) return known;
    const host = hostHeader.trim().toLowerCase().replace(PORT_SUFFIX_PATTERN, '').replace(/\.$/, '');
    if (!host.endsWith(this.domainSuffix)) return this.aliasOf?.(host);
    // `<app>.<project>` is the app of the project's default environment, `<app>.<env>.<project>` another's.
    const labels = host.slice(0, -this.domainSuffix.length).split('.');
    if (labels.length !== 2 && labels.length !== 3) return undefined;
    if (!labels.every((label) => label.length <= MAX_LABEL_LENGTH && LABEL_PATTERN.test(label))) return undefined;
    const [app, environment, project] = labels.length === 3 ? labels : [labels[0], DEFAULT_ENVIRONMENT, labels[1]];
    const address: AppAddress = environment === DEFAULT_ENVIRONMENT ? { app, project } : { app, project, environment };
    if (this.hosts.size >= MAX_KNOWN_HOSTS) this.hosts.clear();
    this.hosts.set(hostHeader, address);
    return address;
  }

  /** Proxies when the Host names an app and returns true; returns false touching nothing otherwise. */
  handleRequest(request: IncomingMessage, response: ServerResponse): boolean {
    const address = this.addressOf(request.headers.host);
    if (!address) return false;
    void this.proxyRequest(address, request, response).catch((error) => {
      this.log.error({ err: error, app: address.app, project: address.project }, 'app proxy failed');
      if (!response.headersSent) this.sendError(request, response, errors.internal());
      else response.destroy();
    });
    return true;
  }

  /** Same for an HTTP upgrade (websockets): forwards the upgrade and pipes both ways. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const address = this.addressOf(request.headers.host);
    if (!address) return false;
    void this.proxyUpgrade(address, request, socket, head).catch((error) => {
      this.log.error({ err: error, app: address.app, project: address.project }, 'app websocket proxy failed');
      socket.destroy();
    });
    return true;
  }

  /** Ends open upstream connections. */
  async close(): Promise<void> {
    clearInterval(this.poolSweep);
    for (const upstream of this.open) upstream.destroy();
    this.open.clear();
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map(({ pool }) => pool.destroy().catch(() => undefined)));
  }

  /** The pool to the target's address, made on first use. */
  private poolFor(target: ProxyTarget): Pool {
    const key = `${target.host}:${target.port}`;
    let entry = this.pools.get(key);
    if (!entry) {
      const created: InstancePool = {
        target,
        usedAt: Date.now(),
        pool: new Pool(`http://${key}`, {
          // No limit on a response's wait or length: long polls and server-sent events pass.
          headersTimeout: 0,
          bodyTimeout: 0,
          connect: (_options, callback) => {
            created.target.connect().then(
              (socket) => {
                // As undici's own connector does: a request's head and body go out at once.
                socket.setNoDelay(true);
                callback(null, socket);
              },
              (error: Error) => callback(error, null),
            );
          },
        }),
      };
      entry = created;
      this.pools.set(key, entry);
    }
    entry.target = target;
    entry.usedAt = Date.now();
    return entry.pool;
  }

  private closeIdlePools(): void {
    const cutoff = Date.now() - POOL_IDLE_MS;
    for (const [key, entry] of this.pools) {
      if (entry.usedAt >= cutoff) continue;
      this.pools.delete(key);
      void entry.pool.close().catch(() => undefined);
    }
  }

  private async proxyRequest(address: AppAddress, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const started = performance.now();
    let bytesOut = 0;
    // Once the answer ended, or the exchange did: whichever way, the request goes in the log
    // (the log of the node it came to first: one relayed here is in that node's).
    if (this.requestLog && request.headers[VIA_HEADER] === undefined) response.once('close', () => this.record(address, request, response, started, bytesOut));
    const span = tracer === undefined ? undefined : startAppRequestSpan(tracer, request.method ?? 'GET', request.url ?? '/', firstValue(request.headers.traceparent), address, started);
    let upstreamSpan: Span | undefined;
    if (span !== undefined) response.once('close', () => endAppSpans(span, upstreamSpan, response.statusCode));
    const target = await this.acquireOrAnswer(address, 'http', (failure) => this.sendError(request, response, failure), request.headers[VIA_HEADER] !== undefined);
    if (span !== undefined) traceAcquire(tracer!, span, address, started, target ? undefined : 'no instance');
    if (!target) return;
    const release = onceOnly(() => target.release(), this.log);
    // The client may have gone while the resolver woke an instance: nothing left to do.
    if (response.destroyed || request.destroyed) return release();
    response.once('close', release);
    // Either side of the exchange failing (a reset client, a write after it left) ends it quietly.
    request.on('error', () => response.destroy());
    response.on('error', () => response.destroy());

    let abort: ((reason?: Error) => void) | undefined;
    // A client that goes away aborts the upstream request.
    response.once('close', () => {
      if (!response.writableFinished) abort?.(new Error('the client went away'));
    });
    const headers = forwardedRequestHeaders(request, false, target.via);
    if (span !== undefined) {
      // The app's parent is the edge's upstream span, in place of the client's traceparent.
      upstreamSpan = startUpstreamSpan(tracer!, span);
      headers.traceparent = upstreamSpan.traceparent();
    }
    // Node's server answered any `Expect: 100-continue` itself; the body follows as it comes.
    delete headers.expect;
    const handler: Dispatcher.DispatchHandlers = {
      onConnect: (abortRequest) => {
        abort = abortRequest;
        if (response.destroyed) abortRequest(new Error('the client went away'));
      },
      onHeaders: (statusCode, rawHeaders, resume, statusText) => {
        const headers = endToEndRawHeaders(rawHeaders);
        // Over HTTPS the browser is told to keep to it, unless the app says otherwise itself. A
        // request another node relayed came over TLS from that node, not from the browser: that
        // node decides for its own client.
        if (isTlsRequest(request) && request.headers[VIA_HEADER] === undefined && !headers.some((name, index) => index % 2 === 0 && name.toLowerCase() === 'strict-transport-security')) headers.push('strict-transport-security', HSTS_VALUE);
        response.writeHead(statusCode, statusText, headers);
        // Server-sent events and other bodies of unknown length must reach the client as they come.
        if (!response.hasHeader('content-length')) response.flushHeaders();
        response.on('drain', resume);
        return true;
      },
      onData: (chunk) => {
        bytesOut += chunk.length;
        return response.write(chunk);
      },
      onComplete: () => response.end(),
      onError: (error) => {
        if (response.writableEnded || response.destroyed) return;
        if (response.headersSent) {
          response.destroy();
          return;
        }
        this.log.warn({ err: error, app: address.app, project: address.project }, 'app instance did not answer');
        this.sendError(request, response, appUnreachable(address, error));
      },
    };
    this.poolFor(target).dispatch(
      { path: request.url ?? '/', method: request.method as Dispatcher.HttpMethod, headers: headers as Record<string, string | string[]>, body: hasBody(request) ? request : null },
      handler,
    );
  }

  private async proxyUpgrade(address: AppAddress, request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    // A websocket may rightly stay quiet for long: the edge's idle timeout is not for it.
    if (socket instanceof Socket) socket.setTimeout(0);
    const started = performance.now();
    // Tracing on: the upgrade request's spans (as any app request's), then the websocket's own.
    const span = tracer === undefined ? undefined : startAppRequestSpan(tracer, request.method ?? 'GET', request.url ?? '/', firstValue(request.headers.traceparent), address, started);
    let upstreamSpan: Span | undefined;
    let spanEnded = false;
    const endSpans = (status: number) => {
      if (span === undefined || spanEnded) return;
      spanEnded = true;
      endAppSpans(span, upstreamSpan, status);
    };
    if (span !== undefined) socket.once('close', () => endSpans(499));
    const target = await this.acquireOrAnswer(address, 'http', (failure) => {
      endSpans(failure.status);
      writeRawError(socket, failure, requestIdOf(request));
    }, request.headers[VIA_HEADER] !== undefined);
    if (span !== undefined) traceAcquire(tracer!, span, address, started, target ? undefined : 'no instance');
    if (!target) return;
    const release = onceOnly(() => target.release(), this.log);
    if (socket.destroyed) return release();
    socket.once('close', release);
    if (head.length > 0) socket.unshift(head);

    const headers = forwardedRequestHeaders(request, true, target.via);
    if (span !== undefined) {
      upstreamSpan = startUpstreamSpan(tracer!, span);
      headers.traceparent = upstreamSpan.traceparent();
    }
    const upstream = httpRequest({
      host: target.host,
      port: target.port,
      method: request.method,
      path: request.url,
      headers,
      createConnection: connectionTo(target),
    });
    this.open.add(upstream);
    upstream.once('close', () => this.open.delete(upstream));
    socket.once('close', () => upstream.destroy());

    upstream.once('upgrade', (upstreamResponse, upstreamSocket, upstreamHead) => {
      this.open.add(upstreamSocket);
      upstreamSocket.on('error', () => socket.destroy());
      upstreamSocket.once('close', () => {
        this.open.delete(upstreamSocket);
        socket.destroy();
      });
      socket.once('close', () => upstreamSocket.destroy());
      if (upstreamHead.length > 0) upstreamSocket.unshift(upstreamHead);
      socket.write(rawResponseHead(upstreamResponse.statusCode ?? 101, upstreamResponse.statusMessage, upstreamResponse.rawHeaders));
      upstreamSocket.pipe(socket).pipe(upstreamSocket);
      if (span !== undefined) {
        endSpans(upstreamResponse.statusCode ?? 101);
        traceAppWebsocket(tracer!, span, address, started, socket, upstreamSocket);
      }
    });
    // The app declined the upgrade and answered plainly: pass that answer on and close.
    upstream.once('response', (upstreamResponse) => {
      upstreamResponse.on('error', () => socket.destroy());
      const answerHeaders = rawHeadersWithout(upstreamResponse.rawHeaders, (name) => HOP_BY_HOP_HEADERS.has(name) || name === 'content-length');
      endSpans(upstreamResponse.statusCode ?? 502);
      socket.write(rawResponseHead(upstreamResponse.statusCode ?? 502, upstreamResponse.statusMessage, [...answerHeaders, 'connection', 'close']));
      upstreamResponse.pipe(socket);
      upstreamResponse.once('aborted', () => socket.destroy());
    });
    upstream.on('error', (error) => {
      if (socket.destroyed) return;
      this.log.warn({ err: error, app: address.app, project: address.project }, 'app instance did not answer the upgrade');
      endSpans(502);
      writeRawError(socket, appUnreachable(address, error), requestIdOf(request));
    });
    upstream.end();
  }

  /**
   * Puts an app request served here in its project's request log: the body bytes it declared
   * (Content-Length; a chunked body counts 0 on this path) and the answer's body bytes.
   */
  private record(address: AppAddress, request: IncomingMessage, response: ServerResponse, started: number, bodyBytesOut: number): void {
    const status = response.headersSent ? response.statusCode : 499;
    const bytesIn = Number(request.headers['content-length']) || 0;
    const bytesOut = bodyBytesOut || Number(response.getHeader('content-length')) || 0;
    const given = request.headers['x-request-id'];
    this.requestLog?.recordApp(address.project, address.app, request.method ?? 'GET', request.url ?? '/', status, started, bytesIn, bytesOut, request.socket.remoteAddress, typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : undefined, address.environment);
  }

  /** The resolver's target, or undefined after answering its failure through `answer`. */
  private async acquireOrAnswer(
    address: AppAddress,
    kind: 'http' | 'tcp',
    answer: (failure: AltoError) => void,
    relayed = false,
  ): Promise<ProxyTarget | undefined> {
    try {
      return await this.resolver.acquire(address, kind, relayed);
    } catch (error) {
      if (!isAltoError(error)) this.log.error({ err: error, app: address.app, project: address.project }, 'app resolver failed');
      answer(isAltoError(error) ? error : errors.internal());
      return undefined;
    }
  }

  private sendError(request: IncomingMessage, response: ServerResponse, failure: AltoError): void {
    if (response.destroyed || response.headersSent) return;
    const payload = JSON.stringify(failure.toBody(requestIdOf(request)));
    response.writeHead(failure.status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(payload),
      ...failure.headers,
    });
    response.end(payload);
  }
}

export interface TcpForwarderOptions {
  /** The edge address to listen on. */
  host: string;
  /** The edge port; 0 picks a free one. */
  port: number;
  address: AppAddress;
  resolver: AppResolver;
  /** Open connections in all and per client address on this port (default: the edge's defaults). */
  connectionCaps?: ConnectionCaps;
  log: Logger;
}

/** A TCP connection with no bytes either way for this long no longer keeps its instance awake. */
const TCP_QUIET_MS = 1_000;

/** One edge port for one TCP app: each accepted connection is piped to an instance. */
export class TcpForwarder {
  private readonly options: TcpForwarderOptions;
  private readonly server: Server;
  private readonly open = new Set<Socket>();
  /** Each open connection's check for quiet (watchQuiet), run by one sweep. */
  private readonly quietChecks = new Set<(now: number) => void>();
  private quietSweep: NodeJS.Timeout | undefined;

  constructor(options: TcpForwarderOptions) {
    this.options = options;
    this.server = createServer((client) => void this.forward(client));
    capConnections(this.server, options.connectionCaps ?? DEFAULT_CONNECTION_CAPS, options.log);
  }

  /** Listens; resolves with the bound port (port 0 picks one). */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        const bound = this.server.address();
        resolve(typeof bound === 'object' && bound ? bound.port : this.options.port);
      });
    });
  }

  /** Stops listening and ends open connections. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.open) socket.destroy();
    this.open.clear();
    if (this.server.listening) await closed;
  }

  private async forward(client: Socket): Promise<void> {
    const { address, resolver, log } = this.options;
    this.track(client);
    client.on('error', () => client.destroy());
    // Tracing on: the connection is a span from accept to close, its acquire a child.
    const started = performance.now();
    const span = tracer === undefined ? undefined : startTcpSpan(tracer, address, started);
    const failSpan = (message: string) => {
      span?.fail(message);
      span?.end();
    };
    let target: ProxyTarget;
    try {
      target = await resolver.acquire(address, 'tcp');
    } catch (error) {
      if (isAltoError(error)) log.info({ app: address.app, project: address.project, status: error.status }, `tcp connection refused: ${error.detail}`);
      else log.error({ err: error, app: address.app, project: address.project }, 'app resolver failed');
      if (span !== undefined) traceAcquire(tracer!, span, address, started, 'no instance');
      failSpan(isAltoError(error) ? error.detail : 'the app resolver failed');
      client.destroy();
      return;
    }
    if (span !== undefined) traceAcquire(tracer!, span, address, started);
    const release = onceOnly(() => target.release(), log);
    if (client.destroyed) {
      span?.end();
      return release();
    }
    client.once('close', release);
    client.setNoDelay(true);
    let upstream: Socket;
    try {
      upstream = await target.connect();
    } catch (error) {
      log.warn({ err: error, app: address.app, project: address.project }, 'app instance refused a tcp connection');
      failSpan('the app instance refused the connection');
      client.destroy();
      return;
    }
    upstream.on('error', () => upstream.destroy());
    if (client.destroyed) {
      span?.end();
      return void upstream.destroy();
    }
    this.track(upstream);
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
    if (span !== undefined) countUntilClose(span, client, upstream);
    this.watchQuiet(client, upstream, target);
  }

  /**
   * A connection that moves no bytes for TCP_QUIET_MS stops counting as activity, so an app with
   * a client that keeps a connection open (a database pool) can still suspend; the next bytes
   * either way wake the same instance and count the connection again. Bytes the client sends
   * meanwhile wait in the kernel's buffers, and the instance reads them once resumed.
   */
  private watchQuiet(client: Socket, upstream: Socket, target: ProxyTarget): void {
    if (!target.quiet || !target.active) return;
    const { quiet, active } = target as Required<ProxyTarget>;
    let last = Date.now();
    let parked = false;
    const moved = () => {
      last = Date.now();
      if (!parked) return;
      parked = false;
      active().catch((error: Error) => {
        this.options.log.info({ app: this.options.address.app, project: this.options.address.project, reason: error.message }, 'a quiet tcp connection could not go on');
        client.destroy();
      });
    };
    client.on('data', moved);
    upstream.on('data', moved);
    const check = (now: number) => {
      if (parked || now - last < TCP_QUIET_MS) return;
      parked = true;
      quiet();
    };
    this.quietChecks.add(check);
    this.quietSweep ??= setInterval(() => {
      const now = Date.now();
      for (const each of this.quietChecks) each(now);
    }, TCP_QUIET_MS / 2).unref();
    client.once('close', () => {
      this.quietChecks.delete(check);
      if (this.quietChecks.size === 0 && this.quietSweep) {
        clearInterval(this.quietSweep);
        this.quietSweep = undefined;
      }
    });
  }

  private track(socket: Socket): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
  }
}

/** The request's headers as the instance should see them: end-to-end ones plus X-Forwarded-*. */
function forwardedRequestHeaders(request: IncomingMessage, upgrade: boolean, via: string | undefined): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = endToEndHeaders(request.headers);
  // Only to another node's edge, never to an instance (compute/cluster/routing.ts).
  delete headers[VIA_HEADER];
  if (via) headers[VIA_HEADER] = via;
  const priorFor = request.headers['x-forwarded-for'];
  const client = request.socket.remoteAddress ?? 'unknown';
  headers['x-forwarded-for'] = typeof priorFor === 'string' && priorFor.trim() ? `${priorFor}, ${client}` : client;
  // A TLS terminator in front of the edge says so; otherwise the client spoke plain HTTP.
  const priorProto = request.headers['x-forwarded-proto'];
  headers['x-forwarded-proto'] = typeof priorProto === 'string' && /^https?$/i.test(priorProto.trim()) ? priorProto.trim().toLowerCase() : 'http';
  if (request.headers.host) headers['x-forwarded-host'] = request.headers.host;
  if (upgrade) {
    headers.connection = 'upgrade';
    if (request.headers.upgrade) headers.upgrade = request.headers.upgrade;
  }
  return headers;
}

/** A header's value, the first when it came more than once. */
function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Whether a request carries a body (a length above 0, or chunks; over HTTP/2, a stream left open after its headers). */
function hasBody(request: IncomingMessage): boolean {
  if (request.httpVersionMajor === 2) return (request as unknown as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders === false;
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** An upstream answer's raw headers (undici's name, value, ... buffers) without the hop-by-hop ones. */
function endToEndRawHeaders(rawHeaders: Buffer[] | string[] | null): string[] {
  const pairs = (rawHeaders ?? []).map(String);
  const named = new Set<string>();
  for (let index = 0; index + 1 < pairs.length; index += 2) {
    if (pairs[index].toLowerCase() !== 'connection') continue;
    for (const token of pairs[index + 1].split(',')) if (token.trim()) named.add(token.trim().toLowerCase());
  }
  return rawHeadersWithout(pairs, (name) => HOP_BY_HOP_HEADERS.has(name) || named.has(name));
}

/** Headers without the hop-by-hop ones, including those the Connection header names. */
function endToEndHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
  const kept: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    // HTTP/2's pseudo-headers (`:path`, `:authority`, ...) say what HTTP/1.1's request line and Host say.
    if (value === undefined || HOP_BY_HOP_HEADERS.has(name) || named.has(name) || name.startsWith(':')) continue;
    kept[name] = value;
  }
  return kept;
}

function rawHeadersWithout(rawHeaders: string[], drop: (lowerCaseName: string) => boolean): string[] {
  const kept: string[] = [];
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    if (!drop(rawHeaders[index].toLowerCase())) kept.push(rawHeaders[index], rawHeaders[index + 1]);
  }
  return kept;
}

/** An HTTP/1.1 status line and headers, written by hand on a socket the HTTP server let go of. */
function rawResponseHead(status: number, message: string | undefined, headers: string[]): string {
  let head = `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || ''}\r\n`;
  for (let index = 0; index + 1 < headers.length; index += 2) head += `${headers[index]}: ${headers[index + 1]}\r\n`;
  return head + '\r\n';
}

export function writeRawError(socket: Duplex, failure: AltoError, requestId: string): void {
  if (socket.destroyed) return;
  const payload = JSON.stringify(failure.toBody(requestId));
  const headers = ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(payload)), 'connection', 'close'];
  for (const [name, value] of Object.entries(failure.headers ?? {})) headers.push(name, value);
  socket.end(rawResponseHead(failure.status, undefined, headers) + payload);
}

export function appUnreachable(address: AppAddress, cause: Error): AltoError {
  // A bad gateway: the instance refused or died before answering. Not the caller's fault.
  return new AltoError('unavailable', 502, `app "${address.app}" in project "${address.project}" did not answer (${failureOf(cause)}); try again`);
}

/**
 * What the caller is told of why an instance or a peer node did not answer: a system or TLS
 * error by its code alone (`ECONNREFUSED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`), since its message
 * names the instance's or the node's address inside the cloud; Alto's own sentences (a timeout,
 * a failed handshake with a named node) as they are. The log keeps the whole error.
 */
function failureOf(cause: Error): string {
  if (cause instanceof PeerHandshakeError) return cause.summary;
  const code = (cause as NodeJS.ErrnoException).code;
  return typeof code === 'string' && code !== '' ? code : cause.message;
}

/** `release` wrapped so that it runs once, and a resolver bug in it cannot crash the edge. */
function onceOnly(release: () => void, log: Logger): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    try {
      release();
    } catch (error) {
      log.error({ err: error }, 'releasing an app instance failed');
    }
  };
}
