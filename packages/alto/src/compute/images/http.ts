/**
 * @module compute/images/http
 * The HTTP requests the registry client makes, on node:http/https directly: registries answer
 * blob requests with redirects to storage (S3, a CDN) that must be followed without our
 * `Authorization` header, downloads need `Range`, and a stalled connection must fail rather
 * than hang. Bodies stay streams so a layer never sits whole in memory.
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';

export interface RequestOptions {
  method?: 'GET' | 'HEAD';
  headers?: OutgoingHttpHeaders;
  /** Fails the request when the connection is silent this long (connect, headers or body). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  /** Redirects followed at most. */
  maxRedirects?: number;
  /**
   * The outbound guard for a tenant's pull: called for the URL of every hop (the first request
   * and each redirect), it refuses the host or answers the lookup that pins the connection to
   * the addresses it checked. Without it (an admin's pull) the system resolver is used.
   */
  guard?: (url: URL) => Promise<LookupFunction>;
}

export interface HttpResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: IncomingMessage;
  /** The URL that finally answered, after redirects. */
  url: URL;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const USER_AGENT = 'alto-images/1';

/** A transport failure (refused, reset, timed out): worth a retry, unlike an HTTP answer. */
export class NetworkError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'NetworkError';
  }
}

async function sendOnce(url: URL, options: RequestOptions): Promise<HttpResponse> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const lookup = options.guard ? await options.guard(url) : undefined;
  return new Promise((resolve, reject) => {
    const outgoing = send(url, {
      method: options.method ?? 'GET',
      headers: { 'user-agent': USER_AGENT, ...options.headers },
      signal: options.signal,
      ...(lookup ? { lookup, agent: false } : {}),
    });
    outgoing.setTimeout(idleTimeoutMs, () => {
      outgoing.destroy(new NetworkError(`no answer from ${url.host} for ${idleTimeoutMs / 1000}s`));
    });
    outgoing.once('error', (error) => {
      reject(error instanceof NetworkError || (error as Error).name === 'AbortError' ? error : new NetworkError(`${url.host}: ${(error as Error).message}`, error));
    });
    outgoing.once('response', (response) => {
      // The body stream inherits the socket's idle timeout through the request's.
      response.once('aborted', () => response.destroy(new NetworkError(`${url.host} closed the connection mid-transfer`)));
      resolve({ status: response.statusCode ?? 0, headers: response.headers, body: response, url });
    });
    outgoing.end();
  });
}

/**
 * Sends a request and follows redirects. On a redirect to another host the `Authorization`
 * header is dropped: storage URLs carry their own signature and reject (or would leak) ours.
 */
export async function send(url: URL, options: RequestOptions = {}): Promise<HttpResponse> {
  let current = url;
  let headers = { ...options.headers };
  const maxRedirects = options.maxRedirects ?? 10;
  for (let hop = 0; ; hop++) {
    const response = await sendOnce(current, { ...options, headers });
    if (![301, 302, 303, 307, 308].includes(response.status) || !response.headers.location) return response;
    response.body.resume();
    if (hop >= maxRedirects) throw new NetworkError(`${url.host}: more than ${maxRedirects} redirects`);
    const next = new URL(response.headers.location, current);
    if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new NetworkError(`${current.host} redirected to a ${next.protocol} URL`);
    if (current.protocol === 'https:' && next.protocol === 'http:') {
      throw new NetworkError(`${current.host} redirected from HTTPS to plain HTTP (${next.host}); refused`);
    }
    if (next.host !== current.host) {
      const { authorization: _dropped, ...rest } = headers;
      headers = rest;
    }
    current = next;
  }
}

/** Reads a whole (small) body, refusing more than `limit` bytes. */
export async function readBody(response: HttpResponse, limit: number): Promise<Buffer> {
  const tooLarge = () => new Error(`${response.url.host} sent more than ${limit} bytes for a document that must be smaller`);
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    response.body.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  let exceeded = false;
  try {
    for await (const chunk of response.body) {
      total += (chunk as Buffer).length;
      if (total > limit) {
        exceeded = true;
        break;
      }
      chunks.push(chunk as Buffer);
    }
  } catch (error) {
    throw error instanceof NetworkError ? error : new NetworkError(`${response.url.host}: ${(error as Error).message}`, error);
  }
  if (exceeded) {
    response.body.destroy();
    throw tooLarge();
  }
  return Buffer.concat(chunks);
}

/** Drains and discards a body so the connection can be reused. */
export function discard(response: HttpResponse): void {
  response.body.resume();
}
