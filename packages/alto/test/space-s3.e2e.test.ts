/**
 * The space block on S3, through the real server: Alto started with `--objects s3://...`
 * against an S3-compatible server on loopback (s3rver; see s3-server.ts for what it does not
 * cover). Create, Read, Upload and Download through presigned URLs (ranges too), List and
 * Delete through the API; the bytes are checked in the bucket with an S3 client, and the
 * data folder holds no object.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startInProcess } from './harness.js';
import { startS3Server, TEST_S3_CREDENTIALS, type TestS3 } from './s3-server.js';

const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex');

let s3: TestS3;
let alto: Awaited<ReturnType<typeof startInProcess>>;
const savedEnvironment = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

before(async () => {
  s3 = await startS3Server('alto-objects');
  // Alto reads credentials as every S3 tool does.
  process.env.AWS_ACCESS_KEY_ID = TEST_S3_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = TEST_S3_CREDENTIALS.secretAccessKey;
  alto = await startInProcess({ objects: s3.objectsUrl });
});

after(async () => {
  await alto?.close();
  await s3?.close();
  if (savedEnvironment.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
  else process.env.AWS_ACCESS_KEY_ID = savedEnvironment.id;
  if (savedEnvironment.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  else process.env.AWS_SECRET_ACCESS_KEY = savedEnvironment.secret;
});

function filesUnder(folder: string): string[] {
  if (!existsSync(folder)) return [];
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(folder, entry.name)) : [join(folder, entry.name)],
  );
}

async function bucketContent(key: string): Promise<Buffer> {
  const answer = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return Buffer.from(await answer.Body!.transformToByteArray());
}

test('space on S3: Create, Read, Upload and Download by presigned URL, List and Delete, with the bytes in the bucket', async () => {
  const key = await alto.projectKey('media', ['space']);
  const space = (endpoint: string, body: unknown) => alto.call('space', endpoint, body, key);

  const small = Buffer.from('hello from S3');
  const created = await space('Create', { name: 'docs/hello.txt', object: small.toString('base64'), visibility: 'public' });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  assert.equal((await space('Create', { name: 'docs/hello.txt', object: 'eA==' })).status, 409, 'create-only stays create-only');
  const read = await space('Read', { name: 'docs/hello.txt' });
  assert.equal(read.status, 200, JSON.stringify(read.body));
  assert.deepEqual(Buffer.from(read.body.object.data, 'base64'), small);
  assert.equal(read.body.object.sha256, sha256(small));
  const publicServed = await fetch(created.body.url);
  assert.equal(publicServed.status, 200);
  assert.equal(await publicServed.text(), 'hello from S3');

  // Longer than one part (8 MiB), so it goes by multipart upload.
  const large = randomBytes(9 * 1024 * 1024 + 123);
  const upload = await space('Upload', { name: 'videos/clip.bin' });
  assert.equal(upload.status, 200, JSON.stringify(upload.body));
  const stored = await fetch(upload.body.url, { method: 'PUT', body: large, headers: { 'content-type': 'video/mp4' } });
  assert.equal(stored.status, 200, await stored.text());

  const download = await space('Download', { name: 'videos/clip.bin' });
  assert.equal(download.status, 200);
  const fetched = await fetch(download.body.url);
  assert.equal(fetched.status, 200);
  assert.equal(fetched.headers.get('content-type'), 'video/mp4');
  assert.equal(sha256(Buffer.from(await fetched.arrayBuffer())), sha256(large));
  const ranged = await fetch(download.body.url, { headers: { range: 'bytes=8388600-8388615' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers.get('content-range'), `bytes 8388600-8388615/${large.length}`);
  assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), large.subarray(8388600, 8388616));
  const suffix = await fetch(download.body.url, { headers: { range: 'bytes=-5' } });
  assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), large.subarray(large.length - 5));

  const listed = await space('List', {});
  assert.equal(listed.status, 200);
  assert.deepEqual(
    listed.body.objects.map((object: { name: string; size?: number }) => object.name),
    ['docs/hello.txt', 'videos/clip.bin'],
  );

  // The bytes are in the bucket under <project>/<environment>/<name>, and nowhere on the disk.
  const [, , projectId, environment] = new URL(download.body.url).pathname.split('/');
  const keys = ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).Contents ?? []).map((entry) => entry.Key);
  assert.deepEqual(keys, [`${projectId}/${environment}/docs/hello.txt`, `${projectId}/${environment}/videos/clip.bin`]);
  assert.deepEqual(await bucketContent(`${projectId}/${environment}/docs/hello.txt`), small);
  assert.equal(sha256(await bucketContent(`${projectId}/${environment}/videos/clip.bin`)), sha256(large));
  const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${projectId}/${environment}/videos/clip.bin` }));
  assert.equal(head.Metadata?.['alto-sha256'], sha256(large), 'the SHA-256 travels with the object');
  assert.deepEqual(filesUnder(join(alto.dataDir, 'objects')), [], 'no object file in the data folder');

  const status = await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } });
  const description = ((await status.json()) as { store: string }).store;
  assert.match(description, /objects on s3:\/\/alto-objects\//);
  assert.doesNotMatch(description, /S3RVER/, 'no credentials in the status');

  assert.equal((await space('Delete', { name: 'videos/clip.bin' })).status, 200);
  assert.equal((await space('Read', { name: 'videos/clip.bin' })).status, 404);
  assert.equal((await fetch(download.body.url)).status, 404);
  const left = ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).Contents ?? []).map((entry) => entry.Key);
  assert.deepEqual(left, [`${projectId}/${environment}/docs/hello.txt`], 'deleted from the bucket');
});
