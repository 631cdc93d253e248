/**
 * Work handed to a node advertised at an https:// URL, end to end: three `alto up --sandbox
 * process` nodes on one PostgreSQL (`--store`). Node 2 serves HTTPS with a certificate for
 * 127.0.0.1 from the test's own authority and advertises `https://127.0.0.1:<its HTTPS port>`;
 * nodes 1 and 3 trust the authority (NODE_EXTRA_CA_CERTS) and advertise their plain URLs. Node 3
 * is drained from the start (it runs nothing), so node 2 is the only node that takes work: node
 * 3's edge still relays. Node 1 holds at most two instances (`--max-instances 2`) and runs two
 * apps, deployed through it.
 * - Placed: a third app deployed through node 1 does not fit there; its instance is started on
 *   node 2 over the instance channel (compute/cluster/remote-instances.ts, hosted-instances.ts),
 *   and requests for it through node 1 and node 3 reach it through node 2's edge over TLS.
 * - Drained: node 1 is drained under a request loop through every node; it hands both apps to
 *   node 2 over the node link (compute/cluster/drain.ts, hand-off.ts), and the assertions of the
 *   plain drain test hold (cluster-drain-fixture.ts): no failed request, relayed requests relayed
 *   on, nothing left to move, one running instance each.
 * Needs the test PostgreSQL (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
import { drainUnderLoad, httpsClusterNode, plainClusterNode, type ClusterNode, type PagedApp } from './cluster-drain-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startHttpsNode, type HttpsNode } from './https-node-fixture.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { testAuthority, type TestAuthority } from './tls-fixture.js';

const PROJECT = 'secure';
const APPS: PagedApp[] = [
  { name: 'web', page: 'web v1\n' },
  { name: 'api', page: 'api v1\n' },
];
const PLACED: PagedApp = { name: 'placed', page: 'placed v1\n' };
/** A pull and a boot on node 2 per app, with room for a loaded machine. */
const MOVE_WAIT_MS = 60_000;
const CLIENTS = 6;

describe('a node advertised at an https:// URL takes instances placed from another node and apps handed off by a drain', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  let authority: TestAuthority;
  let secure: HttpsNode;
  const servers: ServerProcess[] = [];
  /** Node 1 (plain), node 2 (HTTPS), node 3 (plain, drained). */
  let nodes: ClusterNode[];
  let key: string;
  const cache = privateSandboxCache();
  const folders = [temporaryDataDir(), temporaryDataDir(), temporaryDataDir()];
  const nodeArgs = (index: number) => ['--store', database.url, '--sandbox', 'process', '--node', `node-${index + 1}`];
  const served = async (node: ClusterNode, { name, page }: PagedApp) => {
    const answer = await getThroughEdge(node.edgePort, `${name}.${PROJECT}.localhost`).catch(() => undefined);
    return answer?.status === 200 && answer.body === page;
  };

  before(async () => {
    database = await createTestDatabase('cluster_drain_https');
    registry = await startRegistry();
    for (const { name, page } of [...APPS, PLACED]) await registry.push(`${PROJECT}/${name}`, 'v1', await webImage(name, page));
    authority = testAuthority();
    const env = {
      ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
      ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
      ALTO_SANDBOX_CACHE: cache.dir,
      NODE_EXTRA_CA_CERTS: authority.rootPath,
    };
    servers.push(await startProcess({ dataDir: folders[0], args: [...nodeArgs(0), '--max-instances', '2'], env }));
    secure = await startHttpsNode(authority, { dataDir: folders[1], args: nodeArgs(1), env, certificateFile: 'node-2' });
    servers.push(secure.server);
    servers.push(await startProcess({ dataDir: folders[2], args: nodeArgs(2), env }));
    nodes = [plainClusterNode(servers[0], 'node-1'), httpsClusterNode(secure, 'node-2'), plainClusterNode(servers[2], 'node-3')];
    key = await servers[0].projectKey(PROJECT, ['app']);

    // Node 3 takes no work: what node 1 places or hands off goes to node 2, over TLS.
    const drained = await nodes[0].call('nodes', 'Drain', { name: 'node-3' });
    assert.equal(drained.status, 200, JSON.stringify(drained.body));
    for (const { name } of APPS) {
      const run = await nodes[0].call('app', 'Run', { name, image: `${registry.host}/${PROJECT}/${name}:v1`, min_instances: 1 }, key);
      assert.equal(run.status, 200, JSON.stringify(run.body));
    }
    for (const node of nodes) for (const app of APPS) await eventually(() => served(node, app), `${app.name} served through ${node.name}`);
  });

  after(async () => {
    for (const server of servers) await server?.close();
    await registry?.stop();
    await database?.drop();
    authority?.remove();
    cache.remove();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  test("an app that does not fit on node 1 runs its instance on node 2, reached through node 1's and node 3's edges over TLS", async () => {
    const [first, , third] = nodes;
    const run = await first.call('app', 'Run', { name: PLACED.name, image: `${registry.host}/${PROJECT}/${PLACED.name}:v1`, min_instances: 1, max_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    // Its only instance runs on node 2; the app stays node 1's (its queue, its slots).
    const slots = await eventually(async () => {
      const running = ((await first.call('app', 'Get', { name: PLACED.name }, key)).body.service?.slots ?? []).filter((slot: { state: string }) => slot.state === 'running');
      return running.length === 1 && running;
    }, 'the placed instance to run', MOVE_WAIT_MS);
    assert.equal(slots[0].node, 'node-2', JSON.stringify(slots));
    // Node 1's edge reaches it through node 2's HTTPS port; node 3 relays to node 1, which does the same.
    for (const node of [first, third]) {
      await eventually(() => served(node, PLACED), `${PLACED.name} served through ${node.name}`);
      for (let index = 0; index < 5; index++) {
        const answer = await getThroughEdge(node.edgePort, `${PLACED.name}.${PROJECT}.localhost`);
        assert.deepEqual([answer.status, answer.body], [200, PLACED.page], `${PLACED.name} through ${node.name}`);
      }
    }
    // Out of the way of the drain, which is about the two apps node 1 runs itself.
    const deleted = await first.call('app', 'Delete', { name: PLACED.name }, key);
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
  });

  test('node 1 hands both apps to node 2 under a request loop through every node: every answer 200, one instance each after', async () => {
    const [first, second] = nodes;
    await drainUnderLoad({ nodes, drained: first, receivers: [second], project: PROJECT, apps: APPS, key, clients: CLIENTS, waitMs: MOVE_WAIT_MS });
  });
});
