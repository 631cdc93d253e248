/**
 * @module kit/errors
 * One error type for every failure a caller can see. It carries a stable machine code
 * (`not_found`), an HTTP status and a human sentence that says what was wrong and how to fix it.
 * The edge turns it into the micro error body M3O clients read: `{ id, code, detail, status }`.
 */
import { STATUS_CODES } from 'node:http';

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'payment_required'
  | 'method_not_allowed'
  | 'request_timeout'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'too_many_requests'
  | 'internal'
  | 'unavailable';

export class AltoError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string;
  /** Extra response headers the failure calls for, such as `Retry-After` on a 429. */
  headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, status: number, detail: string) {
    super(detail);
    this.name = 'AltoError';
    this.code = code;
    this.status = status;
    this.detail = detail;
  }

  /** Adds response headers to send with this error; returns the error, to throw it. */
  withHeaders(headers: Record<string, string>): this {
    this.headers = { ...this.headers, ...headers };
    return this;
  }

  /** The JSON body sent to clients: micro's error shape plus the request id. */
  toBody(requestId?: string): ErrorBody {
    return {
      id: this.code,
      code: this.status,
      detail: this.detail,
      status: STATUS_CODES[this.status] ?? 'Error',
      ...(requestId ? { request_id: requestId } : {}),
    };
  }
}

export interface ErrorBody {
  /** Stable machine code, e.g. `not_found`. */
  id: string;
  /** HTTP status code, as micro errors carry it. */
  code: number;
  /** What went wrong, for a human. */
  detail: string;
  /** HTTP status text. */
  status: string;
  request_id?: string;
}

/** Factories, so call sites read as sentences: `errors.notFound('table "x" does not exist')`. */
export const errors = {
  badRequest: (detail: string) => new AltoError('bad_request', 400, detail),
  unauthorized: (detail: string) => new AltoError('unauthorized', 401, detail),
  /** A spend or storage cap is reached: more needs a higher limit, not waiting. */
  paymentRequired: (detail: string) => new AltoError('payment_required', 402, detail),
  forbidden: (detail: string) => new AltoError('forbidden', 403, detail),
  notFound: (detail: string) => new AltoError('not_found', 404, detail),
  methodNotAllowed: (detail: string) => new AltoError('method_not_allowed', 405, detail),
  /** The client stopped sending its request (a body that stalls). */
  requestTimeout: (detail: string) => new AltoError('request_timeout', 408, detail),
  conflict: (detail: string) => new AltoError('conflict', 409, detail),
  payloadTooLarge: (detail: string) => new AltoError('payload_too_large', 413, detail),
  unsupportedMediaType: (detail: string) => new AltoError('unsupported_media_type', 415, detail),
  tooManyRequests: (detail: string) => new AltoError('too_many_requests', 429, detail),
  internal: (detail = 'internal error; the server log has the details under this request id') =>
    new AltoError('internal', 500, detail),
  unavailable: (detail: string) => new AltoError('unavailable', 503, detail),
};

export function isAltoError(value: unknown): value is AltoError {
  return value instanceof AltoError;
}
