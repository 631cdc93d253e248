/**
 * @module platform/calls
 * One call's accounting, shared by every door that acts for a key or a signed URL: the API
 * (`/v1/...`, over HTTP and websocket) and the plain HTTP routes services serve themselves
 * (`/space/...`, `/files/...`). Before the call: admitted under the project's and the key's
 * limits (rate, monthly quota, spend cap), refusing with 429 or 402. After it: the reserved
 * spend settled and one usage record written, priced only when the call succeeded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isAltoError } from '../kit/errors.js';
import type { Admission, Payer } from './limits.js';
import type { Platform } from './platform.js';
import type { Tenant } from './service.js';

export type { Payer } from './limits.js';

/** An admitted call, to be finished exactly once with `finishCall`. */
export interface AdmittedCall {
  payer: Payer;
  service: string;
  endpoint: string;
  /** Undefined when nothing is metered (metering off). */
  admission: Admission | undefined;
}

/** The payer of a call made with a signed URL of a project: the project itself, no key. */
export function projectPayer(projectId: string): Payer {
  return { projectId, projectName: projectId, keyId: '', role: 'project' };
}

/**
 * Admits one call for `payer` as `service/endpoint`, or throws the limit's 429/402 (with its
 * RateLimit-* headers). Metering off (`ALTO_METERING=off`) admits everything and counts nothing.
 */
export async function admitCall(platform: Platform, payer: Payer | Tenant, service: string, endpoint: string): Promise<AdmittedCall> {
  if (platform.config.metering === false) return { payer, service, endpoint, admission: undefined };
  const admission = await platform.limits.admit(payer, service, endpoint);
  return { payer, service, endpoint, admission };
}

/**
 * `admitCall` at once, when the limits decide from this process's memory alone (see
 * `Limits.admitNow`); undefined when the store must be asked or the call may be refused (then
 * `admitCall`).
 */
export function admitCallNow(platform: Platform, payer: Payer | Tenant, service: string, endpoint: string): AdmittedCall | undefined {
  if (platform.config.metering === false) return { payer, service, endpoint, admission: undefined };
  const admission = platform.limits.admitNow(payer, service, endpoint);
  return admission && { payer, service, endpoint, admission };
}

/** Settles the call's reserved spend and records it; a failed call (status 400 and up) pays nothing. */
export function finishCall(platform: Platform, call: AdmittedCall, status: number, bytesIn: number, bytesOut: number): void {
  if (platform.config.metering === false) return;
  const succeeded = status < 400;
  platform.limits.settle(call.admission, succeeded);
  platform.meter.record({
    at: Date.now(),
    projectId: call.payer.projectId,
    keyId: call.payer.keyId,
    service: call.service,
    endpoint: call.endpoint,
    status,
    bytesIn,
    bytesOut,
    // At the price list's price when it was admitted.
    priceMicros: succeeded ? (call.admission?.priceMicros ?? platform.prices.requestPrice(call.service, call.endpoint)) : 0,
  });
}

/**
 * A refused call by a known key is still a call it made: recorded (no price) so usage counts
 * every call. Used where admission itself failed, so there is no `AdmittedCall`.
 */
export function recordRefusedCall(platform: Platform, payer: Payer, service: string, endpoint: string, status: number, bytesIn: number, bytesOut: number): void {
  finishCall(platform, { payer, service, endpoint, admission: undefined }, status, bytesIn, bytesOut);
}

/**
 * For a plain HTTP route acting for `payer` as `service/endpoint`: admits the call (its RateLimit-*
 * headers set on the response), and finishes it once the response is done or the client left,
 * with the status sent and the body sizes declared. Throws the 429/402 for the route to answer;
 * that refusal is recorded here.
 */
export async function admitHttpCall(
  platform: Platform,
  payer: Payer,
  service: string,
  endpoint: string,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  let call: AdmittedCall;
  try {
    call = await admitCall(platform, payer, service, endpoint);
  } catch (error) {
    if (isAltoError(error)) recordRefusedCall(platform, payer, service, endpoint, error.status, 0, 0);
    throw error;
  }
  for (const [name, value] of Object.entries(call.admission?.headers ?? {})) response.setHeader(name, value);
  response.once('close', () => {
    // A client gone before the answer was sent: 499, as proxies log it; not paid for.
    const status = response.headersSent ? response.statusCode : 499;
    finishCall(platform, call, status, declaredLength(request.headers['content-length']), request.method === 'HEAD' ? 0 : declaredLength(response.getHeader('content-length')));
  });
}

function declaredLength(value: unknown): number {
  const length = Number(value);
  return Number.isSafeInteger(length) && length > 0 ? length : 0;
}
