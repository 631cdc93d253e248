/**
 * The core app journey on microVMs (`alto up --sandbox microvm`; QEMU under tcg on these
 * machines, so boots take seconds and this file stays lean): deploy an image the test pushed to
 * a real docker-registry, reach it through the edge by its Host, read its logs, see an update to
 * a broken image refused with the broken app's own last log lines, update it under a loop of
 * requests with none failing, check that an app cannot reach the host's loopback services nor
 * another project's instance, run one with `outbound: true` (QEMU in a network namespace of its
 * own; compute/sandbox/outbound.test.ts checks what it can and cannot reach) and turn it off,
 * delete it.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { brokenImage, eventually, getThroughEdge, privateSandboxCache, proberImage, webImage, forbiddenServer, type ForbiddenServer } from './apps-fixture.js';

const PROJECT = 'vms';
const WEB_HOST = `web.${PROJECT}.localhost`;

describe('apps on microVMs', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  let loopbackServer: ForbiddenServer;
  const call = (endpoint: string, body: unknown) => alto.call('app', endpoint, body, key);
  const web = () => getThroughEdge(edgePort, WEB_HOST);

  before(async () => {
    registry = await startRegistry();
    const [v1, v2, broken, prober] = await Promise.all([webImage('web v1', 'web v1\n'), webImage('web v2', 'web v2\n'), brokenImage(), proberImage()]);
    await Promise.all([
      registry.push('vm/web', 'v1', v1),
      registry.push('vm/web', 'v2', v2),
      registry.push('vm/broken', 'v1', broken),
      registry.push('vm/prober', 'v1', prober),
    ]);
    loopbackServer = await forbiddenServer('127.0.0.1');
    alto = await startProcess({ dataDir, args: ['--sandbox', 'microvm'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    loopbackServer?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('deploy, reach through the edge, logs, update with no failed request, delete', async () => {
    const run = await call('Run', { name: 'web', image: `${registry.host}/vm/web:v1`, memory: 128 });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.equal(run.body.service.instances[0].driver, 'microvm');
    assert.equal((await web()).body, 'web v1\n');
    const status = await (await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).json();
    assert.equal(status.sandbox.driver, 'microvm');
    assert.ok(['kvm', 'tcg'].includes(status.sandbox.accelerator));

    await eventually(async () => ((await call('Logs', { name: 'web' })).body.logs as string).includes('web v1 starting'), 'the start line in the logs');

    // A version that never becomes ready is refused with its own last words; v1 keeps serving.
    const broken = await call('Update', { name: 'web', image: `${registry.host}/vm/broken:v1` });
    assert.equal(broken.status, 400, JSON.stringify(broken.body));
    assert.match(broken.body.detail, /version 2 of app "web" did not become ready/);
    assert.match(broken.body.detail, /its last log lines:\nbroken: no configuration found/);
    assert.equal((await web()).body, 'web v1\n');

    let updating = true;
    const seen = { v1: 0, v2: 0, failures: [] as string[] };
    const loop = (async () => {
      while (updating) {
        const response = await web().catch((error: Error) => ({ status: 0, body: error.message }));
        if (response.status === 200 && response.body === 'web v1\n') seen.v1 += 1;
        else if (response.status === 200 && response.body === 'web v2\n') seen.v2 += 1;
        else seen.failures.push(`${response.status} ${response.body.slice(0, 200)}`);
      }
    })();
    const update = await call('Update', { name: 'web', image: `${registry.host}/vm/web:v2` });
    await eventually(async () => seen.v2 >= 3, 'requests served by version 2');
    updating = false;
    await loop;
    assert.equal(update.status, 200, JSON.stringify(update.body));
    assert.deepEqual(seen.failures, []);
    assert.ok(seen.v1 > 0);
    assert.equal((await web()).body, 'web v2\n');

    assert.equal((await call('Delete', { name: 'web' })).status, 200);
    assert.equal((await web()).status, 404);
  });

  test("isolation: a microVM app cannot reach a server on the host's 127.0.0.1, Alto's port, nor another project's instance", async () => {
    // Another tenant's app, answering at its backend address from the host (always on: a suspended one would not answer).
    const peerKey = await alto.projectKey('neighbour', ['app']);
    const peer = await alto.call('app', 'Run', { name: 'peer', image: `${registry.host}/vm/web:v1`, memory: 128, min_instances: 1 }, peerKey);
    assert.equal(peer.status, 200, JSON.stringify(peer.body));
    const peerUrl = new URL((await alto.call('app', 'Resolve', { name: 'peer' }, peerKey)).body.url);
    assert.equal(await (await fetch(peerUrl)).text(), 'web v1\n');
    const run = await call('Run', {
      name: 'prober',
      image: `${registry.host}/vm/prober:v1`,
      memory: 128,
      // Always on: its probes run after it is ready, and a suspended instance would be paused mid-way.
      min_instances: 1,
      env_vars: {
        HOST_PORT: String(loopbackServer.port),
        EDGE_PORT: String(edgePort),
        PEER_HOST: peerUrl.hostname,
        PEER_PORT: peerUrl.port,
      },
    });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const lines = await eventually(async () => {
      const result = (await call('Logs', { name: 'prober', stream: 'stdout' })).body.lines.map((line: any) => line.line) as string[];
      return result.includes('probes-done') && result;
    }, 'the probes', 60_000);
    assert.ok(lines.includes('self-check: ok'), lines.join('\n'));
    const probes = lines.filter((line) => line.startsWith('reach '));
    assert.ok(probes.length >= 7, lines.join('\n'));
    // The peer's backend is a port on the host's loopback: the guest's way there is 10.0.2.2.
    assert.ok(probes.includes(`reach 10.0.2.2:${peerUrl.port}: blocked`), lines.join('\n'));
    for (const probe of probes) assert.match(probe, /: blocked$/, lines.join('\n'));
    assert.equal(loopbackServer.connections(), 0);
    assert.equal((await alto.call('app', 'Delete', { name: 'peer' }, peerKey)).status, 200);
    assert.equal((await call('Delete', { name: 'prober' })).status, 200);
  });

  test('outbound: true runs the app in a network namespace of its own, still reached through the edge, and an update turns it off', async () => {
    const online = () => getThroughEdge(edgePort, `online.${PROJECT}.localhost`);
    const run = await call('Run', { name: 'online', image: `${registry.host}/vm/web:v1`, memory: 128, outbound: true });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.equal((await online()).body, 'web v1\n');
    assert.equal((await call('Status', { name: 'online' })).body.service.outbound, true);

    const update = await call('Update', { name: 'online', outbound: false });
    assert.equal(update.status, 200, JSON.stringify(update.body));
    assert.equal((await online()).body, 'web v1\n');
    assert.equal((await call('Status', { name: 'online' })).body.service.outbound, false);
    assert.equal((await call('Delete', { name: 'online' })).status, 200);
  });
});
