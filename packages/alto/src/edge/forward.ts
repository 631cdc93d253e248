/**
 * @module edge/forward
 * Forwards HTTP/1.1 connections to apps at the connection level. The edge's HTTP server parses
 * every request into objects, and a client library builds every request again for the instance;
 * for an app, the edge needs far less: where each request and response begins and ends, and its
 * Host. So a connection whose requests name apps (`<app>.<project>.<domain>`) is read here,
 * before Node's HTTP server sees it. Each request head is read strictly (edge/h1.ts) and written
 * again for the instance (hop-by-hop headers dropped, X-Forwarded-* added), and the body and the
 * answer pass through as bytes, counted only to find their ends.
 *
 * Per-request accounting stays as it was: each request acquires an instance from the resolver
 * (which counts it, and wakes or starts an instance if needed) and releases it exactly once, when
 * its answer has ended or the exchange failed. Connections to instances are kept per address and
 * reused by any client connection, one exchange at a time.
 *
 * A plain API call on such a connection is answered here too, by the lane (edge/lane.ts).
 * Anything else goes to Node's HTTP server as it came, at a request boundary: a connection whose
 * request names another host and is not a plain API call (the console, health, an API call with
 * a chunked or large body), or a request the strict reading declines
 * (not plain HTTP/1.1, ambiguous framing, a head past 16 KiB). Node answers or refuses those as it
 * always has, and keeps the connection from then on.
 */
import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import { AltoError, errors, isAltoError } from '../kit/errors.js';
import type { Logger } from '../kit/logger.js';
import { tracer, type Span } from '../kit/tracing.js';
import type { AppAddress, AppResolver, ProxyTarget } from '../compute/apps/gateway.js';
import type { RequestRecorder } from '../platform/request-log.js';
import {
  Field,
  framerFor,
  FramingError,
  headEnd,
  MAX_REQUEST_HEAD_BYTES,
  MAX_RESPONSE_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  responseFraming,
  SPAN,
  SPAN_COLON,
  SPAN_KIND,
  SPAN_START,
  SPAN_VALUE,
  SPAN_VALUE_END,
  type BodyFramer,
  type HeadLines,
  type RequestHead,
  type ResponseHead,
  VIA_HEADER,
} from './h1.js';
import { appUnreachable, writeRawError } from './proxy.js';
import { REQUEST_ID_PATTERN, requestIdFrom } from './http.js';
import { endAppSpans, startAppSpan, startUpstreamSpan, traceAcquire, traceAppWebsocket } from './traces.js';

export interface ConnectionForwarderOptions {
  /** The app a Host names, or undefined for any other host. */
  addressOf(host: string): AppAddress | undefined;
  resolver: AppResolver;
  log: Logger;
  /** A request head must arrive whole within this (as Node's headersTimeout). */
  headersTimeoutMs: number;
  /** A connection between requests is closed after this (as Node's keepAliveTimeout). */
  keepAliveTimeoutMs: number;
  /** A connection that moves no bytes for this long is closed (as the edge's socket timeout). */
  idleTimeoutMs: number;
  /** Where each app request is recorded as its answer ends (the project's request log). */
  requestLog?: RequestRecorder;
  /** Requests for no app that are served here rather than by Node's HTTP server (edge/lane.ts). */
  lane?: {
    accepts(head: RequestHead): boolean;
    exchange(head: RequestHead, connection: LaneConnection): ConnectionExchange & { start(): void };
  };
}

/** What a client connection runs, one request at a time: an exchange forwarded to an app, or one the lane serves. */
export interface ConnectionExchange {
  /** The request's body is still coming: the client's bytes are its. */
  readonly readingBody: boolean;
  fromClient(chunk: Buffer): void;
  /** The connection closed. */
  abort(): void;
  /** Called by the forwarder's sweep, to end an exchange that waited too long. */
  checkTimers?(now: number): void;
}

/** The client connection as an exchange the lane serves sees it. */
export interface LaneConnection {
  readonly socket: Socket;
  /** The bytes read past the head, handed over once. */
  takeBuffered(): Buffer;
  /** Bytes past this request's body: the next request's. */
  keepAhead(rest: Buffer): void;
  /** The answer was written: read the next request, or close. */
  exchangeDone(closeAfter: boolean): void;
}

/** Hop-by-hop request headers (RFC 9110 section 7.6.1), never passed on, with X-Forwarded-* (written anew) and x-alto-via. Transfer-Encoding is kept: the chunks pass through as they came. */
const REQUEST_DROPPED = bits(Field.Connection, Field.KeepAlive, Field.Upgrade, Field.Trailer, Field.HopByHop, Field.Via, Field.ForwardedFor, Field.ForwardedProto, Field.ForwardedHost);
/** Hop-by-hop response headers dropped; Transfer-Encoding and Trailer stay with the chunks they describe. */
const RESPONSE_DROPPED = bits(Field.Connection, Field.KeepAlive, Field.Upgrade, Field.HopByHop);
/** The same for a 101 answer, which keeps its Upgrade. */
const SWITCHING_DROPPED = bits(Field.Connection, Field.KeepAlive, Field.HopByHop);
/** Answer bodies up to this long that came with the head go out in the same write, copied once. */
const MAX_BODY_WITH_HEAD = 16 * 1024;
/** Bytes a client may send ahead (pipelined requests) while one exchange runs, before reading pauses. */
const MAX_AHEAD_BYTES = 64 * 1024;
/** After an error answer with `Connection: close`, the rest of the client's request is read and dropped for this long. */
const LINGER_MS = 5_000;
/** Idle connections kept per instance address. */
const MAX_IDLE_PER_ADDRESS = 256;
/** An instance that names no keep-alive timeout is taken to close idle connections after this (Node's default is 5 s). */
const DEFAULT_UPSTREAM_KEEP_ALIVE_MS = 5_000;
/** An idle connection is not reused this close to the instance's keep-alive timeout: it may be closing. */
const KEEP_ALIVE_MARGIN_MS = 1_000;
const EMPTY = Buffer.alloc(0);

const enum Phase {
  /** Waiting for (the rest of) a request head. */
  Head,
  /** A request is being answered. */
  Exchange,
  /** Upgraded: bytes are piped both ways. */
  Tunnel,
  /** Answered with close, or handed to Node's HTTP server: nothing more is read here. */
  Done,
}

export class ConnectionForwarder {
  readonly options: ConnectionForwarderOptions;
  readonly upstreams = new UpstreamPool();
  private readonly clients = new Set<ClientConnection>();
  private readonly sweep: NodeJS.Timeout;
  private serve: ((socket: Socket) => void) | undefined;
  draining = false;

  constructor(options: ConnectionForwarderOptions) {
    this.options = options;
    const every = Math.max(100, Math.min(1_000, Math.floor(Math.min(options.headersTimeoutMs, options.keepAliveTimeoutMs) / 4)));
    this.sweep = setInterval(() => this.sweepTimers(), every).unref();
  }

  /**
   * Puts the forwarder in front of `server`: its own connection listener (the only one it may
   * have yet) runs only for connections the forwarder hands over. Listeners added later (such as
   * the connection caps, which prepend theirs) still run first.
   */
  interpose(server: HttpServer): void {
    const listeners = server.listeners('connection') as ((socket: Socket) => void)[];
    if (listeners.length !== 1) throw new Error(`the HTTP server must have only its own connection listener, not ${listeners.length}`);
    const [serve] = listeners;
    server.removeListener('connection', serve);
    this.serve = (socket) => serve.call(server, socket);
    server.on('connection', (socket: Socket) => {
      if (socket.destroyed) return;
      this.accept(socket);
    });
  }

  /** Reads a new connection's first request to decide who serves it. */
  accept(socket: Socket): void {
    const client = new ClientConnection(this, socket);
    this.clients.add(client);
  }

  /** Gives the connection, with the bytes read ahead, to Node's HTTP server for good. */
  handOff(socket: Socket, ahead: Buffer): void {
    if (!this.serve) throw new Error('the forwarder was not put in front of an HTTP server');
    if (ahead.length > 0) socket.unshift(ahead);
    this.serve(socket);
    socket.resume();
  }

  forget(client: ClientConnection): void {
    this.clients.delete(client);
  }

  /** Stops taking exchanges: idle connections close now, busy ones once their answer ends. */
  drain(): void {
    this.draining = true;
    for (const client of this.clients) client.closeIfIdle();
  }

  /** Ends every connection at once (the drain's deadline passed, or Alto stops). */
  close(): void {
    this.draining = true;
    clearInterval(this.sweep);
    for (const client of this.clients) client.destroy();
    this.clients.clear();
    this.upstreams.close();
  }

  private sweepTimers(): void {
    const now = Date.now();
    for (const client of this.clients) client.checkTimers(now);
    this.upstreams.sweep(now);
  }
}

/** One client connection while the forwarder serves it. */
class ClientConnection implements LaneConnection {
  private buffer: Buffer = EMPTY;
  /** Where the search for the head's end resumes in `buffer`. */
  private searched = 0;
  private phase = Phase.Head;
  private exchange: ConnectionExchange | undefined;
  /** When the connection went idle, or the current head's first bytes came. */
  private since = Date.now();
  readonly forwardedFor: string;

  constructor(
    readonly forwarder: ConnectionForwarder,
    readonly socket: Socket,
  ) {
    this.forwardedFor = socket.remoteAddress ?? 'unknown';
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('timeout', this.onTimeout);
    socket.setTimeout(forwarder.options.idleTimeoutMs);
    // As Node's HTTP server does for its connections: answers go out as written.
    socket.setNoDelay(true);
  }

  private readonly onData = (chunk: Buffer): void => {
    switch (this.phase) {
      case Phase.Head:
        this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
        this.readHead();
        return;
      case Phase.Exchange:
        if (this.exchange?.readingBody) return this.exchange.fromClient(chunk);
        this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
        if (this.buffer.length > MAX_AHEAD_BYTES) this.socket.pause();
        return;
      default:
      // Done: the rest of a refused request, read and dropped until the client closes.
    }
  };

  private readonly onEnd = (): void => {
    // As Node's HTTP server does: a client's FIN aborts an exchange in flight (its 'close' releases).
    if (this.phase !== Phase.Tunnel) this.socket.destroy();
  };

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.forwarder.forget(this);
    this.exchange?.abort();
    this.exchange = undefined;
    this.phase = Phase.Done;
  };

  private readonly onTimeout = (): void => {
    // No bytes either way for the idle timeout, as the edge's HTTP server does.
    this.socket.destroy();
  };

  /** Reads the head in the buffer, if whole, and starts its exchange (or hands the connection over). */
  private readHead(): void {
    const end = headEnd(this.buffer, this.searched);
    if (end < 0) {
      // A TLS handshake (0x16: a client trying HTTPS first, as registry clients do) never ends a
      // head: Node's server refuses it at once, so the client falls back to plain HTTP.
      if (this.buffer.length > MAX_REQUEST_HEAD_BYTES || this.buffer[0] === 0x16) return this.handOff();
      if (this.searched === 0) this.since = Date.now();
      this.searched = this.buffer.length;
      return;
    }
    this.searched = 0;
    const head = end <= MAX_REQUEST_HEAD_BYTES ? parseRequestHead(this.buffer, end) : undefined;
    if (!head || this.forwarder.draining) return this.handOff();
    const address = this.forwarder.options.addressOf(head.host);
    if (address) {
      this.buffer = this.buffer.subarray(end);
      this.phase = Phase.Exchange;
      this.begin(head, address);
      return;
    }
    const lane = this.forwarder.options.lane;
    if (!lane?.accepts(head)) return this.handOff();
    this.buffer = this.buffer.subarray(end);
    this.phase = Phase.Exchange;
    const exchange = lane.exchange(head, this);
    this.exchange = exchange;
    exchange.start();
  }

  private begin(head: RequestHead, address: AppAddress): void {
    const started = performance.now();
    const span = tracer === undefined ? undefined : startAppSpan(tracer, head, address, started);
    // The common case in this turn: an instance of an app this node runs, with room. Taken
    // without a promise, so the request goes out in the tick that read it.
    const now = head.relayed ? undefined : this.forwarder.options.resolver.tryAcquire?.(address);
    if (now) {
      if (span !== undefined) traceAcquire(tracer!, span, address, started);
      return this.startExchange(head, address, now, started, span);
    }
    void this.acquireThenStart(head, address, started, span);
  }

  /** Waits for an instance (a wake, a start, a queue, another node) and starts the exchange on it, or refuses. */
  private async acquireThenStart(head: RequestHead, address: AppAddress, started: number, span: Span | undefined): Promise<void> {
    let target: ProxyTarget;
    try {
      target = await this.forwarder.options.resolver.acquire(address, 'http', head.relayed);
    } catch (error) {
      if (!isAltoError(error)) this.forwarder.options.log.error({ err: error, app: address.app, project: address.project }, 'app resolver failed');
      const failure = isAltoError(error) ? error : errors.internal();
      recordAppRequest(this, head, address, failure.status, started, 0, 0);
      if (span !== undefined) {
        traceAcquire(tracer!, span, address, started, failure.message);
        endAppSpans(span, undefined, failure.status);
      }
      return this.refuse(failure, head);
    }
    if (span !== undefined) traceAcquire(tracer!, span, address, started);
    if (this.phase !== Phase.Exchange || this.socket.destroyed) {
      span?.end();
      return target.release();
    }
    this.startExchange(head, address, target, started, span);
  }

  private startExchange(head: RequestHead, address: AppAddress, target: ProxyTarget, started: number, span: Span | undefined): void {
    const exchange = new Exchange(this, head, address, target, started, span);
    this.exchange = exchange;
    exchange.start();
  }

  /** Bytes the client sent beyond the current request's body: the next request's, kept for later. */
  keepAhead(rest: Buffer): void {
    this.buffer = rest.length === 0 ? EMPTY : this.buffer.length === 0 ? rest : Buffer.concat([this.buffer, rest]);
    if (this.buffer.length > MAX_AHEAD_BYTES) this.socket.pause();
  }

  /** The body bytes already read with the head (or after it), handed to the exchange once. */
  takeBuffered(): Buffer {
    const taken = this.buffer;
    this.buffer = EMPTY;
    return taken;
  }

  /** The exchange ended well: next request, or close when asked. */
  exchangeDone(closeAfter: boolean): void {
    this.exchange = undefined;
    if (closeAfter || this.forwarder.draining || this.socket.destroyed) {
      this.phase = Phase.Done;
      this.socket.end();
      this.lingerThenDestroy();
      return;
    }
    this.phase = Phase.Head;
    this.since = Date.now();
    if (this.socket.isPaused()) this.socket.resume();
    // Not from here: a lane exchange may end inside readHead, and pipelined requests would nest.
    if (this.buffer.length > 0) queueMicrotask(this.nextHead);
  }

  private readonly nextHead = (): void => {
    if (this.phase === Phase.Head && this.buffer.length > 0) this.readHead();
  };

  /** Answers an error with `Connection: close` and stops. */
  refuse(failure: AltoError, head: RequestHead | undefined): void {
    this.exchange = undefined;
    this.phase = Phase.Done;
    if (this.socket.destroyed) return;
    writeRawError(this.socket, failure, requestIdIn(head));
    this.socket.resume();
    this.lingerThenDestroy();
  }

  /** Switched protocols: from now on bytes are piped both ways, untouched, until either side closes. */
  tunnel(upstream: Socket, toClient: Buffer, toUpstream: Buffer): void {
    this.phase = Phase.Tunnel;
    this.exchange = undefined;
    const socket = this.socket;
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('timeout', this.onTimeout);
    // A websocket may rightly stay quiet for long.
    socket.setTimeout(0);
    if (toClient.length > 0) socket.write(toClient);
    if (toUpstream.length > 0) upstream.write(toUpstream);
    upstream.on('error', () => upstream.destroy());
    upstream.once('close', () => socket.destroy());
    socket.once('close', () => upstream.destroy());
    socket.pipe(upstream).pipe(socket);
    if (socket.isPaused()) socket.resume();
  }

  closeIfIdle(): void {
    if (this.phase === Phase.Head && this.buffer.length === 0) this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  checkTimers(now: number): void {
    if (this.phase === Phase.Exchange) this.exchange?.checkTimers?.(now);
    if (this.phase !== Phase.Head) return;
    const { headersTimeoutMs, keepAliveTimeoutMs } = this.forwarder.options;
    if (this.buffer.length === 0) {
      if (now - this.since >= keepAliveTimeoutMs) this.socket.destroy();
    } else if (now - this.since >= headersTimeoutMs) {
      this.phase = Phase.Done;
      this.socket.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      this.lingerThenDestroy();
    }
  }

  private handOff(): void {
    const socket = this.socket;
    this.phase = Phase.Done;
    this.forwarder.forget(this);
    socket.pause();
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    socket.removeListener('timeout', this.onTimeout);
    socket.setTimeout(0);
    const ahead = this.buffer;
    this.buffer = EMPTY;
    this.forwarder.handOff(socket, ahead);
  }

  private lingerThenDestroy(): void {
    setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
  }
}

/** One request and its answer over one instance connection. */
class Exchange implements ConnectionExchange {
  private upstream: Upstream | undefined;
  private readonly requestFramer: BodyFramer;
  private response: ResponseHead | undefined;
  private responseFramer: BodyFramer | undefined;
  private pendingHead: Buffer = EMPTY;
  /** Bytes of the answer went to the client. */
  private answered = false;
  /** The instance sent bytes beyond the answer, or broke off: its connection is not reused. */
  private spoiled = false;
  private finished = false;
  /** Bytes came from the instance for this exchange. */
  private received = false;
  private retried = false;
  /** A new instance connection is being opened: body bytes wait in `firstBody`. */
  private connecting = false;
  private closeAfter: boolean;
  private readonly forwardedHead: Buffer;
  /** The body bytes read with the head, kept until the instance connection is there. */
  private firstBody: Buffer = EMPTY;
  readingBody = false;
  /** Bytes of the request's body, and of the answer to the client, for the request log. */
  private bytesIn = 0;
  private bytesOut = 0;
  /** The exchange with the instance as a span, when tracing is on; the app gets its traceparent. */
  private readonly upstreamSpan: Span | undefined;

  constructor(
    private readonly client: ClientConnection,
    private readonly head: RequestHead,
    private readonly address: AppAddress,
    private readonly target: ProxyTarget,
    /** `performance.now()` when the request's head was read. */
    private readonly started: number,
    /** The request's span, when tracing is on. */
    private readonly span: Span | undefined,
  ) {
    this.requestFramer = framerFor(head.framing);
    this.closeAfter = head.close;
    if (span !== undefined) this.upstreamSpan = startUpstreamSpan(tracer!, span);
    this.forwardedHead = forwardedRequestHead(head, client.forwardedFor, target.via, this.upstreamSpan?.traceparent());
  }

  /** Sends the request on an idle instance connection at once, or once a new one is open. */
  start(): void {
    const pool = this.client.forwarder.upstreams;
    // The body bytes that came with the head: this request's, up to its framing's end.
    const buffered = this.client.takeBuffered();
    let used: number;
    try {
      used = this.requestFramer.take(buffered, 0);
    } catch (error) {
      return this.fail(errors.badRequest(`the request's chunked body is malformed: ${(error as Error).message}`));
    }
    this.firstBody = buffered.subarray(0, used);
    this.bytesIn = used;
    this.client.keepAhead(buffered.subarray(used));
    this.readingBody = !this.requestFramer.done;
    const idle = pool.takeIdle(this.target);
    if (idle) this.send(idle);
    else this.connectAndSend();
  }

  /** Opens a new instance connection and sends the request on it once it is open. */
  private connectAndSend(): void {
    this.connecting = true;
    this.client.forwarder.upstreams.connect(this.target).then(
      (upstream) => {
        this.connecting = false;
        if (this.finished) upstream.socket.destroy();
        else this.send(upstream);
      },
      (error: Error) => {
        this.connecting = false;
        // The answer names only the error's code; the log keeps what it said (a refused certificate, a peer's address).
        this.client.forwarder.options.log.warn({ err: error, app: this.address.app, project: this.address.project }, 'app instance could not be reached');
        this.fail(appUnreachable(this.address, error));
      },
    );
  }

  private send(upstream: Upstream): void {
    this.upstream = upstream;
    upstream.owner = this;
    const socket = upstream.socket;
    if (this.firstBody.length === 0) socket.write(this.forwardedHead);
    else {
      socket.cork();
      socket.write(this.forwardedHead);
      socket.write(this.firstBody);
      socket.uncork();
      this.firstBody = EMPTY;
    }
    if (this.readingBody && this.client.socket.isPaused()) this.client.socket.resume();
  }

  /** More of the request's body from the client. */
  fromClient(chunk: Buffer): void {
    let used: number;
    try {
      used = this.requestFramer.take(chunk, 0);
    } catch (error) {
      return this.fail(errors.badRequest(`the request's chunked body is malformed: ${(error as Error).message}`));
    }
    this.bytesIn += used;
    if (this.requestFramer.done) {
      this.readingBody = false;
      this.client.keepAhead(chunk.subarray(used));
    }
    const body = used === chunk.length ? chunk : chunk.subarray(0, used);
    if (!this.upstream || this.connecting) {
      // Still connecting: keep it for the first write.
      this.firstBody = this.firstBody.length === 0 ? body : Buffer.concat([this.firstBody, body]);
      if (this.firstBody.length > MAX_AHEAD_BYTES) this.client.socket.pause();
      return;
    }
    if (!this.upstream.socket.write(body)) {
      this.client.socket.pause();
      this.upstream.socket.once('drain', () => this.client.socket.resume());
    }
  }

  /** Bytes from the instance. */
  fromUpstream(chunk: Buffer): void {
    this.received = true;
    if (this.finished) {
      this.spoil();
      return;
    }
    if (!this.responseFramer) {
      this.pendingHead = this.pendingHead.length === 0 ? chunk : Buffer.concat([this.pendingHead, chunk]);
      this.readResponseHead();
      return;
    }
    this.passBody(chunk, 0);
  }

  /** Reads heads from `pendingHead`: interim ones pass on, a 101 turns into a tunnel, the final one starts the body. */
  private readResponseHead(): void {
    for (;;) {
      const end = headEnd(this.pendingHead);
      if (end > MAX_RESPONSE_HEAD_BYTES || (end < 0 && this.pendingHead.length > MAX_RESPONSE_HEAD_BYTES))
        return this.failUpstream(new Error(`its answer's head is longer than ${MAX_RESPONSE_HEAD_BYTES} bytes`));
      if (end < 0) return;
      const head = parseResponseHead(this.pendingHead, end);
      if (typeof head === 'string') return this.failUpstream(new Error(`its answer is not valid HTTP: ${head}`));
      const rest = this.pendingHead.subarray(end);
      this.pendingHead = EMPTY;
      if (head.status === 101) {
        if (!this.head.upgrade) return this.failUpstream(new Error('it switched protocols unasked'));
        return this.switchProtocols(head, rest);
      }
      if (head.status < 200) {
        this.answered = true;
        const interim = clientResponseHead(head, false, false);
        this.bytesOut += interim.length;
        this.client.socket.write(interim);
        if (rest.length === 0) return;
        this.pendingHead = rest;
        continue;
      }
      this.response = head;
      const framing = responseFraming(this.head.method, head);
      this.responseFramer = framerFor(framing);
      if (framing.kind === 'close' || this.client.forwarder.draining) this.closeAfter = true;
      this.passBody(rest, 0, head);
      return;
    }
  }

  /** Passes the answer's body bytes in `chunk` from `offset` on, after the answer's `head` when it is the first. */
  private passBody(chunk: Buffer, offset: number, head?: ResponseHead): void {
    const framer = this.responseFramer as BodyFramer;
    let used: number;
    try {
      used = framer.take(chunk, offset);
    } catch (error) {
      return this.failUpstream(error as Error);
    }
    const body = used === 0 ? EMPTY : offset === 0 && used === chunk.length ? chunk : chunk.subarray(offset, offset + used);
    let written = true;
    if (head) {
      // The head and a short body in one write; a long body after the head, as it came.
      this.answered = true;
      const together = body.length <= MAX_BODY_WITH_HEAD;
      const first = clientResponseHead(head, this.closeAfter, false, together ? body : EMPTY);
      this.bytesOut += first.length;
      written = this.client.socket.write(first);
      if (!together) {
        this.bytesOut += body.length;
        written = this.client.socket.write(body);
      }
    } else if (used > 0) {
      this.bytesOut += used;
      written = this.client.socket.write(body);
    }
    if (!written && this.upstream) {
      const upstream = this.upstream.socket;
      upstream.pause();
      this.client.socket.once('drain', () => upstream.resume());
    }
    if (offset + used < chunk.length) this.spoil();
    if (framer.done && !this.readingBody) this.complete();
    else if (framer.done && this.readingBody) {
      // Answered before the request's body ended: the rest of it cannot be told from a next request.
      this.closeAfter = true;
      this.readingBody = false;
      this.complete();
    }
  }

  private switchProtocols(head: ResponseHead, rest: Buffer): void {
    const upstream = this.upstream as Upstream;
    this.finished = true;
    upstream.detach();
    // Released when the tunnel closes: an open websocket counts as activity, as before.
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.target.release();
    };
    this.client.socket.once('close', release);
    upstream.socket.once('close', release);
    const toClient = clientResponseHead(head, false, true, rest);
    this.bytesOut += toClient.length;
    this.record(101);
    const toUpstream = this.client.takeBuffered();
    this.client.tunnel(upstream.socket, toClient, toUpstream);
    if (this.span !== undefined) traceAppWebsocket(tracer!, this.span, this.address, this.started, this.client.socket, upstream.socket, toUpstream.length, rest.length);
  }

  /** The answer ended and the request's body was all sent: release, keep the instance connection, go on. */
  private complete(): void {
    if (this.finished) return;
    this.finished = true;
    const upstream = this.upstream as Upstream;
    const response = this.response as ResponseHead;
    // A close-delimited answer is never done by its bytes, so never comes here with its connection.
    if (!this.spoiled && response.minor === 1 && !response.close) this.client.forwarder.upstreams.giveBack(upstream, response.keepAliveMs);
    else upstream.socket.destroy();
    this.target.release();
    this.record(response.status);
    this.client.exchangeDone(this.closeAfter);
  }

  /** The instance closed its side: the end of a close-delimited answer, or a failure. */
  upstreamEnded(): void {
    if (this.finished) return;
    // A kept connection the instance closed just as this request went out (its keep-alive
    // timeout): a request without a body is sent again once, on a new connection.
    if (!this.received && !this.retried && this.upstream?.reused && this.head.framing.kind === 'none') return this.retry();
    const framing = this.response && this.responseFramer;
    if (framing && !framing.done && this.response && responseFraming(this.head.method, this.response).kind === 'close') {
      this.spoiled = true;
      this.finished = true;
      this.upstream?.socket.destroy();
      this.target.release();
      this.record(this.response.status);
      this.client.exchangeDone(true);
      return;
    }
    this.failUpstream(new Error('it closed the connection before answering'));
  }

  private retry(): void {
    this.retried = true;
    const stale = this.upstream as Upstream;
    stale.owner = undefined;
    stale.socket.destroy();
    this.connectAndSend();
  }

  /** The client went away: drop the instance connection and release. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.upstream?.socket.destroy();
    this.target.release();
    // The answer's status when it began, else 499 (the client closed the request, as nginx logs it).
    this.record(this.response?.status ?? 499);
    this.client.destroy();
  }

  private spoil(): void {
    this.spoiled = true;
  }

  /** The instance failed this exchange: 502 if nothing was answered yet, else the client connection ends. */
  private failUpstream(cause: Error): void {
    if (this.finished) return;
    if (!this.answered) {
      this.client.forwarder.options.log.warn({ err: cause, app: this.address.app, project: this.address.project }, 'app instance did not answer');
      return this.fail(appUnreachable(this.address, cause));
    }
    this.client.forwarder.options.log.warn({ err: cause, app: this.address.app, project: this.address.project }, 'app instance broke off an answer');
    this.abort();
  }

  private fail(failure: AltoError): void {
    if (this.finished) return;
    this.finished = true;
    this.upstream?.socket.destroy();
    this.target.release();
    this.record(failure.status);
    this.client.refuse(failure, this.head);
  }

  /** Puts the exchange in its project's request log (its answer ended, or the exchange did). */
  private record(status: number): void {
    recordAppRequest(this.client, this.head, this.address, status, this.started, this.bytesIn, this.bytesOut);
    if (this.span !== undefined) endAppSpans(this.span, this.upstreamSpan, status);
  }
}

/** One app request in the request log, if the edge keeps one; a request another node relayed here is in that node's. */
function recordAppRequest(client: ClientConnection, head: RequestHead, address: AppAddress, status: number, started: number, bytesIn: number, bytesOut: number): void {
  if (head.relayed) return;
  client.forwarder.options.requestLog?.recordApp(address.project, address.app, head.method, head.target, status, started, bytesIn, bytesOut, client.forwardedFor, givenRequestId(head), address.environment);
}

/** The request's own X-Request-Id, if it sent one (read from the head's bytes, no header list made). */
function givenRequestId(head: RequestHead): string | undefined {
  const { source, spans } = head;
  for (let at = 0; at < spans.length; at += SPAN) {
    const start = spans[at + SPAN_START];
    if (spans[at + SPAN_KIND] !== Field.Other || spans[at + SPAN_COLON] - start !== 12) continue;
    if (source.toString('latin1', start, start + 12).toLowerCase() !== 'x-request-id') continue;
    const value = source.toString('latin1', spans[at + SPAN_VALUE], spans[at + SPAN_VALUE_END]);
    return REQUEST_ID_PATTERN.test(value) ? value : undefined;
  }
  return undefined;
}

/** A connection to an instance, reused across exchanges; its events go to the exchange that holds it. */
class Upstream {
  owner: Exchange | undefined;
  /** Taken from the idle ones (it served an exchange before). */
  reused = false;
  idleSince = 0;
  keepAliveMs = DEFAULT_UPSTREAM_KEEP_ALIVE_MS;

  constructor(
    readonly socket: Socket,
    readonly key: string,
    private readonly pool: UpstreamPool,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.owner) this.owner.fromUpstream(chunk);
    // Bytes from an idle connection answer nothing: it is not to be trusted again.
    else this.socket.destroy();
  };

  private readonly onEnd = (): void => {
    if (this.owner) this.owner.upstreamEnded();
    this.socket.destroy();
  };

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.pool.remove(this);
    const owner = this.owner;
    this.owner = undefined;
    owner?.upstreamEnded();
  };

  /** For a tunnel: the socket is piped from now on, its events no longer read here. */
  detach(): void {
    this.owner = undefined;
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('error', this.onError);
    this.socket.removeListener('close', this.onClose);
    this.pool.remove(this);
  }
}

/** Idle connections to instances, by address, newest first. */
class UpstreamPool {
  private readonly idle = new Map<string, Upstream[]>();
  private closed = false;

  takeIdle(target: ProxyTarget): Upstream | undefined {
    const list = this.idle.get(keyOf(target));
    if (!list) return undefined;
    const now = Date.now();
    for (let upstream = list.pop(); upstream; upstream = list.pop()) {
      if (!upstream.socket.destroyed && now - upstream.idleSince < upstream.keepAliveMs - KEEP_ALIVE_MARGIN_MS) {
        upstream.reused = true;
        return upstream;
      }
      upstream.socket.destroy();
    }
    return undefined;
  }

  async connect(target: ProxyTarget): Promise<Upstream> {
    const socket = await target.connect();
    // A request's head and body go out at once.
    socket.setNoDelay(true);
    return new Upstream(socket, keyOf(target), this);
  }

  giveBack(upstream: Upstream, keepAliveMs: number | undefined): void {
    upstream.owner = undefined;
    if (this.closed || upstream.socket.destroyed) return void upstream.socket.destroy();
    upstream.idleSince = Date.now();
    if (keepAliveMs !== undefined) upstream.keepAliveMs = keepAliveMs;
    let list = this.idle.get(upstream.key);
    if (!list) this.idle.set(upstream.key, (list = []));
    if (list.length >= MAX_IDLE_PER_ADDRESS) return void upstream.socket.destroy();
    list.push(upstream);
  }

  remove(upstream: Upstream): void {
    const list = this.idle.get(upstream.key);
    if (!list) return;
    const index = list.indexOf(upstream);
    if (index >= 0) list.splice(index, 1);
    if (list.length === 0) this.idle.delete(upstream.key);
  }

  /** Closes idle connections near their instance's keep-alive timeout. */
  sweep(now: number): void {
    for (const list of this.idle.values())
      for (const upstream of [...list]) if (now - upstream.idleSince >= upstream.keepAliveMs - KEEP_ALIVE_MARGIN_MS) upstream.socket.destroy();
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const upstream of [...list]) upstream.socket.destroy();
    this.idle.clear();
  }
}

function keyOf(target: ProxyTarget): string {
  return `${target.host}:${target.port}`;
}

function bits(...kinds: number[]): number {
  return kinds.reduce((mask, kind) => mask | (1 << kind), 0);
}

/** Connection names a header beyond the ones the masks drop anyway: each kept header's name must be checked. */
function namesOthers(connectionNamed: string[]): boolean {
  for (const token of connectionNamed) if (token !== 'close' && token !== 'keep-alive' && token !== 'upgrade') return true;
  return false;
}

/**
 * A head written again from the bytes it came in: `first` (or the first line as it came, when
 * undefined), the header lines whose kind is not in `dropped` (nor named by Connection) copied
 * as they came, then `tail` (latin1, ending with the blank line), then `body`.
 */
function copyHead(head: HeadLines & { connectionNamed: string[] }, first: string | undefined, dropped: number, tail: string, body: Buffer = EMPTY): Buffer {
  const { source, spans } = head;
  const checkNames = head.connectionNamed.length > 0 && namesOthers(head.connectionNamed);
  // Ranges of bytes kept, as [from, to) pairs, neighbours merged.
  const ranges: number[] = [];
  let size = 0;
  if (first === undefined) {
    ranges.push(0, head.firstLineEnd + 2);
    size = head.firstLineEnd + 2;
  }
  for (let at = 0; at < spans.length; at += SPAN) {
    const kind = spans[at + SPAN_KIND];
    if ((dropped & (1 << kind)) !== 0) continue;
    const start = spans[at + SPAN_START];
    if (checkNames && head.connectionNamed.includes(source.toString('latin1', start, spans[at + SPAN_COLON]).toLowerCase())) continue;
    const end = at + SPAN < spans.length ? spans[at + SPAN + SPAN_START] : head.length - 2;
    if (ranges.length > 0 && ranges[ranges.length - 1] === start) ranges[ranges.length - 1] = end;
    else ranges.push(start, end);
    size += end - start;
  }
  const firstLength = first === undefined ? 0 : first.length;
  const out = Buffer.allocUnsafe(firstLength + size + tail.length + body.length);
  let offset = first === undefined ? 0 : out.write(first, 0, 'latin1');
  for (let index = 0; index < ranges.length; index += 2) offset += source.copy(out, offset, ranges[index], ranges[index + 1]);
  offset += out.write(tail, offset, 'latin1');
  if (body.length > 0) body.copy(out, offset);
  return out;
}

/**
 * The request head as the instance gets it: the request line and the client's end-to-end header
 * lines as they came, then X-Forwarded-*. `x-alto-via` goes only to another node's edge (`via`,
 * this node's name), never to an instance.
 */
function forwardedRequestHead(head: RequestHead, client: string, via: string | undefined, traceparent?: string): Buffer {
  let priorFor: string | undefined;
  let priorProto: string | undefined;
  const { source, spans } = head;
  for (let at = 0; at < spans.length; at += SPAN) {
    const kind = spans[at + SPAN_KIND];
    if (kind !== Field.ForwardedFor && kind !== Field.ForwardedProto) continue;
    const value = source.toString('latin1', spans[at + SPAN_VALUE], spans[at + SPAN_VALUE_END]);
    if (kind === Field.ForwardedFor) priorFor = priorFor === undefined ? value : `${priorFor}, ${value}`;
    else priorProto = value;
  }
  let tail = `x-forwarded-for: ${priorFor?.trim() ? `${priorFor}, ${client}` : client}\r\n`;
  // A TLS terminator in front of the edge says so; otherwise the client spoke plain HTTP.
  tail += `x-forwarded-proto: ${priorProto !== undefined && /^https?$/i.test(priorProto.trim()) ? priorProto.trim().toLowerCase() : 'http'}\r\n`;
  tail += `x-forwarded-host: ${head.host}\r\n`;
  if (head.upgrade) tail += `connection: upgrade\r\nupgrade: ${head.upgrade}\r\n`;
  if (via) tail += `${VIA_HEADER}: ${via}\r\n`;
  if (traceparent === undefined) return copyHead(head, undefined, REQUEST_DROPPED, tail + '\r\n');
  // Tracing on: the app's parent is the edge's upstream span, in place of the client's traceparent.
  const forwarded = copyHead(head, undefined, REQUEST_DROPPED, tail + '\r\n').toString('latin1').replace(CLIENT_TRACEPARENT, '');
  return Buffer.from(`${forwarded.slice(0, -2)}traceparent: ${traceparent}\r\n\r\n`, 'latin1');
}

/** A traceparent header line the client sent, with the line break before it. */
const CLIENT_TRACEPARENT = /\r\ntraceparent:[^\r]*/gi;

/**
 * The instance's answer head as the client gets it, with `body` after it: hop-by-hop headers
 * dropped, the edge's own Connection. The status line passes as it came when it is HTTP/1.1 with
 * a reason.
 */
function clientResponseHead(head: ResponseHead, close: boolean, upgrade: boolean, body?: Buffer): Buffer {
  const first = head.minor === 1 && head.reason !== '' ? undefined : `HTTP/1.1 ${head.status} ${head.reason || STATUS_CODES[head.status] || ''}\r\n`;
  const tail = upgrade ? 'connection: upgrade\r\n\r\n' : close ? 'connection: close\r\n\r\n' : '\r\n';
  return copyHead(head, first, upgrade ? SWITCHING_DROPPED : RESPONSE_DROPPED, tail, body);
}

function requestIdIn(head: RequestHead | undefined): string {
  const headers = head?.headers ?? [];
  let given: string | undefined;
  for (let index = 0; index < headers.length && given === undefined; index += 2) if (headers[index].toLowerCase() === 'x-request-id') given = headers[index + 1];
  return requestIdFrom(given);
}
