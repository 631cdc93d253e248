/**
 * The app test images run unchanged: each is pushed to a real registry, pulled and unpacked by
 * the ImageManager, and run from its own config (entrypoint, cmd, env, workdir, exposed port)
 * by the process sandbox driver: busybox httpd serves its page, the Node.js app answers with
 * the GREETING it was given, streams, echoes, exits 3 on /crash and 0 on SIGTERM, and Redis
 * answers SET/GET from a real client, its data kept on a volume from one instance to the next. The Node.js app also runs once in a microVM.
 *
 * Needs root, docker-registry, redis-server, busybox-static, qemu-system-x86 and e2fsprogs
 * (scripts/test-services.sh installs them).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ImageManager } from '../src/compute/images/manager.js';
import type { ImageSpec } from '../src/compute/images/spec.js';
import { defaultSandboxCacheDir } from '../src/compute/sandbox/index.js';
import { MicrovmDriver } from '../src/compute/sandbox/microvm.js';
import type { Instance, SandboxSpec } from '../src/compute/sandbox/port.js';
import { ProcessDriver } from '../src/compute/sandbox/process.js';
import { silentLogger } from '../src/kit/logger.js';
import { SqliteImageRecordStore } from '../src/store/images/sqlite.js';
import { openSqlite } from '../src/store/sqlite/database.js';
import { HTTPD_PAGE, busyboxHttpdImage, nodeAppImage, redisImage } from './app-images.js';
import { startRegistry, waitUntil, type TestRegistry } from './images-fixture.js';

const workspace = mkdtempSync(join(tmpdir(), 'alto-app-images-'));
const database = openSqlite(join(workspace, 'alto.db'));
const images = new ImageManager({ root: join(workspace, 'images'), records: new SqliteImageRecordStore(database), log: silentLogger() });
let registry: TestRegistry;

interface UnpackedImage {
  rootfs: string;
  spec: ImageSpec;
}
const unpacked = new Map<string, UnpackedImage>();

before(async () => {
  registry = await startRegistry();
  const built = { httpd: await busyboxHttpdImage(), node: await nodeAppImage(), redis: await redisImage() };
  for (const [name, image] of Object.entries(built)) {
    await registry.push(`apps/${name}`, 'v1', image);
    const pulled = await images.pull(`${registry.host}/apps/${name}:v1`);
    assert.equal(pulled.digest, image.manifest.digest);
    unpacked.set(name, await unpackOnce(`${registry.host}/apps/${name}:v1`, pulled.digest));
  }
});

after(async () => {
  await registry?.stop();
  database.close();
  rmSync(workspace, { recursive: true, force: true });
});

/**
 * Unpacks through the ImageManager, then keeps the tree at a place named by the image digest in
 * the sandbox cache: the drivers cache an id-shifted copy (process) and a disk image (microvm)
 * per root filesystem folder, so one folder per image is reused run after run.
 */
async function unpackOnce(reference: string, digest: string): Promise<UnpackedImage> {
  const fresh = join(workspace, `rootfs-${digest.slice(7, 19)}`);
  const { spec } = await images.unpack(reference, fresh);
  const kept = join(defaultSandboxCacheDir(), 'test-app-roots', digest.slice('sha256:'.length));
  mkdirSync(join(kept, '..'), { recursive: true });
  if (!existsSync(kept)) {
    try {
      renameSync(fresh, kept);
    } catch {
      // Another test file kept the same image first.
    }
  }
  return { rootfs: kept, spec };
}

/** A sandbox spec from the image's own config, as the apps engine makes it. */
function specOf(name: string, overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  const image = unpacked.get(name)!;
  return {
    rootfs: image.rootfs,
    entrypoint: image.spec.entrypoint,
    cmd: image.spec.cmd,
    env: image.spec.env,
    workdir: image.spec.workingDir,
    user: image.spec.user,
    port: image.spec.exposedPorts[0].port,
    memoryMiB: 256,
    cpus: 1,
    name,
    ...overrides,
  };
}

async function linesOf(instance: Instance): Promise<string[]> {
  const lines: string[] = [];
  for await (const entry of instance.logs()) lines.push(`${entry.stream}: ${entry.line}`);
  return lines;
}

/** The chunks of a response as they arrive, each with how many were read before the end. */
function chunksOf(url: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (response) => {
      const chunks: string[] = [];
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => chunks.push(chunk));
      response.on('end', () => resolve(chunks));
      response.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

describe('app images under the process driver', () => {
  let driver: ProcessDriver;

  before(async () => {
    driver = new ProcessDriver({ cacheDir: defaultSandboxCacheDir(), stateDir: join(workspace, 'process') });
    await driver.probe();
  });

  after(async () => {
    await driver?.close();
  });

  test('busybox httpd serves its page', async () => {
    const instance = await driver.start(specOf('httpd', { memoryMiB: 32 }));
    try {
      const response = await fetch(`http://${instance.host}:${instance.port}/`);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), HTTPD_PAGE);
    } finally {
      await instance.stop(2_000);
    }
  });

  test('the Node.js app greets with its env, streams, echoes and exits 3 on /crash', async () => {
    const spec = specOf('node');
    assert.deepEqual([...spec.entrypoint, ...spec.cmd], ['node', '/app/server.js']);
    const instance = await driver.start({ ...spec, env: { ...spec.env, GREETING: 'bonjour' } });
    const base = `http://${instance.host}:${instance.port}`;
    const greeting = await (await fetch(`${base}/`)).text();
    assert.equal(greeting, 'bonjour from node\n');
    await waitUntil(async () => (await linesOf(instance)).includes('stdout: listening on 8080'), 'the listening line in the logs');

    const chunks = await chunksOf(`${base}/stream?count=3&interval=50`);
    assert.equal(chunks.join(''), 'chunk 0\nchunk 1\nchunk 2\ndone\n');
    assert.ok(chunks.length > 1, `the response came in pieces: ${JSON.stringify(chunks)}`);

    const echoed = await fetch(`${base}/echo`, { method: 'POST', body: 'echo me', headers: { 'content-type': 'text/plain' } });
    assert.equal(await echoed.text(), 'echo me');

    await fetch(`${base}/crash`).then((response) => response.text()).catch(() => undefined);
    const exit = await instance.exited;
    assert.deepEqual(exit, { code: 3, reason: 'exited' });
    assert.ok((await linesOf(instance)).includes('stderr: crashing on purpose'));
  });

  test('the Node.js app exits cleanly on SIGTERM', async () => {
    const instance = await driver.start(specOf('node'));
    assert.equal(await (await fetch(`http://${instance.host}:${instance.port}/`)).text(), 'hello from node\n');
    const exit = await instance.stop(10_000);
    assert.deepEqual(exit, { code: 0, reason: 'stopped' });
    assert.ok((await linesOf(instance)).includes('stdout: stopping on SIGTERM'));
  });

  test('Redis answers SET and GET from a real client and keeps its data on a volume', async () => {
    const volumes = [{ dir: join(workspace, 'redis-volume'), path: '/data' }];
    const first = await driver.start(specOf('redis', { memoryMiB: 128, volumes }));
    const client = new Redis({ host: first.host, port: first.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      assert.equal(await client.set('greeting', 'hello redis'), 'OK');
      assert.equal(await client.get('greeting'), 'hello redis');
      assert.match(await client.info('persistence'), /aof_enabled:1/);
    } finally {
      client.disconnect();
    }
    assert.equal((await first.stop(10_000)).reason, 'stopped');

    const second = await driver.start(specOf('redis', { memoryMiB: 128, volumes }));
    const again = new Redis({ host: second.host, port: second.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await again.connect();
      assert.equal(await again.get('greeting'), 'hello redis', 'the value written by the first instance');
    } finally {
      again.disconnect();
      await second.stop(10_000);
    }
  });
});

describe('the Node.js app image in a microVM', () => {
  let driver: MicrovmDriver;

  before(async () => {
    driver = new MicrovmDriver({ cacheDir: defaultSandboxCacheDir(), stateDir: join(workspace, 'microvm') });
    await driver.probe();
  });

  after(async () => {
    await driver?.close();
  });

  test('boots, greets with its env and stops cleanly', { timeout: 120_000 }, async () => {
    const spec = specOf('node', { memoryMiB: 512, name: 'node-vm' });
    const instance = await driver.start({ ...spec, env: { ...spec.env, GREETING: 'hallo' } });
    const greeting = await (await fetch(`http://${instance.host}:${instance.port}/`)).text();
    assert.equal(greeting, 'hallo from node-vm\n');
    const exit = await instance.stop(20_000);
    assert.deepEqual(exit, { code: 0, reason: 'stopped' });
  });
});
