/**
 * One app scales past one node's capacity: three `alto up --sandbox process` nodes on one
 * PostgreSQL, each holding at most one instance (ALTO_MAX_INSTANCES=1). An app deployed through
 * node 1 with concurrency 1 and max_instances 2 gets slow requests from a loop through every
 * node; its second instance cannot fit on node 1, so it runs on node 2 or 3 (the app's queue and
 * scaling stay on node 1, compute/cluster/remote-instances.ts). Draining the node that hosts it
 * moves it to the third node with no request failing; killing that node with SIGKILL ends the
 * instance there, and it runs again on a live node within 30 s while the loop goes on through the
 * nodes that are left. Needs the test PostgreSQL (`. scripts/test-services.sh`) and root, as the
 * process sandbox does.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'spread';
const HOST = `web.${PROJECT}.localhost`;
/** A request that keeps its instance busy for a while, so one instance cannot serve the loop alone. */
const SLOW_CGI = "#!/bin/sh\nsleep 0.3\nprintf 'Content-Type: text/plain\\r\\n\\r\\nslow\\n'\n";
const CLIENTS = 3;
/** A pull and a boot on a loaded machine, and a lease (10 s) for a killed node. */
const MOVE_WAIT_MS = 60_000;
const edgePort = (server: ServerProcess) => Number(new URL(server.url).port);

interface SlotView {
  state: string;
  instance: string;
  node?: string;
}

describe('an app whose instances do not fit on one node runs them on others', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  const nodes: (ServerProcess | undefined)[] = [];
  let key: string;
  const cache = privateSandboxCache();
  const folders = [temporaryDataDir(), temporaryDataDir(), temporaryDataDir()];
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_SANDBOX_CACHE: cache.dir,
    ALTO_MAX_INSTANCES: '1',
  };
  const nodeArgs = (index: number) => ['--store', database.url, '--sandbox', 'process', '--node', `node-${index + 1}`];
  /** The app's running slots as its own node (node 1) sees them. */
  const runningSlots = async (): Promise<SlotView[]> =>
    ((await nodes[0]!.call('app', 'Get', { name: 'web' }, key)).body.service?.slots ?? []).filter((slot: SlotView) => slot.state === 'running');
  /** The node of the app's instance that is not on node 1, once exactly two run. */
  const remoteNode = async (): Promise<string | undefined> => {
    const slots = await runningSlots();
    const remote = slots.filter((slot) => slot.node);
    return slots.length === 2 && remote.length === 1 ? remote[0].node : undefined;
  };

  before(async () => {
    database = await createTestDatabase('cluster_placement');
    registry = await startRegistry();
    await registry.push('spread/web', 'v1', await webImage('web', 'web v1\n', { slow: SLOW_CGI }));
    for (const [index, dataDir] of folders.entries()) nodes.push(await startProcess({ dataDir, args: nodeArgs(index), env }));
    key = await nodes[0]!.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    for (const node of nodes) await node?.close();
    await registry?.stop();
    await database?.drop();
    cache.remove();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  test('scaled out onto another node, moved off it by a drain with no failed request, and started again elsewhere when its node is killed', async () => {
    const run = await nodes[0]!.call('app', 'Run', { name: 'web', image: `${registry.host}/spread/web:v1`, min_instances: 1, max_instances: 2, concurrency: 1, idle_timeout: 10 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    for (const node of nodes) await eventually(async () => (await getThroughEdge(edgePort(node!), HOST).catch(() => undefined))?.status === 200, `web served through ${node!.url}`);

    // The loop: slow requests through the nodes in `through`, each client one at a time.
    let through = [0, 1, 2];
    let failures: string[] = [];
    let answered = 0;
    let stopping = false;
    const clients = Array.from({ length: CLIENTS }, async (_, client) => {
      for (let turn = client; !stopping; turn++) {
        const index = through[turn % through.length];
        const answer = await getThroughEdge(edgePort(nodes[index]!), HOST, '/cgi-bin/slow').catch((error: Error) => ({ status: -1, body: error.message }));
        if (answer.status === 200 && answer.body === 'slow\n') answered += 1;
        else failures.push(`node ${index + 1}: ${answer.status} ${answer.body.slice(0, 200)}`);
      }
    });
    try {
      // Node 1 holds one instance: the second one the load asks for runs on node 2 or 3.
      const first = await eventually(remoteNode, 'a second instance, on another node', MOVE_WAIT_MS);
      assert.ok(first === 'node-2' || first === 'node-3', `the second instance runs on node 2 or 3, not ${first}`);
      // Each node's heartbeat (every 2 s) says what its sandboxes hold, and its cap.
      await eventually(async () => {
        const listed = await nodes[0]!.call('nodes', 'List', {});
        const capacity = Object.fromEntries((listed.body.nodes as { name: string; capacity: { sandboxes: number; max_instances: number } }[]).map((node) => [node.name, node.capacity]));
        return capacity['node-1'].sandboxes === 1 && capacity['node-1'].max_instances === 1 && capacity[first].sandboxes === 1 && capacity[first].max_instances === 1;
      }, 'the nodes list to show one instance in the sandboxes of node 1 and of ' + first);
      const before = answered;
      await eventually(async () => answered >= before + 20, 'the loop to be answered with both instances');
      assert.deepEqual(failures, [], 'no request failed while the app scaled out');

      // Draining that node moves its instance to the third node; no request fails.
      const other = first === 'node-2' ? 'node-3' : 'node-2';
      const drain = await nodes[0]!.call('nodes', 'Drain', { name: first });
      assert.equal(drain.status, 200, JSON.stringify(drain.body));
      const drainedAt = Date.now();
      await eventually(async () => (await remoteNode()) === other, `the second instance to move to ${other}`, MOVE_WAIT_MS);
      const moveMs = Date.now() - drainedAt;
      const afterMove = answered;
      await eventually(async () => answered >= afterMove + 20, 'the loop to go on after the move');
      assert.deepEqual(failures, [], `no request failed while ${first} drained`);
      assert.equal((await nodes[0]!.call('nodes', 'Undrain', { name: first })).status, 200);

      // The node that hosts it now is killed: the loop goes on through the two others, and the
      // instance runs again on the live node with room within 30 s.
      const victim = Number(other.slice('node-'.length)) - 1;
      through = [0, Number(first.slice('node-'.length)) - 1];
      await eventually(async () => !(await nodes[0]!.call('nodes', 'List', {})).body.nodes.some((node: { name: string; state: string }) => node.name === first && node.state !== 'ready'), `${first} to be ready again`);
      assert.equal(await nodes[victim]!.stop('SIGKILL'), 'SIGKILL');
      nodes[victim] = undefined;
      const killedAt = Date.now();
      const failedAtKill = failures.length;
      await eventually(async () => (await remoteNode()) === first, `the second instance to run again on ${first}`, 30_000);
      const backMs = Date.now() - killedAt;
      const failedMeanwhile = failures.length - failedAtKill;
      const afterBack = answered;
      failures = [];
      await eventually(async () => answered >= afterBack + 20, 'the loop to be answered through the live nodes');
      assert.deepEqual(failures, [], 'no request failed once the instance ran again');
      process.stdout.write(
        `# second instance on ${first}; drained to ${other} in ${(moveMs / 1000).toFixed(1)} s with 0 failed requests; ` +
          `after ${other} was killed it ran again on ${first} in ${(backMs / 1000).toFixed(1)} s (requests failed meanwhile: ${failedMeanwhile})\n`,
      );
    } finally {
      stopping = true;
      await Promise.all(clients);
    }
  });
});
