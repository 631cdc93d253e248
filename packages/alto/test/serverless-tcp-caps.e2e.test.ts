/**
 * Serverless TCP activation and the compute_gb_seconds cap on the process sandbox (issues 8, 10).
 * TCP: a suspended Redis app (min_instances 0, `tcp: 6379`) is woken by a connection to its edge
 * port and serves it; suspended again once the connection closed, the next connection finds the
 * data it wrote (the same instance, its memory kept).
 * GB-seconds: a project whose app ran past its monthly compute_gb_seconds has its running
 * instance suspended (not stopped), and requests that would wake it and app/Run answer 402
 * naming the limit; once the cap is raised the same instance serves again.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { redisImage } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { sleepyImage, slotsOf } from './serverless-fixture.js';

describe('serverless TCP activation and compute_gb_seconds (process sandbox)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let edgePort: number;
  let web: string;
  let redis: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  async function whenSuspended(key: string, app: string, instance?: string): Promise<string> {
    return eventually(async () => {
      const slot = (await slotsOf(alto, key, app))[0];
      return slot.state === 'suspended' && slot.frozen === true && (!instance || slot.instance === instance) && slot.instance;
    }, `${app} suspended and frozen`);
  }

  before(async () => {
    registry = await startRegistry();
    const [webImage, redisBuilt] = await Promise.all([sleepyImage(), redisImage()]);
    await registry.push('caps/web', 'v1', webImage);
    await registry.push('caps/redis', 'v1', redisBuilt);
    web = `${registry.host}/caps/web:v1`;
    redis = `${registry.host}/caps/redis:v1`;
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_USAGE_FLUSH_MS: '200' } });
    edgePort = Number(new URL(alto.url).port);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a TCP connection to a suspended Redis app wakes it and is served; its data is there on the next wake', async () => {
    const key = await alto.projectKey('tcpwake', ['app']);
    const run = await alto.call('app', 'Run', { name: 'cache', image: redis, memory: 128, tcp: 6379, min_instances: 0, idle_timeout: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const port = run.body.service.tcp_port as number;
    const instance = await whenSuspended(key, 'cache');

    const first = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await first.connect();
      assert.equal(await first.ping(), 'PONG');
      assert.equal(await first.set('greeting', 'hello from a suspended app'), 'OK');
      const during = (await slotsOf(alto, key, 'cache'))[0];
      assert.deepEqual([during.state, during.frozen, during.in_flight], ['running', false, 1], 'the open connection holds it running');
    } finally {
      first.disconnect();
    }
    // Asleep again once the connection closed (the same instance), then woken by the next one.
    await whenSuspended(key, 'cache', instance);
    const second = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await second.connect();
      assert.equal(await second.get('greeting'), 'hello from a suspended app');
    } finally {
      second.disconnect();
    }
    assert.equal((await slotsOf(alto, key, 'cache'))[0].instance, instance);
    assert.equal((await alto.call('app', 'Delete', { name: 'cache' }, key)).status, 200);
  });

  test('past compute_gb_seconds: the running instance is suspended, data kept; waking it and app/Run answer 402', async () => {
    const key = await alto.projectKey('gbcap', ['app']);
    // 2 GB-seconds: a 1024 MiB instance kept running uses them in about two seconds.
    const capped = await alto.call('projects', 'Update', { name: 'gbcap', compute_gb_seconds: 2 });
    assert.equal(capped.status, 200, JSON.stringify(capped.body));
    const run = await alto.call('app', 'Run', { name: 'hog', image: web, memory: 1024, min_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const host = 'hog.gbcap.localhost';
    assert.equal((await getThroughEdge(edgePort, host)).status, 200);
    const running = (await slotsOf(alto, key, 'hog'))[0];
    assert.equal(running.state, 'running');

    // Past the cap: suspended (min_instances 1 would otherwise keep it running), not stopped.
    const instance = await whenSuspended(key, 'hog');
    assert.equal(instance, running.instance, 'the same instance, suspended, its memory kept');
    // The cap is read from the usage store at most once a second, so a request in that window
    // may still wake it (as documented); within it, activation is refused.
    let refused = await getThroughEdge(edgePort, host);
    const deadline = Date.now() + 5_000;
    while (refused.status !== 402 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      refused = await getThroughEdge(edgePort, host);
    }
    assert.equal(refused.status, 402, refused.body);
    await whenSuspended(key, 'hog');
    assert.match(JSON.parse(refused.body).detail, /compute cap reached: project "gbcap" ran [\d.]+ GB-seconds this month and may run 2 \(compute_gb_seconds\)/);
    const another = await alto.call('app', 'Run', { name: 'more', image: web, memory: 64, min_instances: 0 }, key);
    assert.equal(another.status, 402, JSON.stringify(another.body));
    assert.match(another.body.detail, /compute_gb_seconds/);
    assert.equal((await slotsOf(alto, key, 'hog'))[0].state, 'suspended');

    // The cap lifted: the same instance wakes and serves.
    assert.equal((await alto.call('projects', 'Update', { name: 'gbcap', compute_gb_seconds: 0 })).status, 200);
    const served = await getThroughEdge(edgePort, host);
    assert.equal(served.status, 200, served.body);
    assert.equal(served.body, 'awake\n');
    assert.equal((await slotsOf(alto, key, 'hog'))[0].instance, instance);
    assert.equal((await alto.call('app', 'Delete', { name: 'hog' }, key)).status, 200);
  });
});
