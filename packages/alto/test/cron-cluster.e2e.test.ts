/**
 * A cron job every 10 s across three `alto up` nodes on one PostgreSQL, for about a minute:
 * exactly one answered callback per tick and no tick missed, while first the node that ran the
 * last tick is killed with SIGKILL once that tick is recorded, then the node delivering the
 * current tick is killed with SIGKILL while its callback waits for an answer (claimed, sent,
 * never finished): the last node delivers that run again once the dead node's claim runs out.
 * The callback does not say which node sent it, so the test finds the sender from the
 * connection: the loopback socket whose port the request came from, among the file descriptors
 * of the three node processes (Linux /proc). Needs the test PostgreSQL
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { verifySignature } from '../src/blocks/cron/signature.js';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { startProcess, temporaryDataDir, waitFor, waitForAsync, type ServerProcess } from './harness.js';

interface Delivery {
  scheduled: number;
  attempt: number;
  /** The node process that sent it. */
  pid: number | undefined;
  body: string;
  signature: string | undefined;
  receivedAt: number;
  /** Whether the receiver answered 200 (a held delivery is never answered). */
  answered: boolean;
}

const TICK_MS = 10_000;
const NAMES = ['node-1', 'node-2', 'node-3'];

/** The inode of the socket connected from `localPort` to `remotePort` on loopback, from /proc/net/tcp{,6}. */
function socketInode(localPort: number, remotePort: number): string | undefined {
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines: string[];
    try {
      lines = readFileSync(table, 'utf8').split('\n').slice(1);
    } catch {
      continue;
    }
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const local = parseInt(fields[1].split(':')[1], 16);
      const remote = parseInt(fields[2].split(':')[1], 16);
      // Inode 0: a closed connection (TIME_WAIT) that once had the same ports.
      if (local === localPort && remote === remotePort && fields[9] !== '0') return fields[9];
    }
  }
  return undefined;
}

/** Which of `pids` holds the socket with that inode open. */
function processHolding(inode: string, pids: number[]): number | undefined {
  for (const pid of pids) {
    let descriptors: string[];
    try {
      descriptors = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const descriptor of descriptors) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${descriptor}`) === `socket:[${inode}]`) return pid;
      } catch {
        // Closed while we looked.
      }
    }
  }
  return undefined;
}

let database: TestDatabase;
let direct: pg.Pool;
let receiver: Server;
let callbackUrl: string;
const deliveries: Delivery[] = [];
/** Responses held back, by scheduled time: the delivery of that tick is never answered. */
const holdTicks = new Set<number>();
const held: ServerResponse[] = [];
const folders = NAMES.map(() => temporaryDataDir());
const nodes: ServerProcess[] = [];

before(async () => {
  database = await createTestDatabase('cron_cluster');
  direct = new pg.Pool({ connectionString: database.url, max: 1 });
  receiver = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const { port } = receiver.address() as AddressInfo;
      const inode = socketInode(request.socket.remotePort!, port);
      const pid = inode === undefined ? undefined : processHolding(inode, nodes.map((node) => node.child.pid!));
      const parsed = JSON.parse(body) as { scheduled: string; attempt: number };
      const scheduled = Date.parse(parsed.scheduled);
      const hold = holdTicks.has(scheduled) && !deliveries.some((each) => each.scheduled === scheduled);
      deliveries.push({
        scheduled,
        attempt: parsed.attempt,
        pid,
        body,
        signature: request.headers['alto-signature'] as string | undefined,
        receivedAt: Date.now(),
        answered: !hold,
      });
      if (hold) held.push(response);
      else response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/cron`;
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_ALLOW_PRIVATE_CALLBACKS: '1',
  };
  nodes.push(
    ...(await Promise.all(
      NAMES.map((name, index) => startProcess({ dataDir: folders[index], args: ['--store', database.url, '--node', name], env })),
    )),
  );
});

after(async () => {
  for (const response of held) response.destroy();
  receiver?.close();
  for (const node of nodes) await node.close();
  await direct?.end();
  await database?.drop();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

test('a job every 10 s on three nodes: one answered callback per tick, none missed, while the nodes running it are killed', async (t) => {
  const [first] = nodes;
  const nameOf = (pid: number | undefined) => NAMES[nodes.findIndex((node) => node.child.pid === pid)] ?? `an unknown process (${pid})`;
  const live = () => nodes.filter((node) => node.child.exitCode === null && node.child.signalCode === null);
  const recorded = async (scheduled: number) =>
    (await direct.query("SELECT 1 FROM alto_cron_runs WHERE job_id = 'ticker' AND scheduled_at = $1 AND status = 'succeeded'", [scheduled]))
      .rowCount === 1;
  const answeredTicks = () => [...new Set(deliveries.filter((each) => each.answered).map((each) => each.scheduled))];

  const key = await first.projectKey('cluster-ticks', ['cron']);
  const scheduled = await first.call('cron', 'Schedule', { id: 'ticker', name: 'ticker', interval: '*/10 * * * * *', callback: callbackUrl }, key);
  assert.equal(scheduled.status, 200, JSON.stringify(scheduled.body));
  const secret: string = scheduled.body.signingSecret;

  // Two ticks with all three nodes up.
  await waitFor(() => answeredTicks().length >= 2, 'two ticks with three nodes', 3 * TICK_MS);

  // The node that ran the last tick dies (SIGKILL) once that tick is recorded: the next ticks come from the others.
  const lastTick = deliveries.at(-1)!;
  assert.ok(lastTick.pid !== undefined, 'the sender of a callback is one of the three nodes');
  await waitForAsync(() => recorded(lastTick.scheduled), 'the last tick to be recorded', TICK_MS);
  const firstKilled = nodes.find((node) => node.child.pid === lastTick.pid)!;
  t.diagnostic(`killing ${nameOf(lastTick.pid)}, which ran the tick of ${new Date(lastTick.scheduled).toISOString()}`);
  assert.equal(await firstKilled.stop('SIGKILL'), 'SIGKILL');
  const afterFirstKill = answeredTicks().length;
  await waitFor(() => answeredTicks().length >= afterFirstKill + 1, 'a tick after the first kill', 2 * TICK_MS);

  // The next tick's callback is left unanswered, and the node sending it dies (SIGKILL) while it
  // waits: the run is claimed and not finished, and the last node must deliver it again.
  const heldTick = Math.max(...answeredTicks()) + TICK_MS;
  holdTicks.add(heldTick);
  await waitFor(() => deliveries.some((each) => each.scheduled === heldTick), 'the held tick to arrive', 2 * TICK_MS);
  const heldDelivery = deliveries.find((each) => each.scheduled === heldTick)!;
  const secondKilled = nodes.find((node) => node.child.pid === heldDelivery.pid);
  assert.ok(secondKilled && secondKilled !== firstKilled, `the held tick came from a live node: ${nameOf(heldDelivery.pid)}`);
  t.diagnostic(`killing ${nameOf(heldDelivery.pid)} while its callback for ${new Date(heldTick).toISOString()} waits for an answer`);
  assert.equal(await secondKilled.stop('SIGKILL'), 'SIGKILL');
  const [survivor] = live();
  assert.equal(live().length, 1);

  // The survivor delivers the abandoned run, and carries on with the ticks after it.
  await waitFor(() => deliveries.some((each) => each.scheduled === heldTick && each.answered), 'the held tick to be delivered again', 3 * TICK_MS);
  await waitFor(() => answeredTicks().some((tick) => tick > heldTick + TICK_MS), 'two more ticks from the last node', 3 * TICK_MS);
  assert.match(survivor.stdout(), /cron: delivering a run its claimer abandoned/);
  assert.equal((await survivor.call('cron', 'Delete', { id: 'ticker' }, key)).status, 200);

  const summary = deliveries.map((each) => `${new Date(each.scheduled).toISOString().slice(11, 19)} from ${nameOf(each.pid)}${each.answered ? '' : ' (held)'}, ${each.receivedAt - each.scheduled} ms late`);
  t.diagnostic(summary.join('\n'));
  const ticks = answeredTicks().sort((a, b) => a - b);
  for (const tick of ticks) {
    assert.equal(deliveries.filter((each) => each.scheduled === tick && each.answered).length, 1, `one answered callback for ${new Date(tick).toISOString()}:\n${summary.join('\n')}`);
    const sent = deliveries.filter((each) => each.scheduled === tick).length;
    assert.equal(sent, tick === heldTick ? 2 : 1, `callbacks sent for ${new Date(tick).toISOString()}:\n${summary.join('\n')}`);
  }
  for (let index = 1; index < ticks.length; index++) assert.equal(ticks[index] - ticks[index - 1], TICK_MS, `no tick missed:\n${summary.join('\n')}`);
  assert.ok(ticks.length >= 6, `about a minute of ticks: ${ticks.length}`);
  assert.ok(deliveries.every((each) => verifySignature(secret, each.signature, each.body)), 'every callback is signed');
  assert.ok(new Set(deliveries.map((each) => each.pid)).size >= 2, 'the ticks were run by more than one node');
  const redelivered = deliveries.find((each) => each.scheduled === heldTick && each.answered)!;
  assert.equal(redelivered.pid, survivor.child.pid, 'the run the dead node held was delivered by the last node');
});
