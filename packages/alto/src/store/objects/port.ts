/**
 * @module store/objects/port
 * The object storage port: named byte streams with a little metadata (content type,
 * visibility, created/modified times, size, SHA-256), per tenant namespace. Bodies are streams
 * both ways, so an object of any size passes through in constant memory. Adapters: `local.ts`
 * (embedded: files under the data folder); an S3-compatible adapter drops in behind the same
 * interface (PutObject with `If-None-Match: *` for `ifAbsent`, ranged GetObject, HeadObject,
 * ListObjectsV2 with StartAfter, the metadata as `x-amz-meta-*`), passing `contract.ts`.
 *
 * Every method takes the namespace first, so one project can never name another's objects.
 * A write is atomic: readers see the old object or the new one, whole, never a mix, even if
 * the writer crashes or its body stream fails half way.
 */
import type { Readable } from 'node:stream';
import { AltoError, errors } from '../../kit/errors.js';

export type Visibility = 'public' | 'private';

export interface ObjectInfo {
  name: string;
  /** Bytes of content. */
  size: number;
  contentType: string;
  visibility: Visibility;
  /** Milliseconds since the epoch when an object was first written under this name; kept by overwrites. */
  createdAt: number;
  /** Milliseconds since the epoch of the last write. */
  modifiedAt: number;
  /** Hex SHA-256 of the content. */
  sha256: string;
  /** Opaque tag that changes whenever the content does (S3: the MD5 ETag; local: the SHA-256). */
  etag: string;
}

export interface PutOptions {
  contentType: string;
  visibility: Visibility;
  /** Create only: when the name is taken, write nothing and throw `objectExists`. */
  ifAbsent?: boolean;
  /** Refuse (413) and write nothing once the body passes this many bytes. */
  maxBytes?: number;
  /** The length the sender announced (Content-Length); a body of any other length writes nothing. */
  expectedBytes?: number;
}

/** A byte range as HTTP asks for it: `first-last` (inclusive), `first-` (to the end), or the last `suffix` bytes. */
export type RangeRequest = { first: number; last?: number } | { suffix: number };

/** A satisfiable range resolved against an object's size: both ends inclusive. */
export interface ByteRange {
  first: number;
  last: number;
}

export interface ObjectRead {
  info: ObjectInfo;
  /** The content, or the asked range of it. The caller must consume or destroy it. */
  body: Readable;
  /** Set when a range was asked for. */
  range?: ByteRange;
}

export interface ListOptions {
  /** Only names starting with this text. */
  prefix?: string;
  /** Only names after this one (in byte order): the `nextStartAfter` of the previous page. */
  startAfter?: string;
  /** Most objects in one page. */
  limit: number;
}

export interface ObjectPage {
  /** Sorted by name in UTF-8 byte order, as S3 lists. */
  objects: ObjectInfo[];
  /** The last name of this page when more objects follow; undefined on the last page. */
  nextStartAfter?: string;
}

export interface ObjectStore {
  readonly backend: 'local' | 's3';
  /**
   * Streams `body` into the object `name`, replacing any object of that name atomically. The
   * first write under a name sets `createdAt`; overwrites keep it.
   */
  put(namespace: string, name: string, body: Readable, options: PutOptions): Promise<ObjectInfo>;
  /** The object's content (or a range of it) and metadata; undefined when there is none. */
  get(namespace: string, name: string, range?: RangeRequest): Promise<ObjectRead | undefined>;
  head(namespace: string, name: string): Promise<ObjectInfo | undefined>;
  list(namespace: string, options: ListOptions): Promise<ObjectPage>;
  /** Returns false when there was no such object. */
  delete(namespace: string, name: string): Promise<boolean>;
  /** Deletes the objects of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<void>;
  /** Bytes of content a project keeps, across its environments (for its space_bytes cap). */
  projectBytes(projectId: string): Promise<number>;
  close(): Promise<void>;
}

/** The rules every adapter shares, so a name valid on one is valid on all. */
export const OBJECT_NAME_LIMITS = {
  /** S3's limit on a key. */
  maxNameBytes: 1024,
  /** One part between slashes: a file name on most file systems, with room for escapes. */
  maxPartBytes: 240,
};

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Throws a 400 naming what is wrong with an object name: empty, too long, control characters,
 * a leading, trailing or doubled slash, or a `.`/`..` part. Names with those parts could not
 * be served at a URL unchanged (clients normalise them away) and could point outside the
 * namespace on a file system, so no adapter accepts them.
 */
export function checkObjectName(name: string, field = 'name'): void {
  if (name.length === 0) throw errors.badRequest(`${field}: missing; give the object a name such as "images/cat.jpg"`);
  const bytes = Buffer.byteLength(name);
  if (bytes > OBJECT_NAME_LIMITS.maxNameBytes) {
    throw errors.badRequest(`${field}: ${bytes} bytes is longer than the ${OBJECT_NAME_LIMITS.maxNameBytes}-byte limit of an object name`);
  }
  if (LONE_SURROGATE.test(name)) throw errors.badRequest(`${field}: contains a lone UTF-16 surrogate; send valid Unicode text`);
  if (CONTROL_CHARACTER.test(name)) throw errors.badRequest(`${field}: control characters (such as newlines or NUL) are not allowed in an object name`);
  if (name.startsWith('/')) throw errors.badRequest(`${field}: "${name}" starts with "/"; names are relative, e.g. "images/cat.jpg"`);
  if (name.endsWith('/')) throw errors.badRequest(`${field}: "${name}" ends with "/"; that names a folder, not an object`);
  for (const part of name.split('/')) {
    if (part === '') throw errors.badRequest(`${field}: "${name}" contains "//"; folders are separated by a single "/"`);
    if (part === '.' || part === '..') {
      throw errors.badRequest(`${field}: "${name}" contains a "${part}" part; "." and ".." are not allowed in object names`);
    }
    const partBytes = Buffer.byteLength(part);
    if (partBytes > OBJECT_NAME_LIMITS.maxPartBytes) {
      throw errors.badRequest(
        `${field}: the part "${part.slice(0, 40)}…" is ${partBytes} bytes; each part between slashes may be at most ${OBJECT_NAME_LIMITS.maxPartBytes} bytes`,
      );
    }
  }
}

export function objectExistsDetail(name: string): string {
  return `name: an object named "${name}" already exists; use Update to replace it`;
}

/** The 416 a ranged read answers when the range starts past the end of the object. */
export class RangeNotSatisfiableError extends AltoError {
  constructor(readonly size: number) {
    super('bad_request', 416, `range: the object is ${size} bytes long, so the range asked for is outside it`);
  }
}

/**
 * Resolves a range against a size. Throws `RangeNotSatisfiableError` when it lies wholly
 * outside the object; a `last` beyond the end is clamped, as HTTP says.
 */
export function resolveRange(range: RangeRequest, size: number): ByteRange {
  if ('suffix' in range) {
    if (range.suffix <= 0 || size === 0) throw new RangeNotSatisfiableError(size);
    return { first: Math.max(0, size - range.suffix), last: size - 1 };
  }
  if (range.first >= size || (range.last !== undefined && range.last < range.first)) throw new RangeNotSatisfiableError(size);
  return { first: range.first, last: Math.min(range.last ?? size - 1, size - 1) };
}

/** Compares two names as S3 orders keys: by their UTF-8 bytes. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function tooLargeDetail(maxBytes: number): string {
  return `the object is larger than ${maxBytes} bytes, the most this server stores in one object`;
}
