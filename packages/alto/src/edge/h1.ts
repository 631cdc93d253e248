/**
 * @module edge/h1
 * The HTTP/1.1 message boundaries the connection forwarder (edge/forward.ts) needs, read
 * strictly: a request's head, a response's head, and where a body ends (a length, chunks, or the
 * connection's close). Only heads are parsed into fields; bodies are framed and passed on as the
 * bytes they are.
 *
 * Strict on purpose. A request head that is anything but plain HTTP/1.1 with one clear framing
 * (both Content-Length and Transfer-Encoding, a coding other than chunked, differing lengths, a
 * folded line, a bare CR or LF, a control character, no Host or two) is declined: the forwarder
 * hands such a connection to Node's own HTTP server, which answers or refuses it as it does any
 * request. What the forwarder passes on is a head it wrote itself from the fields it read, and
 * exactly the body bytes its framing counted, so the instance cannot read the request's bytes
 * differently from the edge. A response head from an instance that is not plain HTTP/1.x is a
 * failure of that instance (502), never passed on.
 */

/** The request-head limit of Node's HTTP server (its --max-http-header-size default). */
export const MAX_REQUEST_HEAD_BYTES = 16 * 1024;
/** An instance's response head may be this long (cookies, CSPs); longer is a 502. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/** Headers in one head at most. */
const MAX_HEADERS = 200;

/** A request target: visible ASCII only. */
const TARGET = /^[\x21-\x7e]+$/;
const DIGITS = /^\d{1,15}$/;
const REQUEST_LINE_VERSION = ' HTTP/1.1';
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;

const HEAD_END = Buffer.from('\r\n\r\n');

/** What a node of the cloud adds to a request it relays to another node's edge (its own name). */
export const VIA_HEADER = 'x-alto-via';

/**
 * What a header is to the forwarder, told from its name's bytes once, when the head is read (no
 * lower-casing or lookups per header afterwards). `Other` is any end-to-end header.
 */
export const Field = {
  Other: 0,
  Host: 1,
  ContentLength: 2,
  TransferEncoding: 3,
  Connection: 4,
  KeepAlive: 5,
  Upgrade: 6,
  /** Trailer: hop-by-hop in a request (never passed on), kept in an answer with its chunks. */
  Trailer: 7,
  /** Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE: hop-by-hop both ways. */
  HopByHop: 8,
  Via: 9,
  ForwardedFor: 10,
  ForwardedProto: 11,
  ForwardedHost: 12,
} as const;

/** Bytes a field name may hold (RFC 9110 token). */
const TOKEN_BYTE = new Uint8Array(256);
for (const char of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN_BYTE[char.charCodeAt(0)] = 1;

/** How a body ends. */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

const NO_BODY: Framing = { kind: 'none' };

/**
 * A head's header lines where they lie in the bytes it was read from, five numbers each: the
 * field's kind (Field), where its line starts, where its name ends (the colon), where its
 * trimmed value starts and ends. A line ends with CRLF at the start of the next one, the last
 * at `end - 2`.
 */
export interface HeadLines {
  readonly source: Buffer;
  readonly spans: number[];
  /** Where the first line (request or status line) ends, before its CRLF. */
  readonly firstLineEnd: number;
  /** Bytes the head took, its blank line included. */
  readonly length: number;
  /** Raw name, value pairs as received (names in their case, values trimmed), in order; made on first use. */
  readonly headers: string[];
}

/** Span fields, by offset. */
export const SPAN = 5;
export const SPAN_KIND = 0;
export const SPAN_START = 1;
export const SPAN_COLON = 2;
export const SPAN_VALUE = 3;
export const SPAN_VALUE_END = 4;

class Lines {
  private pairs: string[] | undefined;

  constructor(
    readonly source: Buffer,
    readonly spans: number[],
    readonly firstLineEnd: number,
    readonly length: number,
  ) {}

  get headers(): string[] {
    if (this.pairs) return this.pairs;
    const { source, spans } = this;
    const pairs: string[] = [];
    for (let at = 0; at < spans.length; at += SPAN)
      pairs.push(source.toString('latin1', spans[at + SPAN_START], spans[at + SPAN_COLON]), source.toString('latin1', spans[at + SPAN_VALUE], spans[at + SPAN_VALUE_END]));
    return (this.pairs = pairs);
  }
}

export interface RequestHead extends HeadLines {
  method: string;
  target: string;
  host: string;
  framing: Framing;
  /** The client asked for the connection to close after this exchange. */
  close: boolean;
  /** The protocol asked for with `Connection: upgrade` and `Upgrade`, if any. */
  upgrade: string | undefined;
  /** Lower-case names the Connection header lists (hop-by-hop for this message). */
  connectionNamed: string[];
  /** Another node of the cloud relayed the request (`x-alto-via`). */
  relayed: boolean;
}

export interface ResponseHead extends HeadLines {
  minor: 0 | 1;
  status: number;
  reason: string;
  /** Content-Length, when one clear one was given. */
  contentLength: number | undefined;
  /** Transfer-Encoding ends in chunked (true), names another coding (false), or is absent (undefined). */
  chunked: boolean | undefined;
  close: boolean;
  connectionNamed: string[];
  /** The instance's keep-alive timeout, from `Keep-Alive: timeout=N`, in ms. */
  keepAliveMs: number | undefined;
}

class ParsedRequestHead extends Lines implements RequestHead {
  method = '';
  target = '';
  host = '';
  framing: Framing = NO_BODY;
  close = false;
  upgrade: string | undefined = undefined;
  connectionNamed: string[] = NO_NAMES;
  relayed = false;
}

class ParsedResponseHead extends Lines implements ResponseHead {
  minor: 0 | 1 = 1;
  status = 0;
  reason = '';
  contentLength: number | undefined = undefined;
  chunked: boolean | undefined = undefined;
  close = false;
  connectionNamed: string[] = NO_NAMES;
  keepAliveMs: number | undefined = undefined;
}

const NO_NAMES: string[] = [];

/** Where a head ends in `buffer` (the index after its blank line), or -1 when not yet there; searched from `from`. */
export function headEnd(buffer: Buffer, from = 0): number {
  const at = buffer.indexOf(HEAD_END, Math.max(0, from - 3));
  return at < 0 ? -1 : at + 4;
}

/**
 * The request head at the start of `buffer`, which holds it whole (`end` from headEnd), or
 * undefined when it is anything but plain, unambiguous HTTP/1.1 (see the module comment).
 */
export function parseRequestHead(buffer: Buffer, end: number): RequestHead | undefined {
  const firstLineEnd = buffer.indexOf(0x0d);
  if (buffer[firstLineEnd + 1] !== 0x0a) return undefined;
  const requestLine = buffer.toString('latin1', 0, firstLineEnd);
  const firstSpace = requestLine.indexOf(' ');
  const lastSpace = requestLine.lastIndexOf(' ');
  if (firstSpace <= 0 || lastSpace === firstSpace || !requestLine.endsWith(REQUEST_LINE_VERSION) || lastSpace !== requestLine.length - REQUEST_LINE_VERSION.length) return undefined;
  for (let at = 0; at < firstSpace; at++) if (TOKEN_BYTE[buffer[at]] === 0) return undefined;
  const method = requestLine.slice(0, firstSpace);
  const target = requestLine.slice(firstSpace + 1, lastSpace);
  if (method === 'CONNECT' || !TARGET.test(target)) return undefined;
  const fields = readFields(buffer, firstLineEnd, end);
  if (!fields) return undefined;
  const head = new ParsedRequestHead(buffer, fields.spans, firstLineEnd, end);
  head.method = method;
  head.target = target;
  const { hosts, lengths, codings, connection, upgrade, via } = fields;
  if (hosts !== 1) return undefined;
  head.host = fields.host;
  if (codings.length > 0) {
    // One coding, chunked, and no length beside it: anything else is the stuff of smuggling.
    if (lengths.length > 0 || codings.length !== 1 || codings[0].toLowerCase() !== 'chunked') return undefined;
    head.framing = CHUNKED;
  } else if (lengths.length > 0) {
    const length = oneLength(lengths);
    if (length === undefined) return undefined;
    if (length > 0) head.framing = { kind: 'length', length };
  }
  if (connection !== undefined) {
    head.connectionNamed = listTokens(connection);
    head.close = head.connectionNamed.includes('close');
    if (upgrade !== undefined && head.connectionNamed.includes('upgrade')) head.upgrade = upgrade;
  }
  head.relayed = via;
  return head;
}

const CHUNKED: Framing = { kind: 'chunked' };

/**
 * The response head at the start of `buffer` (whole, `end` from headEnd), or a string saying
 * what is wrong with it.
 */
export function parseResponseHead(buffer: Buffer, end: number): ResponseHead | string {
  const firstLineEnd = buffer.indexOf(0x0d);
  const statusLine = buffer.toString('latin1', 0, firstLineEnd);
  const status = buffer[firstLineEnd + 1] === 0x0a ? STATUS_LINE.exec(statusLine) : null;
  if (!status) return `its status line is not HTTP/1.x (${JSON.stringify(statusLine.slice(0, 40))})`;
  const fields = readFields(buffer, firstLineEnd, end);
  if (!fields) return 'its headers are malformed';
  const head = new ParsedResponseHead(buffer, fields.spans, firstLineEnd, end);
  const { lengths, codings, connection, keepAlive } = fields;
  if (lengths.length > 0) {
    head.contentLength = oneLength(lengths);
    if (head.contentLength === undefined) return 'its Content-Length is not one whole number';
  }
  if (codings.length > 0) {
    const last = codings.join(',').split(',').pop()?.trim().toLowerCase();
    head.chunked = last === 'chunked';
  }
  head.minor = status[1] === '1' ? 1 : 0;
  head.status = Number(status[2]);
  head.reason = status[3] ?? '';
  if (connection !== undefined) head.connectionNamed = listTokens(connection);
  head.close = head.connectionNamed.includes('close') || (head.minor === 0 && !head.connectionNamed.includes('keep-alive'));
  if (keepAlive !== undefined) head.keepAliveMs = keepAliveMsOf(keepAlive);
  return head;
}

/** The last Keep-Alive value read and its timeout: an instance sends the same one with every answer. */
let lastKeepAlive: { value: string; ms: number | undefined } = { value: '', ms: undefined };

function keepAliveMsOf(value: string): number | undefined {
  if (value === lastKeepAlive.value) return lastKeepAlive.ms;
  const timeout = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i.exec(value);
  lastKeepAlive = { value, ms: timeout ? Number(timeout[1]) * 1000 : undefined };
  return lastKeepAlive.ms;
}

/** How the body of a response to `method` ends (RFC 9112 section 6.3). */
export function responseFraming(method: string, head: ResponseHead): Framing {
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304) return NO_BODY;
  if (head.chunked === true) return CHUNKED;
  if (head.chunked === false) return { kind: 'close' };
  if (head.contentLength !== undefined) return head.contentLength > 0 ? { kind: 'length', length: head.contentLength } : NO_BODY;
  return { kind: 'close' };
}

interface Fields {
  spans: number[];
  /** Host headers seen, and the first one's value. */
  hosts: number;
  host: string;
  lengths: string[];
  codings: string[];
  connection: string | undefined;
  upgrade: string | undefined;
  keepAlive: string | undefined;
  /** An `x-alto-via` header came. */
  via: boolean;
}

/**
 * The header lines between the first line (ending at `firstLineEnd`) and the blank line, read
 * from the bytes; undefined when one is malformed (no colon, a name that is not a token or a
 * space before the colon, folding, a bare CR or LF, a control character in a value) or there
 * are too many.
 */
function readFields(buffer: Buffer, firstLineEnd: number, end: number): Fields | undefined {
  const fields: Fields = { spans: [], hosts: 0, host: '', lengths: [], codings: [], connection: undefined, upgrade: undefined, keepAlive: undefined, via: false };
  const spans = fields.spans;
  const stop = end - 2;
  let at = firstLineEnd + 2;
  while (at < stop) {
    if (spans.length >= MAX_HEADERS * SPAN) return undefined;
    const start = at;
    while (TOKEN_BYTE[buffer[at]] === 1) at++;
    // No space before the colon (RFC 9112 section 5.1), no folding: a token, then the value.
    if (at === start || buffer[at] !== 0x3a) return undefined;
    const colon = at++;
    while (buffer[at] === 0x20 || buffer[at] === 0x09) at++;
    const valueStart = at;
    let valueEnd = at;
    for (;;) {
      const byte = buffer[at];
      if (byte === 0x0d) break;
      if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f) return undefined;
      at++;
      if (byte !== 0x20 && byte !== 0x09) valueEnd = at;
    }
    if (buffer[at + 1] !== 0x0a) return undefined;
    at += 2;
    const kind = kindOf(buffer, start, colon - start);
    spans.push(kind, start, colon, valueStart, valueEnd);
    switch (kind) {
      case Field.Other:
        break;
      case Field.Host:
        if (fields.hosts++ === 0) fields.host = buffer.toString('latin1', valueStart, valueEnd);
        break;
      case Field.ContentLength:
        fields.lengths.push(buffer.toString('latin1', valueStart, valueEnd));
        break;
      case Field.TransferEncoding:
        fields.codings.push(buffer.toString('latin1', valueStart, valueEnd));
        break;
      case Field.Connection: {
        const value = buffer.toString('latin1', valueStart, valueEnd);
        fields.connection = fields.connection === undefined ? value : `${fields.connection}, ${value}`;
        break;
      }
      case Field.KeepAlive:
        fields.keepAlive = buffer.toString('latin1', valueStart, valueEnd);
        break;
      case Field.Upgrade:
        fields.upgrade = buffer.toString('latin1', valueStart, valueEnd);
        break;
      case Field.Via:
        fields.via = true;
        break;
    }
  }
  return fields;
}

/** Whether the `length` bytes at `start` are `lower` in any case (`lower` holds only lower-case letters and dashes). */
function nameIs(buffer: Buffer, start: number, lower: string): boolean {
  // Token bytes OR 0x20 give a lower-case letter or a dash only for a letter of either case or a dash.
  for (let index = 0; index < lower.length; index++) if ((buffer[start + index] | 0x20) !== lower.charCodeAt(index)) return false;
  return true;
}

/** The Field a name is, by its length and then its bytes. */
function kindOf(buffer: Buffer, start: number, length: number): number {
  switch (length) {
    case 2:
      return nameIs(buffer, start, 'te') ? Field.HopByHop : Field.Other;
    case 4:
      return nameIs(buffer, start, 'host') ? Field.Host : Field.Other;
    case 7:
      if (nameIs(buffer, start, 'upgrade')) return Field.Upgrade;
      return nameIs(buffer, start, 'trailer') ? Field.Trailer : Field.Other;
    case 10:
      if (nameIs(buffer, start, 'connection')) return Field.Connection;
      if (nameIs(buffer, start, 'keep-alive')) return Field.KeepAlive;
      return nameIs(buffer, start, VIA_HEADER) ? Field.Via : Field.Other;
    case 14:
      return nameIs(buffer, start, 'content-length') ? Field.ContentLength : Field.Other;
    case 15:
      return nameIs(buffer, start, 'x-forwarded-for') ? Field.ForwardedFor : Field.Other;
    case 16:
      if (nameIs(buffer, start, 'x-forwarded-host')) return Field.ForwardedHost;
      return nameIs(buffer, start, 'proxy-connection') ? Field.HopByHop : Field.Other;
    case 17:
      if (nameIs(buffer, start, 'transfer-encoding')) return Field.TransferEncoding;
      return nameIs(buffer, start, 'x-forwarded-proto') ? Field.ForwardedProto : Field.Other;
    case 18:
      return nameIs(buffer, start, 'proxy-authenticate') ? Field.HopByHop : Field.Other;
    case 19:
      return nameIs(buffer, start, 'proxy-authorization') ? Field.HopByHop : Field.Other;
    default:
      return Field.Other;
  }
}

/** The one length several Content-Length headers agree on, or undefined. */
function oneLength(values: string[]): number | undefined {
  const first = values[0];
  if (!DIGITS.test(first) || values.some((value) => value !== first)) return undefined;
  return Number(first);
}

function listTokens(value: string): string[] {
  const tokens: string[] = [];
  for (const part of value.split(',')) {
    const token = part.trim().toLowerCase();
    if (token) tokens.push(token);
  }
  return tokens;
}

/** A body's framing was broken (a bad chunk line): the exchange cannot go on. */
export class FramingError extends Error {}

/** Counts a body's bytes as they pass and says where it ends. */
export interface BodyFramer {
  /** How many bytes of `chunk` from `offset` belong to the body (all of them until it ends). Throws FramingError. */
  take(chunk: Buffer, offset: number): number;
  readonly done: boolean;
}

/** A chunk-size line's hex digits at most (2^48 bytes), an extension's bytes, the trailer section's bytes. */
const MAX_SIZE_DIGITS = 12;
const MAX_EXTENSION_BYTES = 1024;
const MAX_TRAILER_BYTES = 16 * 1024;

const enum Chunk {
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerLine,
  TrailerLf,
  FinalLf,
  Done,
}

/** Chunked transfer coding (RFC 9112 section 7.1), read byte by byte outside chunk data, strictly (CRLF only). */
class ChunkedFramer implements BodyFramer {
  private state = Chunk.Size;
  private size = 0;
  private digits = 0;
  private extension = 0;
  private trailer = 0;

  get done(): boolean {
    return this.state === Chunk.Done;
  }

  take(chunk: Buffer, offset: number): number {
    let at = offset;
    const end = chunk.length;
    while (at < end && this.state !== Chunk.Done) {
      if (this.state === Chunk.Data) {
        const step = Math.min(this.size, end - at);
        this.size -= step;
        at += step;
        if (this.size === 0) this.state = Chunk.DataCr;
        continue;
      }
      const byte = chunk[at++];
      switch (this.state) {
        case Chunk.Size: {
          const digit = hexValue(byte);
          if (digit >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) throw new FramingError('a chunk size is too long');
            this.size = this.size * 16 + digit;
          } else if (byte === 0x3b /* ; */ && this.digits > 0) {
            this.state = Chunk.Extension;
            this.extension = 0;
          } else if (byte === 0x0d && this.digits > 0) this.state = Chunk.SizeLf;
          else throw new FramingError('a chunk size is not hexadecimal');
          break;
        }
        case Chunk.Extension:
          if (byte === 0x0d) this.state = Chunk.SizeLf;
          else if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f || ++this.extension > MAX_EXTENSION_BYTES) throw new FramingError('a chunk extension is malformed');
          break;
        case Chunk.SizeLf:
          if (byte !== 0x0a) throw new FramingError('a chunk size line does not end in CRLF');
          this.digits = 0;
          this.state = this.size === 0 ? Chunk.TrailerStart : Chunk.Data;
          break;
        case Chunk.DataCr:
          if (byte !== 0x0d) throw new FramingError('chunk data is longer than its size');
          this.state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (byte !== 0x0a) throw new FramingError('chunk data does not end in CRLF');
          this.state = Chunk.Size;
          break;
        case Chunk.TrailerStart:
          if (byte === 0x0d) this.state = Chunk.FinalLf;
          else {
            this.state = Chunk.TrailerLine;
            this.countTrailer(byte);
          }
          break;
        case Chunk.TrailerLine:
          if (byte === 0x0d) this.state = Chunk.TrailerLf;
          else this.countTrailer(byte);
          break;
        case Chunk.TrailerLf:
          if (byte !== 0x0a) throw new FramingError('a trailer line does not end in CRLF');
          this.state = Chunk.TrailerStart;
          break;
        case Chunk.FinalLf:
          if (byte !== 0x0a) throw new FramingError('the chunked body does not end in CRLF');
          this.state = Chunk.Done;
          break;
      }
    }
    return at - offset;
  }

  private countTrailer(byte: number): void {
    if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f || ++this.trailer > MAX_TRAILER_BYTES) throw new FramingError('a trailer is malformed or too long');
  }
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return -1;
}

class LengthFramer implements BodyFramer {
  constructor(private remaining: number) {}

  get done(): boolean {
    return this.remaining === 0;
  }

  take(chunk: Buffer, offset: number): number {
    const step = Math.min(this.remaining, chunk.length - offset);
    this.remaining -= step;
    return step;
  }
}

/** A body that ends when the connection does: every byte belongs to it, and it is never done by bytes. */
class UntilCloseFramer implements BodyFramer {
  readonly done = false;

  take(chunk: Buffer, offset: number): number {
    return chunk.length - offset;
  }
}

const EMPTY_BODY: BodyFramer = { done: true, take: () => 0 };

export function framerFor(framing: Framing): BodyFramer {
  switch (framing.kind) {
    case 'none':
      return EMPTY_BODY;
    case 'length':
      return new LengthFramer(framing.length);
    case 'chunked':
      return new ChunkedFramer();
    case 'close':
      return new UntilCloseFramer();
  }
}
