/**
 * @module edge/exchange
 * One API request and its answer, as the API (edge/api.ts) sees it: a method, a few headers, a
 * body read within a limit, and one JSON answer. Two kinds serve it: Node's HTTP server
 * (`NodeExchange`, for HTTPS, and for any connection Node's server already holds), and the
 * connection-level lane (edge/lane.ts), which reads plain requests on a raw connection without
 * building Node's request and response objects for them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBodyThen, sendJsonText, type BodyCallback } from './http.js';

export interface ApiExchange {
  readonly method: string;
  /** The first value of a header; `name` in lower case. */
  header(name: string): string | undefined;
  /** The TCP peer's address. */
  readonly remoteAddress: string | undefined;
  /** The whole body was read (the connection can carry another request). */
  readonly complete: boolean;
  /** Reads the whole body, refusing past `limit` bytes (413) or when it stalls (408); tells `done` once. */
  readBody(limit: number, stallTimeoutMs: number, done: BodyCallback): void;
  /** The answer's head was sent. */
  readonly answered: boolean;
  /**
   * Answers with JSON text, `headers` a flat list of names and values; with `close`, the
   * connection ends after it. Returns the body's bytes.
   */
  send(status: number, payload: string, headers: string[], close: boolean): number;
  /** Cuts the connection (an answer that cannot be finished). */
  destroy(): void;
  /** Runs `listener` once if the client goes before the whole answer was written (at once if it has). */
  onClientGone(listener: () => void): void;
}

/** An API exchange on Node's HTTP server. */
export class NodeExchange implements ApiExchange {
  constructor(
    readonly request: IncomingMessage,
    readonly response: ServerResponse,
  ) {}

  get method(): string {
    return this.request.method ?? 'GET';
  }

  header(name: string): string | undefined {
    const value = this.request.headers[name];
    return typeof value === 'string' ? value : value?.[0];
  }

  get remoteAddress(): string | undefined {
    return this.request.socket.remoteAddress;
  }

  get complete(): boolean {
    return this.request.complete;
  }

  readBody(limit: number, stallTimeoutMs: number, done: BodyCallback): void {
    readBodyThen(this.request, limit, stallTimeoutMs, done);
  }

  get answered(): boolean {
    return this.response.headersSent;
  }

  send(status: number, payload: string, headers: string[], close: boolean): number {
    if (close) headers.push('connection', 'close');
    return sendJsonText(this.response, status, payload, headers);
  }

  destroy(): void {
    this.response.destroy();
  }

  onClientGone(listener: () => void): void {
    const response = this.response;
    if (response.destroyed) {
      if (!response.writableFinished) listener();
      return;
    }
    response.once('close', () => {
      if (!response.writableFinished) listener();
    });
  }
}
