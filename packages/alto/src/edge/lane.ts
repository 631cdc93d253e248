/**
 * @module edge/lane
 * API calls served off the raw connection. Node's HTTP server builds a request object, a
 * response object and two streams for every call, and writes the answer through them; a plain
 * API call needs a few headers, a small body and one write. So on a connection the forwarder
 * reads (edge/forward.ts), a request that is plainly an API call is answered here: HTTP/1.1, POST
 * or GET, a `/v1/{service}/{Endpoint}` target with nothing to normalise, no body or one of a known
 * length up to 64 KiB, no `Expect` and no upgrade. The API runs it exactly as it runs a call that
 * came through Node's server (edge/api.ts, through the `ApiExchange` seam); anything else is left
 * to Node's server, which answers it as before.
 */
import { STATUS_CODES } from 'node:http';
import { errors } from '../kit/errors.js';
import type { Api } from './api.js';
import type { ApiExchange } from './exchange.js';
import type { ConnectionExchange, LaneConnection } from './forward.js';
import type { RequestHead } from './h1.js';
import { requestTargetOf, type BodyCallback } from './http.js';

/** The largest body a call served here may have; a larger one goes through Node's server. */
export const LANE_MAX_BODY_BYTES = 64 * 1024;
/** `/v1/service/Endpoint` or `/v1/service/Service/Endpoint`, then nothing or a query string: as requestTargetOf splits without a URL parser. */
const PLAIN_API_TARGET = /^\/v1(?:\/[A-Za-z0-9_-]+){2,3}(?:\?[^#]*)?$/;
const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
/** A header value the lane writes must not break the head it is written into. */
const UNSAFE_VALUE = /[\r\n\0]/;
const EMPTY = Buffer.alloc(0);

export class ApiLane {
  private readonly keepAliveHeader: string;

  /** `leaveToNode`: hosts whose plain requests Node's server answers (those with a certificate are redirected to HTTPS). */
  constructor(
    readonly api: Api,
    keepAliveTimeoutMs: number,
    readonly bodyTimeoutMs: number,
    private readonly leaveToNode: (host: string) => boolean = () => false,
  ) {
    this.keepAliveHeader = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.max(1, Math.floor(keepAliveTimeoutMs / 1000))}\r\n`;
  }

  /** Whether the lane serves this request (else Node's HTTP server does). */
  accepts(head: RequestHead): boolean {
    if (head.method !== 'POST' && head.method !== 'GET') return false;
    if (head.upgrade !== undefined || !PLAIN_API_TARGET.test(head.target) || this.leaveToNode(head.host)) return false;
    const framing = head.framing;
    if (framing.kind !== 'none' && !(framing.kind === 'length' && framing.length <= LANE_MAX_BODY_BYTES)) return false;
    return headerOf(head, 'expect') === undefined;
  }

  /** The exchange for an accepted request; `start` runs it. */
  exchange(head: RequestHead, connection: LaneConnection): LaneExchange {
    return new LaneExchange(this, head, connection);
  }

  /** The connection part of an answer's head: close, or keep-alive with its timeout. */
  connectionHeader(close: boolean): string {
    return close ? 'Connection: close\r\n' : this.keepAliveHeader;
  }
}

/** One API call read off a raw connection, and its answer written back as one piece. */
export class LaneExchange implements ApiExchange, ConnectionExchange {
  readingBody = false;
  complete = false;
  answered = false;
  private readonly declared: number;
  private chunks: Buffer[] = [];
  private received = 0;
  private bodyLimit = 0;
  private bodyDone: BodyCallback | undefined;
  private stallTimeoutMs = 0;
  private lastByteAt = 0;
  private goneListeners: (() => void)[] | undefined;
  private gone = false;

  constructor(
    private readonly lane: ApiLane,
    private readonly head: RequestHead,
    private readonly connection: LaneConnection,
  ) {
    this.declared = head.framing.kind === 'length' ? head.framing.length : 0;
  }

  start(): void {
    this.lane.api.serve(this, requestTargetOf(this.head.target));
  }

  get method(): string {
    return this.head.method;
  }

  header(name: string): string | undefined {
    return headerOf(this.head, name);
  }

  get remoteAddress(): string | undefined {
    return this.connection.socket.remoteAddress;
  }

  readBody(limit: number, stallTimeoutMs: number, done: BodyCallback): void {
    this.bodyLimit = limit;
    this.bodyDone = done;
    this.stallTimeoutMs = stallTimeoutMs;
    const buffered = this.connection.takeBuffered();
    const used = Math.min(this.declared, buffered.length);
    this.connection.keepAhead(buffered.subarray(used));
    if (used > 0) this.add(buffered.subarray(0, used));
    if (this.received === this.declared) return this.bodyEnded();
    this.readingBody = true;
    this.lastByteAt = Date.now();
    const socket = this.connection.socket;
    if (socket.isPaused()) socket.resume();
  }

  /** More of the body. */
  fromClient(chunk: Buffer): void {
    if (!this.readingBody) return;
    this.lastByteAt = Date.now();
    const used = Math.min(this.declared - this.received, chunk.length);
    this.add(used === chunk.length ? chunk : chunk.subarray(0, used));
    if (this.received < this.declared) return;
    this.readingBody = false;
    this.connection.keepAhead(chunk.subarray(used));
    this.bodyEnded();
  }

  private add(chunk: Buffer): void {
    this.received += chunk.length;
    this.chunks.push(chunk);
  }

  private bodyEnded(): void {
    this.complete = true;
    const body = this.chunks.length === 1 ? this.chunks[0] : this.chunks.length === 0 ? EMPTY : Buffer.concat(this.chunks, this.received);
    this.chunks = [];
    // The whole body was read, so a refusal keeps the connection, as Node's server does.
    if (this.received > this.bodyLimit) return this.settleBody(errors.payloadTooLarge(`the request body is larger than ${this.bodyLimit} bytes, the most this server accepts`));
    this.settleBody(undefined, body);
  }

  private settleBody(error: Error | undefined, body?: Buffer): void {
    const done = this.bodyDone;
    this.bodyDone = undefined;
    this.readingBody = false;
    done?.(error, body);
  }

  checkTimers(now: number): void {
    if (this.readingBody && now - this.lastByteAt >= this.stallTimeoutMs) {
      this.chunks = [];
      this.settleBody(
        errors.requestTimeout(`the request body stalled: no byte came for ${Math.round(this.stallTimeoutMs / 1000)} s; send the whole body at once`),
      );
    }
  }

  send(status: number, payload: string, headers: string[], close: boolean): number {
    if (this.answered) throw new Error('the call was already answered');
    const length = Buffer.byteLength(payload);
    let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    for (let i = 0; i < headers.length; i += 2) {
      const value = headers[i + 1];
      if (UNSAFE_VALUE.test(value)) throw new Error(`the answer's ${headers[i]} header holds a line break`);
      text += `${headers[i]}: ${value}\r\n`;
    }
    const closeAfter = close || this.head.close || !this.complete;
    text += `content-type: ${JSON_CONTENT_TYPE}\r\ncontent-length: ${length}\r\nDate: ${httpDate()}\r\n${this.lane.connectionHeader(closeAfter)}\r\n${payload}`;
    this.answered = true;
    const socket = this.connection.socket;
    if (!socket.destroyed) socket.write(text);
    this.connection.exchangeDone(closeAfter);
    return length;
  }

  destroy(): void {
    this.connection.socket.destroy();
  }

  onClientGone(listener: () => void): void {
    if (this.gone) return listener();
    (this.goneListeners ??= []).push(listener);
  }

  /** The connection closed. */
  abort(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.bodyDone) this.settleBody(new Error('the client closed the connection before the body ended'));
    if (this.answered) return;
    for (const listener of this.goneListeners ?? []) listener();
    this.goneListeners = undefined;
  }
}

/** The first value of a header (`name` in lower case) among a head's raw pairs. */
function headerOf(head: RequestHead, name: string): string | undefined {
  const headers = head.headers;
  for (let i = 0; i < headers.length; i += 2) {
    const candidate = headers[i];
    if (candidate.length === name.length && candidate.toLowerCase() === name) return headers[i + 1];
  }
  return undefined;
}

let dateSecond = 0;
let dateText = '';

/** The Date header's value, made once a second as Node's server does. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}
