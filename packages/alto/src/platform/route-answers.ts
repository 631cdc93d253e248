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
 * The failure a route answers for `error`: an AltoError as it is, anything else logged (`what`)
 * and `internal`. Undefined when no answer is owed: a client that went away, or an answer already
 * begun (then cut: its status is sent). For routes that write the failure in a format of their
 * own (the registry's); the others call sendRouteError.
 */
export function routeFailure(request: IncomingMessage, response: ServerResponse, error: unknown, requestId: string, log: Logger, what: string, internal: AltoError = errors.internal()): AltoError | undefined {
  let failure: AltoError;
  if (isAltoError(error)) failure = error;
  else {
    // A client that vanished mid-request is not our fault and needs no answer.
    if (request.destroyed) {
      if (!response.headersSent) response.destroy();
      return undefined;
    }
    log.error({ err: error, req_id: requestId }, what);
    failure = internal;
  }
  if (response.headersSent) {
    response.destroy();
    return undefined;
  }
  return failure;
}

/** Answers a route's failure as the API does (see routeFailure for what is answered, and when not). */
export function sendRouteError(request: IncomingMessage, response: ServerResponse, error: unknown, requestId: string, log: Logger, options: RouteErrorOptions): void {
  const failure = routeFailure(request, response, error, requestId, log, options.what);
  if (!failure) return;
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
