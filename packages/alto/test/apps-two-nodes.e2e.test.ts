/**
 * Apps on two `alto up --sandbox process` processes sharing one PostgreSQL (`--store`): each
 * sees the other's apps in app/List and Get, an app name is taken cloud-wide, an app runs on the
 * node that deployed it, and either node's edge serves it: the other node relays the request to
 * the node that runs it (compute/cluster/routing.ts); only that node updates it (the other
 * answers 503 naming it); a restart of a node starts its own apps again and leaves the other's
 * alone (their instances keep running, not marked ended). Needs the test PostgreSQL
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'fleet';
const host = (app: string) => `${app}.${PROJECT}.localhost`;
const edgePort = (server: ServerProcess) => Number(new URL(server.url).port);
const nodeIdOf = (server: ServerProcess) => readFileSync(join(server.dataDir, 'node-id'), 'utf8').trim();

describe('apps on two processes sharing one PostgreSQL: each app runs on the node that deployed it, served through either', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  let first: ServerProcess;
  let second: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const folders = [temporaryDataDir(), temporaryDataDir()];
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_SANDBOX_CACHE: cache.dir,
  };
  const start = async (dataDir: string) => startProcess({ dataDir, args: ['--store', database.url, '--sandbox', 'process'], env });
  const app = (server: ServerProcess, endpoint: string, body: unknown) => server.call('app', endpoint, body, key);

  before(async () => {
    database = await createTestDatabase('apps_two_nodes');
    registry = await startRegistry();
    await registry.push('fleet/web', 'v1', await webImage('web v1', 'web v1\n'));
    await registry.push('fleet/api', 'v1', await webImage('api v1', 'api v1\n'));
    first = await start(folders[0]);
    second = await start(folders[1]);
    key = await first.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    await second?.close();
    await first?.close();
    await registry?.stop();
    await database?.drop();
    cache.remove();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  test("both list both apps; each edge serves its own and relays the other's to its node", async () => {
    assert.notEqual(nodeIdOf(first), nodeIdOf(second), 'two data folders, two nodes');
    const web = await app(first, 'Run', { name: 'web', image: `${registry.host}/fleet/web:v1`, min_instances: 1 });
    assert.equal(web.status, 200, JSON.stringify(web.body));
    const api = await app(second, 'Run', { name: 'api', image: `${registry.host}/fleet/api:v1`, min_instances: 1 });
    assert.equal(api.status, 200, JSON.stringify(api.body));

    for (const server of [first, second]) {
      const listed = await app(server, 'List', {});
      assert.equal(listed.status, 200, JSON.stringify(listed.body));
      assert.deepEqual(listed.body.services.map((service: { name: string; status: string }) => [service.name, service.status]), [['api', 'running'], ['web', 'running']]);
    }
    // Get on the other node: the recorded app, with no instance positions of its own there.
    const remote = await app(second, 'Get', { name: 'web' });
    assert.equal(remote.status, 200, JSON.stringify(remote.body));
    assert.equal(remote.body.service.status, 'running');
    assert.deepEqual(remote.body.service.slots, []);
    assert.equal((await app(first, 'Get', { name: 'web' })).body.service.slots.length, 1);

    assert.deepEqual([(await getThroughEdge(edgePort(first), host('web'))).body, (await getThroughEdge(edgePort(second), host('api'))).body], ['web v1\n', 'api v1\n']);
    assert.deepEqual(
      [(await getThroughEdge(edgePort(second), host('web'))).body, (await getThroughEdge(edgePort(first), host('api'))).body],
      ['web v1\n', 'api v1\n'],
      "each node's app, relayed through the other's edge",
    );
    const webSlots = (await app(second, 'Get', { name: 'web' })).body.service.slots;
    assert.deepEqual(webSlots, [], 'relaying started no instance on the node that relays');
    assert.equal((await getThroughEdge(edgePort(second), host('nothing'))).status, 404, 'an app no node has');

    const taken = await app(second, 'Run', { name: 'web', image: `${registry.host}/fleet/api:v1` });
    assert.equal(taken.status, 409, 'the name is taken cloud-wide');
    const update = await app(second, 'Update', { name: 'web', env_vars: { FROM: 'second' } });
    assert.equal(update.status, 503, JSON.stringify(update.body));
    assert.match(update.body.detail, new RegExp(`runs on node ${nodeIdOf(first)}`));
  });

  test("a restarted node starts its own apps again and leaves the other's running", async () => {
    const running = (await app(first, 'Status', { name: 'web' })).body.service.instances.filter((instance: { state: string }) => instance.state === 'running');
    assert.equal(running.length, 1);

    await second.stop();
    second = await start(folders[1]);
    // Its own app comes back on it...
    await eventually(async () => (await getThroughEdge(edgePort(second), host('api'))).body === 'api v1\n', 'api served again by its node');
    // ...the other node's is not taken over: still run by its node (relayed there), its instance still running.
    assert.equal((await getThroughEdge(edgePort(second), host('web'))).body, 'web v1\n');
    const recorded = (await app(second, 'Status', { name: 'web' })).body.service;
    assert.equal(recorded.status, 'running');
    assert.deepEqual(recorded.slots, []);
    assert.deepEqual(
      recorded.instances.filter((instance: { state: string }) => instance.state === 'running').map((instance: { id: string }) => instance.id),
      running.map((instance: { id: string }) => instance.id),
      'the instance on the first node is not marked ended by the restart of the second',
    );
    assert.equal((await getThroughEdge(edgePort(first), host('web'))).body, 'web v1\n');
  });
});
