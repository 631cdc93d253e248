/**
 * An S3-compatible server for tests: s3rver (from the npm registry) on 127.0.0.1, a free
 * port and a temporary folder, with one bucket. s3rver lacks two guarantees of S3 that the
 * object port relies on, so this helper adds them in front of it, as S3 documents them:
 * - `If-None-Match: *` on PutObject, CopyObject and CompleteMultipartUpload answers 412 when
 *   the key exists (s3rver ignores the header), with writes to one key taking turns, as S3
 *   decides concurrent conditional writes one at a time;
 * - an overwrite never changes a read already under way (s3rver rewrites the file in place;
 *   here the old file is unlinked first, so an open read keeps it);
 * - listings in UTF-8 byte order of the keys, `start-after` compared the same way (s3rver
 *   walks its folders and compares UTF-16 strings);
 * - suffix ranges (`bytes=-N`, which s3rver reads as `bytes=0-N`).
 * And one fix for Node 20: s3rver seals its continuation tokens with DES, which Node 20's
 * OpenSSL 3 no longer has (every truncated listing failed with 500); its `des` calls get
 * AES-128-CBC instead, for s3rver's tokens only.
 * Not covered by it: S3's 5 MiB minimum part size, request checksums, real signatures and
 * permissions, eventual listing behaviour of other S3-compatibles, and lifecycle rules.
 */
import crypto from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
// s3rver is CommonJS without types: only its constructor, run() and close() are used.
import S3rverModule from 's3rver';

interface ListedObject {
  key: string;
}

interface ListOptions {
  prefix?: string;
  startAfter?: string;
  maxKeys?: number;
  delimiter?: string;
}

interface S3rverStore {
  listObjects(bucket: string, options: ListOptions): Promise<{ objects: ListedObject[]; commonPrefixes: string[]; isTruncated: boolean }>;
  existsObject(bucket: string, key: string): Promise<boolean>;
  getResourcePath(bucket: string, key: string, resource: string): string;
  putObject(object: { bucket: string; key: string }): Promise<unknown>;
  copyObject(srcBucket: string, srcKey: string, destBucket: string, destKey: string, metadata?: unknown): Promise<unknown>;
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  get(header: string): string;
  headers: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}

type Middleware = (context: KoaContext, next: () => Promise<void>) => Promise<void>;

interface S3rver {
  middleware: Middleware[];
  store: S3rverStore;
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

const S3rverClass = S3rverModule as unknown as new (options: Record<string, unknown>) => S3rver;

/** s3rver's built-in credentials. */
export const TEST_S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** `s3://bucket?endpoint=...&region=us-east-1&path_style=1`, as `--objects` takes it. */
  objectsUrl: string;
  /** A client of the bucket's server, to look at what is stored. */
  client: S3Client;
  close(): Promise<void>;
}

const PRECONDITION_FAILED =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>' +
  '<Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition></Error>';

/** Gives s3rver's `des` token cipher AES-128-CBC (same key and IV, zero-padded to 16 bytes). */
function replaceS3rverDes(): void {
  const marked = crypto as typeof crypto & { s3rverDesReplaced?: boolean };
  if (marked.s3rverDesReplaced) return;
  marked.s3rverDesReplaced = true;
  const widen = (bytes: crypto.BinaryLike | crypto.CipherKey | null): Buffer => {
    const wide = Buffer.alloc(16);
    Buffer.from(bytes as Buffer).copy(wide);
    return wide;
  };
  const createCipheriv = crypto.createCipheriv;
  const createDecipheriv = crypto.createDecipheriv;
  // The library calls them through the module object, so replacing the properties reaches it.
  (crypto as { createCipheriv: unknown }).createCipheriv = (algorithm: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, options?: unknown) =>
    algorithm === 'des' ? createCipheriv('aes-128-cbc', widen(key), widen(iv)) : createCipheriv(algorithm, key, iv, options as undefined);
  (crypto as { createDecipheriv: unknown }).createDecipheriv = (algorithm: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, options?: unknown) =>
    algorithm === 'des' ? createDecipheriv('aes-128-cbc', widen(key), widen(iv)) : createDecipheriv(algorithm, key, iv, options as undefined);
}

export async function startS3Server(bucket = 'alto-test'): Promise<TestS3> {
  replaceS3rverDes();
  const directory = mkdtempSync(join(tmpdir(), 'alto-s3-'));
  const server = new S3rverClass({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
  const store = server.store;

  // An overwrite unlinks the old file first, so a read holding it open finishes on it.
  const putObject = store.putObject.bind(store);
  store.putObject = async (object) => {
    await unlink(store.getResourcePath(object.bucket, object.key, 'object')).catch(() => undefined);
    return putObject(object);
  };
  const copyObject = store.copyObject.bind(store);
  store.copyObject = async (srcBucket, srcKey, destBucket, destKey, metadata) => {
    if (srcBucket !== destBucket || srcKey !== destKey) {
      await unlink(store.getResourcePath(destBucket, destKey, 'object')).catch(() => undefined);
    }
    return copyObject(srcBucket, srcKey, destBucket, destKey, metadata);
  };

  // Keys in UTF-8 byte order, as S3 lists them (Alto lists without a delimiter).
  const listObjects = store.listObjects.bind(store);
  const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  store.listObjects = async (bucketName, options) => {
    if (options.delimiter) return listObjects(bucketName, options);
    const all = (await listObjects(bucketName, { prefix: options.prefix })).objects.sort((a, b) => byBytes(a.key, b.key));
    const after = options.startAfter ? all.filter((object) => byBytes(object.key, options.startAfter!) > 0) : all;
    const maxKeys = options.maxKeys ?? 1000;
    return { objects: after.slice(0, maxKeys), commonPrefixes: [], isTruncated: after.length > maxKeys };
  };

  // A suffix range becomes the first-last range it stands for.
  const suffixRanges: Middleware = async (context, next) => {
    const match = /^\/([^/]+)\/(.+)$/.exec(context.path);
    const suffix = /^bytes=-(\d+)$/.exec(String(context.headers.range ?? ''));
    if (context.method === 'GET' && match && suffix) {
      const size = await stat(store.getResourcePath(match[1], decodeURIComponent(match[2]), 'object')).then(
        (info) => info.size,
        () => 0,
      );
      context.headers.range = `bytes=${Math.max(0, size - Number(suffix[1]))}-`;
    }
    return next();
  };

  // Writes that commit an object take turns per key, and honour If-None-Match: *.
  const turns = new Map<string, Promise<void>>();
  const conditionalWrites: Middleware = async (context, next) => {
    const match = /^\/([^/]+)\/(.+)$/.exec(context.path);
    const commits =
      match !== null &&
      ((context.method === 'PUT' && context.query.partNumber === undefined && context.query.tagging === undefined) ||
        (context.method === 'POST' && context.query.uploadId !== undefined));
    if (!commits) return next();
    const [, bucketName, encodedKey] = match;
    const key = decodeURIComponent(encodedKey);
    const turn = `${bucketName}/${key}`;
    const previous = turns.get(turn) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const mine = previous.then(() => done);
    turns.set(turn, mine);
    await previous;
    try {
      if (context.get('if-none-match') === '*' && (await store.existsObject(bucketName, key))) {
        context.status = 412;
        context.type = 'application/xml';
        context.body = PRECONDITION_FAILED;
        return;
      }
      await next();
    } finally {
      release();
      if (turns.get(turn) === mine) turns.delete(turn);
    }
  };
  server.middleware.unshift(conditionalWrites, suffixRanges);

  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: TEST_S3_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    bucket,
    objectsUrl: `s3://${bucket}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1&path_style=1`,
    client,
    async close() {
      client.destroy();
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
