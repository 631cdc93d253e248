/**
 * Draining a node moves its apps with no request failing. Three `alto up --sandbox process`
 * nodes on one PostgreSQL (`--store`); two apps deployed through node 1; a request loop asks
 * every node's edge for both apps while node 1 is drained: node 1 hands each app to another
 * node (compute/cluster/drain.ts), which answers only once its instance is ready, and only then
 * stops its own copy. Every answer must be 200 with the app's page, whether the request reached
 * node 1 (served there, then relayed), the new node, or the third node (relayed by what it last
 * read of the owner). Just after each hand-off, a request relayed to node 1 as a node with a
 * stale view would relay it is relayed on to the new node, not refused. Afterwards node 1 runs
 * nothing, the list shows nothing left to move, and each app has one running instance cloud-wide. Needs the test PostgreSQL
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
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
/** Answers each node and app must give after the drain ended, before the loop stops (past the 2 s other nodes trust what they read of an owner). */
const ANSWERS_AFTER_DRAIN = 100;
const edgePort = (server: ServerProcess) => Number(new URL(server.url).port);

/** GET as another node relays it (`x-alto-via`): a request relayed here is not relayed again, unless this node handed its app over. */
function getRelayed(port: number, host: string, via: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const call = httpRequest({ host: '127.0.0.1', port, path: '/', method: 'GET', headers: { host, 'x-alto-via': via }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    call.setTimeout(15_000, () => call.destroy(new Error('request timed out')));
    call.on('error', reject);
    call.end();
  });
}

interface Failure {
  node: number;
  app: string;
  status: number;
  body: string;
}

describe('draining a node moves its apps to other nodes with no failed request', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  const nodes: ServerProcess[] = [];
  let key: string;
  const cache = privateSandboxCache();
  const folders = [temporaryDataDir(), temporaryDataDir(), temporaryDataDir()];
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_SANDBOX_CACHE: cache.dir,
  };
  const app = (server: ServerProcess, endpoint: string, body: unknown) => server.call('app', endpoint, body, key);
  const runsHere = async (server: ServerProcess, name: string) => ((await app(server, 'Get', { name })).body.service?.slots ?? []).length > 0;
  const served = async (server: ServerProcess, name: string, page: string) => {
    const answer = await getThroughEdge(edgePort(server), `${name}.${PROJECT}.localhost`).catch(() => undefined);
    return answer?.status === 200 && answer.body === page;
  };

  before(async () => {
    database = await createTestDatabase('cluster_drain');
    registry = await startRegistry();
    for (const { name, page } of APPS) await registry.push(`fleet/${name}`, 'v1', await webImage(name, page));
    for (const [index, dataDir] of folders.entries())
      nodes.push(await startProcess({ dataDir, args: ['--store', database.url, '--sandbox', 'process', '--node', `node-${index + 1}`], env }));
    key = await nodes[0].projectKey(PROJECT, ['app']);
  });

  after(async () => {
    for (const node of nodes) await node?.close();
    await registry?.stop();
    await database?.drop();
    cache.remove();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  test('node 1 hands both apps to the other nodes under a request loop through every node: every answer 200, one instance each after', async () => {
    const [first, second, third] = nodes;
    for (const { name } of APPS) {
      const run = await app(first, 'Run', { name, image: `${registry.host}/fleet/${name}:v1`, min_instances: 1 });
      assert.equal(run.status, 200, JSON.stringify(run.body));
    }
    for (const node of nodes) for (const { name, page } of APPS) await eventually(() => served(node, name, page), `${name} served through ${node.url}`);

    // The loop: every client asks node 1, 2, 3 for web and api in turn, one request at a time.
    const combos = nodes.flatMap((_, node) => APPS.map((each) => ({ node, ...each })));
    const answers = combos.map(() => 0);
    const failures: Failure[] = [];
    let stopping = false;
    const clients = Array.from({ length: CLIENTS }, async (_, client) => {
      for (let turn = client; !stopping; turn++) {
        const combo = turn % combos.length;
        const { node, name, page } = combos[combo];
        const answer = await getThroughEdge(edgePort(nodes[node]), `${name}.${PROJECT}.localhost`).catch((error: Error) => ({ status: -1, body: error.message }));
        answers[combo]++;
        if (answer.status !== 200 || answer.body !== page) failures.push({ node: node + 1, app: name, status: answer.status, body: answer.body.slice(0, 300) });
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    });
    try {
      await eventually(async () => answers.every((count) => count >= 10), 'the loop to be answered through every node');

      const drainedAt = Date.now();
      const drain = await second.call('nodes', 'Drain', { name: 'node-1' });
      assert.equal(drain.status, 200, JSON.stringify(drain.body));
      assert.equal(drain.body.node.state, 'draining');
      assert.deepEqual(drain.body.node.apps.pinned, [], 'no app of node 1 has volumes');

      // Node 1 runs no app, and each runs on node 2 or 3. A node that still read node 1 as an
      // app's owner (for up to 2 s after its hand-off) relays to it: node 1 relays such a request
      // once more, to the app's new node, rather than refusing it as relayed twice.
      await Promise.all(
        APPS.map(async ({ name, page }) => {
          await eventually(async () => !(await runsHere(first, name)) && ((await runsHere(second, name)) || (await runsHere(third, name))), `${name} to move off node 1`, DRAIN_WAIT_MS);
          const relayed = await getRelayed(edgePort(first), `${name}.${PROJECT}.localhost`, 'node-3');
          assert.deepEqual([relayed.status, relayed.body], [200, page], `${name} relayed to node 1 just after it moved`);
        }),
      );
      // The list shows nothing left to move.
      await eventually(async () => {
        const listed = await third.call('nodes', 'List', {});
        const node = (listed.body.nodes as { name: string; apps?: { to_move: number; pinned: string[] } }[]).find((each) => each.name === 'node-1');
        return node?.apps?.to_move === 0 && node.apps.pinned.length === 0;
      }, 'the list to show node 1 with nothing left to move');
      const drainMs = Date.now() - drainedAt;

      // The loop goes on through every node past the time other nodes trust an owner they read.
      const marks = [...answers];
      await eventually(async () => answers.every((count, index) => count >= marks[index] + ANSWERS_AFTER_DRAIN), 'the loop to go on after the drain', DRAIN_WAIT_MS);
      stopping = true;
      await Promise.all(clients);
      const total = answers.reduce((sum, count) => sum + count, 0);
      process.stdout.write(`# drained node 1 (two apps) in ${(drainMs / 1000).toFixed(1)} s; ${total} requests through three nodes, ${failures.length} failed\n`);
      for (const line of first.stdout().split('\n').filter((each) => each.includes('"ready_ms"'))) {
        const { app: moved, to, ready_ms: readyMs, stopped_ms: stoppedMs } = JSON.parse(line) as { app: string; to: string; ready_ms: number; stopped_ms: number };
        process.stdout.write(`# ${moved} to ${to}: ready there ${readyMs} ms after node 1 asked, node 1's copy stopped ${stoppedMs} ms later\n`);
      }
      assert.deepEqual(failures, [], 'no request failed during the drain');
    } finally {
      stopping = true;
      await Promise.all(clients);
    }

    // One running instance per app cloud-wide, read through a node that does not run it (the store's record).
    for (const { name } of APPS) {
      const bystander = (await runsHere(second, name)) ? third : second;
      const running = async () =>
        (await app(bystander, 'Status', { name })).body.service.instances.filter((instance: { state: string }) => instance.state === 'running');
      await eventually(async () => (await running()).length === 1, `one running instance of ${name} cloud-wide`);
    }
    const undrained = await second.call('nodes', 'Undrain', { name: 'node-1' });
    assert.equal(undrained.status, 200, JSON.stringify(undrained.body));
    assert.equal(undrained.body.node.state, 'ready');
  });
});
