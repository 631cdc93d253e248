/**
 * Runs the object store contract against the S3 adapter on an S3-compatible server the test
 * starts (s3rver on loopback; see test/s3-server.ts for what it does not cover), plus what
 * only the S3 adapter has: the `--objects` URL, long bodies by multipart upload through a
 * staging key that is always removed, and objects written by other tools.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startS3Server, TEST_S3_CREDENTIALS, type TestS3 } from '../../../test/s3-server.js';
import { failingBody, readAll, runObjectStoreContract, sha256Of } from './contract.js';
import { parseObjectsUrl, redactObjectsUrl, S3ObjectStore } from './s3.js';

/** S3's (and lib-storage's) smallest part. */
const PART_BYTES = 5 * 1024 * 1024;

runObjectStoreContract('s3', async () => {
  const server = await startS3Server();
  return {
    store: await S3ObjectStore.open(parseObjectsUrl(server.objectsUrl), { credentials: TEST_S3_CREDENTIALS, partBytes: PART_BYTES }),
    cleanup: () => server.close(),
  };
});

test('s3: the --objects URL gives bucket, prefix, endpoint, region and path style, and refuses what it cannot use', () => {
  assert.deepEqual(parseObjectsUrl('s3://my-bucket?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&path_style=1'), {
    bucket: 'my-bucket',
    prefix: '',
    endpoint: 'http://127.0.0.1:9000',
    region: 'eu-west-1',
    forcePathStyle: true,
  });
  assert.deepEqual(parseObjectsUrl('s3://my-bucket/clouds/one?region=us-east-2'), {
    bucket: 'my-bucket',
    prefix: 'clouds/one/',
    endpoint: undefined,
    region: 'us-east-2',
    forcePathStyle: false,
  });
  assert.equal(parseObjectsUrl('s3://b?endpoint=http://minio:9000&path_style=1').endpoint, 'http://minio:9000');
  assert.throws(() => parseObjectsUrl('http://bucket'), /must be an s3:\/\/BUCKET URL/);
  assert.throws(() => parseObjectsUrl('s3://KEY:SECRET@bucket'), /no credentials in the URL; set AWS_ACCESS_KEY_ID/);
  assert.throws(() => parseObjectsUrl('s3://bucket?endpont=x'), /unknown setting "endpont"/);
  assert.throws(() => parseObjectsUrl('s3://bucket?endpoint=ftp://x'), /endpoint must be an http\(s\):\/\//);
  assert.throws(() => parseObjectsUrl('s3://bucket?path_style=yes'), /path_style must be 1 or 0/);
  assert.equal(redactObjectsUrl('s3://KEY:SECRET@bucket?region=r'), 's3://bucket?region=r');
});

describe('s3: adapter', () => {
  let server: TestS3;
  let store: S3ObjectStore;
  before(async () => {
    server = await startS3Server();
    store = await S3ObjectStore.open(parseObjectsUrl(`${server.objectsUrl.replace('?', '/cloud-a?')}`), {
      credentials: TEST_S3_CREDENTIALS,
      partBytes: PART_BYTES,
    });
  });
  after(async () => {
    await store.close();
    await server.close();
  });

  async function keysInBucket(): Promise<string[]> {
    const listed = await server.client.send(new ListObjectsV2Command({ Bucket: server.bucket }));
    return (listed.Contents ?? []).map((entry) => entry.Key!);
  }

  test('a missing bucket or wrong credentials are refused at open, naming the fix', async () => {
    const location = parseObjectsUrl(server.objectsUrl.replace(server.bucket, 'no-such-bucket'));
    await assert.rejects(S3ObjectStore.open(location, { credentials: TEST_S3_CREDENTIALS }), /"no-such-bucket".*no such bucket; create it first/);
    await assert.rejects(
      S3ObjectStore.open(parseObjectsUrl(server.objectsUrl), { credentials: { accessKeyId: 'WRONG', secretAccessKey: 'WRONG' } }),
      /objects bucket "alto-test"/,
    );
  });

  test('a body longer than a part goes by multipart upload, lands under its key with its metadata, and leaves no staging key', async () => {
    const chunks = Array.from({ length: 12 }, () => randomBytes(1024 * 1024));
    const whole = Buffer.concat(chunks);
    const info = await store.put('p1/dev', 'videos/long.bin', Readable.from(chunks), { contentType: 'video/mp4', visibility: 'public' });
    assert.equal(info.size, whole.length);
    assert.equal(info.sha256, sha256Of(whole));
    assert.deepEqual(await store.head('p1/dev', 'videos/long.bin'), info);
    const read = await store.get('p1/dev', 'videos/long.bin', { first: PART_BYTES - 2, last: PART_BYTES + 1 });
    assert.deepEqual(await readAll(read!.body), whole.subarray(PART_BYTES - 2, PART_BYTES + 2));
    assert.deepEqual(await keysInBucket(), ['cloud-a/p1/dev/videos/long.bin'], 'the key carries the URL prefix; no staging key is left');
    await assert.rejects(
      store.put('p1/dev', 'videos/long.bin', Readable.from(chunks), { contentType: 'video/mp4', visibility: 'public', ifAbsent: true }),
      /already exists/,
    );
    assert.deepEqual(await store.head('p1/dev', 'videos/long.bin'), info);
  });

  test('a long body that fails past the first part changes nothing and leaves no upload behind', async () => {
    const before = await keysInBucket();
    const parts = Array.from({ length: 14 }, () => randomBytes(512 * 1024));
    await assert.rejects(
      store.put('p1/dev', 'videos/cut.bin', failingBody(parts), { contentType: 'video/mp4', visibility: 'private' }),
      /connection reset/,
    );
    await assert.rejects(
      store.put('p1/dev', 'videos/too-big.bin', Readable.from(parts), { contentType: 'video/mp4', visibility: 'private', maxBytes: 6 * 1024 * 1024 }),
      /larger than 6291456 bytes/,
    );
    assert.equal(await store.head('p1/dev', 'videos/cut.bin'), undefined);
    assert.deepEqual(await keysInBucket(), before);
    const uploads = await server.client.send(new ListMultipartUploadsCommand({ Bucket: server.bucket })).catch(() => undefined);
    assert.deepEqual(uploads?.Uploads ?? [], [], 'aborted, not left pending');
  });

  test('an object put by another tool reads as private, timed by S3, with no SHA-256', async () => {
    await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'cloud-a/p1/dev/imported.txt', Body: 'from elsewhere', ContentType: 'text/plain' }));
    const info = await store.head('p1/dev', 'imported.txt');
    assert.equal(info?.size, 14);
    assert.equal(info?.visibility, 'private');
    assert.equal(info?.contentType, 'text/plain');
    assert.equal(info?.sha256, '');
    assert.ok(info!.modifiedAt > 0 && info!.createdAt === info!.modifiedAt);
  });
});
