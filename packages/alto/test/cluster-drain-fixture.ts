/**
 * Draining a node of a cloud under load, for the e2e tests that drain one
 * (cluster-drain*.e2e.test.ts): a loop of requests through every node's edge that keeps each
 * answer that is not the app's page, and `drainUnderLoad`, which drains a node while the loop
 * runs and asserts what must hold during and after the drain: no failed request, the apps off
 * the drained node and on one of the nodes meant to take them, a request relayed to the drained
 * node by a node with a stale view relayed on (not refused), nothing left to move in the list,
 * and one running instance of each app cloud-wide.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { eventually, getThroughEdge } from './apps-fixture.js';
import type { ServerProcess, TestAlto } from './harness.js';
import type { HttpsNode } from './https-node-fixture.js';

/** One node as the drain tests talk to it. */
export interface ClusterNode {
  /** Its `--node` name. */
  name: string;
  /** Its plain edge port on 127.0.0.1. */
  edgePort: number;
  /** API calls to it (over HTTPS to a node advertised at an https:// URL: its plain port redirects them). */
  call: TestAlto['call'];
  stdout(): string;
}

export function plainClusterNode(server: ServerProcess, name: string): ClusterNode {
  return { name, edgePort: Number(new URL(server.url).port), call: server.call, stdout: server.stdout };
}

export function httpsClusterNode(node: HttpsNode, name: string): ClusterNode {
  return { name, edgePort: Number(new URL(node.server.url).port), call: node.call, stdout: node.server.stdout };
}

/** An app and the page its `/` answers. */
export interface PagedApp {
  name: string;
  page: string;
}

/** GET as another node relays it (`x-alto-via`): a request relayed here is not relayed again, unless this node handed its app over. */
export function getRelayed(port: number, host: string, via: string): Promise<{ status: number; body: string }> {
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

export interface Failure {
  node: string;
  app: string;
  status: number;
  body: string;
}

export interface RequestLoop {
  /** Answers so far, by node and app (in the order of the nodes, then of the apps). */
  readonly answers: number[];
  readonly failures: Failure[];
  /** Waits until each node and app was answered `count` more times than when called. */
  answeredAgain(count: number, what: string, timeoutMs?: number): Promise<void>;
  /** Ends the loop once each client's request in flight is answered. */
  stop(): Promise<void>;
}

/** `clients` clients, each asking every node's edge for every app's `/` in turn, one request at a time, 10 ms apart. */
export function startRequestLoop(nodes: ClusterNode[], project: string, apps: PagedApp[], clients: number): RequestLoop {
  const combos = nodes.flatMap((node) => apps.map((each) => ({ node, ...each })));
  const answers = combos.map(() => 0);
  const failures: Failure[] = [];
  let stopping = false;
  const running = Array.from({ length: clients }, async (_, client) => {
    for (let turn = client; !stopping; turn++) {
      const combo = turn % combos.length;
      const { node, name, page } = combos[combo];
      const answer = await getThroughEdge(node.edgePort, `${name}.${project}.localhost`).catch((error: Error) => ({ status: -1, body: error.message }));
      answers[combo]++;
      if (answer.status !== 200 || answer.body !== page) failures.push({ node: node.name, app: name, status: answer.status, body: answer.body.slice(0, 300) });
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
  return {
    answers,
    failures,
    async answeredAgain(count, what, timeoutMs) {
      const marks = [...answers];
      await eventually(async () => answers.every((answered, index) => answered >= marks[index] + count), what, timeoutMs);
    },
    async stop() {
      stopping = true;
      await Promise.all(running);
    },
  };
}

export interface DrainUnderLoad {
  /** Every node of the cloud: the loop asks each for each app. */
  nodes: ClusterNode[];
  /** The node drained: it runs `apps` when called. */
  drained: ClusterNode;
  /** The nodes the apps may move to. */
  receivers: ClusterNode[];
  project: string;
  apps: PagedApp[];
  /** A project key with the `app` scope. */
  key: string;
  /** Clients of the request loop. */
  clients: number;
  /** How long the hand-offs may take. */
  waitMs: number;
}

/** Answers each node and app must give after the drain ended, before the loop stops (past the 2 s other nodes trust what they read of an owner). */
const ANSWERS_AFTER_DRAIN = 100;

/**
 * Drains `drained` through another node while a request loop asks every node for every app, and
 * asserts the drain moved the apps with no failed request; undrains it after.
 */
export async function drainUnderLoad(options: DrainUnderLoad): Promise<void> {
  const { nodes, drained, receivers, project, apps, key } = options;
  const others = nodes.filter((node) => node !== drained);
  const [caller, bystander] = [others[0], others[others.length - 1]];
  const runsHere = async (node: ClusterNode, name: string) => ((await node.call('app', 'Get', { name }, key)).body.service?.slots ?? []).length > 0;

  const loop = startRequestLoop(nodes, project, apps, options.clients);
  try {
    await eventually(async () => loop.answers.every((count) => count >= 10), 'the loop to be answered through every node');

    const drainedAt = Date.now();
    const drain = await caller.call('nodes', 'Drain', { name: drained.name });
    assert.equal(drain.status, 200, JSON.stringify(drain.body));
    assert.equal(drain.body.node.state, 'draining');
    assert.deepEqual(drain.body.node.apps.pinned, [], `no app of ${drained.name} has volumes`);

    // The drained node runs no app, and each runs on a receiver. A node that still read the
    // drained one as an app's owner (for up to 2 s after its hand-off) relays to it: it relays
    // such a request once more, to the app's new node, rather than refusing it as relayed twice.
    await Promise.all(
      apps.map(async ({ name, page }) => {
        const moved = async () => !(await runsHere(drained, name)) && (await Promise.all(receivers.map((node) => runsHere(node, name)))).includes(true);
        await eventually(moved, `${name} to move off ${drained.name} to ${receivers.map((node) => node.name).join(' or ')}`, options.waitMs);
        const relayed = await getRelayed(drained.edgePort, `${name}.${project}.localhost`, bystander.name);
        assert.deepEqual([relayed.status, relayed.body], [200, page], `${name} relayed to ${drained.name} just after it moved`);
      }),
    );
    // The list shows nothing left to move.
    await eventually(async () => {
      const listed = await bystander.call('nodes', 'List', {});
      const node = (listed.body.nodes as { name: string; apps?: { to_move: number; pinned: string[] } }[]).find((each) => each.name === drained.name);
      return node?.apps?.to_move === 0 && node.apps.pinned.length === 0;
    }, `the list to show ${drained.name} with nothing left to move`);
    const drainMs = Date.now() - drainedAt;

    // The loop goes on through every node past the time other nodes trust an owner they read.
    await loop.answeredAgain(ANSWERS_AFTER_DRAIN, 'the loop to go on after the drain', options.waitMs);
    await loop.stop();
    const total = loop.answers.reduce((sum, count) => sum + count, 0);
    process.stdout.write(
      `# drained ${drained.name} (${apps.length} apps) in ${(drainMs / 1000).toFixed(1)} s; ${total} requests through ${nodes.length} nodes, ${loop.failures.length} failed\n`,
    );
    for (const line of drained.stdout().split('\n').filter((each) => each.includes('"ready_ms"'))) {
      const { app: moved, to, ready_ms: readyMs, stopped_ms: stoppedMs } = JSON.parse(line) as { app: string; to: string; ready_ms: number; stopped_ms: number };
      process.stdout.write(`# ${moved} to ${to}: ready there ${readyMs} ms after ${drained.name} asked, its copy stopped ${stoppedMs} ms later\n`);
    }
    assert.deepEqual(loop.failures, [], 'no request failed during the drain');
  } finally {
    await loop.stop();
  }

  // One running instance per app cloud-wide, read through a node that does not run it (the store's record).
  for (const { name } of apps) {
    let reader: ClusterNode | undefined;
    for (const node of others) if (!reader && !(await runsHere(node, name))) reader = node;
    assert.ok(reader, `a node other than ${drained.name} that does not run ${name}`);
    const running = async () =>
      (await reader.call('app', 'Status', { name }, key)).body.service.instances.filter((instance: { state: string }) => instance.state === 'running');
    await eventually(async () => (await running()).length === 1, `one running instance of ${name} cloud-wide`);
  }
  const undrained = await caller.call('nodes', 'Undrain', { name: drained.name });
  assert.equal(undrained.status, 200, JSON.stringify(undrained.body));
  assert.equal(undrained.body.node.state, 'ready');
}
