/**
 * Pulls through a loopback proxy in front of a real docker-registry, with the image manager
 * used as the rest of compute uses it: a connection dropped mid-layer is resumed with `Range`,
 * a partial file left by a crashed pull is resumed, blobs redirected to a storage server are
 * fetched without our Authorization header, and concurrent pulls of one image (in this process,
 * or by two managers sharing a data folder) download each blob once.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ImageManager, type PullEvent } from '../src/compute/images/manager.js';
import { silentLogger } from '../src/kit/logger.js';
import { SqliteImageRecordStore } from '../src/store/images/sqlite.js';
import { openSqlite } from '../src/store/sqlite/database.js';
import {
  buildImage,
  busyboxBaseLayer,
  changesLayer,
  startProxy,
  startRegistry,
  type BuiltImage,
  type TestProxy,
  type TestRegistry,
} from './images-fixture.js';

const workspace = mkdtempSync(join(tmpdir(), 'alto-images-pull-'));
const databases: ReturnType<typeof openSqlite>[] = [];

function manager(dataDir = mkdtempSync(join(workspace, 'data-'))): ImageManager {
  const db = openSqlite(join(dataDir, 'alto.db'));
  databases.push(db);
  return new ImageManager({ root: join(dataDir, 'images'), records: new SqliteImageRecordStore(db), log: silentLogger(), blobRetryDelayMs: 10 });
}

describe('pulling through a flaky network', () => {
  let registry: TestRegistry;
  let tokenRegistry: TestRegistry;
  let image: BuiltImage;
  const proxies: TestProxy[] = [];

  async function proxy(...args: Parameters<typeof startProxy>): Promise<TestProxy> {
    const started = await startProxy(...args);
    proxies.push(started);
    return started;
  }

  before(async () => {
    [registry, tokenRegistry] = await Promise.all([startRegistry(), startRegistry({ auth: 'token', publicRepositories: ['public/busybox'] })]);
    image = await buildImage({ layers: [busyboxBaseLayer(), changesLayer()] });
    await registry.push('demo/busybox', 'v1', image);
    await tokenRegistry.push('public/busybox', 'v1', image);
  });

  after(async () => {
    for (const started of proxies) await started.close();
    await Promise.all([registry?.stop(), tokenRegistry?.stop()]);
    for (const db of databases) db.close();
    rmSync(workspace, { recursive: true, force: true });
  });

  const bigLayer = () => image.layers[0];

  test('a connection dropped mid-layer is resumed from where it stopped', async () => {
    const cutting = await proxy(registry.host, { cutFirstBlobTransferAfter: 100_000 });
    const images = manager();
    const events: PullEvent[] = [];
    const pulled = await images.pull(`${cutting.host}/demo/busybox:v1`, { onProgress: (event) => events.push(event) });
    assert.equal(pulled.digest, image.manifest.digest);
    assert.ok(bigLayer().size > 200_000, 'the layer is big enough to be cut');
    assert.equal(cutting.blobRequests.get(bigLayer().digest), 2, 'one cut transfer, one resumed');
    // The retry asks for the rest only: from what reached the partial file before the cut
    // (bytes still buffered for the disk when the connection broke are fetched again).
    const resumedFrom = cutting.ranges.map((range) => /^bytes=(\d+)-$/.exec(range ?? '')?.[1]).find(Boolean);
    assert.ok(resumedFrom && Number(resumedFrom) > 0 && Number(resumedFrom) <= 100_000, `the retry asked for the rest only: ${cutting.ranges.join(' ')}`);
    assert.ok(events.some((event) => event.type === 'blob' && event.digest === bigLayer().digest && event.state === 'resuming'));
    assert.ok(images.blobs.has(bigLayer().digest));
    // What was stored is right: it unpacks and matches the diff_id checks.
    await images.unpack(`${cutting.host}/demo/busybox:v1`, join(workspace, 'resumed-rootfs'));
  });

  test('a partial file left by a crashed pull is resumed, its bytes hashed again', async () => {
    const counting = await proxy(registry.host);
    const dataDir = mkdtempSync(join(workspace, 'data-'));
    const half = Math.floor(bigLayer().size / 2);
    mkdirSync(join(dataDir, 'images', 'ingest'), { recursive: true });
    writeFileSync(join(dataDir, 'images', 'ingest', `${bigLayer().digest.slice(7)}.partial`), bigLayer().bytes.subarray(0, half));
    const images = manager(dataDir);
    await images.pull(`${counting.host}/demo/busybox:v1`);
    assert.deepEqual(counting.ranges.filter(Boolean), [`bytes=${half}-`]);
    assert.ok(images.blobs.has(bigLayer().digest));
  });

  test('blobs redirected to storage are fetched there without our Authorization header', async () => {
    const redirecting = await proxy(tokenRegistry.host, { redirectBlobsTo: tokenRegistry });
    const images = manager();
    const pulled = await images.pull(`${redirecting.host}/public/busybox:v1`);
    assert.equal(pulled.digest, image.manifest.digest);
    assert.equal(redirecting.storageRequests, 3, 'the config and two layers came from storage');
    assert.deepEqual(redirecting.storageAuthorizations, [undefined, undefined, undefined]);
    assert.ok(tokenRegistry.tokenIssuer!.requests.some((request) => request.scope === 'repository:public/busybox:pull'), 'the registry itself was asked with a token');
  });

  test('concurrent pulls of one image download each blob once', async () => {
    const counting = await proxy(registry.host);
    const images = manager();
    const reference = `${counting.host}/demo/busybox:v1`;
    const results = await Promise.all([images.pull(reference), images.pull(reference), images.pull(reference)]);
    assert.deepEqual(new Set(results.map((result) => result.digest)), new Set([image.manifest.digest]));
    for (const blob of [image.config, ...image.layers]) assert.equal(counting.blobRequests.get(blob.digest), 1, `${blob.digest} was fetched once`);
  });

  test('two image managers sharing a data folder download each blob once (lock files)', async () => {
    const counting = await proxy(registry.host);
    const dataDir = mkdtempSync(join(workspace, 'data-'));
    const first = manager(dataDir);
    const second = manager(dataDir);
    const reference = `${counting.host}/demo/busybox:v1`;
    const [a, b] = await Promise.all([first.pull(reference), second.pull(reference)]);
    assert.equal(a.digest, b.digest);
    for (const blob of [image.config, ...image.layers]) assert.equal(counting.blobRequests.get(blob.digest), 1, `${blob.digest} was fetched once`);
    assert.equal(second.list().length, 1);
  });
});
