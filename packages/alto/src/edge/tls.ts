/**
 * @module edge/tls
 * The edge's HTTPS listener. One TCP port; each connection's ClientHello is read first
 * (edge/client-hello.ts): an ACME server validating TLS-ALPN-01 (it offers only `acme-tls/1`)
 * gets the challenge certificate for the name it asks for and nothing else, every other
 * connection goes to an HTTP/2 server that also speaks HTTP/1.1 (ALPN `h2`, `http/1.1`), so
 * websockets (an HTTP/1.1 upgrade) still work. The certificate for each name is picked per
 * connection by SNI from a `CertificateSource`; a name with none fails the handshake. A client
 * that sends no name (as Node's does for an address, such as another node's `--advertise
 * https://10.0.0.5:4443`) gets the operator's certificate.
 *
 * Requests are handed to the edge's own request and upgrade handlers, as Node's HTTP server hands
 * them on the plain port, with `X-Forwarded-Proto: https` set (whatever the client sent) and, for
 * HTTP/2, the `:authority` as the Host, so routing, the API and the app proxy see one shape. A
 * request another node of the cloud relayed here (`x-alto-via`, compute/cluster/routing.ts)
 * keeps the X-Forwarded-Proto that node wrote: the app is told how its client came to that node.
 */
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type SecureContext, type Server as TlsServer } from 'node:tls';
import type { Logger } from '../kit/logger.js';
import { clientHelloLength, parseClientHello } from './client-hello.js';
import { capConnections, type ConnectionCaps } from './connections.js';
import { VIA_HEADER } from './h1.js';

/** Where the listener finds a certificate for a name. */
export interface CertificateSource {
  /** The context to serve `serverName` with (at once or once found); undefined: the handshake fails (no certificate for it). */
  contextFor(serverName: string | undefined): SecureContext | undefined | Promise<SecureContext | undefined>;
  /** The certificate and key (PEM) for a client that sends no server name; undefined: its handshake fails. The same object while they do not change. */
  unnamed(): { certificate: string; key: string } | undefined;
  /** The TLS-ALPN-01 challenge certificate for `serverName` while a validation is pending. */
  challengeFor(serverName: string): SecureContext | undefined | Promise<SecureContext | undefined>;
}

type SniDone = (error: Error | null, context?: SecureContext) => void;

/** Answers Node's SNICallback from a value or a promise of one; a lookup that fails fails the handshake. */
function answer(found: SecureContext | undefined | Promise<SecureContext | undefined>, done: SniDone): void {
  if (found instanceof Promise) found.then((context) => done(null, context), (error: Error) => done(error));
  else done(null, found);
}

export interface TlsListenerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  certificates: CertificateSource;
  onRequest(request: IncomingMessage, response: ServerResponse): void;
  onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void;
  connectionCaps: ConnectionCaps;
  /** Client addresses the per-client cap does not hold (the cloud's other nodes, which relay their clients' requests). */
  exemptFromClientCap?: (address: string) => boolean;
  /** A ClientHello, and an HTTP/1.1 request's headers, must arrive within this. */
  headersTimeoutMs: number;
  /** A connection (or HTTP/2 session) that moves nothing for this long is closed. */
  idleTimeoutMs: number;
  log: Logger;
}

const ACME_TLS_PROTOCOL = 'acme-tls/1';
const MAX_STREAMS_PER_SESSION = 128;
/** HTTPS only for this host from now on, for a year (RFC 6797). */
export const HSTS_VALUE = 'max-age=31536000';

/** Requests this listener served: they came over TLS, whatever their headers say. */
const servedOverTls = new WeakSet<object>();

/** Whether `request` came over the HTTPS listener. */
export function isTlsRequest(request: object): boolean {
  return servedOverTls.has(request);
}

export class TlsListener {
  readonly server: Http2SecureServer;
  private readonly front: TcpServer;
  private readonly challenges: TlsServer;
  private readonly open = new Set<Socket>();
  /** What `unnamed()` answered when the server's own context was last set from it. */
  private unnamedServed: { certificate: string; key: string } | undefined;

  constructor(private readonly options: TlsListenerOptions) {
    const { certificates, log } = options;
    this.server = createSecureServer(
      {
        allowHTTP1: true,
        ALPNProtocols: ['h2', 'http/1.1'],
        // Bounds per HTTP/2 connection: streams open at once, and a header list (as HTTP/1.1's 16 KiB head, with room for HPACK).
        settings: { maxConcurrentStreams: MAX_STREAMS_PER_SESSION, maxHeaderListSize: 64 * 1024 },
        handshakeTimeout: options.headersTimeoutMs,
        SNICallback: (serverName, done) => answer(certificates.contextFor(serverName), done),
      },
      (request, response) => this.serve(request, response),
    );
    // HTTP/1.1 over TLS: as on the plain port, no limit on a whole request, a bound on its headers.
    Object.assign(this.server, { requestTimeout: 0, headersTimeout: options.headersTimeoutMs });
    this.server.setTimeout(options.idleTimeoutMs);
    this.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      setForwardedProto(request.headers);
      options.onUpgrade(request, socket, head);
    });
    this.server.on('tlsClientError', (error) => log.debug({ err: error }, 'tls handshake failed'));
    this.server.on('sessionError', (error) => log.debug({ err: error }, 'http/2 session failed'));
    this.server.on('session', (session) => session.on('error', () => session.destroy()));

    this.challenges = createTlsServer({
      ALPNProtocols: [ACME_TLS_PROTOCOL],
      handshakeTimeout: options.headersTimeoutMs,
      SNICallback: (serverName, done) => answer(certificates.challengeFor(serverName), done),
    });
    // The validation is the handshake itself: once it is done there is nothing to say.
    this.challenges.on('secureConnection', (socket) => {
      socket.on('error', () => socket.destroy());
      socket.end();
    });
    this.challenges.on('tlsClientError', (error) => log.debug({ err: error }, 'tls-alpn-01 handshake failed'));

    this.front = createTcpServer((socket) => this.accept(socket));
    capConnections(this.front, options.connectionCaps, log, options.exemptFromClientCap);
  }

  /** Listens; resolves with the bound port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.front.once('error', reject);
      this.front.listen(this.options.port, this.options.host, () => {
        this.front.off('error', reject);
        const bound = this.front.address();
        resolve(typeof bound === 'object' && bound ? bound.port : this.options.port);
      });
    });
  }

  /** Stops accepting; idle connections close now, the rest once their requests end or `force()` cuts them. */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.front.close(() => resolve()));
    this.server.close();
    if ('closeIdleConnections' in this.server) (this.server as unknown as { closeIdleConnections(): void }).closeIdleConnections();
    return this.front.listening ? closed : Promise.resolve();
  }

  /** Ends every connection still open. */
  force(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }

  /** Reads the ClientHello, then hands the connection (bytes read put back) to the server it asks for. */
  private accept(socket: Socket): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
    socket.on('error', () => socket.destroy());
    // As Node's HTTP server does: an answer's last segment goes out at once, not after the client's delayed ACK.
    socket.setNoDelay(true);
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), this.options.headersTimeoutMs);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const needed = clientHelloLength(buffered);
      // Not TLS at all: the TLS server fails the handshake at once.
      if (needed === undefined || (needed !== Infinity && buffered.length < needed)) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      socket.unshift(buffered);
      const hello = parseClientHello(buffered);
      const challenge = hello.protocols.length > 0 && hello.protocols.every((protocol) => protocol === ACME_TLS_PROTOCOL);
      if (!challenge && hello.serverName === undefined) this.serveUnnamed();
      (challenge ? this.challenges : this.server).emit('connection', socket);
    };
    socket.on('data', onData);
    socket.once('close', () => clearTimeout(timer));
  }

  /**
   * Node asks no SNICallback for a ClientHello without a server name: it serves the server's own
   * context, so that context is set from `unnamed()` (again once it changes) before such a
   * connection is handed over.
   */
  private serveUnnamed(): void {
    const pair = this.options.certificates.unnamed();
    if (pair === undefined || pair === this.unnamedServed) return;
    this.server.setSecureContext({ cert: pair.certificate, key: pair.key });
    this.unnamedServed = pair;
  }

  private serve(request: Http2ServerRequest | IncomingMessage, response: Http2ServerResponse | ServerResponse): void {
    const headers = request.headers;
    if (headers.host === undefined && typeof headers[':authority'] === 'string') headers.host = headers[':authority'];
    setForwardedProto(headers);
    servedOverTls.add(request);
    this.options.onRequest(request as IncomingMessage, response as ServerResponse);
  }
}

/** `https`, unless another node relayed the request and said how its client came (`http` or `https`). */
function setForwardedProto(headers: IncomingHttpHeaders): void {
  const relayedProto = headers[VIA_HEADER] !== undefined ? headers['x-forwarded-proto'] : undefined;
  if (typeof relayedProto === 'string' && /^https?$/i.test(relayedProto.trim())) return;
  headers['x-forwarded-proto'] = 'https';
}
