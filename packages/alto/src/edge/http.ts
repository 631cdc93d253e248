/**
 * @module edge/http
 * Small HTTP helpers for the edge: bounded body reading, JSON replies, credentials from
 * headers, and request ids.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AltoError, errors } from '../kit/errors.js';
import { holdsNulOrLoneSurrogate } from '../kit/text.js';

export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** What the edge reads of a request's target: its path and its query string. */
export type RequestTarget = Pick<URL, 'pathname' | 'searchParams'>;

/** `/v1/service/Endpoint` or `/v1/service/Service/Endpoint`, then nothing or a query string. */
const PLAIN_API_TARGET = /^\/v1(?:\/[A-Za-z0-9_-]+){2,3}(?:\?[^#]*)?$/;

/**
 * The path and query of a request target. A plain API path (letters, digits, `-` and `_` only:
 * nothing to normalise) is split as it is, which is most calls; anything else goes through the
 * WHATWG URL parser, as every route other than the API's does.
 */
export function requestTargetOf(raw: string): RequestTarget {
  if (!PLAIN_API_TARGET.test(raw)) return new URL(raw, 'http://alto.local');
  const query = raw.indexOf('?');
  return query < 0
    ? { pathname: raw, searchParams: new URLSearchParams() }
    : { pathname: raw.slice(0, query), searchParams: new URLSearchParams(raw.slice(query + 1)) };
}

/** The caller's `X-Request-Id` when it is sane, else a new one. */
export function requestIdOf(request: IncomingMessage): string {
  return requestIdFrom(request.headers['x-request-id']);
}

/** An `X-Request-Id` value when it is sane, else a new id. */
export function requestIdFrom(given: string | string[] | undefined): string {
  return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
}

/**
 * After a body passes the limit, this much more is read and thrown away before answering 413,
 * so an ordinary client, still sending, reads the 413 instead of failing with a broken pipe.
 */
const DISCARD_ALLOWANCE = 8 * 1024 * 1024;

/** How long a body may send nothing before it is cut with 408 (`ALTO_BODY_TIMEOUT_MS`). */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

/** Told once how a body read ended: the whole body, or why it has none. */
export type BodyCallback = (error: Error | undefined, body: Buffer | undefined) => void;

/**
 * Reads the whole body, refusing with 413 once it passes `limit` bytes, and with 408 when no
 * byte comes for `stallTimeoutMs`. What was read is let go as soon as the read fails, and when the
 * client leaves mid-body, so a connection that goes takes its memory with it.
 */
export function readBody(request: IncomingMessage, limit: number, stallTimeoutMs = DEFAULT_BODY_TIMEOUT_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => readBodyThen(request, limit, stallTimeoutMs, (error, body) => (error ? reject(error) : resolve(body!))));
}

/**
 * `readBody` for the API's hot path: `done` is called once, with the body or the error, and no
 * promise is made, so the call goes on in the same tick as the body's last byte.
 */
export function readBodyThen(request: IncomingMessage, limit: number, stallTimeoutMs: number, done: BodyCallback): void {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit + DISCARD_ALLOWANCE) return done(tooLarge(limit), undefined);
  if (request.destroyed) return done(new Error('the client closed the connection before the body ended'), undefined);
  let chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const overLimit = () => size > limit;
  const settle = (error: Error | undefined) => {
    if (settled) return;
    settled = true;
    clearTimeout(stall);
    if (error) {
      request.off('data', onData);
      chunks = [];
      // Nothing more is read: the reply closes the connection (see the callers).
      request.pause();
      done(error, undefined);
    } else {
      // Most bodies come in one chunk, a copy the parser made for this request: no need to copy it again.
      done(undefined, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    }
  };
  const stalled = () =>
    settle(errors.requestTimeout(`the request body stalled: no byte came for ${Math.round(stallTimeoutMs / 1000)} s; send the whole body at once`));
  const stall = setTimeout(stalled, stallTimeoutMs);
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    stall.refresh();
    if (!overLimit()) chunks.push(chunk);
    else {
      // Past the limit nothing is kept; past the allowance, nothing more is read.
      chunks = [];
      if (size > limit + DISCARD_ALLOWANCE) settle(tooLarge(limit));
    }
  };
  // `on`, not `once`: settle runs once anyway, and `once` wraps each listener in a new function.
  request.on('data', onData);
  request.on('end', () => settle(overLimit() ? tooLarge(limit) : undefined));
  request.on('error', (error) => settle(error));
  request.on('close', () => settle(request.complete ? undefined : new Error('the client closed the connection before the body ended')));
}

function tooLarge(limit: number): AltoError {
  return errors.payloadTooLarge(`the request body is larger than ${limit} bytes, the most this server accepts`);
}

/** The deepest nesting of arrays and objects a JSON request may have. */
export const MAX_JSON_DEPTH = 64;

/**
 * Whether JSON text nests arrays and objects deeper than `limit`, found in one pass over the text
 * before any parser sees it (a parser, or a handler walking the value, recurses once per level).
 * Brackets inside strings do not count; text that is not JSON is left for the parser to refuse.
 */
export function jsonNestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (inString) {
      if (code === 0x5c) index++; // backslash: skip the escaped character
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x5b || code === 0x7b) {
      if (++depth > limit) return true;
    } else if (code === 0x5d || code === 0x7d) depth--;
  }
  return false;
}

/** Parses JSON from a request (body, message or query value), refusing nesting past MAX_JSON_DEPTH with 400. */
export function parseRequestJson(text: string, what = 'the body'): unknown {
  if (jsonNestsDeeperThan(text, MAX_JSON_DEPTH)) {
    throw errors.badRequest(`${what} nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep; flatten it`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw errors.badRequest(`${what} is not valid JSON: ${(error as Error).message}`);
  }
  // JSON text can only carry a NUL or a lone surrogate as a \u escape (a raw NUL is not JSON, and
  // UTF-8 cannot encode half a pair), so text without one is not walked.
  if (text.includes('\\u')) refuseUnportableText(value, what);
  return value;
}

/**
 * The first string or field name in a request's value that holds a NUL character or half of a
 * surrogate pair, as a path (`record.tags[2]`); undefined when there is none.
 */
export function unportableTextPath(value: unknown, path = ''): string | undefined {
  if (typeof value === 'string') return holdsNulOrLoneSurrogate(value) ? path || 'a value' : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = unportableTextPath(value[i], `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  for (const [name, field] of Object.entries(value)) {
    if (holdsNulOrLoneSurrogate(name)) return `${path || 'the body'}: a field name`;
    const found = unportableTextPath(field, path ? `${path}.${name}` : name);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * Refuses a request value holding text no store keeps alike: PostgreSQL refuses a NUL character
 * and half of a surrogate pair where SQLite keeps them, so a project holding such text could not
 * move between the two. Every store refuses it at the door instead, with where it was.
 */
export function refuseUnportableText(value: unknown, what = 'the body'): void {
  const path = unportableTextPath(value);
  if (path === undefined) return;
  throw errors.badRequest(
    `${path === 'a value' ? what : path}: text may not hold a NUL character (\\u0000) or half of a surrogate pair; ` +
      'send binary data base64-encoded',
  );
}

/** Parses a JSON body into an object; an empty body is `{}`. */
export function parseJsonObject(body: Buffer | string): Record<string, unknown> {
  if (body.length === 0) return {};
  const text = typeof body === 'string' ? body : body.toString('utf8');
  if (isBlank(text)) return {};
  const value = parseRequestJson(text);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw errors.badRequest('the body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

/** Whether text is empty or only JSON whitespace (without making a trimmed copy of it). */
function isBlank(text: string): boolean {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09) continue;
    // Past ASCII, whatever `trim` calls white space (a byte-order mark, say) counts too.
    return code >= 0x80 && text.trim() === '';
  }
  return true;
}

/** The API key from `Authorization: Bearer <key>` or Basic auth with the key as the password. */
export function credentialsOf(request: IncomingMessage, query?: URLSearchParams): string | undefined {
  return credentialsFrom(request.headers.authorization, query);
}

/** The API key in an Authorization header's value (or `?key=`), as `credentialsOf` reads it. */
export function credentialsFrom(header: string | undefined, query?: URLSearchParams): string | undefined {
  if (header) {
    const space = header.indexOf(' ');
    const scheme = header.slice(0, space).toLowerCase();
    const value = header.slice(space + 1).trim();
    if (space > 0 && scheme === 'bearer' && value) return value;
    if (space > 0 && scheme === 'basic' && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const password = colon >= 0 ? decoded.slice(colon + 1) : decoded;
      if (password) return password;
    }
    throw errors.unauthorized('the Authorization header must be "Bearer <key>" or Basic auth with the key as the password');
  }
  // Browsers cannot set headers on a websocket; they may pass the key as ?key=.
  return query?.get('key') ?? undefined;
}

const HOST_PATTERN = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

/**
 * `http://host:port` as the caller reached us: the Host header, and X-Forwarded-Proto when a
 * TLS proxy sits in front. Undefined when the Host header is missing or malformed.
 */
export function originOf(request: IncomingMessage): string | undefined {
  const forwarded = request.headers['x-forwarded-proto'];
  return originFrom(request.headers.host, typeof forwarded === 'string' ? forwarded : undefined);
}

/** `originOf` from the Host and X-Forwarded-Proto values. */
export function originFrom(host: string | undefined, forwarded: string | undefined): string | undefined {
  if (typeof host !== 'string' || !HOST_PATTERN.test(host)) return undefined;
  const proto = typeof forwarded === 'string' ? forwarded.split(',')[0].trim().toLowerCase() : '';
  return `${proto === 'https' ? 'https' : 'http'}://${host}`;
}

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): number {
  const payload = JSON.stringify(body);
  const length = Buffer.byteLength(payload);
  response.writeHead(status, { 'content-type': JSON_CONTENT_TYPE, 'content-length': length, ...headers });
  response.end(payload);
  return length;
}

/**
 * Answers with JSON text already made, and `headers` as a flat list of names and values (Node
 * takes the list as it is, where an object would be walked key by key). Returns the body's bytes.
 */
export function sendJsonText(response: ServerResponse, status: number, payload: string, headers: string[]): number {
  const length = Buffer.byteLength(payload);
  headers.push('content-type', JSON_CONTENT_TYPE, 'content-length', String(length));
  response.writeHead(status, headers);
  response.end(payload);
  return length;
}
