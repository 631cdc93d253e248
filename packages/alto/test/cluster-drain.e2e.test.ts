/**
 * Draining a node moves its apps with no request failing. Three `alto up --sandbox process`
 * nodes on one PostgreSQL (`--store`); two apps deployed through node 1; a request loop asks
 * every node's edge for both apps while node 1 is drained: node 1 hands each app to another
 * node (compute/cluster/drain.ts), which answers only once its instance is ready, and only then
 * stops its own copy. Every answer must be 200 with the app's page, whether the request reached
 * node 1 (served there, then relayed), the new node, or the third node (relayed by what it last
 * read of the owner). Just after each hand-off, a request relayed to node 1 as a node with a
 * stale view would relay it is relayed on to the new node, not refused. Afterwards node 1 runs
 * nothing, the list shows nothing left to move, and each app has one running instance cloud-wide (the loop and
 * these assertions: cluster-drain-fixture.ts). Needs the test PostgreSQL
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
import { drainUnderLoad, plainClusterNode, type ClusterNode } from './cluster-drain-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'fleet';
const APPS = [
  { name: 'web', page: 'web v1\n' },
  { name: 'api', page: 'api v1\n' },
];
/** Two hand-offs (a pull and a boot each) after node 1's next read of the nodes, with room for a loaded machine. */
const DRAIN_WAIT_MS = 90_000;
/** Clients of the request loop, each asking the next node and app in turn. */
const CLIENTS = 6;

describe('draining a node moves its apps to other nodes with no failed request', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  const servers: ServerProcess[] = [];
  const nodes: ClusterNode[] = [];
  let key: string;
  const cache = privateSandboxCache();
  const folders = [temporaryDataDir(), temporaryDataDir(), temporaryDataDir()];
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_SANDBOX_CACHE: cache.dir,
  };

  before(async () => {
    database = await createTestDatabase('cluster_drain');
    registry = await startRegistry();
    for (const { name, page } of APPS) await registry.push(`fleet/${name}`, 'v1', await webImage(name, page));
    for (const [index, dataDir] of folders.entries()) {
      servers.push(await startProcess({ dataDir, args: ['--store', database.url, '--sandbox', 'process', '--node', `node-${index + 1}`], env }));
      nodes.push(plainClusterNode(servers[index], `node-${index + 1}`));
    }
    key = await servers[0].projectKey(PROJECT, ['app']);
  });

  after(async () => {
    for (const server of servers) await server?.close();
    await registry?.stop();
    await database?.drop();
    cache.remove();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  test('node 1 hands both apps to the other nodes under a request loop through every node: every answer 200, one instance each after', async () => {
    const [first, second, third] = nodes;
    for (const { name } of APPS) {
      const run = await first.call('app', 'Run', { name, image: `${registry.host}/fleet/${name}:v1`, min_instances: 1 }, key);
      assert.equal(run.status, 200, JSON.stringify(run.body));
    }
    for (const node of nodes)
      for (const { name, page } of APPS)
        await eventually(async () => {
          const answer = await getThroughEdge(node.edgePort, `${name}.${PROJECT}.localhost`).catch(() => undefined);
          return answer?.status === 200 && answer.body === page;
        }, `${name} served through ${node.name}`);

    await drainUnderLoad({ nodes, drained: first, receivers: [second, third], project: PROJECT, apps: APPS, key, clients: CLIENTS, waitMs: DRAIN_WAIT_MS });
  });
});
