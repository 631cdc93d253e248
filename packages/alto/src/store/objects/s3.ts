/**
 * @module store/objects/s3
 * The object adapter for an S3-compatible store (AWS S3, MinIO, R2, Ceph...), picked by
 * `--objects s3://BUCKET[/prefix]?endpoint=URL&region=R&path_style=1`. Credentials come from
 * the SDK's default chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, as every S3 tool).
 *
 * Keys are `<prefix><projectId>/<environment>/<name>`; the metadata S3 does not keep itself
 * (SHA-256, visibility, millisecond times) travels as `x-amz-meta-alto-*`, so content and
 * metadata change together in one write. The SHA-256 is known only once the whole body has
 * passed, and S3 takes metadata before the body, so:
 * - a body of at most one part is gathered (one bounded part in memory), hashed, and written
 *   with one PutObject;
 * - a longer one streams by multipart upload (`@aws-sdk/lib-storage`) to a staging key under
 *   `<prefix>.staging/`, then a server-side CopyObject writes it under its name with its
 *   metadata, and the staging key is deleted. A failed body aborts the upload: nothing changes.
 * Create-only writes send `If-None-Match: *`, so of two concurrent creates S3 keeps one.
 * A crash between staging and copy leaves a staging key (and S3 may keep an aborted upload's
 * parts): a lifecycle rule on `.staging/` and on incomplete multipart uploads clears them.
 */
import { randomBytes, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type GetObjectCommandOutput,
  type HeadObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { errors } from '../../kit/errors.js';
import {
  checkObjectName,
  objectExistsDetail,
  resolveRange,
  tooLargeDetail,
  RangeNotSatisfiableError,
  type ListOptions,
  type ObjectInfo,
  type ObjectPage,
  type ObjectRead,
  type ObjectStore,
  type PutOptions,
  type RangeRequest,
  type Visibility,
} from './port.js';

/** Where the objects live: parsed from `s3://BUCKET[/prefix]?endpoint=...&region=...&path_style=1`. */
export interface S3Location {
  bucket: string;
  /** Prepended to every key, so one bucket can hold several clouds; empty or ending in `/`. */
  prefix: string;
  /** An S3-compatible server's address; AWS's own when absent. */
  endpoint?: string;
  region: string;
  /** `bucket` in the path rather than the host name (MinIO and most self-hosted servers). */
  forcePathStyle: boolean;
}

export interface S3ObjectStoreOptions {
  /** Explicit credentials (tests); otherwise the SDK's default chain (the AWS_* variables). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Bytes of one multipart part, and the most a single PutObject carries (default 8 MiB; S3's minimum part is 5 MiB). */
  partBytes?: number;
  now?: () => number;
}

const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
/** S3's limit on one CopyObject: longer objects would need a multipart copy. */
const MAX_COPY_BYTES = 5 * 1024 * 1024 * 1024;
const STAGING_FOLDER = '.staging/';
/** A project id or an environment name; never starts with `.`, so no namespace meets `.staging/`. */
const NAMESPACE_PART = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const MAX_CONTENT_TYPE_BYTES = 255;
/** HEADs in flight at once while listing (S3 lists no user metadata). */
const LIST_HEAD_CONCURRENCY = 32;
/** S3's most keys in one DeleteObjects. */
const DELETE_BATCH = 1000;

const META = { sha256: 'alto-sha256', visibility: 'alto-visibility', createdAt: 'alto-created', modifiedAt: 'alto-modified' };

/** Reads `s3://BUCKET[/prefix]?endpoint=URL&region=R&path_style=1`; throws a message naming what is wrong. */
export function parseObjectsUrl(value: string): S3Location {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`--objects must be an s3://BUCKET URL, not "${value}"`);
  }
  if (url.protocol !== 's3:' || !url.hostname) throw new Error(`--objects must be an s3://BUCKET URL, not "${redactObjectsUrl(value)}"`);
  if (url.username || url.password) {
    throw new Error('--objects: put no credentials in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead');
  }
  const known = new Set(['endpoint', 'region', 'path_style']);
  for (const key of url.searchParams.keys()) {
    if (!known.has(key)) throw new Error(`--objects: unknown setting "${key}"; the settings are endpoint, region and path_style`);
  }
  const endpoint = url.searchParams.get('endpoint') || undefined;
  if (endpoint) {
    let protocol: string;
    try {
      protocol = new URL(endpoint).protocol;
    } catch {
      protocol = '';
    }
    if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`--objects: endpoint must be an http(s):// URL, not "${endpoint}"`);
  }
  const pathStyle = url.searchParams.get('path_style');
  if (pathStyle !== null && !['0', '1', 'true', 'false'].includes(pathStyle)) {
    throw new Error(`--objects: path_style must be 1 or 0, not "${pathStyle}"`);
  }
  const path = decodeURIComponent(url.pathname.replace(/^\/+/, ''));
  return {
    bucket: url.hostname,
    prefix: path === '' || path.endsWith('/') ? path : `${path}/`,
    endpoint,
    region: url.searchParams.get('region') || process.env.AWS_REGION || 'us-east-1',
    forcePathStyle: pathStyle === '1' || pathStyle === 'true',
  };
}

/** The objects URL without anything secret, for logs and status. */
export function redactObjectsUrl(value: string): string {
  try {
    const url = new URL(value);
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    return '(unparseable URL)';
  }
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function isMissing(error: unknown): boolean {
  const name = (error as Error).name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(error) === 404;
}

/** S3's answer to a create-only write whose name is taken (412), or to two at once (409). */
function isTaken(error: unknown): boolean {
  const name = (error as Error).name;
  return name === 'PreconditionFailed' || name === 'ConditionalRequestConflict' || statusOf(error) === 412;
}

export class S3ObjectStore implements ObjectStore {
  readonly backend = 's3';
  private readonly partBytes: number;
  private readonly now: () => number;

  private constructor(
    readonly client: S3Client,
    readonly location: S3Location,
    options: S3ObjectStoreOptions,
  ) {
    this.partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
    this.now = options.now ?? Date.now;
  }

  /** Connects and checks that the bucket is there and reachable with these credentials. */
  static async open(location: S3Location, options: S3ObjectStoreOptions = {}): Promise<S3ObjectStore> {
    const client = new S3Client({
      region: location.region,
      endpoint: location.endpoint,
      forcePathStyle: location.forcePathStyle,
      credentials: options.credentials,
      // Checksums only where S3 requires them: many S3-compatible servers reject the newer
      // default trailers; the content's SHA-256 is ours and travels as metadata.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    try {
      await client.send(new HeadBucketCommand({ Bucket: location.bucket }));
    } catch (error) {
      client.destroy();
      const status = statusOf(error);
      const why =
        status === 404
          ? 'no such bucket; create it first'
          : status === 403
            ? 'access denied; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY'
            : (error as Error).message || (error as Error).name;
      throw new Error(`objects bucket "${location.bucket}"${location.endpoint ? ` at ${location.endpoint}` : ''}: ${why}`);
    }
    return new S3ObjectStore(client, location, options);
  }

  /** What `alto status` shows: no credentials (they are never in the URL). */
  describe(): string {
    const { bucket, prefix, endpoint, region } = this.location;
    return `objects on s3://${bucket}/${prefix} (${endpoint ?? 'AWS'}, ${region})`;
  }

  private namespacePrefix(namespace: string): string {
    const parts = namespace.split('/');
    if (parts.length !== 2 || !parts.every((part) => NAMESPACE_PART.test(part))) {
      throw errors.internal(`"${namespace}" is not a namespace of the form <project>/<environment>`);
    }
    return `${this.location.prefix}${namespace}/`;
  }

  private keyOf(namespace: string, name: string): string {
    checkObjectName(name);
    return this.namespacePrefix(namespace) + name;
  }

  private projectPrefix(projectId: string): string {
    if (!NAMESPACE_PART.test(projectId)) throw errors.internal(`"${projectId}" is not a project id`);
    return `${this.location.prefix}${projectId}/`;
  }

  async put(namespace: string, name: string, body: Readable, options: PutOptions): Promise<ObjectInfo> {
    const { maxBytes, expectedBytes } = options;
    let key: string;
    try {
      key = this.keyOf(namespace, name);
      if (Buffer.byteLength(options.contentType) > MAX_CONTENT_TYPE_BYTES || /[^\x20-\x7e]/.test(options.contentType)) {
        throw errors.badRequest(`contentType: at most ${MAX_CONTENT_TYPE_BYTES} printable ASCII characters`);
      }
      if (maxBytes !== undefined && expectedBytes !== undefined && expectedBytes > maxBytes) {
        throw errors.payloadTooLarge(tooLargeDetail(maxBytes));
      }
      // Saves receiving a body only to refuse it; If-None-Match is what makes it safe.
      if (options.ifAbsent && (await this.headKey(key, name))) throw errors.conflict(objectExistsDetail(name));
    } catch (error) {
      body.destroy();
      throw error;
    }

    const hash = createHash('sha256');
    let size = 0;
    // Counts, hashes and checks the body on its way; an error here ends the write before any
    // commit, since it surfaces before the stream's end.
    async function* checked(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        size += chunk.length;
        if (maxBytes !== undefined && size > maxBytes) throw errors.payloadTooLarge(tooLargeDetail(maxBytes));
        if (expectedBytes !== undefined && size > expectedBytes) throw errors.badRequest(`the body is longer than the ${expectedBytes} bytes announced`);
        hash.update(chunk);
        yield chunk;
      }
      if (expectedBytes !== undefined && size !== expectedBytes) {
        throw errors.badRequest(`the body ended after ${size} of the ${expectedBytes} bytes announced`);
      }
    }
    const chunks = checked(body)[Symbol.asyncIterator]();
    try {
      // The first part decides: a body that fits is written at once, a longer one is staged.
      const first: Buffer[] = [];
      let firstBytes = 0;
      let ended = false;
      while (firstBytes <= this.partBytes) {
        const next = await chunks.next();
        if (next.done) {
          ended = true;
          break;
        }
        first.push(next.value);
        firstBytes += next.value.length;
      }
      if (ended) {
        const content = Buffer.concat(first);
        const info = await this.infoToWrite(key, name, options, content.length, hash.digest('hex'));
        const written = await this.conditional(name, () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.location.bucket,
              Key: key,
              Body: content,
              ContentLength: content.length,
              ContentType: info.contentType,
              Metadata: metadataOf(info),
              IfNoneMatch: options.ifAbsent ? '*' : undefined,
            }),
          ),
        );
        return { ...info, etag: etagOf(written.ETag) };
      }
      return await this.putStaged(key, name, options, first, chunks, () => ({ size, sha256: hash.digest('hex') }));
    } finally {
      await chunks.return?.(undefined).catch(() => undefined);
      body.destroy();
    }
  }

  /** Streams a long body to a staging key by multipart upload, then copies it under its name with its metadata. */
  private async putStaged(
    key: string,
    name: string,
    options: PutOptions,
    first: Buffer[],
    rest: AsyncIterator<Buffer>,
    finished: () => { size: number; sha256: string },
  ): Promise<ObjectInfo> {
    const staging = `${this.location.prefix}${STAGING_FOLDER}${process.pid}-${randomBytes(12).toString('hex')}`;
    let bodyError: unknown;
    const remaining = Readable.from(
      (async function* () {
        yield* first;
        try {
          for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
        } catch (error) {
          bodyError = error;
          throw error;
        }
      })(),
    );
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.location.bucket, Key: staging, Body: remaining },
      partSize: this.partBytes,
      queueSize: 2,
      leavePartsOnError: false,
    });
    try {
      try {
        await upload.done();
      } catch (error) {
        throw bodyError ?? error;
      }
      const { size, sha256 } = finished();
      if (size > MAX_COPY_BYTES) throw errors.payloadTooLarge(tooLargeDetail(MAX_COPY_BYTES));
      const info = await this.infoToWrite(key, name, options, size, sha256);
      const copied = await this.conditional(name, () =>
        this.client.send(
          new CopyObjectCommand({
            Bucket: this.location.bucket,
            Key: key,
            CopySource: `${this.location.bucket}/${staging}`,
            MetadataDirective: 'REPLACE',
            ContentType: info.contentType,
            Metadata: metadataOf(info),
            IfNoneMatch: options.ifAbsent ? '*' : undefined,
          }),
        ),
      );
      return { ...info, etag: etagOf(copied.CopyObjectResult?.ETag) };
    } finally {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: staging })).catch(() => undefined);
    }
  }

  /** The metadata of a write about to commit; an overwrite keeps the creation time. */
  private async infoToWrite(key: string, name: string, options: PutOptions, size: number, sha256: string): Promise<ObjectInfo> {
    const now = this.now();
    const previous = options.ifAbsent ? undefined : await this.headKey(key, name);
    return {
      name,
      size,
      contentType: options.contentType,
      visibility: options.visibility,
      createdAt: previous?.createdAt ?? now,
      modifiedAt: now,
      sha256,
      etag: '',
    };
  }

  /** Runs a create-only write, turning S3's "taken" into the port's 409. */
  private async conditional<T>(name: string, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (isTaken(error)) throw errors.conflict(objectExistsDetail(name));
      throw error;
    }
  }

  private async headKey(key: string, name: string): Promise<ObjectInfo | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: key }));
      return infoOf(name, head, head.ContentLength ?? 0);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async get(namespace: string, name: string, range?: RangeRequest): Promise<ObjectRead | undefined> {
    const key = this.keyOf(namespace, name);
    if (range && 'suffix' in range && range.suffix <= 0) {
      const info = await this.headKey(key, name);
      if (!info) return undefined;
      throw new RangeNotSatisfiableError(info.size);
    }
    let answer: GetObjectCommandOutput;
    try {
      answer = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: key, Range: range && rangeHeader(range) }));
    } catch (error) {
      if (isMissing(error)) return undefined;
      if (range && (statusOf(error) === 416 || (error as Error).name === 'InvalidRange')) {
        const info = await this.headKey(key, name);
        if (!info) return undefined;
        throw new RangeNotSatisfiableError(info.size);
      }
      throw error;
    }
    const body = answer.Body as Readable | undefined;
    // Metadata and content come from one answer, so they belong to the same version.
    const totalFromRange = answer.ContentRange?.match(/\/(\d+)$/)?.[1];
    const size = totalFromRange !== undefined ? Number(totalFromRange) : (answer.ContentLength ?? 0);
    const info = infoOf(name, answer, size);
    try {
      if (!range) return { info, body: body ?? Readable.from([]) };
      const resolved = resolveRange(range, size);
      const served = answer.ContentRange?.match(/^bytes (\d+)-(\d+)\//);
      const whole = resolved.first === 0 && resolved.last === size - 1;
      if (served ? Number(served[1]) !== resolved.first || Number(served[2]) !== resolved.last : !whole) {
        throw errors.internal(`the object store answered another range than asked for "${name}"`);
      }
      return { info, body: body ?? Readable.from([]), range: resolved };
    } catch (error) {
      body?.destroy();
      throw error;
    }
  }

  async head(namespace: string, name: string): Promise<ObjectInfo | undefined> {
    return this.headKey(this.keyOf(namespace, name), name);
  }

  async list(namespace: string, options: ListOptions): Promise<ObjectPage> {
    const base = this.namespacePrefix(namespace);
    const listed = await this.client.send(
      new ListObjectsV2Command({
        Bucket: this.location.bucket,
        Prefix: base + (options.prefix ?? ''),
        StartAfter: options.startAfter ? base + options.startAfter : undefined,
        MaxKeys: options.limit,
      }),
    );
    const names = (listed.Contents ?? []).map((entry) => entry.Key!.slice(base.length)).slice(0, options.limit);
    const objects: ObjectInfo[] = [];
    for (let start = 0; start < names.length; start += LIST_HEAD_CONCURRENCY) {
      // S3 lists no user metadata: each object's comes from its HEAD; one deleted since is left out.
      const infos = await Promise.all(names.slice(start, start + LIST_HEAD_CONCURRENCY).map((name) => this.headKey(base + name, name)));
      for (const info of infos) if (info) objects.push(info);
    }
    const more = listed.IsTruncated === true || (listed.Contents?.length ?? 0) > options.limit;
    return { objects, nextStartAfter: more && names.length > 0 ? names[names.length - 1] : undefined };
  }

  async delete(namespace: string, name: string): Promise<boolean> {
    const key = this.keyOf(namespace, name);
    // S3 deletes answer the same whether or not there was an object: ask first.
    if (!(await this.headKey(key, name))) return false;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: key }));
    return true;
  }

  async deleteProject(projectId: string): Promise<void> {
    const prefix = this.projectPrefix(projectId);
    for (;;) {
      const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: prefix, MaxKeys: DELETE_BATCH }));
      const keys = (listed.Contents ?? []).map((entry) => ({ Key: entry.Key! }));
      if (keys.length === 0) return;
      const deleted = await this.client.send(
        new DeleteObjectsCommand({ Bucket: this.location.bucket, Delete: { Objects: keys, Quiet: true } }),
      );
      if (deleted.Errors?.length) {
        const first = deleted.Errors[0];
        throw errors.internal(`deleting the objects of project ${projectId}: ${first.Code} on "${first.Key}": ${first.Message}`);
      }
    }
  }

  async projectBytes(projectId: string): Promise<number> {
    const prefix = this.projectPrefix(projectId);
    let total = 0;
    let token: string | undefined;
    do {
      const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const entry of listed.Contents ?? []) total += entry.Size ?? 0;
      token = listed.IsTruncated ? listed.NextContinuationToken : undefined;
    } while (token);
    return total;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function rangeHeader(range: RangeRequest): string {
  return 'suffix' in range ? `bytes=-${range.suffix}` : `bytes=${range.first}-${range.last ?? ''}`;
}

function etagOf(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}

function metadataOf(info: ObjectInfo): Record<string, string> {
  return {
    [META.sha256]: info.sha256,
    [META.visibility]: info.visibility,
    [META.createdAt]: String(info.createdAt),
    [META.modifiedAt]: String(info.modifiedAt),
  };
}

/**
 * The port's view of an object from S3's answer. An object written by another tool has no
 * Alto metadata: it reads as private, timed by S3's LastModified, with no SHA-256.
 */
function infoOf(name: string, answer: HeadObjectCommandOutput | GetObjectCommandOutput, size: number): ObjectInfo {
  const metadata = answer.Metadata ?? {};
  const lastModified = answer.LastModified?.getTime() ?? 0;
  const modifiedAt = Number(metadata[META.modifiedAt]) || lastModified;
  const visibility: Visibility = metadata[META.visibility] === 'public' ? 'public' : 'private';
  return {
    name,
    size,
    contentType: answer.ContentType ?? 'application/octet-stream',
    visibility,
    createdAt: Number(metadata[META.createdAt]) || modifiedAt,
    modifiedAt,
    sha256: metadata[META.sha256] ?? '',
    etag: etagOf(answer.ETag),
  };
}
