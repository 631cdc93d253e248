/**
 * @module blocks/space/space
 * The space block's logic over the object storage port: the inline (base64 JSON) path of
 * Create, Update and Read with its 10 MiB limit, presigned URLs for Download and Upload, the
 * stable URL of public objects, and the wire view of an object. Objects are served at
 * `/space/{projectId}/{environment}/{name}` by `serve.ts`.
 */
import { Readable } from 'node:stream';
import { errors } from '../../kit/errors.js';
import { baseUrlOf, encodePathParts } from '../../kit/public-url.js';
import { checkObjectName, type ObjectInfo, type ObjectPage, type ObjectStore, type Visibility } from '../../store/objects/port.js';
import { contentTypeOf, isContentType } from './content-types.js';
import type { Grant, SignatureCheck, SignedMethod, UrlSigner } from './signing.js';

export const SPACE_ROUTE_PREFIX = '/space/';

export interface SpaceLimits {
  /** Largest object Create and Update take inline, decoded (M3O's limit: 10 MB). */
  inlineObjectBytes: number;
  /** Largest object an upload (PUT) stores. */
  maxObjectBytes: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_SPACE_LIMITS: SpaceLimits = {
  inlineObjectBytes: 10 * MiB,
  maxObjectBytes: 5 * 1024 * MiB,
};

/**
 * The request body Create and Update accept: the inline limit in base64 (4 characters per 3
 * bytes) plus room for the name and the other fields. The edge's own limit is usually lower.
 */
export function inlineBodyLimit(limits: SpaceLimits = DEFAULT_SPACE_LIMITS): number {
  return Math.ceil(limits.inlineObjectBytes / 3) * 4 + 64 * 1024;
}

export const INLINE_LIMIT_HINT =
  'Create and Update carry an object inline up to 10 MiB; for a larger one call space/Upload and PUT the bytes to the URL it returns';

/** An object as every endpoint describes it. */
export interface ObjectView {
  name: string;
  created: string;
  modified: string;
  url: string;
  visibility: Visibility;
  size: number;
  contentType: string;
  sha256: string;
}

export interface InlineWrite {
  name: string;
  /** Base64 (standard or URL-safe alphabet, padding optional). */
  object: string;
  visibility: Visibility;
  /** Empty: guessed from the name. */
  contentType: string;
}

export interface PresignedUrl {
  url: string;
  expires: string;
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Refuses a write that would take the project past its storage cap; told the bytes it adds. */
export type StorageGuard = (addingBytes: number) => Promise<void>;

export class Space {
  constructor(
    readonly store: ObjectStore,
    private readonly signer: UrlSigner,
    /** ALTO_PUBLIC_URL; undefined to use each caller's origin. */
    private readonly publicUrl: string | undefined,
    readonly limits: SpaceLimits = DEFAULT_SPACE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Creates (`ifAbsent`: 409 when the name is taken) or replaces an object sent inline. `guard`
   * is told how many bytes the write adds (less what it replaces) and may refuse it (the
   * project's space_bytes cap) before anything is written.
   */
  async write(namespace: string, request: InlineWrite, ifAbsent: boolean, guard?: StorageGuard): Promise<ObjectInfo> {
    checkObjectName(request.name);
    const contentType = this.contentTypeFor(request.name, request.contentType);
    const data = decodeBase64(request.object);
    if (data.length > this.limits.inlineObjectBytes) {
      throw errors.payloadTooLarge(
        `object: ${data.length} bytes is more than the ${this.limits.inlineObjectBytes} bytes an inline Create or Update carries; ` +
          'call space/Upload for a presigned URL and PUT the bytes there (up to ' +
          `${this.limits.maxObjectBytes} bytes)`,
      );
    }
    if (guard) await guard(data.length - (ifAbsent ? 0 : await this.sizeOf(namespace, request.name)));
    return this.store.put(namespace, request.name, Readable.from([data]), { contentType, visibility: request.visibility, ifAbsent });
  }

  /** The size of the object of that name now, 0 when there is none. */
  async sizeOf(namespace: string, name: string): Promise<number> {
    return (await this.store.head(namespace, name))?.size ?? 0;
  }

  contentTypeFor(name: string, given: string): string {
    if (given === '') return contentTypeOf(name);
    if (!isContentType(given)) {
      throw errors.badRequest(`contentType: "${given.slice(0, 80)}" is not a content type such as "image/png" or "text/plain; charset=utf-8"`);
    }
    return given;
  }

  async read(namespace: string, name: string): Promise<{ info: ObjectInfo; data: Buffer }> {
    checkObjectName(name);
    const read = await this.store.get(namespace, name);
    if (!read) throw notFound(name);
    if (read.info.size > this.limits.inlineObjectBytes) {
      read.body.destroy();
      throw errors.payloadTooLarge(
        `"${name}" is ${read.info.size} bytes, more than the ${this.limits.inlineObjectBytes} bytes Read returns inline; ` +
          'call space/Download for a URL that streams it',
      );
    }
    const chunks: Buffer[] = [];
    for await (const chunk of read.body) chunks.push(chunk as Buffer);
    return { info: read.info, data: Buffer.concat(chunks) };
  }

  async head(namespace: string, name: string): Promise<ObjectInfo> {
    checkObjectName(name);
    const info = await this.store.head(namespace, name);
    if (!info) throw notFound(name);
    return info;
  }

  async list(namespace: string, prefix: string, limit: number, startAfter: string): Promise<ObjectPage> {
    if (Buffer.byteLength(prefix) > 1024) throw errors.badRequest('prefix: longer than the 1024-byte limit of a name, so no name can start with it');
    return this.store.list(namespace, { prefix, limit, startAfter: startAfter || undefined });
  }

  async delete(namespace: string, name: string): Promise<void> {
    checkObjectName(name);
    await this.store.delete(namespace, name);
  }

  /** A URL that lets anyone GET the object until it expires (404 now when it does not exist). */
  async download(namespace: string, name: string, expiresInSeconds: number, origin: string | undefined): Promise<PresignedUrl> {
    await this.head(namespace, name);
    return this.presign('GET', namespace, name, expiresInSeconds, origin);
  }

  /** A URL that lets anyone PUT the object, with the given visibility, until it expires. */
  upload(namespace: string, name: string, visibility: Visibility, expiresInSeconds: number, origin: string | undefined): PresignedUrl {
    checkObjectName(name);
    return this.presign('PUT', namespace, name, expiresInSeconds, origin, visibility);
  }

  private presign(
    method: SignedMethod,
    namespace: string,
    name: string,
    expiresInSeconds: number,
    origin: string | undefined,
    visibility?: Visibility,
  ): PresignedUrl {
    const expiresAt = Math.floor(this.now() / 1000) + expiresInSeconds;
    const signature = this.signer.sign({ method, namespace, name, expiresAt, visibility });
    const query = new URLSearchParams({ expires: String(expiresAt) });
    if (visibility) query.set('visibility', visibility);
    query.set('signature', signature);
    return { url: `${this.objectUrl(namespace, name, origin)}?${query}`, expires: new Date(expiresAt * 1000).toISOString() };
  }

  checkSignature(grant: Grant, signature: string): SignatureCheck {
    return this.signer.check(grant, signature, this.now());
  }

  /** The stable URL of an object: public objects answer there without a key. */
  objectUrl(namespace: string, name: string, origin: string | undefined): string {
    return `${baseUrlOf(this.publicUrl, origin)}${SPACE_ROUTE_PREFIX}${namespace}/${encodePathParts(name)}`;
  }

  view(namespace: string, info: ObjectInfo, origin: string | undefined): ObjectView {
    return {
      name: info.name,
      created: new Date(info.createdAt).toISOString(),
      modified: new Date(info.modifiedAt).toISOString(),
      url: this.publicUrlOf(namespace, info, origin),
      visibility: info.visibility,
      size: info.size,
      contentType: info.contentType,
      sha256: info.sha256,
    };
  }

  /** M3O's `url` field: the stable URL for public objects, empty for private ones. */
  publicUrlOf(namespace: string, info: ObjectInfo, origin: string | undefined): string {
    return info.visibility === 'public' ? this.objectUrl(namespace, info.name, origin) : '';
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}

function notFound(name: string) {
  return errors.notFound(`object "${name}" does not exist; space/List shows the objects there are`);
}

/** Strict base64 (either alphabet): Buffer.from alone would skip invalid characters silently. */
export function decodeBase64(text: string, field = 'object'): Buffer {
  if (!BASE64.test(text) || text.replace(/=+$/, '').length % 4 === 1) {
    throw errors.badRequest(`${field}: not valid base64; send the content base64-encoded`);
  }
  return Buffer.from(text, 'base64');
}
