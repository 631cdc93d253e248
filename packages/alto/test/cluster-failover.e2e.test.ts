/**
 * Three `alto up --sandbox process` nodes on one PostgreSQL (`--store`): an app deployed through
 * node 1 is served through every node's edge (nodes 2 and 3 relay to node 1); when node 1 stops
 * answering (SIGSTOP, so its lease lapses while its process and sandboxes stay), one of the live
 * nodes takes the app, pulls its image and starts it, and requests through nodes 2 and 3 are
 * served again; when node 1 comes back it finds the app moved, stops its old instance and relays
 * to the new node, so one node runs the app. Then the node running the app is killed with
 * SIGKILL: its sandbox ends with it at once (compute/sandbox/reap.ts), another node takes the
 * app, one instance runs it cloud-wide again, and the killed node started again on its data
 * folder gives back what its sandbox held on the host (control groups, network namespace, veth,
 * folders) and relays the app it lost rather than running it. Needs the test PostgreSQL
 * (`. scripts/test-services.sh`) and root, as the process sandbox does.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { InstanceRecord } from '../src/compute/sandbox/reap.js';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { eventually, getThroughEdge, privateSandboxCache, webImage } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'fleet';
const HOST = `web.${PROJECT}.localhost`;
/** Node 1's lease (10 s), a read of the nodes (2 s), a pull and a boot, with room for a loaded machine. */
const FAILOVER_WAIT_MS = 60_000;
const edgePort = (server: ServerProcess) => Number(new URL(server.url).port);

/** The process sandboxes a node's data folder records (compute/sandbox/reap.ts): what each holds on the host. */
function recordedSandboxes(dataDir: string): InstanceRecord[] {
  const dir = join(dataDir, 'apps', 'sandbox', 'process');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.instance.json'))
    .map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')) as InstanceRecord);
}

/** Processes still in a sandbox: in its control groups, or in its network namespace. */
function sandboxProcesses(record: InstanceRecord): string[] {
  const pids = record.cgroups.filter((dir) => existsSync(dir)).flatMap((dir) => readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean));
  const namespace = record.network?.namespace;
  if (namespace && existsSync(join('/run/netns', namespace))) pids.push(...execFileSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8' }).split('\n').filter(Boolean));
  return pids;
}

/** What of a sandbox is still on the host: its folders, control groups, network namespace and veth. */
function sandboxTraces(record: InstanceRecord): string[] {
  const paths = [...record.dirs, ...record.cgroups];
  if (record.network) paths.push(join('/run/netns', record.network.namespace), join('/sys/class/net', record.network.hostInterface));
  return paths.filter((path) => existsSync(path));
}

describe('an app of a node that stops answering runs again on another node', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  const nodes: ServerProcess[] = [];
  let key: string;
  let paused: ServerProcess | undefined;
  const nodeArgs = (index: number) => ['--store', database.url, '--sandbox', 'process', '--node', `node-${index + 1}`];
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
  /** Running instances of the app in the store's record, read through `server`. */
  const runningInstances = async (server: ServerProcess) =>
    (await app(server, 'Status', { name: 'web' })).body.service.instances.filter((instance: { state: string }) => instance.state === 'running');

  before(async () => {
    database = await createTestDatabase('cluster_failover');
    registry = await startRegistry();
    await registry.push('fleet/web', 'v1', await webImage('web v1', 'web v1\n'));
    for (const [index, dataDir] of folders.entries())
      nodes.push(await startProcess({ dataDir, args: nodeArgs(index), env }));
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
    await eventually(async () => (await runningInstances(bystander)).length === 1, 'one running instance cloud-wide');
  });

  test('killed with SIGKILL: its sandboxes end with it, the app runs again on a live node, and the node restarted on its folder comes back clean and relays', async () => {
    const owners = [];
    for (const node of nodes) if (await runningHere(node)) owners.push(node);
    assert.equal(owners.length, 1, 'one node runs the app');
    const killed = owners[0]!;
    const index = nodes.indexOf(killed);
    const live = nodes.filter((node) => node !== killed);
    const sandboxes = recordedSandboxes(killed.dataDir);
    assert.equal(sandboxes.length, 1, 'the app\'s one instance is a sandbox recorded in its node\'s data folder');
    assert.ok(sandboxProcesses(sandboxes[0]).length > 0, 'the sandbox runs');

    assert.equal(await killed.stop('SIGKILL'), 'SIGKILL');
    const killedAt = Date.now();
    await eventually(async () => sandboxes.every((sandbox) => sandboxProcesses(sandbox).length === 0), 'the killed node\'s sandbox to end with it');
    await eventually(async () => (await Promise.all(live.map(runningHere))).some(Boolean), 'a live node to take the app', FAILOVER_WAIT_MS);
    for (const node of live) await eventually(() => servedThrough(node), `web served again through ${node.url}`, FAILOVER_WAIT_MS);
    process.stdout.write(`# served again through the live nodes ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the node running it was killed\n`);
    // min_instances holds again: one running instance, the killed node's recorded ended.
    for (const node of live) await eventually(async () => (await runningInstances(node)).length === 1, `one running instance cloud-wide, read through ${node.url}`);

    // Started again on its folder: what the killed run's sandbox held is given back, and the app,
    // another node's now, is relayed there rather than started here.
    const restarted = await startProcess({ dataDir: killed.dataDir, args: nodeArgs(index), env });
    nodes[index] = restarted;
    await eventually(async () => sandboxes.every((sandbox) => sandboxTraces(sandbox).length === 0), 'the restarted node to give back what its killed run left');
    assert.deepEqual(recordedSandboxes(restarted.dataDir), [], 'no sandbox recorded in its folder');
    await eventually(() => servedThrough(restarted), `web served through the restarted ${restarted.url} (relayed)`);
    assert.equal(await runningHere(restarted), false, 'the restarted node does not run the app it lost');
    assert.deepEqual(recordedSandboxes(restarted.dataDir), [], 'the restarted node started no sandbox');
    assert.equal((await runningInstances(restarted)).length, 1, 'one running instance cloud-wide');
  });
});
