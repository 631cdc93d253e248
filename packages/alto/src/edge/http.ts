/**
 * @module edge/http
 * Small HTTP helpers for the edge: bounded body reading, JSON replies, credentials from
 * headers, and request ids.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AltoError, errors } from '../kit/errors.js';

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's `X-Request-Id` when it is sane, else a new one. */
export function requestIdOf(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
}

/**
 * After a body passes the limit, this much more is read and thrown away before answering 413,
 * so an ordinary client, still sending, reads the 413 instead of failing with a broken pipe.
 */
const DISCARD_ALLOWANCE = 8 * 1024 * 1024;

/** Reads the whole body, refusing with 413 once it passes `limit` bytes. */
export function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit + DISCARD_ALLOWANCE) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const overLimit = () => size > limit;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (!overLimit()) chunks.push(chunk);
      else if (size > limit + DISCARD_ALLOWANCE) {
        request.pause();
        reject(tooLarge(limit));
      }
    });
    request.once('end', () => (overLimit() ? reject(tooLarge(limit)) : resolve(Buffer.concat(chunks, size))));
    request.once('error', reject);
  });
}

function tooLarge(limit: number): AltoError {
  return errors.payloadTooLarge(`the request body is larger than ${limit} bytes, the most this server accepts`);
}

/** Parses a JSON body into an object; an empty body is `{}`. */
export function parseJsonObject(body: Buffer | string): Record<string, unknown> {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw errors.badRequest(`the body is not valid JSON: ${(error as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw errors.badRequest('the body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

/** The API key from `Authorization: Bearer <key>` or Basic auth with the key as the password. */
export function credentialsOf(request: IncomingMessage, query?: URLSearchParams): string | undefined {
  const header = request.headers.authorization;
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
  const host = request.headers.host;
  if (typeof host !== 'string' || !HOST_PATTERN.test(host)) return undefined;
  const forwarded = request.headers['x-forwarded-proto'];
  const proto = typeof forwarded === 'string' ? forwarded.split(',')[0].trim().toLowerCase() : '';
  return `${proto === 'https' ? 'https' : 'http'}://${host}`;
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): number {
  const payload = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  response.end(payload);
  return Buffer.byteLength(payload);
}
