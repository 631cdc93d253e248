/**
 * @module blocks/file/serve
 * `GET /files/{projectId}/{environment}/{project}/{path}`: the permalink of a file. Public files
 * answer to anyone; private ones only with a key of that project and environment
 * (`Authorization: Bearer`), and without one they answer exactly as missing files (404), so
 * their existence does not leak. Always served as plain text, never as a page of this origin.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import { admitHttpCall } from '../../platform/calls.js';
import type { Component, HttpRoute, Tenant } from '../../platform/service.js';
import { FILES_ROUTE_PREFIX, type Files } from './files.js';

const SERVICE = 'file';
const NAMESPACE_PART = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

function noFileHere(): AltoError {
  return errors.notFound('no public file at this URL; a private file needs an API key ("Authorization: Bearer <key>")');
}

export function filesRoute(filesComponent: Component<Files>): HttpRoute {
  return {
    prefix: FILES_ROUTE_PREFIX,
    methods: ['GET', 'HEAD'],
    description: 'The permalink of a file saved with file/Save: public files to anyone, private ones with a key.',
    async handle(request, response, url, platform) {
      const requestId = randomUUID();
      try {
        await serveFile(request, response, url, platform, platform.use(filesComponent), requestId);
      } catch (error) {
        const failure = isAltoError(error) ? error : errors.internal();
        if (!isAltoError(error)) platform.log.error({ err: error, req_id: requestId }, 'file: serving a permalink failed');
        const payload = JSON.stringify(failure.toBody(requestId));
        response.writeHead(failure.status, {
          ...failure.headers,
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(payload),
          'x-request-id': requestId,
        });
        response.end(request.method === 'HEAD' ? undefined : payload);
      }
    },
  };
}

async function serveFile(
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  platform: Platform,
  files: Files,
  requestId: string,
): Promise<void> {
  const parts = url.pathname.slice(FILES_ROUTE_PREFIX.length).split('/');
  const [projectId, environment, encodedProject] = parts;
  if (parts.length < 4 || !NAMESPACE_PART.test(projectId) || !NAMESPACE_PART.test(environment)) throw noFileHere();
  const namespace = `${projectId}/${environment}`;
  let project: string;
  let path: string;
  try {
    project = decodeURIComponent(encodedProject);
    path = `/${decodeURIComponent(parts.slice(3).join('/'))}`;
  } catch {
    throw errors.badRequest('the URL is not valid percent-encoded UTF-8');
  }
  const tenant = await keyOf(request, namespace, platform);
  const withKey = tenant !== undefined;
  // A key acts for its project: admitted, rate-limited and metered as file/Read.
  if (tenant) await admitHttpCall(platform, tenant, SERVICE, 'Read', request, response);
  const record = await files.store.get(namespace, project, path);
  if (!record || (!record.public && !withKey)) throw withKey ? errors.notFound(`file "${path}" does not exist in project "${project}"`) : noFileHere();
  const body = Buffer.from(record.content, 'utf8');
  const etag = `"${createHash('sha256').update(body).digest('hex')}"`;
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'content-security-policy': 'sandbox',
    'access-control-allow-origin': '*',
    'cache-control': record.public && !withKey ? 'public, no-cache' : 'private, no-cache',
    etag,
    'last-modified': new Date(record.updatedAt).toUTCString(),
    'x-request-id': requestId,
  };
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch !== undefined && ifNoneMatch.split(',').some((tag) => tag.trim() === etag)) {
    response.writeHead(304, headers);
    response.end();
    return;
  }
  headers['content-length'] = body.length;
  response.writeHead(200, headers);
  response.end(request.method === 'HEAD' ? undefined : body);
}

/** The tenant of a key of this namespace allowed the file service; no header: undefined; a bad key: 401/403. */
async function keyOf(request: IncomingMessage, namespace: string, platform: Platform): Promise<Tenant | undefined> {
  const authorization = request.headers.authorization;
  if (authorization === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) throw errors.unauthorized('the Authorization header must be "Bearer <key>"');
  const tenant = await platform.tenancy.authenticate(match[1]);
  if (tenant.namespace !== namespace) throw errors.forbidden('this key belongs to another project or environment');
  if (!tenant.scopes.includes('*') && !tenant.scopes.includes(SERVICE)) {
    throw errors.forbidden(`this key may not use the "file" service; its scopes are ${tenant.scopes.join(', ')}`);
  }
  return tenant;
}
