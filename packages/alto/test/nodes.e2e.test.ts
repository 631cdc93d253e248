/**
 * Three `alto up` processes on one PostgreSQL (`--store`) are three nodes of one cloud: each
 * lists all three live (nodes/List and `alto nodes`), with its name, id (its data folder's
 * node-id), advertised URL and capacity; the admin drains and undrains one, and the flag holds
 * across its heartbeats; a node killed with SIGKILL is shown lost once its lease lapses, and
 * started again on its data folder rejoins under its name and id; a node stopped cleanly is
 * shown gone at once. A fourth process asking for a name a live node holds is refused with a
 * sentence naming it. Only the admin key sees the nodes. Needs the test PostgreSQL
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { CLI_ENTRY, startProcess, temporaryDataDir, waitFor, waitForAsync, type ServerProcess } from './harness.js';

const run = promisify(execFile);

interface NodeView {
  name: string;
  id: string;
  state: 'ready' | 'draining' | 'left' | 'lost';
  live: boolean;
  draining: boolean;
  advertise_url: string;
  started_at: string;
  heartbeat_at: string;
  left_at?: string;
  capacity: { memory_total_mib: number; memory_free_mib: number; cpus: number; driver: string; accelerator: string; instances: Record<string, number> };
}

const NAMES = ['node-1', 'node-2', 'node-3'];
/** How long a lost node may take to be shown lost: its 10 s lease, and time to spare on a loaded machine. */
const LEASE_WAIT_MS = 30_000;
const nodeIdOf = (dataDir: string) => readFileSync(join(dataDir, 'node-id'), 'utf8').trim();

describe('three processes on one PostgreSQL are three nodes of one cloud', () => {
  let database: TestDatabase;
  const folders = NAMES.map(() => temporaryDataDir());
  const servers: ServerProcess[] = [];
  const home = mkdtempSync(join(tmpdir(), 'alto-nodes-cli-'));
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
  };
  let args: (name: string) => string[];

  const start = (index: number) => startProcess({ dataDir: folders[index], args: args(NAMES[index]), env });
  const list = async (server: ServerProcess): Promise<NodeView[]> => {
    const listed = await server.call('nodes', 'List', {});
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    return listed.body.nodes;
  };
  const nodeNamed = async (server: ServerProcess, name: string) => (await list(server)).find((node) => node.name === name);
  const cli = async (cliArgs: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...cliArgs], {
        env: { ...process.env, ALTO_CONFIG: join(home, 'config.json'), ALTO_DATA: join(home, 'none'), NO_COLOR: '1' },
      });
      return { code: 0, stdout, stderr };
    } catch (error: any) {
      return { code: error.code as number, stdout: error.stdout as string, stderr: error.stderr as string };
    }
  };
  const connection = (server: ServerProcess) => ['--url', server.url, '--key', server.adminKey];

  before(async () => {
    database = await createTestDatabase('nodes');
    args = (name) => ['--store', database.url, '--node', name];
    for (const index of NAMES.keys()) servers.push(await start(index));
    // Each joins once it listens: wait until every one sees all three.
    for (const server of servers) {
      await waitForAsync(async () => (await list(server)).filter((node) => node.live).length === 3, `three live nodes seen by ${server.url}`);
    }
  });

  after(async () => {
    for (const server of servers) await server?.close();
    await database?.drop();
    for (const folder of [...folders, home]) rmSync(folder, { recursive: true, force: true });
  });

  test('GET /v1/status lists the nodes to the admin key only', async () => {
    const status = async (key: string) => (await fetch(`${servers[0].url}/v1/status`, { headers: { authorization: `Bearer ${key}` } })).json();
    const admin = await status(servers[0].adminKey);
    assert.deepEqual(admin.nodes.map((node: NodeView) => node.name).sort(), NAMES);
    assert.ok(admin.nodes.every((node: NodeView) => node.state === 'ready'), JSON.stringify(admin.nodes));
    const project = await status(await servers[0].projectKey('status-nodes', ['id']));
    assert.equal(project.nodes, undefined, 'a project key does not see the nodes');
  });

  test('every node lists all three live, with its name, id, advertised URL and capacity', async () => {
    for (const server of servers) {
      const nodes = await list(server);
      assert.deepEqual(nodes.map((node) => [node.name, node.state, node.live, node.draining]), NAMES.map((name) => [name, 'ready', true, false]));
      for (const [index, node] of nodes.entries()) {
        assert.equal(node.id, nodeIdOf(folders[index]), 'the id is the data folder\'s node-id');
        assert.equal(node.advertise_url, servers[index].url, '--advertise defaults to the URL the node listens at');
        assert.ok(node.capacity.memory_total_mib > 0 && node.capacity.memory_free_mib <= node.capacity.memory_total_mib, JSON.stringify(node.capacity));
        assert.ok(node.capacity.cpus >= 1);
        assert.equal(node.capacity.driver, 'auto', 'the driver is probed when the first app starts');
        assert.deepEqual(node.capacity.instances, {});
      }
    }
  });

  test('alto nodes prints them (JSON when piped, as here)', async () => {
    for (const server of servers) {
      const printed = await cli(['nodes', ...connection(server)]);
      assert.equal(printed.code, 0, printed.stderr);
      const nodes: NodeView[] = JSON.parse(printed.stdout).nodes;
      assert.deepEqual(nodes.map((node) => [node.name, node.state, node.advertise_url]), NAMES.map((name, index) => [name, 'ready', servers[index].url]));
    }
  });

  test('only the admin key sees and drains nodes: no key 401, a project key 403; an unknown node 404 naming it; a bad name 400', async () => {
    const [first] = servers;
    const projectKey = await first.projectKey('fleet');
    assert.equal((await first.call('nodes', 'List', {}, null)).status, 401);
    for (const [endpoint, body] of [['List', {}], ['Drain', { name: 'node-2' }], ['Undrain', { name: 'node-2' }], ['Remove', { name: 'node-2' }]] as const) {
      const refused = await first.call('nodes', endpoint, body, projectKey);
      assert.equal(refused.status, 403, `${endpoint}: ${JSON.stringify(refused.body)}`);
    }
    const unknown = await first.call('nodes', 'Drain', { name: 'node-9' });
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.detail, /no node is named "node-9"/);
    for (const name of ['', '-x', 'a b', 'x'.repeat(65)]) {
      const bad = await first.call('nodes', 'Drain', { name });
      assert.equal(bad.status, 400, `${JSON.stringify(name)}: ${JSON.stringify(bad.body)}`);
      assert.match(bad.body.detail, /name/);
    }
    const cliRefused = await cli(['nodes', 'drain', 'node-9', ...connection(first)]);
    assert.equal(cliRefused.code, 1);
    assert.match(cliRefused.stderr, /no node is named "node-9"/);
  });

  test('drain and undrain one node: every node shows it, and its own heartbeats keep the flag', async () => {
    const drained = await cli(['nodes', 'drain', 'node-2', ...connection(servers[0])]);
    assert.equal(drained.code, 0, drained.stderr);
    assert.equal(JSON.parse(drained.stdout).node.state, 'draining');
    for (const server of servers) {
      const node = (await nodeNamed(server, 'node-2'))!;
      assert.deepEqual([node.state, node.live, node.draining], ['draining', true, true]);
    }
    const before = (await nodeNamed(servers[1], 'node-2'))!.heartbeat_at;
    await waitForAsync(async () => (await nodeNamed(servers[1], 'node-2'))!.heartbeat_at !== before, 'a later heartbeat of node-2');
    assert.equal((await nodeNamed(servers[2], 'node-2'))!.state, 'draining', 'a heartbeat keeps the flag');

    const undrained = await servers[2].call('nodes', 'Undrain', { name: 'node-2' });
    assert.equal(undrained.status, 200, JSON.stringify(undrained.body));
    assert.equal(undrained.body.node.state, 'ready');
    assert.deepEqual((await list(servers[0])).map((node) => node.state), ['ready', 'ready', 'ready']);
  });

  test('a second process asking for a name a live node holds is refused, naming the name and the holder', async () => {
    const dataDir = temporaryDataDir();
    try {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', CLI_ENTRY, 'up', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, ...args('node-1')],
        { env: { ...process.env, ...env, ALTO_LOG_FORMAT: 'json', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdout.resume();
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      await waitFor(() => child.exitCode !== null || child.signalCode !== null, 'the refused process to exit', 60_000);
      assert.equal(await exited, 1, stderr);
      assert.match(stderr, new RegExp(`node name "node-1" is held by another live node \\(id ${nodeIdOf(folders[0])}, at ${servers[0].url.replace(/\./g, '\\.')}`));
      assert.match(stderr, /start this node with another --node name/);
      assert.deepEqual((await list(servers[0])).map((node) => [node.name, node.id]), NAMES.map((name, index) => [name, nodeIdOf(folders[index])]), 'nothing changed');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a node killed with SIGKILL is shown lost once its lease lapses; restarted on its data folder it rejoins as itself', async () => {
    const killed = servers[2];
    const startedBefore = (await nodeNamed(servers[0], 'node-3'))!.started_at;
    assert.equal(await killed.stop('SIGKILL'), 'SIGKILL');
    await waitForAsync(async () => (await nodeNamed(servers[0], 'node-3'))!.live === false, 'node-3 shown not live', LEASE_WAIT_MS);
    const lost = (await nodeNamed(servers[1], 'node-3'))!;
    assert.equal(lost.state, 'lost', 'no clean shutdown: lost, not left');
    assert.equal(lost.left_at, undefined);
    assert.deepEqual((await list(servers[1])).filter((node) => node.live).map((node) => node.name), ['node-1', 'node-2']);

    servers[2] = await start(2);
    await waitForAsync(async () => (await nodeNamed(servers[0], 'node-3'))!.live, 'node-3 live again');
    const back = (await nodeNamed(servers[0], 'node-3'))!;
    assert.equal(back.id, nodeIdOf(folders[2]), 'the same id: the same data folder');
    assert.equal(back.state, 'ready');
    assert.equal(back.advertise_url, servers[2].url);
    assert.ok(Date.parse(back.started_at) > Date.parse(startedBefore), 'a new start');
    assert.equal((await list(servers[2])).length, 3, 'still three nodes, not four');
  });

  test('a node stopped cleanly is shown gone at once, not after its lease', async () => {
    const stopped = servers[1];
    assert.equal(await stopped.stop('SIGTERM'), 0);
    // Its row says so as soon as it exits: no waiting on the lease.
    const gone = (await nodeNamed(servers[0], 'node-2'))!;
    assert.deepEqual([gone.state, gone.live], ['left', false]);
    assert.ok(gone.left_at);
    servers[1] = await start(1);
    await waitForAsync(async () => (await nodeNamed(servers[0], 'node-2'))!.live, 'node-2 live again');
  });
});

test('alto up --help shows --node and --advertise', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'up', '--help']);
  assert.match(stdout, /--node <name>\s+this node's name/);
  assert.match(stdout, /--advertise <url>\s+the URL other nodes reach this one at/);
  assert.match(stdout, /ALTO_NODE/);
  assert.match(stdout, /ALTO_ADVERTISE/);
});

test('alto up refuses a --node that is not a node name, or an --advertise that is not a URL, before it starts', async () => {
  const dataDir = temporaryDataDir();
  try {
    for (const [flags, message] of [
      [['--node', '-x'], /--node \(ALTO_NODE\) "-x" is not a node name/],
      [['--advertise', '10.0.0.5:4000'], /--advertise \(ALTO_ADVERTISE\) must be/],
    ] as const) {
      const refused = await run(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'up', '--port', '0', '--data', dataDir, ...flags], { env: { ...process.env, NO_COLOR: '1' } }).then(
        () => assert.fail('alto up should have refused'),
        (error: { code: number; stderr: string }) => error,
      );
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, message);
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
