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

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Control characters a field value must not hold (HTAB is allowed). */
const VALUE_CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
/** A request target: visible ASCII only. */
const TARGET = /^[\x21-\x7e]+$/;
const DIGITS = /^\d{1,15}$/;
const REQUEST_LINE_VERSION = ' HTTP/1.1';
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;

const HEAD_END = Buffer.from('\r\n\r\n');

/** What a node of the cloud adds to a request it relays to another node's edge (its own name). */
export const VIA_HEADER = 'x-alto-via';

/** How a body ends. */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

const NO_BODY: Framing = { kind: 'none' };

export interface RequestHead {
  method: string;
  target: string;
  /** Raw name, value pairs as received (names in their case), in order. */
  headers: string[];
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
  /** Bytes the head took, its blank line included. */
  length: number;
}

export interface ResponseHead {
  minor: 0 | 1;
  status: number;
  reason: string;
  headers: string[];
  /** Content-Length, when one clear one was given. */
  contentLength: number | undefined;
  /** Transfer-Encoding ends in chunked (true), names another coding (false), or is absent (undefined). */
  chunked: boolean | undefined;
  close: boolean;
  connectionNamed: string[];
  /** The instance's keep-alive timeout, from `Keep-Alive: timeout=N`, in ms. */
  keepAliveMs: number | undefined;
  length: number;
}

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
  const lines = buffer.toString('latin1', 0, end - 4).split('\r\n');
  const requestLine = lines[0];
  const firstSpace = requestLine.indexOf(' ');
  const lastSpace = requestLine.lastIndexOf(' ');
  if (firstSpace <= 0 || lastSpace === firstSpace || !requestLine.endsWith(REQUEST_LINE_VERSION) || lastSpace !== requestLine.length - REQUEST_LINE_VERSION.length) return undefined;
  const method = requestLine.slice(0, firstSpace);
  const target = requestLine.slice(firstSpace + 1, lastSpace);
  if (!TOKEN.test(method) || method === 'CONNECT' || !TARGET.test(target)) return undefined;
  const fields = readFields(lines);
  if (!fields) return undefined;
  const { headers, hosts, lengths, codings, connection, upgrade, via } = fields;
  if (hosts.length !== 1) return undefined;
  let framing: Framing = NO_BODY;
  if (codings.length > 0) {
    // One coding, chunked, and no length beside it: anything else is the stuff of smuggling.
    if (lengths.length > 0 || codings.length !== 1 || codings[0].toLowerCase() !== 'chunked') return undefined;
    framing = { kind: 'chunked' };
  } else if (lengths.length > 0) {
    const length = oneLength(lengths);
    if (length === undefined) return undefined;
    if (length > 0) framing = { kind: 'length', length };
  }
  const connectionNamed = connection ? listTokens(connection) : [];
  const upgrading = upgrade !== undefined && connectionNamed.includes('upgrade');
  return {
    method,
    target,
    headers,
    host: hosts[0],
    framing,
    close: connectionNamed.includes('close'),
    upgrade: upgrading ? upgrade : undefined,
    connectionNamed,
    relayed: via,
    length: end,
  };
}

/**
 * The response head at the start of `buffer` (whole, `end` from headEnd), or a string saying
 * what is wrong with it.
 */
export function parseResponseHead(buffer: Buffer, end: number): ResponseHead | string {
  const lines = buffer.toString('latin1', 0, end - 4).split('\r\n');
  const status = STATUS_LINE.exec(lines[0]);
  if (!status) return `its status line is not HTTP/1.x (${JSON.stringify(lines[0].slice(0, 40))})`;
  const fields = readFields(lines);
  if (!fields) return 'its headers are malformed';
  const { headers, lengths, codings, connection, keepAlive } = fields;
  let contentLength: number | undefined;
  if (lengths.length > 0) {
    contentLength = oneLength(lengths);
    if (contentLength === undefined) return 'its Content-Length is not one whole number';
  }
  let chunked: boolean | undefined;
  if (codings.length > 0) {
    const last = codings.join(',').split(',').pop()?.trim().toLowerCase();
    chunked = last === 'chunked';
  }
  const connectionNamed = connection ? listTokens(connection) : [];
  const timeout = keepAlive ? /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i.exec(keepAlive) : null;
  return {
    minor: status[1] === '1' ? 1 : 0,
    status: Number(status[2]),
    reason: status[3] ?? '',
    headers,
    contentLength,
    chunked,
    close: connectionNamed.includes('close') || (status[1] === '0' && !connectionNamed.includes('keep-alive')),
    connectionNamed,
    keepAliveMs: timeout ? Number(timeout[1]) * 1000 : undefined,
    length: end,
  };
}

/** How the body of a response to `method` ends (RFC 9112 section 6.3). */
export function responseFraming(method: string, head: ResponseHead): Framing {
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304) return NO_BODY;
  if (head.chunked === true) return { kind: 'chunked' };
  if (head.chunked === false) return { kind: 'close' };
  if (head.contentLength !== undefined) return head.contentLength > 0 ? { kind: 'length', length: head.contentLength } : NO_BODY;
  return { kind: 'close' };
}

interface Fields {
  headers: string[];
  hosts: string[];
  lengths: string[];
  codings: string[];
  connection: string | undefined;
  upgrade: string | undefined;
  keepAlive: string | undefined;
  /** An `x-alto-via` header came. */
  via: boolean;
}

/** The header lines after the first, or undefined when one is malformed or there are too many. */
function readFields(lines: string[]): Fields | undefined {
  if (lines.length - 1 > MAX_HEADERS) return undefined;
  const fields: Fields = { headers: [], hosts: [], lengths: [], codings: [], connection: undefined, upgrade: undefined, keepAlive: undefined, via: false };
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index];
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon);
    // No space before the colon (RFC 9112 section 5.1), no folding: a token, then the value.
    if (!TOKEN.test(name)) return undefined;
    const value = trimWhitespace(line.slice(colon + 1));
    if (VALUE_CONTROL.test(value)) return undefined;
    fields.headers.push(name, value);
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') fields.hosts.push(value);
        break;
      case 7:
        if (name.toLowerCase() === 'upgrade') fields.upgrade = value;
        break;
      case 10: {
        const lower = name.toLowerCase();
        if (lower === 'connection') fields.connection = fields.connection === undefined ? value : `${fields.connection}, ${value}`;
        else if (lower === 'keep-alive') fields.keepAlive = value;
        else if (lower === VIA_HEADER) fields.via = true;
        break;
      }
      case 14:
        if (name.toLowerCase() === 'content-length') fields.lengths.push(value);
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') fields.codings.push(value);
        break;
    }
  }
  return fields;
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

/** Without leading and trailing spaces and tabs (only those: other whitespace is refused as a control). */
function trimWhitespace(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && (value.charCodeAt(start) === 32 || value.charCodeAt(start) === 9)) start++;
  while (end > start && (value.charCodeAt(end - 1) === 32 || value.charCodeAt(end - 1) === 9)) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
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
