/**
 * Node membership on the embedded store: joining records the node live under its name and the
 * data folder's id, heartbeats renew its lease with the machine's capacity, `stop()` marks it
 * gone at once, a name a live node of another id holds is refused, and names and URLs are
 * checked. The platform is the part membership reads (stores, config, start time, log), with
 * no apps running. Heartbeats are fast here; the test waits for them, never for a time.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { silentLogger } from '../../kit/logger.js';
import type { Platform } from '../../platform/platform.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { SqliteNodeStore } from '../../store/nodes/sqlite.js';
import { advertiseUrlOf, defaultNodeNames, LEASE_MS, nodeNameOf, startNodeMembership } from './membership.js';

const root = mkdtempSync(join(tmpdir(), 'alto-membership-'));
const database = openSqlite(join(root, 'alto.db'));
const nodes = new SqliteNodeStore(database);
after(() => {
  database.close();
  rmSync(root, { recursive: true, force: true });
});

/** A platform as membership sees it: its own data folder (so its own node id), the shared nodes store. */
function platformIn(folder: string): Platform {
  const dataDir = join(root, folder);
  mkdirSync(dataDir, { recursive: true });
  return {
    stores: { nodes },
    config: { dataDir, version: '9.9.9', sandbox: 'process' },
    startedAt: Date.now(),
    log: silentLogger(),
    use() {
      throw new Error('no components in this test');
    },
  } as unknown as Platform;
}

async function waitUntil(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('joining records the node live; heartbeats renew its lease; stop marks it gone at once', async () => {
  const platform = platformIn('first');
  const membership = await startNodeMembership({ platform, name: 'alpha', advertiseUrl: 'http://10.0.0.5:4000/', heartbeatIntervalMs: 10 });
  const id = readFileSync(join(root, 'first', 'node-id'), 'utf8').trim();
  assert.deepEqual([membership.id, membership.name, membership.advertiseUrl], [id, 'alpha', 'http://10.0.0.5:4000']);
  assert.equal(await startNodeMembership({ platform, name: 'other', advertiseUrl: 'http://x' }), membership, 'one membership per platform');

  const joined = (await nodes.find('alpha', Date.now()))!;
  assert.equal(joined.live, true);
  assert.equal(joined.id, id);
  assert.equal(joined.version, '9.9.9');
  assert.equal(joined.startedAt, platform.startedAt);
  assert.equal(joined.leaseExpiresAt - joined.heartbeatAt, LEASE_MS);
  assert.equal(joined.capacity.driver, 'process', 'the configured driver while no apps run');
  assert.ok(joined.capacity.memoryTotalMiB > 0 && joined.capacity.cpus > 0);
  await waitUntil(async () => (await nodes.find('alpha', Date.now()))!.heartbeatAt > joined.heartbeatAt, 'a later heartbeat');

  await membership.stop();
  await membership.stop();
  const gone = (await nodes.find('alpha', Date.now()))!;
  assert.equal(gone.live, false);
  assert.ok(gone.leftAt);
  const afterStop = gone.heartbeatAt;
  // No heartbeat after stop: the next membership of this platform is a new join.
  const again = await startNodeMembership({ platform, name: 'alpha', advertiseUrl: 'http://10.0.0.5:4000', heartbeatIntervalMs: 60_000 });
  assert.notEqual(again, membership);
  assert.ok((await nodes.find('alpha', Date.now()))!.heartbeatAt >= afterStop);
  await again.stop();
});

test('a name held by a live node of another data folder is refused, naming it; the holder is untouched', async () => {
  const holder = await startNodeMembership({ platform: platformIn('holder'), name: 'beta', advertiseUrl: 'http://10.0.0.6:4000', heartbeatIntervalMs: 60_000 });
  const intruder = platformIn('intruder');
  await assert.rejects(
    startNodeMembership({ platform: intruder, name: 'beta', advertiseUrl: 'http://10.0.0.7:4000' }),
    (error: unknown) => isAltoError(error) && error.status === 409 && error.detail.includes(`node name "beta" is held by another live node (id ${holder.id}, at http://10.0.0.6:4000`),
  );
  assert.equal((await nodes.find('beta', Date.now()))!.id, holder.id);
  // Once the holder has left, the name is free.
  await holder.stop();
  const successor = await startNodeMembership({ platform: intruder, name: 'beta', advertiseUrl: 'http://10.0.0.7:4000', heartbeatIntervalMs: 60_000 });
  assert.notEqual(successor.id, holder.id);
  await successor.stop();
});

test('node names and advertised URLs are checked with sentences a person can act on', () => {
  assert.equal(nodeNameOf(' node-1 '), 'node-1');
  for (const bad of ['-x', 'a b', 'x'.repeat(65), 'ünï']) assert.throws(() => nodeNameOf(bad), /--node \(ALTO_NODE\) ".*" is not a node name/);
  assert.equal(advertiseUrlOf('https://node-2.example.com:4443/'), 'https://node-2.example.com:4443');
  for (const bad of ['10.0.0.5:4000', 'ftp://x', 'http://user:pass@x', 'http://x/?a=1', `http://${'x'.repeat(3000)}`]) {
    assert.throws(() => advertiseUrlOf(bad), /--advertise \(ALTO_ADVERTISE\) must be/);
  }
});

test('without --node a node takes the host name, or, when a live node of another data folder has it, the host name with its id', async () => {
  const host = hostname().split('.')[0];
  const first = await startNodeMembership({ platform: platformIn('default-1'), advertiseUrl: 'http://10.0.0.8:4000', heartbeatIntervalMs: 60_000 });
  const second = await startNodeMembership({ platform: platformIn('default-2'), name: '  ', advertiseUrl: 'http://10.0.0.9:4000', heartbeatIntervalMs: 60_000 });
  assert.equal(first.name, host);
  assert.equal(second.name, `${host}-${second.id}`.slice(0, 64));
  assert.deepEqual((await nodes.list(Date.now())).filter((node) => node.live).map((node) => node.id).sort(), [first.id, second.id].sort());
  // A name asked for is never changed: refused as it is.
  await assert.rejects(startNodeMembership({ platform: platformIn('default-3'), name: host, advertiseUrl: 'http://10.0.0.10:4000' }), /is held by another live node/);
  await first.stop();
  await second.stop();
  assert.deepEqual(defaultNodeNames('abc123', 'web-1.example.com'), ['web-1', 'web-1-abc123']);
  assert.deepEqual(defaultNodeNames('abc123', '_bad'), ['node-abc123']);
});

test('a node whose lease lapsed (a pause) is fenced until a reconcile begun after its next heartbeat completes', async () => {
  const membership = await startNodeMembership({ platform: platformIn('fenced'), name: 'fenced-node', advertiseUrl: 'http://127.0.0.1:9', heartbeatIntervalMs: 20, leaseMs: 150 });
  try {
    assert.equal(membership.fenced(), false, 'serving while its lease runs');
    // A pause: the event loop is held past the lease, as a stopped or starved process is.
    const pausedUntil = Date.now() + 300;
    while (Date.now() < pausedUntil) {
      // held on purpose
    }
    assert.equal(membership.fenced(), true, 'fenced once its lease lapsed');
    const before = Date.now();
    await waitUntil(async () => (await nodes.find('fenced-node', Date.now()))?.live === true && (await nodes.find('fenced-node', Date.now()))!.heartbeatAt >= before, 'the next heartbeat');
    assert.equal(membership.fenced(), true, 'still fenced after the heartbeat: its apps may have moved');
    membership.reconciled(before - 1_000);
    assert.equal(membership.fenced(), true, 'a reconcile begun before the lapse was seen does not count');
    membership.reconciled(Date.now());
    assert.equal(membership.fenced(), false, 'serving again once reconciled');
  } finally {
    await membership.stop();
  }
});
