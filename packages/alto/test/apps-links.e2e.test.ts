/**
 * Links end to end on the process sandbox (issue 11): a real `alto up --sandbox process`, Debian's
 * redis-server packed as an image and deployed as a TCP app `cache` that sleeps when idle, and
 * examples/redis-counter deployed from its folder with `alto deploy ... --link cache`: before
 * `cache` exists the counter answers 503, then 1, 2, 3 through the edge, each request's
 * connection to redis waking it. A busybox prober shows the link's variables and that nothing
 * else opens: not another port of the gateway, not a host server on every address, not the redis
 * instance's own address; and in another project the same link name reaches nothing (that
 * project has no `cache`), although this project's `cache` runs. Bad links answer 400.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { redisImage } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli, forbiddenServer, type ForbiddenServer } from './apps-fixture.js';
import { linkProberImage, proberReport } from './apps-links-fixture.js';

const PROJECT = 'shop';
const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

describe('links between apps of a project (process sandbox)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  let hostServer: ForbiddenServer;
  const call = (endpoint: string, body: unknown, as = key) => alto.call('app', endpoint, body, as);
  const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);
  const counter = () => getThroughEdge(edgePort, `counter.${PROJECT}.localhost`);
  const stdout = async (name: string, as = key) => (await call('Logs', { name, stream: 'stdout' }, as)).body.lines.map((line: any) => line.line) as string[];

  before(async () => {
    registry = await startRegistry();
    const [redis, prober] = await Promise.all([redisImage(), linkProberImage()]);
    await Promise.all([registry.push('links/redis', 'v1', redis), registry.push('links/prober', 'v1', prober)]);
    // A host server on every address: a sandbox could reach it at its gateway but for the firewall.
    hostServer = await forbiddenServer('0.0.0.0');
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host' } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app', 'function']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    hostServer?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('bad links answer 400 with what is wrong', async () => {
    const image = `${registry.host}/links/redis:v1`;
    const self = await call('Run', { name: 'loop', image, links: ['loop'] });
    assert.equal(self.status, 400, JSON.stringify(self.body));
    assert.match(self.body.detail, /cannot link to itself/);
    const many = await call('Run', { name: 'many', image, links: Array.from({ length: 17 }, (_, index) => `app-${index}`) });
    assert.equal(many.status, 400);
    assert.match(many.body.detail, /at most 16/);
    const badName = await call('Run', { name: 'bad', image, links: ['Not_An_App'] });
    assert.equal(badName.status, 400);
    assert.match(badName.body.detail, /app name/);
    const twice = await call('Run', { name: 'twice', image, links: ['cache', 'cache'] });
    assert.equal(twice.status, 400);
    assert.match(twice.body.detail, /must differ/);
    assert.equal((await call('List', {})).body.services.length, 0, 'nothing was deployed');
  });

  test('examples/redis-counter counts in a redis app it links to, deployed after it', async () => {
    const deployed = await cli(['deploy', join(EXAMPLES, 'redis-counter'), '--name', 'counter', '--link', 'cache', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.deepEqual(JSON.parse(deployed.stdout).links, ['cache']);
    // No `cache` yet: the link leads nowhere, and the counter says so.
    const early = await counter();
    assert.equal(early.status, 503, early.body);
    assert.match(early.body, /redis is not reachable/);

    const cacheRun = await call('Run', { name: 'cache', image: `${registry.host}/links/redis:v1`, tcp: 6379, min_instances: 0 });
    assert.equal(cacheRun.status, 200, JSON.stringify(cacheRun.body));
    // Asleep when idle: the counter's connections must wake it.
    await eventually(async () => (await call('Status', { name: 'cache' })).body.service.slots?.[0]?.state === 'suspended', 'cache suspended');
    for (const expected of ['1\n', '2\n', '3\n']) {
      const answer = await counter();
      assert.equal(answer.status, 200, answer.body);
      assert.equal(answer.body, expected);
    }
    // Each connection was released when it ended: nothing in flight, and asleep again when idle.
    await eventually(async () => {
      const slot = (await call('Status', { name: 'cache' })).body.service.slots?.[0];
      return slot?.in_flight === 0 && slot.state === 'suspended';
    }, 'cache idle and suspended again');
    const status = (await call('Status', { name: 'counter' })).body.service;
    assert.deepEqual(status.links, ['cache']);
    const started = (await stdout('counter')).find((line) => line.startsWith('redis-counter listening'));
    assert.match(started ?? '', /^redis-counter listening on 8080, redis at 10\.231\.\d+\.\d+:\d+$/);
  });

  test("a link reaches its app and nothing else: not other host ports, not the instance's address, not another project's app", async () => {
    const redisBackend = new URL(
      await eventually(async () => {
        // A request wakes it, so Status names a running instance's address.
        await counter();
        return (await call('Status', { name: 'cache' })).body.service.backend as string;
      }, "the redis instance's address"),
    );
    const otherKey = await alto.projectKey('elsewhere', ['app']);
    const image = `${registry.host}/links/prober:v1`;
    const env_vars = { PROBE_PORTS: String(hostServer.port), PROBES: `${redisBackend.hostname}:${redisBackend.port}` };
    const [mine, theirs] = await Promise.all([
      call('Run', { name: 'prober', image, links: ['cache'], env_vars }),
      call('Run', { name: 'prober', image, links: ['cache'], env_vars }, otherKey),
    ]);
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    assert.equal(theirs.status, 200, JSON.stringify(theirs.body));

    const report = await proberReport(() => stdout('prober'), eventually);
    assert.ok(report.includes('link cache: +PONG +OK'), report.join('\n'));
    assert.ok(report.some((line) => /^env CACHE_SERVICE_HOST=10\.231\.\d+\.\d+ CACHE_SERVICE_PORT=\d+$/.test(line)), report.join('\n'));
    // Another port of the gateway, a host server on every address, the redis instance's own address.
    const reaches = report.filter((line) => line.startsWith('reach '));
    assert.equal(reaches.length, 3, report.join('\n'));
    for (const line of reaches) assert.match(line, /: blocked$/, report.join('\n'));
    assert.equal(hostServer.connections(), 0);

    // Another project naming `cache` reaches nothing: it has no such app, and this one's is not its.
    const elsewhere = await proberReport(() => stdout('prober', otherKey), eventually);
    assert.ok(elsewhere.includes('link cache: no answer'), elsewhere.join('\n'));
    assert.ok(elsewhere.some((line) => /^env CACHE_SERVICE_HOST=10\.231\.\d+\.\d+ CACHE_SERVICE_PORT=\d+$/.test(line)), elsewhere.join('\n'));
    assert.equal((await call('Delete', { name: 'prober' })).status, 200);
    assert.equal((await call('Delete', { name: 'prober' }, otherKey)).status, 200);
  });
});
