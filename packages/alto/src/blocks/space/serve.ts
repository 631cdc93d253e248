/**
 * @module blocks/space/serve
 * `/space/{projectId}/{environment}/{name}`: objects over plain HTTP, streamed straight between
 * the socket and the object store, so no object is ever held in memory.
 *
 * - GET/HEAD: public objects to anyone; private ones with a key of that project and
 *   environment (`Authorization: Bearer`) or a presigned URL from space/Download. Ranges,
 *   ETag/If-None-Match, and headers that keep a stored HTML page from running as this origin.
 * - PUT: the body becomes the object, with a presigned URL from space/Upload or a key.
 * - OPTIONS: CORS preflight, so browser apps can use presigned URLs directly.
 *
 * Without a key or signature, a private object answers exactly as a missing one (404), so its
 * existence does not leak.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AltoError, errors } from '../../kit/errors.js';
import { admitHttpCall, projectPayer } from '../../platform/calls.js';
import type { Platform } from '../../platform/platform.js';
import { sendRouteError } from '../../platform/route-answers.js';
import type { Component, HttpRoute, Tenant } from '../../platform/service.js';
import { projectIdOf } from '../../platform/tenancy.js';
import { RangeNotSatisfiableError, type RangeRequest, type Visibility } from '../../store/objects/port.js';
import { SPACE_ROUTE_PREFIX, type Space } from './space.js';

const SERVICE = 'space';
/** A project id or an environment name, as namespaces are made of. */
const NAMESPACE_PART = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** Who is asking, as far as this request shows. */
type Caller =
  | { kind: 'anonymous' }
  | { kind: 'key'; tenant: Tenant }
  /** A valid presigned URL; `visibility` for uploads. */
  | { kind: 'signed'; visibility?: Visibility };

interface Address {
  namespace: string;
  name: string;
}

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'content-length, content-range, etag, last-modified, x-request-id',
};

/** Served objects may be HTML or SVG: nosniff plus a sandbox keep them from running as this origin. */
const CONTENT_HEADERS = {
  'x-content-type-options': 'nosniff',
  'content-security-policy': 'sandbox',
};

export function spaceRoute(spaceComponent: Component<Space>): HttpRoute {
  return {
    prefix: SPACE_ROUTE_PREFIX,
    methods: ['GET', 'HEAD', 'PUT', 'OPTIONS'],
    description:
      'Objects of the space block: GET/HEAD public objects freely and private ones with a key or a presigned URL; PUT to upload.',
    async handle(request, response, url, platform) {
      const requestId = randomUUID();
      try {
        if (request.method === 'OPTIONS') return answerPreflight(response);
        const space = platform.use(spaceComponent);
        const address = addressOf(url);
        const caller = await callerOf(request, url, address, space, platform);
        // A key or a signed URL acts for its project: admitted, rate-limited and metered as the
        // API endpoint it stands for. Anonymous reads of public objects act for nobody.
        const payer = caller.kind === 'key' ? caller.tenant : caller.kind === 'signed' ? projectPayer(projectIdOf(address.namespace)) : undefined;
        if (payer) await admitHttpCall(platform, payer, SERVICE, request.method === 'PUT' ? 'Update' : request.method === 'HEAD' ? 'Head' : 'Read', request, response);
        if (request.method === 'PUT') await receive(request, response, url, address, caller, space, requestId, platform);
        else await send(request, response, address, caller, space, requestId);
      } catch (error) {
        sendError(request, response, error, requestId, platform);
      }
    },
  };
}

function answerPreflight(response: ServerResponse): void {
  response.writeHead(204, {
    'access-control-allow-origin': '*',
    'access-control-allow-methods': 'GET, HEAD, PUT',
    'access-control-allow-headers': 'authorization, content-type, range, if-none-match',
    'access-control-max-age': '86400',
    'content-length': 0,
  });
  response.end();
}

function noObjectHere(): AltoError {
  return errors.notFound(
    'no public object at this URL; a private object needs an API key ("Authorization: Bearer <key>") or a presigned URL from space/Download',
  );
}

function addressOf(url: URL): Address {
  const parts = url.pathname.slice(SPACE_ROUTE_PREFIX.length).split('/');
  const [projectId, environment] = parts;
  if (parts.length < 3 || !NAMESPACE_PART.test(projectId) || !NAMESPACE_PART.test(environment)) throw noObjectHere();
  let name: string;
  try {
    name = decodeURIComponent(parts.slice(2).join('/'));
  } catch {
    throw errors.badRequest('the object name in the URL is not valid percent-encoded UTF-8');
  }
  return { namespace: `${projectId}/${environment}`, name };
}

async function callerOf(request: IncomingMessage, url: URL, address: Address, space: Space, platform: Platform): Promise<Caller> {
  const signature = url.searchParams.get('signature');
  if (signature !== null) {
    const method = request.method === 'PUT' ? 'PUT' : 'GET';
    const expiresText = url.searchParams.get('expires') ?? '';
    const expiresAt = /^\d{1,12}$/.test(expiresText) ? Number(expiresText) : NaN;
    const visibilityText = url.searchParams.get('visibility');
    const visibility = method === 'PUT' ? parseVisibility(visibilityText ?? '') : undefined;
    if (!Number.isFinite(expiresAt)) throw errors.forbidden('the presigned URL has no valid "expires"; use the URL exactly as space/Download or space/Upload returned it');
    const check = space.checkSignature({ method, namespace: address.namespace, name: address.name, expiresAt, visibility }, signature);
    if (check === 'invalid') {
      throw errors.forbidden(
        method === 'PUT'
          ? 'the signature does not match this upload URL: it was changed, made by another server, or is a download URL'
          : 'the signature does not match this URL: it was changed, made by another server, or is an upload URL',
      );
    }
    if (check === 'expired') {
      throw errors.forbidden(
        `this presigned URL expired at ${new Date(expiresAt * 1000).toISOString()}; ask for a new one with space/${method === 'PUT' ? 'Upload' : 'Download'}`,
      );
    }
    return { kind: 'signed', visibility };
  }
  const authorization = request.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) throw errors.unauthorized('the Authorization header must be "Bearer <key>"');
    const tenant = await platform.tenancy.authenticate(match[1]);
    if (tenant.namespace !== address.namespace) {
      throw errors.forbidden(`this key belongs to another project or environment ("${tenant.projectName}"/${tenant.environment})`);
    }
    if (!tenant.scopes.includes('*') && !tenant.scopes.includes(SERVICE)) {
      throw errors.forbidden(`this key may not use the "space" service; its scopes are ${tenant.scopes.join(', ')}`);
    }
    return { kind: 'key', tenant };
  }
  return { kind: 'anonymous' };
}

function parseVisibility(text: string): Visibility {
  const lower = text.toLowerCase();
  if (lower === '' || lower === 'private') return 'private';
  if (lower === 'public') return 'public';
  throw errors.badRequest(`visibility: expected "public" or "private", not "${text.slice(0, 40)}"`);
}

/** `bytes=first-last`, `bytes=first-`, `bytes=-suffix`; anything else (several ranges too) is ignored, as HTTP allows. */
function rangeOf(request: IncomingMessage): RangeRequest | undefined {
  const header = request.headers.range;
  const match = header === undefined ? null : /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') return { suffix: Number(match[2]) };
  return { first: Number(match[1]), last: match[2] === '' ? undefined : Number(match[2]) };
}

async function send(
  request: IncomingMessage,
  response: ServerResponse,
  address: Address,
  caller: Caller,
  space: Space,
  requestId: string,
): Promise<void> {
  const read = await space.store.get(address.namespace, address.name, rangeOf(request));
  if (!read || (caller.kind === 'anonymous' && read.info.visibility !== 'public')) {
    read?.body.destroy();
    throw caller.kind === 'anonymous' ? noObjectHere() : errors.notFound(`object "${address.name}" does not exist`);
  }
  const { info, body, range } = read;
  const etag = `"${info.etag}"`;
  const headers: Record<string, string | number> = {
    ...CORS_HEADERS,
    ...CONTENT_HEADERS,
    etag,
    'last-modified': new Date(info.modifiedAt).toUTCString(),
    'accept-ranges': 'bytes',
    // Public URLs are stable but their content can change: caches keep it, yet ask each time.
    'cache-control': info.visibility === 'public' && caller.kind === 'anonymous' ? 'public, no-cache' : 'private, no-cache',
    'x-request-id': requestId,
  };
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch !== undefined && ifNoneMatch.split(',').some((tag) => tag.trim() === etag || tag.trim() === '*')) {
    body.destroy();
    response.writeHead(304, headers);
    response.end();
    return;
  }
  headers['content-type'] = info.contentType;
  headers['content-length'] = range ? range.last - range.first + 1 : info.size;
  if (range) headers['content-range'] = `bytes ${range.first}-${range.last}/${info.size}`;
  response.writeHead(range ? 206 : 200, headers);
  if (request.method === 'HEAD') {
    body.destroy();
    response.end();
    return;
  }
  // A client that goes away mid-download ends the pipeline with an error; nothing to answer.
  await pipeline(body, response).catch(() => undefined);
}

async function receive(
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  address: Address,
  caller: Caller,
  space: Space,
  requestId: string,
  platform: Platform,
): Promise<void> {
  if (caller.kind === 'anonymous') {
    throw errors.unauthorized('uploading needs a presigned URL from space/Upload, or an API key ("Authorization: Bearer <key>")');
  }
  // A presigned URL fixes the visibility (it is signed); a key holder may choose it.
  const visibility = caller.kind === 'signed' ? caller.visibility! : parseVisibility(url.searchParams.get('visibility') ?? '');
  const lengthHeader = request.headers['content-length'];
  const expectedBytes = lengthHeader === undefined ? undefined : Number(lengthHeader);
  if (expectedBytes !== undefined && !Number.isSafeInteger(expectedBytes)) throw errors.badRequest('Content-Length is not a whole number');
  const maxBytes = space.limits.maxObjectBytes;
  if (expectedBytes !== undefined && expectedBytes > maxBytes) {
    throw errors.payloadTooLarge(`the body is ${expectedBytes} bytes, more than the ${maxBytes} bytes one object may hold`);
  }
  const given = request.headers['content-type'];
  const contentType = space.contentTypeFor(address.name, given === undefined ? '' : given.trim());
  // The project's space_bytes cap: with a Content-Length, exactly (less what the upload
  // replaces); a chunked body of unknown length is refused only once the project is at its cap.
  const projectId = projectIdOf(address.namespace);
  const owner = caller.kind === 'key' ? caller.tenant : { projectId, role: 'project' as const };
  const adding = expectedBytes === undefined ? 1 : expectedBytes - (await space.sizeOf(address.namespace, address.name));
  // Images pushed to Alto's registry count toward the same cap.
  await platform.limits.assertStorage(owner, 'space_bytes', adding, async () => (await space.store.projectBytes(projectId)) + (await platform.stores.registry.repositoryBytes(`${projectId}/`)));
  const info = await space.store.put(address.namespace, address.name, bodyOf(request), { contentType, visibility, maxBytes, expectedBytes });
  const origin = originOf(request);
  const payload = JSON.stringify(space.view(address.namespace, info, origin));
  response.writeHead(200, {
    ...CORS_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    etag: `"${info.etag}"`,
    'x-request-id': requestId,
  });
  response.end(payload);
}

/**
 * The request body as a stream the store may destroy without destroying the socket, so a
 * refused upload can still be answered. A client that disconnects mid-body fails the stream.
 */
function bodyOf(request: IncomingMessage): Readable {
  const body = new PassThrough();
  request.pipe(body);
  request.once('error', (error) => body.destroy(error));
  request.once('close', () => {
    if (!request.complete) body.destroy(new Error('the client closed the connection before the body ended'));
  });
  return body;
}

/** `http://host:port` as the caller reached us, for the URL in the answer. */
function originOf(request: IncomingMessage): string | undefined {
  const host = request.headers.host;
  if (typeof host !== 'string' || !/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)) return undefined;
  const forwarded = request.headers['x-forwarded-proto'];
  const proto = typeof forwarded === 'string' ? forwarded.split(',')[0].trim().toLowerCase() : '';
  return `${proto === 'https' ? 'https' : 'http'}://${host}`;
}

function sendError(request: IncomingMessage, response: ServerResponse, error: unknown, requestId: string, platform: Platform): void {
  sendRouteError(request, response, error, requestId, platform.log, {
    what: 'space: serving an object failed',
    bodyRead: request.complete,
    headers: (failure) => ({ ...CORS_HEADERS, ...(failure instanceof RangeNotSatisfiableError ? { 'content-range': `bytes */${failure.size}` } : {}) }),
  });
}
