/**
 * Alto's registry on two `alto up` processes of one cloud: different ports and data folders (so
 * different blob stores on disk), one PostgreSQL database (`--store`: the registry catalog) and
 * one S3-compatible bucket (`--objects`, s3rver: the blobs), the process sandbox. An image pushed
 * with Debian's `skopeo` to one node lands in the bucket before the push is acknowledged; the
 * other node lists its tags, answers its manifest and blobs (ranges too) from the bucket, so
 * skopeo pulls it back byte for byte, and runs it with `app/Run` as
 * `<its host>/<project>/<name>:<tag>`, an index too (its linux/amd64 image); an app there that
 * follows its tag is rolled out to the image pushed to that tag through the first node. A chunked
 * upload stays on the node that started it: the other answers naming that node. Another
 * project's key is refused there as on the first. Deleting the tag and pruning on the other node
 * empties the bucket of the image's blobs, and so does deleting a project. Needs the test
 * services (`. scripts/test-services.sh`) and skopeo.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { busyboxHttpdImage, HTTPD_PAGE, HTTPD_PORT } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
import { startProcess, type ServerProcess } from './harness.js';
import { buildImage, buildIndex, writeOciLayout, type BuiltImage } from './images-fixture.js';
import { startS3Server, TEST_S3_CREDENTIALS, type TestS3 } from './s3-server.js';

const execFileAsync = promisify(execFile);
const BLOB_PREFIX = '_registry/blobs/';

function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function skopeo(args: string[]): Promise<string> {
  try {
    return (await execFileAsync('skopeo', args, { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (error: any) {
    throw new Error(`skopeo ${args[0]} failed: ${error.stderr || error.message}`);
  }
}

describe("Alto's registry on two nodes sharing PostgreSQL and S3", () => {
  let database: TestDatabase;
  let s3: TestS3;
  let first: ServerProcess;
  let second: ServerProcess;
  let key: string;
  let otherKey: string;
  let imagesKey: string;
  let web: BuiltImage;
  const caches = [privateSandboxCache(), privateSandboxCache()];
  const folders: string[] = [];

  const hostOf = (server: ServerProcess) => new URL(server.url).host;
  const folder = () => {
    const dir = mkdtempSync(join(tmpdir(), 'alto-registry-shared-'));
    folders.push(dir);
    return dir;
  };
  const v2 = (server: ServerProcess, path: string, init: RequestInit & { key?: string } = {}) => {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${init.key ?? key}`);
    return fetch(`${server.url}${path.startsWith('/') ? path : `/v2/${path}`}`, { ...init, headers, redirect: 'manual' });
  };
  const errorOf = async (response: Response) => ((await response.json()) as { errors: { code: string; message: string }[] }).errors[0];
  /** The digests the bucket holds registry blobs of. */
  const bucketDigests = async (): Promise<Set<string>> => {
    const digests = new Set<string>();
    let token: string | undefined;
    do {
      const page = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: BLOB_PREFIX, ContinuationToken: token }));
      for (const entry of page.Contents ?? []) digests.add(entry.Key!.slice(BLOB_PREFIX.length).replace('/', ':'));
      token = page.NextContinuationToken;
    } while (token);
    return digests;
  };
  const onDisk = (server: ServerProcess, digest: string) => existsSync(join(server.dataDir, 'images', 'blobs', 'sha256', digest.slice('sha256:'.length)));
  const nodeOf = (server: ServerProcess) => readFileSync(join(server.dataDir, 'node-id'), 'utf8').trim();

  before(async () => {
    web = await busyboxHttpdImage();
    database = await createTestDatabase('registry_shared');
    s3 = await startS3Server('alto-registry-shared');
    const env = {
      ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
      ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
      AWS_ACCESS_KEY_ID: TEST_S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TEST_S3_CREDENTIALS.secretAccessKey,
    };
    const args = ['--store', database.url, '--objects', s3.objectsUrl, '--sandbox', 'process'];
    [first, second] = await Promise.all(caches.map((cache) => startProcess({ args, env: { ...env, ALTO_SANDBOX_CACHE: cache.dir } })));
    key = await first.projectKey('shop', ['app']);
    otherKey = await first.projectKey('other', ['app']);
    imagesKey = await first.projectKey('shop', ['images']);
  });

  after(async () => {
    await second?.close();
    await first?.close();
    for (const cache of caches) cache.remove();
    for (const dir of folders) rmSync(dir, { recursive: true, force: true });
    await s3?.close();
    await database?.drop();
  });

  test('pushed to one node: in the bucket, listed and pulled byte for byte on the other, ranges too', async () => {
    const layout = folder();
    writeOciLayout(layout, [{ image: web, refName: 'v2' }]);
    await skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', `x:${key}`, `oci:${layout}:v2`, `docker://${hostOf(first)}/shop/web:v2`]);
    const stored = await bucketDigests();
    for (const digest of [web.manifest.digest, web.config.digest, ...web.layers.map((layer) => layer.digest)]) assert.ok(stored.has(digest), `${digest} is in the bucket`);

    for (const layer of web.layers) assert.ok(onDisk(first, layer.digest) && !onDisk(second, layer.digest), 'the layers are on the first node\'s disk only');
    const tags = await v2(second, 'shop/web/tags/list');
    assert.deepEqual(await tags.json(), { name: 'shop/web', tags: ['v2'] });
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', '--creds', `x:${key}`, `docker://${hostOf(second)}/shop/web:v2`]);
    assert.equal(sha256(raw), web.manifest.digest);
    const pulled = folder();
    await skopeo(['copy', '--src-tls-verify=false', '--src-creds', `x:${key}`, `docker://${hostOf(second)}/shop/web:v2`, `oci:${pulled}:v2`]);
    const index = JSON.parse(readFileSync(join(pulled, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].digest, web.manifest.digest);
    for (const blob of [web.config, ...web.layers]) {
      assert.equal(sha256(readFileSync(join(pulled, 'blobs', 'sha256', blob.digest.slice('sha256:'.length)))), blob.digest, `${blob.digest} came back whole`);
    }

    const layer = web.layers[0];
    const whole = readFileSync(join(pulled, 'blobs', 'sha256', layer.digest.slice('sha256:'.length)));
    const ranged = await v2(second, `shop/web/blobs/${layer.digest}`, { headers: { range: 'bytes=100-199' } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get('content-range'), `bytes 100-199/${layer.size}`);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), whole.subarray(100, 200));
    const head = await v2(second, `shop/web/blobs/${web.config.digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(web.config.size));
    // The project's images on the other node: its tags, from the shared records.
    const listed = await second.call('images', 'List', {}, imagesKey);
    assert.deepEqual(listed.body.images.map((image: { references: string[] }) => image.references[0]), ['shop/web:v2']);
    assert.ok(listed.body.images[0].size > web.layers[0].size, 'its size, from the shared records');
  });

  test('the pushed image runs on the node that did not receive the push', async () => {
    for (const layer of web.layers) assert.ok(!onDisk(second, layer.digest), 'pulls through the second node were answered from the bucket');
    const run = await second.call('app', 'Run', { name: 'web', image: `${hostOf(second)}/shop/web:v2`, port: HTTPD_PORT, min_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const answer = await eventually(async () => {
      const result = await getThroughEdge(Number(new URL(second.url).port), 'web.shop.localhost');
      return result.status === 200 && result;
    }, 'the pushed image to answer on the second node');
    assert.equal(answer.body, HTTPD_PAGE);
    for (const blob of [web.config, ...web.layers]) assert.ok(onDisk(second, blob.digest), `${blob.digest} was brought to the second node`);
    assert.equal((await second.call('app', 'Delete', { name: 'web' }, key)).status, 200);

    // An index pushed to the first node: the second runs its linux/amd64 image.
    const arm = await buildImage({ architecture: 'arm64', layers: [[{ type: 'file', path: 'arm.txt', content: 'arm64' }]] });
    const index = buildIndex([
      { image: web, architecture: 'amd64' },
      { image: arm, architecture: 'arm64' },
    ]);
    const layout = folder();
    writeOciLayout(layout, [{ image: index, refName: 'multi' }]);
    await skopeo(['copy', '--all', '--dest-tls-verify=false', '--dest-creds', `x:${key}`, `oci:${layout}:multi`, `docker://${hostOf(first)}/shop/multi:v1`]);
    const multi = await second.call('app', 'Run', { name: 'multi', image: `${hostOf(second)}/shop/multi:v1`, port: HTTPD_PORT, min_instances: 1 }, key);
    assert.equal(multi.status, 200, JSON.stringify(multi.body));
    assert.equal(multi.body.service?.digest ?? (await second.call('app', 'Status', { name: 'multi' }, key)).body.service.digest, web.manifest.digest, 'the linux/amd64 image of the index');
    const served = await eventually(async () => {
      const result = await getThroughEdge(Number(new URL(second.url).port), 'multi.shop.localhost');
      return result.status === 200 && result;
    }, 'the index pushed to the first node to answer on the second');
    assert.equal(served.body, HTTPD_PAGE);
    assert.equal((await second.call('app', 'Delete', { name: 'multi' }, key)).status, 200);
  });

  test('an app that follows its tag on one node is updated by a push to the other', async () => {
    const [one, two] = await Promise.all([webImage('follow v1', 'follow one\n'), webImage('follow v2', 'follow two\n')]);
    const push = async (image: BuiltImage) => {
      const layout = folder();
      writeOciLayout(layout, [{ image, refName: 'v1' }]);
      await skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', `x:${key}`, `oci:${layout}:v1`, `docker://${hostOf(first)}/shop/follow:v1`]);
    };
    await push(one);
    const run = await second.call('app', 'Run', { name: 'follower', image: `${hostOf(second)}/shop/follow:v1`, port: 8080, min_instances: 1, follow_tag: true }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const page = async () => (await getThroughEdge(Number(new URL(second.url).port), 'follower.shop.localhost')).body;
    await eventually(async () => (await page()) === 'follow one\n', 'the follower to serve v1');

    await push(two);
    // Read within 3 s of the push, then rolled out as any update (a loaded machine takes longer).
    await eventually(async () => (await page()) === 'follow two\n', 'the follower on the second node to serve the image pushed to the first', 90_000);
    assert.equal((await second.call('app', 'Status', { name: 'follower' }, key)).body.service.digest, two.manifest.digest);
    // The rollout ends once the old version has stopped: until then the app is busy (409).
    await eventually(async () => {
      const deleted = await second.call('app', 'Delete', { name: 'follower' }, key);
      if (deleted.status === 409) return false;
      assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
      return true;
    }, 'the follower to be deleted once its rollout ends', 60_000);
  });

  test('a chunked upload stays on its node: the other names it; another project is refused on both', async () => {
    const blob = randomBytes(50_000);
    const started = await v2(first, 'shop/chunks/blobs/uploads/', { method: 'POST' });
    assert.equal(started.status, 202);
    const location = started.headers.get('location')!;
    assert.match(location, new RegExp(`^/v2/shop/chunks/blobs/uploads/[0-9a-f-]{36}\\?node=${nodeOf(first)}$`));
    const elsewhere = await v2(second, location, { method: 'PATCH', body: blob, headers: { 'content-range': `0-${blob.length - 1}` } });
    assert.equal(elsewhere.status, 404);
    const refusal = await errorOf(elsewhere);
    assert.equal(refusal.code, 'BLOB_UPLOAD_UNKNOWN');
    assert.match(refusal.message, new RegExp(`held by node ${nodeOf(first)} of this cloud, and this is node ${nodeOf(second)}`));
    const patched = await v2(first, location, { method: 'PATCH', body: blob, headers: { 'content-range': `0-${blob.length - 1}` } });
    assert.equal(patched.status, 202);
    const finished = await v2(first, `${patched.headers.get('location')!}&digest=${sha256(blob)}`, { method: 'PUT' });
    assert.equal(finished.status, 201, JSON.stringify(await errorOf(finished).catch(() => null)));
    assert.ok((await bucketDigests()).has(sha256(blob)), 'the finished blob is in the bucket');
    assert.equal((await v2(second, `shop/chunks/blobs/${sha256(blob)}`, { method: 'HEAD' })).status, 200, 'and read on the other node');

    for (const server of [first, second]) {
      assert.equal((await v2(server, 'shop/web/manifests/v2', { key: otherKey })).status, 403);
      assert.equal((await v2(server, `shop/web/blobs/${web.layers[0].digest}`, { key: otherKey })).status, 403);
      assert.equal((await v2(server, 'other/web/manifests/v2', { key: otherKey })).status, 404, "the other project's repository of that name holds nothing");
    }
  });

  test('the tag deleted and pruned on the other node: the image leaves the records and the bucket', async () => {
    for (const image of ['shop/web:v2', 'shop/multi:v1', 'shop/follow:v1']) {
      const deleted = await second.call('images', 'Delete', { image }, imagesKey);
      assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    }
    assert.equal((await v2(first, 'shop/web/manifests/v2', { method: 'HEAD' })).status, 404, 'the first node sees the tag gone');
    const pruned = await second.call('images', 'Prune', {}, imagesKey);
    assert.equal(pruned.status, 200, JSON.stringify(pruned.body));
    const stored = await bucketDigests();
    for (const digest of [web.manifest.digest, web.config.digest, ...web.layers.map((layer) => layer.digest)]) assert.ok(!stored.has(digest), `${digest} left the bucket`);
    assert.equal((await v2(first, `shop/web/blobs/${web.layers[0].digest}`, { method: 'HEAD' })).status, 404, 'no node serves it any more');
    const tags = await v2(first, 'shop/web/tags/list');
    assert.equal(tags.status, 404);
  });

  test("a project deleted through one node: its repositories' blobs leave the bucket", async () => {
    const blob = randomBytes(10_000);
    const pushed = await v2(first, `other/data/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob, key: otherKey });
    assert.equal(pushed.status, 201);
    assert.ok((await bucketDigests()).has(sha256(blob)));
    const deleted = await second.call('projects', 'Delete', { name: 'other' });
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.ok(!(await bucketDigests()).has(sha256(blob)), 'the blob left the bucket with its project');
  });
});
