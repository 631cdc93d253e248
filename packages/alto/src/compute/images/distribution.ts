/**
 * @module compute/images/distribution
 * Alto's own registry: the OCI Distribution API under `/v2/` on the edge, so `docker push`,
 * `skopeo copy` or `crane` reach `<alto host>/<project>/<name>:<tag>` as any registry. Backed by
 * the projects' repositories (repositories.ts): their records in the registry catalog (SQLite, or
 * PostgreSQL shared by every node with `--store`), their blobs in the node's image store and,
 * with `--objects s3://...`, in the objects store, from which a node that lacks a blob answers
 * GET and HEAD (Range too). A pushed tag Alto can run is an image `app/Run` runs with no pull.
 *
 * - Auth as registries do: `GET /v2/` without credentials is 401 with a `WWW-Authenticate:
 *   Bearer realm="<alto>/v2/token"` challenge; the token endpoint takes Basic auth whose password
 *   is an Alto key (any user name) and returns a short-lived token (registry-token.ts) for the
 *   repositories asked for, those of the key's project only. The key itself is accepted too, as
 *   Bearer or Basic password. Keys need the `app` or `registry` scope (or `*`).
 * - A project never reaches another's repositories: a repository of another project is 403
 *   DENIED whatever it holds; in its own project an unknown repository is 404 NAME_UNKNOWN.
 * - Blobs: GET/HEAD (with Range), uploads monolithic (POST or PUT with `digest`) or in chunks
 *   (PATCH with Content-Range, in order), upload status, cancel, cross-repository mount within the
 *   project. Every blob is hashed on its way to disk and stored only under the digest it hashes
 *   to; an upload is capped at ALTO_IMAGES_MAX_LAYER_BYTES and at the project's space_bytes cap.
 * - Manifests and indexes by tag or digest (GET/HEAD/PUT/DELETE), read whole only up to 4 MiB,
 *   checked before they are recorded; tags list with `n` and `last` and a `Link` to the next page.
 * - Errors in the spec's shape: `{"errors":[{"code":"BLOB_UNKNOWN","message":"..."}]}`.
 *
 * Uploads in progress are kept in this process's memory (a restart forgets them; clients start
 * the blob again), at most 64 per project and 1,024 in all, each dropped after 30 minutes without
 * a request. A finished blob is shared with the cloud; its upload is not: with `--store
 * postgres://` the upload URL names the node that holds it (`?node=<node id>`, which clients keep
 * as they keep any query of the Location), and another node answers a request for it with 404
 * BLOB_UPLOAD_UNKNOWN naming that node, so a load balancer must send an upload's requests to
 * one node (affinity on the path), or clients push each blob in one request (POST or PUT with
 * `digest`), which any node finishes alone. Relaying bytes between nodes, or keeping partial
 * uploads in the shared stores, would cost every chunk a second trip for a case affinity avoids.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { loadNodeId } from '../../kit/node-id.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AltoError, isAltoError } from '../../kit/errors.js';
import { admitHttpCall } from '../../platform/calls.js';
import type { Platform } from '../../platform/platform.js';
import { routeFailure } from '../../platform/route-answers.js';
import type { Component, HttpRoute, Tenant } from '../../platform/service.js';
import { KEY_PREFIX } from '../../platform/tenancy.js';
import type { BlobUpload } from './blob-store.js';
import type { ImageManager } from './manager.js';
import { isDigest } from './reference.js';
import { issueToken, readToken, requestedScopes, type Grants } from './registry-token.js';
import { MAX_MANIFEST_BYTES, RegistryError, type Repositories, type Repository } from './repositories.js';

export const DISTRIBUTION_PREFIX = '/v2/';
/** The key scopes that may push and pull (besides `*`). */
export const REGISTRY_SCOPES = ['app', 'registry'];
const METERED_SERVICE = 'registry';
const MAX_PATH_LENGTH = 2048;
const MAX_UPLOADS_PER_PROJECT = 64;
/** Uploads open at once on this node, every project together (each holds an open file). */
const MAX_UPLOADS = 1024;
const UPLOAD_IDLE_MS = 30 * 60 * 1000;
const DEFAULT_TAGS_PAGE = 1000;
const MAX_TAGS_PAGE = 10_000;

/** The headers every answer carries. */
const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };

/** Who is asking: the key's tenant, and what a token limited it to (undefined: the key itself, anything of its project). */
interface Caller {
  tenant: Tenant;
  grants?: Grants;
}

/** What a request names, parsed from its path. */
type Target =
  | { kind: 'base' }
  | { kind: 'token' }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'uploads'; name: string; id?: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'tags'; name: string };

interface UploadSession {
  id: string;
  projectId: string;
  repositoryKey: string;
  upload: BlobUpload;
  timer: NodeJS.Timeout;
}

/** The `/v2/` route; `images` gives the machine's images (their repositories and blobs). */
export function distributionRoute(images: Component<ImageManager>): HttpRoute {
  // One per running Alto: a process may start several (tests, benchmarks), each with its platform.
  const registries = new WeakMap<Platform, Distribution>();
  return {
    prefix: DISTRIBUTION_PREFIX,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    description: "Alto's own registry: the OCI Distribution API (push and pull images of the project's repositories).",
    async handle(request, response, url, platform) {
      let registry = registries.get(platform);
      if (!registry) {
        registry = new Distribution(platform, platform.use(images));
        registries.set(platform, registry);
      }
      await registry.handle(request, response, url);
    },
  };
}

class Distribution {
  private readonly uploads = new Map<string, UploadSession>();
  /** This node's id, named in upload URLs when other nodes share the registry (undefined alone). */
  private readonly node: string | undefined;

  constructor(
    private readonly platform: Platform,
    private readonly images: ImageManager,
  ) {
    this.node = images.catalog.backend === 'sqlite' ? undefined : loadNodeId(platform.config.dataDir);
  }

  private get repositories(): Repositories {
    return this.images.repositories;
  }

  async handle(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const requestId = randomUUID();
    try {
      const target = targetOf(url.pathname);
      if (target.kind === 'token') return await this.sendToken(request, response, url);
      const caller = await this.callerOf(request);
      if (!caller) throw this.challenge(request, target);
      if (target.kind === 'base') {
        if (request.method !== 'GET' && request.method !== 'HEAD') throw unsupported(request);
        return sendJson(request, response, 200, {}, requestId);
      }
      const repository = this.repositoryFor(caller, target.name);
      const push = request.method !== 'GET' && request.method !== 'HEAD';
      const action = request.method === 'DELETE' ? 'delete' : push ? 'push' : 'pull';
      if (caller.grants && !(caller.grants[target.name] ?? []).includes(action)) throw this.challenge(request, target, action);
      await admitHttpCall(this.platform, caller.tenant, METERED_SERVICE, push ? 'Push' : 'Pull', request, response);
      switch (target.kind) {
        case 'blob':
          return await this.blob(request, response, repository, target.digest, requestId);
        case 'uploads':
          return await this.upload(request, response, url, caller, repository, target.id, requestId);
        case 'manifest':
          return await this.manifest(request, response, repository, target.reference, requestId);
        case 'tags':
          return await this.tags(request, response, url, repository, requestId);
      }
    } catch (error) {
      this.sendError(request, response, error, requestId);
    }
  }

  // ---- auth -----------------------------------------------------------------------------------

  /** The caller of a request with a token or a key; undefined when it brings neither. Bad credentials throw 401. */
  private async callerOf(request: IncomingMessage): Promise<Caller | undefined> {
    const authorization = request.headers.authorization;
    if (authorization === undefined) return undefined;
    const bearer = /^Bearer +([A-Za-z0-9_.~+/=-]{1,8192})$/i.exec(authorization.trim());
    if (bearer) {
      if (bearer[1].startsWith(KEY_PREFIX)) return { tenant: await this.tenantOf(bearer[1]) };
      const token = readToken(this.platform.masterKey().cipher, bearer[1]);
      if (!token) throw new RegistryError('UNAUTHORIZED', 'the token is not valid or has expired; ask the token endpoint for a new one');
      return { tenant: await this.tenantOf(token.key), grants: token.grants };
    }
    const password = basicPassword(authorization);
    if (password !== undefined) return { tenant: await this.tenantOf(password) };
    throw new RegistryError('UNAUTHORIZED', 'the Authorization header must be "Bearer <token or Alto key>" or "Basic" with an Alto key as the password');
  }

  /** The tenant of an Alto key that may use the registry. */
  private async tenantOf(key: string): Promise<Tenant> {
    let tenant: Tenant;
    try {
      tenant = await this.platform.tenancy.authenticate(key);
    } catch (error) {
      if (isAltoError(error) && error.status === 401) throw new RegistryError('UNAUTHORIZED', error.detail);
      if (isAltoError(error) && error.status === 403) throw new RegistryError('DENIED', error.detail);
      throw error;
    }
    if (!tenant.scopes.includes('*') && !REGISTRY_SCOPES.some((scope) => tenant.scopes.includes(scope))) {
      throw new RegistryError('DENIED', `this key may not use the registry: it needs the "app" or "registry" scope (it has ${tenant.scopes.join(', ')})`);
    }
    return tenant;
  }

  /**
   * The repository `name` (`<project>/<repository>`) for a caller: its own project's only. Any
   * other project's is refused as denied, whether or not that project exists.
   */
  private repositoryFor(caller: Caller, name: string): Repository {
    const slash = name.indexOf('/');
    const projectName = slash < 0 ? name : name.slice(0, slash);
    if (projectName !== caller.tenant.projectName) {
      throw new RegistryError('DENIED', `requested access to the resource is denied: this key belongs to project "${caller.tenant.projectName}"; its repositories are ${caller.tenant.projectName}/<name>`);
    }
    if (slash < 0) throw new RegistryError('NAME_INVALID', `"${name.slice(0, 80)}" names no repository: write <project>/<name>, such as ${projectName}/web`);
    return this.repositories.repository(caller.tenant, name.slice(slash + 1));
  }

  /** The 401 that sends a client to the token endpoint, with the scope it needs when known. */
  private challenge(request: IncomingMessage, target: Target, action?: string): RegistryError {
    const { realm, service } = realmOf(request);
    let header = `Bearer realm="${realm}",service="${service}"`;
    if ('name' in target) header += `,scope="repository:${target.name}:${action === undefined || action === 'pull' ? 'pull' : `pull,${action}`}"`;
    if (action !== undefined) header += ',error="insufficient_scope"';
    const error = new RegistryError('UNAUTHORIZED', action === undefined ? 'authentication required: log in with an Alto key as the password' : `the token does not grant ${action} on ${'name' in target ? target.name : 'this'}`);
    return error.withHeaders({ 'www-authenticate': header });
  }

  /** `GET /v2/token`: a token for the repositories asked for that the key's project holds. */
  private async sendToken(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    if (request.method !== 'GET') throw unsupported(request);
    const authorization = request.headers.authorization;
    const password = authorization === undefined ? undefined : basicPassword(authorization);
    if (password === undefined) {
      const { realm } = realmOf(request);
      throw new RegistryError('UNAUTHORIZED', 'the token endpoint needs Basic auth with an Alto key as the password (any user name)').withHeaders({
        'www-authenticate': `Basic realm="${realm}"`,
      });
    }
    const tenant = await this.tenantOf(password);
    const grants: Grants = {};
    for (const { repository, actions } of requestedScopes(url.searchParams.getAll('scope'))) {
      // Only the key's own project's repositories; anything else is granted nothing.
      if (!repository.startsWith(`${tenant.projectName}/`)) continue;
      const allowed = actions.flatMap((action) => (action === '*' ? ['pull', 'push', 'delete'] : ['pull', 'push', 'delete'].includes(action) ? [action] : []));
      grants[repository] = [...new Set([...(grants[repository] ?? []), ...allowed])];
    }
    const issued = issueToken(this.platform.masterKey().cipher, password, grants);
    sendJson(request, response, 200, { token: issued.token, access_token: issued.token, expires_in: issued.expiresIn, issued_at: issued.issuedAt }, undefined);
  }

  // ---- blobs ----------------------------------------------------------------------------------

  private async blob(request: IncomingMessage, response: ServerResponse, repository: Repository, digest: string, requestId: string): Promise<void> {
    if (request.method === 'DELETE') throw new RegistryError('UNSUPPORTED', 'blobs are not deleted one by one: delete the tags and manifests, then prune (alto images prune)');
    if (request.method !== 'GET' && request.method !== 'HEAD') throw unsupported(request);
    if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', `"${digest.slice(0, 80)}" is not a digest (sha256:<64 hex digits>)`);
    const size = await this.repositories.blobSize(repository, digest);
    if (size === undefined) throw new RegistryError('BLOB_UNKNOWN', `${repository.projectName}/${repository.name} holds no blob ${digest}`);
    const range = rangeOf(request.headers.range, size);
    const headers: Record<string, string | number> = {
      ...API_VERSION,
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest,
      etag: `"${digest}"`,
      'accept-ranges': 'bytes',
      'cache-control': 'max-age=31536000',
      'x-request-id': requestId,
    };
    if (range === 'unsatisfiable') {
      throw new RegistryError('RANGE_INVALID', `the range ${String(request.headers.range).slice(0, 60)} is outside the blob's ${size} bytes`).withHeaders({ 'content-range': `bytes */${size}` });
    }
    headers['content-length'] = range ? range.last - range.first + 1 : size;
    if (range) headers['content-range'] = `bytes ${range.first}-${range.last}/${size}`;
    const onDisk = this.images.blobs.has(digest);
    if (request.method === 'HEAD' || size === 0) {
      // Not on this disk: the repository's record says it is in the objects store; HEAD checks.
      if (!onDisk && !(await this.images.blobObjects?.has(digest))) throw missingBlob(repository, digest);
      response.writeHead(range ? 206 : 200, headers);
      response.end();
      return;
    }
    let stream: Readable;
    if (onDisk) stream = createReadStream(this.images.blobs.pathOf(digest), { start: range?.first ?? 0, end: range?.last ?? size - 1, highWaterMark: 1 << 20 });
    else {
      const read = await this.images.blobObjects?.read(digest, { first: range?.first ?? 0, last: range?.last ?? size - 1 });
      if (!read) throw missingBlob(repository, digest);
      stream = read.body;
    }
    response.writeHead(range ? 206 : 200, headers);
    await pipeline(stream, response).catch(() => undefined);
  }

  /** Everything under `/blobs/uploads/`: start (with mount or a monolithic body), status, chunks, finish, cancel. */
  private async upload(request: IncomingMessage, response: ServerResponse, url: URL, caller: Caller, repository: Repository, id: string | undefined, requestId: string): Promise<void> {
    const path = `${DISTRIBUTION_PREFIX}${repository.projectName}/${repository.name}`;
    if (!id) {
      if (request.method !== 'POST') throw unsupported(request);
      const mount = url.searchParams.get('mount');
      const from = url.searchParams.get('from');
      if (mount !== null && from !== null && isDigest(mount)) {
        const size = await this.mountFrom(caller, repository, from, mount);
        if (size !== undefined) return sendEmpty(response, 201, { location: `${path}/blobs/${mount}`, 'docker-content-digest': mount }, requestId);
      }
      const digest = url.searchParams.get('digest');
      const session = await this.startSession(caller.tenant, repository);
      if (digest !== null) {
        // Monolithic: the whole blob in this one request.
        try {
          await this.appendBody(request, session, caller.tenant);
          await this.finish(session, repository, digest);
        } finally {
          this.endSession(session);
        }
        return sendEmpty(response, 201, { location: `${path}/blobs/${digest}`, 'docker-content-digest': digest }, requestId);
      }
      return sendEmpty(response, 202, this.sessionHeaders(path, session), requestId);
    }
    const session = this.uploads.get(id);
    if (!session || session.repositoryKey !== repository.key) throw this.uploadUnknown(url, repository, id);
    if (session.upload.busy) throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload; send chunks one at a time', 409);
    this.touch(session);
    switch (request.method) {
      case 'GET':
        return sendEmpty(response, 204, this.sessionHeaders(path, session), requestId);
      case 'DELETE':
        this.endSession(session);
        return sendEmpty(response, 204, {}, requestId);
      case 'PATCH': {
        const contentRange = request.headers['content-range'];
        if (contentRange !== undefined) {
          const match = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})$/.exec(contentRange.trim());
          if (!match || Number(match[1]) !== session.upload.size || Number(match[2]) < Number(match[1])) {
            throw new RegistryError('RANGE_INVALID', `the chunk must start at byte ${session.upload.size} (Content-Range ${session.upload.size}-<last byte>), not "${contentRange.slice(0, 40)}"`).withHeaders(
              rangeHeaders(session),
            );
          }
          const length = request.headers['content-length'];
          if (length !== undefined && Number(length) !== Number(match[2]) - Number(match[1]) + 1) {
            throw new RegistryError('RANGE_INVALID', `Content-Range ${contentRange.slice(0, 40)} does not match the ${length}-byte body`).withHeaders(rangeHeaders(session));
          }
        }
        await this.appendBody(request, session, caller.tenant);
        return sendEmpty(response, 202, this.sessionHeaders(path, session), requestId);
      }
      case 'PUT': {
        const digest = url.searchParams.get('digest');
        if (digest === null) throw new RegistryError('DIGEST_INVALID', 'finishing an upload needs ?digest=sha256:... naming what was uploaded');
        try {
          await this.appendBody(request, session, caller.tenant);
          await this.finish(session, repository, digest);
        } catch (error) {
          // A wrong digest ends the upload: the client starts again.
          if (error instanceof RegistryError && error.registryCode === 'DIGEST_INVALID') this.endSession(session);
          throw error;
        }
        this.endSession(session);
        return sendEmpty(response, 201, { location: `${path}/blobs/${digest}`, 'docker-content-digest': digest }, requestId);
      }
      default:
        throw unsupported(request);
    }
  }

  /** Why an upload is not here: gone, or held by another node of the cloud. */
  private uploadUnknown(url: URL, repository: Repository, id: string): RegistryError {
    const node = url.searchParams.get('node');
    const upload = `upload ${id.slice(0, 80)} in ${repository.projectName}/${repository.name}`;
    if (this.node !== undefined && node !== null && node !== this.node) {
      return new RegistryError(
        'BLOB_UPLOAD_UNKNOWN',
        `the ${upload} is held by node ${node.slice(0, 64)} of this cloud, and this is node ${this.node}: send every request of an upload to the node that started it (affinity on /v2/), or push each blob in one request`,
      );
    }
    return new RegistryError('BLOB_UPLOAD_UNKNOWN', `there is no ${upload} (it finished, was cancelled, or expired)`);
  }

  /** Mounts `digest` from `from` (a repository of the same project) into `repository`; undefined when it cannot. */
  private async mountFrom(caller: Caller, repository: Repository, from: string, digest: string): Promise<number | undefined> {
    if (!from.startsWith(`${caller.tenant.projectName}/`)) return undefined;
    if (caller.grants && !(caller.grants[from] ?? []).includes('pull')) return undefined;
    let source: Repository;
    try {
      source = this.repositories.repository(caller.tenant, from.slice(caller.tenant.projectName.length + 1));
    } catch {
      return undefined;
    }
    return this.repositories.mount(repository, source, digest);
  }

  private async startSession(tenant: Tenant, repository: Repository): Promise<UploadSession> {
    let open = 0;
    for (const session of this.uploads.values()) if (session.projectId === tenant.projectId) open++;
    if (this.uploads.size >= MAX_UPLOADS) throw new RegistryError('TOOMANYREQUESTS', `this node has ${this.uploads.size} uploads open; try again in a moment`).withHeaders({ 'retry-after': '10' });
    if (open >= MAX_UPLOADS_PER_PROJECT) {
      throw new RegistryError('TOOMANYREQUESTS', `project "${tenant.projectName}" has ${open} uploads open; finish or cancel some (they expire after 30 minutes without a request)`);
    }
    const upload = await this.images.blobs.startUpload();
    const id = randomUUID();
    const session: UploadSession = { id, projectId: tenant.projectId, repositoryKey: repository.key, upload, timer: setTimeout(() => this.endSession(session), UPLOAD_IDLE_MS) };
    session.timer.unref();
    this.uploads.set(id, session);
    return session;
  }

  private touch(session: UploadSession): void {
    session.timer.refresh();
  }

  private endSession(session: UploadSession): void {
    clearTimeout(session.timer);
    this.uploads.delete(session.id);
    void session.upload.discard();
  }

  private sessionHeaders(path: string, session: UploadSession): Record<string, string> {
    const node = this.node === undefined ? '' : `?node=${encodeURIComponent(this.node)}`;
    return { location: `${path}/blobs/uploads/${session.id}${node}`, 'docker-upload-uuid': session.id, ...rangeHeaders(session) };
  }

  /**
   * Appends the request body to an upload, within the blob cap and the project's space_bytes cap
   * (with a Content-Length, checked before a byte is read).
   */
  private async appendBody(request: IncomingMessage, session: UploadSession, tenant: Tenant): Promise<void> {
    const lengthHeader = request.headers['content-length'];
    const declared = lengthHeader === undefined ? undefined : Number(lengthHeader);
    if (declared !== undefined && !Number.isSafeInteger(declared)) throw new RegistryError('SIZE_INVALID', 'Content-Length is not a whole number');
    if (declared === 0) return;
    const maxBytes = this.images.maxLayerBytes;
    const tooLarge = () => new RegistryError('SIZE_INVALID', `a blob may hold at most ${maxBytes} bytes (ALTO_IMAGES_MAX_LAYER_BYTES)`, 413);
    if (declared !== undefined && session.upload.size + declared > maxBytes) throw tooLarge();
    await this.platform.limits.assertStorage(tenant, 'space_bytes', declared ?? 1, async () => (await this.platform.stores.objects.projectBytes(tenant.projectId)) + (await this.repositories.projectBytes(tenant.projectId)));
    await session.upload.append(bodyOf(request), maxBytes, tooLarge);
  }

  /** Stores the upload as `digest` in the repository, if that is what it hashes to. */
  private async finish(session: UploadSession, repository: Repository, digest: string): Promise<void> {
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new RegistryError('DIGEST_INVALID', `"${digest.slice(0, 80)}" is not a sha256 digest (sha256:<64 lower-case hex digits>)`);
    const actual = session.upload.digest();
    const size = session.upload.size;
    if (!(await session.upload.commit(digest))) {
      throw new RegistryError('DIGEST_INVALID', `the upload hashes to ${actual} (${size} bytes), not ${digest}; nothing was stored`);
    }
    await this.repositories.linkBlob(repository, digest, size);
  }

  // ---- manifests and tags ---------------------------------------------------------------------

  private async manifest(request: IncomingMessage, response: ServerResponse, repository: Repository, reference: string, requestId: string): Promise<void> {
    const path = `${DISTRIBUTION_PREFIX}${repository.projectName}/${repository.name}`;
    switch (request.method) {
      case 'GET':
      case 'HEAD': {
        const manifest = await this.repositories.manifest(repository, reference);
        response.writeHead(200, {
          ...API_VERSION,
          'content-type': manifest.mediaType,
          'content-length': manifest.size,
          'docker-content-digest': manifest.digest,
          etag: `"${manifest.digest}"`,
          'x-request-id': requestId,
        });
        response.end(request.method === 'HEAD' ? undefined : manifest.bytes);
        return;
      }
      case 'PUT': {
        const bytes = await readBounded(request, MAX_MANIFEST_BYTES);
        const contentType = request.headers['content-type'];
        const pushed = await this.repositories.putManifest(repository, reference, bytes, contentType);
        return sendEmpty(response, 201, { location: `${path}/manifests/${pushed.digest}`, 'docker-content-digest': pushed.digest }, requestId);
      }
      case 'DELETE':
        await this.repositories.delete(repository, reference);
        return sendEmpty(response, 202, {}, requestId);
      default:
        throw unsupported(request);
    }
  }

  private async tags(request: IncomingMessage, response: ServerResponse, url: URL, repository: Repository, requestId: string): Promise<void> {
    if (request.method !== 'GET' && request.method !== 'HEAD') throw unsupported(request);
    const nText = url.searchParams.get('n');
    const n = nText === null || nText === '' ? DEFAULT_TAGS_PAGE : /^\d{1,6}$/.test(nText) ? Math.min(Number(nText), MAX_TAGS_PAGE) : NaN;
    if (Number.isNaN(n)) throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be a whole number of tags, not "${nText!.slice(0, 20)}"`);
    const last = url.searchParams.get('last') ?? undefined;
    const name = `${repository.projectName}/${repository.name}`;
    // One more than asked for says whether there is a next page.
    const tags = await this.repositories.tags(repository, n + 1, last);
    const page = tags.slice(0, n);
    if (n > 0 && tags.length > n) response.setHeader('link', `<${DISTRIBUTION_PREFIX}${name}/tags/list?n=${n}&last=${encodeURIComponent(page.at(-1)!)}>; rel="next"`);
    sendJson(request, response, 200, { name, tags: page }, requestId);
  }

  // ---- errors ---------------------------------------------------------------------------------

  private sendError(request: IncomingMessage, response: ServerResponse, error: unknown, requestId: string): void {
    const internal = new AltoError('internal', 500, 'the registry failed to answer; the error is logged with the request id');
    const failure = routeFailure(request, response, error, requestId, this.platform.log, 'registry: a request failed', internal);
    if (!failure) return;
    const code = failure instanceof RegistryError ? failure.registryCode : registryCodeOf(failure.status);
    const payload = JSON.stringify({ errors: [{ code, message: failure.detail, detail: { request_id: requestId } }] });
    const headers: Record<string, string | number> = {
      ...API_VERSION,
      ...failure.headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(payload),
      'x-request-id': requestId,
    };
    // An answer before the body was read would leave it in the socket: close after replying.
    if (!request.complete) headers.connection = 'close';
    response.writeHead(failure.status, headers);
    response.end(request.method === 'HEAD' ? undefined : payload);
  }
}

/**
 * The registry names a client may use for this Alto listening on `port`: loopback and the host
 * name with the port (bare too on port 80 or 443), and the hosts of the URLs it is known by
 * (ALTO_PUBLIC_URL, the advertised URL).
 */
export function ownRegistryNames(port: number, urls: (string | undefined)[]): string[] {
  const names = ['localhost', '127.0.0.1', '[::1]', hostname().toLowerCase()].flatMap((host) => [`${host}:${port}`, ...(port === 80 || port === 443 ? [host] : [])]);
  for (const text of urls) {
    if (!text) continue;
    try {
      const url = new URL(text);
      names.push(url.host);
      if (!url.port) names.push(`${url.hostname}:${url.protocol === 'https:' ? 443 : 80}`);
    } catch {
      // Not a URL: nothing to add (its own setting reports it).
    }
  }
  return [...new Set(names)];
}

/** What a `/v2/...` path names; NAME_INVALID / 404 for paths that are not part of the API. */
function targetOf(pathname: string): Target {
  if (pathname.length > MAX_PATH_LENGTH) throw new RegistryError('NAME_INVALID', `the path is longer than ${MAX_PATH_LENGTH} characters`);
  const rest = pathname.slice(DISTRIBUTION_PREFIX.length);
  if (rest === '') return { kind: 'base' };
  if (rest === 'token') return { kind: 'token' };
  const parts = rest.split('/');
  const at = (offset: number) => parts[parts.length - offset];
  const nameOf = (drop: number) => parts.slice(0, parts.length - drop).join('/');
  if (parts.length >= 4 && at(3) === 'blobs' && at(2) === 'uploads') return { kind: 'uploads', name: nameOf(3), id: at(1) || undefined };
  if (parts.length >= 3 && at(2) === 'blobs' && at(1) === 'uploads') return { kind: 'uploads', name: nameOf(2) };
  if (parts.length >= 3 && at(2) === 'blobs') return { kind: 'blob', name: nameOf(2), digest: at(1) };
  if (parts.length >= 3 && at(2) === 'manifests' && at(1) !== '') return { kind: 'manifest', name: nameOf(2), reference: at(1) };
  if (parts.length >= 3 && at(2) === 'tags' && at(1) === 'list') return { kind: 'tags', name: nameOf(2) };
  throw new AltoError('not_found', 404, `nothing at ${pathname.slice(0, 200)}: the registry answers /v2/<project>/<name>/blobs/..., /manifests/... and /tags/list`);
}

function missingBlob(repository: Repository, digest: string): RegistryError {
  return new RegistryError('BLOB_UNKNOWN', `${repository.projectName}/${repository.name} holds the blob ${digest}, but its bytes are missing from the objects store; push it again`);
}

function registryCodeOf(status: number): string {
  switch (status) {
    case 401:
      return 'UNAUTHORIZED';
    case 402:
    case 403:
      return 'DENIED';
    case 404:
      return 'NAME_UNKNOWN';
    case 405:
      return 'UNSUPPORTED';
    case 413:
      return 'SIZE_INVALID';
    case 429:
      return 'TOOMANYREQUESTS';
    default:
      return status >= 500 ? 'UNKNOWN' : 'BLOB_UPLOAD_INVALID';
  }
}

function unsupported(request: IncomingMessage): RegistryError {
  return new RegistryError('UNSUPPORTED', `${String(request.method).slice(0, 10)} is not supported here`);
}

/** The password of `Basic base64(user:password)`, or undefined for another scheme. */
function basicPassword(authorization: string): string | undefined {
  const match = /^Basic +([A-Za-z0-9+/=]{1,4096})$/i.exec(authorization.trim());
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}

/** The token endpoint as the client reached Alto, and the service name: the Host it used. */
function realmOf(request: IncomingMessage): { realm: string; service: string } {
  const given = request.headers.host;
  const host = typeof given === 'string' && /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$/.test(given) ? given : 'localhost';
  const forwarded = request.headers['x-forwarded-proto'];
  const secure = (typeof forwarded === 'string' && forwarded.split(',')[0].trim().toLowerCase() === 'https') || Boolean((request.socket as { encrypted?: boolean }).encrypted);
  return { realm: `${secure ? 'https' : 'http'}://${host}${DISTRIBUTION_PREFIX}token`, service: host };
}

function rangeHeaders(session: UploadSession): Record<string, string> {
  return { range: `0-${Math.max(session.upload.size - 1, 0)}` };
}

/** `bytes=first-last`, `bytes=first-`, `bytes=-suffix` of a blob of `size` bytes; anything else is ignored, as HTTP allows. */
function rangeOf(header: string | undefined, size: number): { first: number; last: number } | 'unsatisfiable' | undefined {
  const match = header === undefined ? null : /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    const suffix = Math.min(Number(match[2]), size);
    return suffix === 0 ? 'unsatisfiable' : { first: size - suffix, last: size - 1 };
  }
  const first = Number(match[1]);
  const last = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  return first >= size || last < first ? 'unsatisfiable' : { first, last };
}

/**
 * The request body as a stream the upload may stop reading without destroying the socket, so a
 * refused chunk can still be answered. A client that disconnects mid-body fails the stream.
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

/** Reads a body of at most `maxBytes` (a manifest), refusing a larger one before reading it all. */
async function readBounded(request: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  const tooLarge = () => new RegistryError('MANIFEST_INVALID', `a manifest may be at most ${maxBytes} bytes`, 413);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of bodyOf(request)) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function sendEmpty(response: ServerResponse, status: number, headers: Record<string, string>, requestId: string): void {
  response.writeHead(status, { ...API_VERSION, ...headers, 'content-length': 0, 'x-request-id': requestId });
  response.end();
}

function sendJson(request: IncomingMessage, response: ServerResponse, status: number, body: unknown, requestId: string | undefined): void {
  const payload = JSON.stringify(body);
  response.writeHead(status, {
    ...API_VERSION,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    ...(requestId ? { 'x-request-id': requestId } : {}),
  });
  response.end(request.method === 'HEAD' ? undefined : payload);
}
