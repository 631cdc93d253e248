/**
 * Links end to end on microVMs (`alto up --sandbox microvm`, tcg on these machines): Debian's
 * redis-server as a TCP app `cache`, and a busybox prober linked to it. The guest finds the link
 * at 10.0.2.101:6379 (QEMU's guestfwd to a relay on the host's loopback), redis answers there,
 * and nothing else opens (the host's 10.0.2.2, another port of the link's address). The prober
 * sleeps when idle and is snapshotted to disk; restored by a request, its QEMU starts again with
 * new relays behind the same guest address, and the link still answers. With outbound on, QEMU
 * runs in a namespace of its own and the link's relay listens on its gateway instead. The redis
 * app sleeps too (min_instances 0): the link wakes it, and so does a TCP connection to its edge
 * port, which it serves; snapshotted after that, the next connection restores it with its data.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Redis } from 'ioredis';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { redisImage } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache, forbiddenServer, type ForbiddenServer } from './apps-fixture.js';
import { linkProberImage, proberReport } from './apps-links-fixture.js';

const PROJECT = 'vms';

describe('links between apps of a project (microvm)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  let hostServer: ForbiddenServer;
  let cachePort = 0;
  const call = (endpoint: string, body: unknown) => alto.call('app', endpoint, body, key);

  before(async () => {
    registry = await startRegistry();
    const [redis, prober] = await Promise.all([redisImage(), linkProberImage()]);
    await Promise.all([registry.push('links/redis', 'v1', redis), registry.push('links/prober', 'v1', prober)]);
    hostServer = await forbiddenServer('0.0.0.0');
    alto = await startProcess({ dataDir, args: ['--sandbox', 'microvm'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_SNAPSHOT_AFTER_MS: '500' } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    hostServer?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the guest reaches its linked redis at 10.0.2.101:6379, nothing else; the link survives a snapshot and restore', async () => {
    const hostPort = hostServer.port;
    // Deployed first, so the guest is told the linked app's own port (6379).
    const cacheRun = await call('Run', { name: 'cache', image: `${registry.host}/links/redis:v1`, tcp: 6379, min_instances: 0, idle_timeout: 1 });
    assert.equal(cacheRun.status, 200, JSON.stringify(cacheRun.body));
    cachePort = cacheRun.body.service.tcp_port as number;
    const proberRun = await call('Run', {
      name: 'prober',
      image: `${registry.host}/links/prober:v1`,
      links: ['cache'],
      min_instances: 0,
      env_vars: { PROBES: `10.0.2.2:${hostPort} 10.0.2.100:${hostPort}` },
    });
    assert.equal(proberRun.status, 200, JSON.stringify(proberRun.body));
    assert.equal(proberRun.body.service.instances[0].driver, 'microvm');
    assert.deepEqual(proberRun.body.service.links, ['cache']);

    const report = await proberReport(async () => (await call('Logs', { name: 'prober', stream: 'stdout' })).body.lines.map((line: any) => line.line), eventually);
    assert.ok(report.includes('env CACHE_SERVICE_HOST=10.0.2.101 CACHE_SERVICE_PORT=6379'), report.join('\n'));
    assert.ok(report.includes('link cache: +PONG +OK'), report.join('\n'));
    // The host's 10.0.2.2, the platform's address at another port, the link's address at another port.
    const reaches = report.filter((line) => line.startsWith('reach '));
    assert.equal(reaches.length, 3, report.join('\n'));
    for (const line of reaches) assert.match(line, /: blocked$/, report.join('\n'));
    assert.equal(hostServer.connections(), 0);

    // Idle, then snapshotted to disk: QEMU ends, and its link relays with it.
    await eventually(async () => (await call('Status', { name: 'prober' })).body.service.slots?.[0]?.state === 'snapshotted', 'the prober snapshotted', 60_000);
    const ping = await getThroughEdge(edgePort, `prober.${PROJECT}.localhost`, '/cgi-bin/ping');
    assert.equal(ping.status, 200, ping.body);
    assert.equal(ping.body, 'link cache: +PONG +OK\n');
  });

  test('with outbound on (QEMU in a namespace of its own) the link leads through the gateway, to the same redis', async () => {
    const hostPort = hostServer.port;
    const run = await call('Run', { name: 'outward', image: `${registry.host}/links/prober:v1`, links: ['cache'], outbound: true, env_vars: { PROBES: `10.0.2.2:${hostPort}` } });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const report = await proberReport(async () => (await call('Logs', { name: 'outward', stream: 'stdout' })).body.lines.map((line: any) => line.line), eventually);
    assert.ok(report.includes('env CACHE_SERVICE_HOST=10.0.2.101 CACHE_SERVICE_PORT=6379'), report.join('\n'));
    assert.ok(report.includes('link cache: +PONG +OK'), report.join('\n'));
    const reaches = report.filter((line) => line.startsWith('reach '));
    assert.equal(reaches.length, 2, report.join('\n'));
    for (const line of reaches) assert.match(line, /: blocked$/, report.join('\n'));
    assert.equal(hostServer.connections(), 0);
  });

  test('a TCP connection to the sleeping redis wakes it and is served; snapshotted, the next one restores it with its data', async () => {
    const cacheState = async () => (await call('Status', { name: 'cache' })).body.service.slots?.[0] as { state: string; in_flight: number } | undefined;
    await eventually(async () => ['suspended', 'snapshotted'].includes((await cacheState())?.state ?? ''), 'the cache asleep', 60_000);
    const first = new Redis({ host: '127.0.0.1', port: cachePort, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await first.connect();
      assert.equal(await first.set('visits', '41'), 'OK');
      assert.equal(await first.incr('visits'), 42);
      const during = await cacheState();
      assert.deepEqual([during?.state, during?.in_flight], ['running', 1], 'the open connection holds it running');
    } finally {
      first.disconnect();
    }
    // Idle once the connection closed: suspended, then (ALTO_SNAPSHOT_AFTER_MS 500) written to disk.
    await eventually(async () => (await cacheState())?.state === 'snapshotted', 'the cache snapshotted', 60_000);
    const second = new Redis({ host: '127.0.0.1', port: cachePort, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await second.connect();
      assert.equal(await second.get('visits'), '42');
    } finally {
      second.disconnect();
    }
  });
});
