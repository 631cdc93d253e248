/**
 * @module platform/route-answers
 * The answers of HTTP routes that services serve beside the API (platform/service.ts HttpRoute:
 * space objects, project archives): JSON bodies with their length, and a failed request's error
 * as the API gives it, with its request id.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors, isAltoError, type AltoError } from '../kit/errors.js';
import type { Logger } from '../kit/logger.js';

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** A JSON answer with its length, never cached. */
export function sendJsonAnswer(response: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  response.writeHead(status, { 'content-type': JSON_CONTENT_TYPE, 'content-length': Buffer.byteLength(payload), 'cache-control': 'no-store' });
  response.end(payload);
}

export interface RouteErrorOptions {
  /** What failed, for the log line of an unexpected error ("space: serving an object failed"). */
  what: string;
  /** Whether the request's body was all read: if not, the connection closes after the answer (the rest would be left in the socket). */
  bodyRead: boolean;
  /** More headers for this failure (CORS, Content-Range). */
  headers?: (failure: AltoError) => Record<string, string>;
}

/**
 * Answers a route's failure: an AltoError as it is, anything else logged and answered 500. A
 * client that went away gets no answer, and an answer already begun is cut (its status is sent).
 */
export function sendRouteError(request: IncomingMessage, response: ServerResponse, error: unknown, requestId: string, log: Logger, options: RouteErrorOptions): void {
  let failure: AltoError;
  if (isAltoError(error)) failure = error;
  else {
    // A client that vanished mid-request is not our fault and needs no answer.
    if (request.destroyed) {
      if (!response.headersSent) response.destroy();
      return;
    }
    log.error({ err: error, req_id: requestId }, options.what);
    failure = errors.internal();
  }
  if (response.headersSent) {
    response.destroy();
    return;
  }
  const payload = JSON.stringify(failure.toBody(requestId));
  response.writeHead(failure.status, {
    ...options.headers?.(failure),
    ...failure.headers,
    'content-type': JSON_CONTENT_TYPE,
    'content-length': Buffer.byteLength(payload),
    'x-request-id': requestId,
    ...(options.bodyRead ? {} : { connection: 'close' }),
  });
  response.end(request.method === 'HEAD' ? undefined : payload);
}
