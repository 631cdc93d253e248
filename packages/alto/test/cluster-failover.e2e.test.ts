/**
 * Three `alto up --sandbox process` nodes on one PostgreSQL (`--store`): an app deployed through
 * node 1 is served through every node's edge (nodes 2 and 3 relay to node 1); when node 1 stops
 * answering (SIGSTOP, so its lease lapses while its process and sandboxes stay for a clean stop
 * later), one of the live nodes takes the app, pulls its image and starts it, and requests
 * through nodes 2 and 3 are served again; when node 1 comes back it finds the app moved, stops
 * its old instance and relays to the new node, so one node runs the app. Needs the test
 * PostgreSQL (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'fleet';
const HOST = `web.${PROJECT}.localhost`;
/** Node 1's lease (10 s), a read of the nodes (2 s), a pull and a boot, with room for a loaded machine. */
const FAILOVER_WAIT_MS = 60_000;
const edgePort = (server: ServerProcess) => Number(new URL(server.url).port);

describe('an app of a node that stops answering runs again on another node', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  const nodes: ServerProcess[] = [];
  let key: string;
  let paused: ServerProcess | undefined;
  const cache = privateSandboxCache();
  const folders = [temporaryDataDir(), temporaryDataDir(), temporaryDataDir()];
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_SANDBOX_CACHE: cache.dir,
  };
  const app = (server: ServerProcess, endpoint: string, body: unknown) => server.call('app', endpoint, body, key);
  const servedThrough = async (server: ServerProcess) => {
    const answer = await getThroughEdge(edgePort(server), HOST).catch(() => undefined);
    return answer?.status === 200 && answer.body === 'web v1\n';
  };
  const runningHere = async (server: ServerProcess) => ((await app(server, 'Get', { name: 'web' })).body.service?.slots ?? []).length > 0;

  before(async () => {
    database = await createTestDatabase('cluster_failover');
    registry = await startRegistry();
    await registry.push('fleet/web', 'v1', await webImage('web v1', 'web v1\n'));
    for (const [index, dataDir] of folders.entries())
      nodes.push(await startProcess({ dataDir, args: ['--store', database.url, '--sandbox', 'process', '--node', `node-${index + 1}`], env }));
    key = await nodes[0].projectKey(PROJECT, ['app']);
  });

  after(async () => {
    if (paused && paused.child.exitCode === null) paused.child.kill('SIGCONT');
    for (const node of nodes) await node?.close();
    await registry?.stop();
    await database?.drop();
    cache.remove();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  test('served through every node, taken over by a live node when its node stops answering, given up when that node returns', async () => {
    const [first, second, third] = nodes;
    const run = await app(first, 'Run', { name: 'web', image: `${registry.host}/fleet/web:v1`, min_instances: 1 });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    for (const node of nodes) await eventually(() => servedThrough(node), `web served through ${node.url}`);

    // Node 1 stops answering: no heartbeats, its lease lapses.
    paused = first;
    first.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await eventually(async () => (await runningHere(second)) || (await runningHere(third)), 'a live node to take the app', FAILOVER_WAIT_MS);
    for (const node of [second, third]) await eventually(() => servedThrough(node), `web served again through ${node.url}`, FAILOVER_WAIT_MS);
    process.stdout.write(`# served again through the live nodes ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s after node 1 stopped answering\n`);
    const owners = [(await runningHere(second)) ? second : undefined, (await runningHere(third)) ? third : undefined].filter(Boolean);
    assert.equal(owners.length, 1, 'one live node took the app');

    // Node 1 comes back: the app is another node's now, so it stops its instance and relays.
    first.child.kill('SIGCONT');
    paused = undefined;
    await eventually(async () => !(await runningHere(first)), 'node 1 to give the app up', FAILOVER_WAIT_MS);
    await eventually(() => servedThrough(first), 'web served through node 1 again (relayed)');
    // Node 1's instance is recorded ended once it stopped: one instance runs the app, on its new
    // node (read through the node that neither ran nor runs it, which shows the store's record).
    const bystander = [second, third].find((node) => node !== owners[0])!;
    const runningInstances = async () =>
      (await app(bystander, 'Status', { name: 'web' })).body.service.instances.filter((instance: { state: string }) => instance.state === 'running');
    await eventually(async () => (await runningInstances()).length === 1, 'one running instance cloud-wide');
  });
});
