/**
 * @module compute/cluster/drain.test
 * Draining on a real apps store (SQLite in memory) with a stand-in for the node link: the
 * target is the freer of two nodes drawn at random, less what the drain gave it already; a
 * draining node hands its movable apps over one at a time, holding each while it is handed and
 * releasing it only once the target took it; apps with volumes stay; a refused hand-off leaves
 * the app here (tried again later, not at once); one the target took without answering is
 * taken back; undrain stops further moves; a node that is not draining moves nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../kit/logger.js';
import { migrate, openSqlite } from '../../store/sqlite/database.js';
import { MIGRATIONS, SqliteAppStore } from '../../store/apps/sqlite.js';
import type { StoredApp } from '../../store/apps/port.js';
import type { ListedNode } from '../../store/nodes/port.js';
import { chooseTarget, Drain, memoryOf, RETRY_AFTER_MS } from './drain.js';
import type { PeerAddress } from './peers.js';

function node(id: string, freeMiB = 1_000, fields: Partial<ListedNode> = {}): ListedNode {
  return {
    id,
    name: `name-${id}`,
    advertiseUrl: `http://127.0.0.1:1`,
    version: 'test',
    startedAt: 0,
    capacity: { memoryTotalMiB: 4_096, memoryFreeMiB: freeMiB, cpus: 1, driver: 'process', accelerator: 'none', instances: {} },
    heartbeatAt: 0,
    leaseExpiresAt: 10_000,
    draining: false,
    live: true,
    ...fields,
  };
}

function app(id: string, owner: string, settings: Record<string, unknown> = {}): StoredApp {
  return {
    id,
    projectId: 'p1',
    projectName: 'shop',
    environment: 'dev',
    name: id,
    node: owner,
    image: 'web:v1',
    digest: 'sha256:1',
    settings: JSON.stringify({ port: 8080, memory: 256, min_instances: 1, ...settings }),
    version: 1,
    status: 'running',
    createdAt: 1,
    updatedAt: 1,
  };
}

/** Stands in for Math.random: the given fractions, in turn. */
const draws = (...fractions: number[]) => {
  let index = 0;
  return () => fractions[index++ % fractions.length];
};

test('the target: of two nodes drawn at random, the one with more free memory less what this drain gave it', () => {
  const [a, b, c] = [node('a', 500), node('b', 2_000), node('c', 1_000)];
  assert.equal(chooseTarget([]), undefined);
  assert.equal(chooseTarget([a]), a);
  assert.equal(chooseTarget([a, c]), c, 'two candidates: the freer');
  // Drawn: the first (0) and, of the two left, the second (0.9 → c).
  assert.equal(chooseTarget([a, b, c], new Map(), draws(0, 0.9)), c, 'b was not drawn');
  assert.equal(chooseTarget([a, b, c], new Map(), draws(0.5, 0.9)), b);
  assert.equal(chooseTarget([a, b, c], new Map([['b', 1_500]]), draws(0.5, 0.9)), c, 'what this drain gave b counts against it');
  assert.equal(memoryOf(app('x', 'n', { memory: 512, min_instances: 3 })), 1_536);
  assert.equal(memoryOf(app('y', 'n', { memory: 128, min_instances: 0 })), 128);
});

function setup(options: { refuse?: Set<string>; takeSilently?: Set<string> } = {}) {
  const db = openSqlite(':memory:');
  migrate(db, 'apps', MIGRATIONS);
  const store = new SqliteAppStore(db);
  const events: string[] = [];
  const held = new Set<string>();
  let drain!: Drain;
  let onHandOff: (appId: string) => void = () => undefined;
  drain = new Drain({
    apps: store,
    self: 'old',
    movable: (stored) => !(JSON.parse(stored.settings) as { volumes?: unknown[] }).volumes?.length,
    local: {
      holdForMove: (id) => {
        events.push(`hold ${id}`);
        held.add(id);
        return true;
      },
      unhold: (id) => {
        events.push(`unhold ${id}`);
        held.delete(id);
      },
      release: async (id) => {
        events.push(`release ${id}`);
        held.delete(id);
      },
    },
    addressOf: (id): PeerAddress => ({ id, name: `name-${id}`, host: '127.0.0.1', port: 1, tls: false }),
    // The receiver moves the app to itself before it answers (hand-off.ts, cluster.ts).
    async handOff(peer, appId) {
      events.push(`ask ${peer.id} ${appId}`);
      assert.ok(held.has(appId), 'the app is held while it is handed over');
      onHandOff(appId);
      if (options.refuse?.has(appId)) throw new Error('refused');
      assert.equal(await store.move(appId, 'old', peer.id), true);
      if (options.takeSilently?.has(appId)) throw new Error('cut off');
    },
    movedTo: (address, to) => events.push(`moved ${address.app} to ${to}`),
    log: silentLogger(),
  });
  return { store, events, drain, onHandOff: (listener: (appId: string) => void) => (onHandOff = listener) };
}

test('a draining node hands its movable apps over one at a time, each released only once taken; apps with volumes stay', async () => {
  const { store, events, drain } = setup();
  for (const each of [app('a1', 'old'), app('a2', 'old'), app('db', 'old', { volumes: [{ name: 'data', path: '/data' }] }), app('b1', 'other')]) await store.insert(each);
  const nodes = [node('old', 9_000, { draining: true }), node('target', 1_000), node('drained', 9_000, { draining: true }), node('lost', 9_000, { live: false })];
  assert.equal(await drain.round(nodes), 2);
  assert.deepEqual(events, ['hold a1', 'ask target a1', 'moved a1 to target', 'release a1', 'hold a2', 'ask target a2', 'moved a2 to target', 'release a2']);
  assert.deepEqual((await store.listOfNode('old')).map((each) => each.name), ['db'], 'the app with volumes stays');
  assert.deepEqual((await store.listOfNode('target')).map((each) => each.name).sort(), ['a1', 'a2']);
});

test('a node that is not draining, or with no node to take its apps, moves nothing', async () => {
  const { store, events, drain } = setup();
  await store.insert(app('a1', 'old'));
  assert.equal(await drain.round([node('old'), node('target')]), 0);
  assert.equal(await drain.round([node('old', 1_000, { draining: true }), node('target', 1_000, { draining: true })]), 0);
  assert.deepEqual(events, []);
  assert.equal((await store.get('a1'))?.node, 'old');
});

test('a refused hand-off leaves the app here, unheld; one the target took without answering is taken back', async () => {
  const { store, events, drain } = setup({ refuse: new Set(['a1']), takeSilently: new Set(['a2']) });
  for (const each of [app('a1', 'old'), app('a2', 'old')]) await store.insert(each);
  assert.equal(await drain.round([node('old', 1_000, { draining: true }), node('target')]), 0);
  assert.deepEqual(events, ['hold a1', 'ask target a1', 'unhold a1', 'hold a2', 'ask target a2', 'unhold a2']);
  assert.equal((await store.get('a1'))?.node, 'old');
  assert.equal((await store.get('a2'))?.node, 'old', 'moved back from the target');
  events.length = 0;
  const now = Date.now();
  assert.equal(await drain.round([node('old', 1_000, { draining: true }), node('target')], now), 0);
  assert.deepEqual(events, [], 'not tried again at once');
  assert.equal(await drain.round([node('old', 1_000, { draining: true }), node('target')], now + RETRY_AFTER_MS), 0);
  assert.deepEqual(events, ['hold a1', 'ask target a1', 'unhold a1', 'hold a2', 'ask target a2', 'unhold a2'], 'tried again later');
});

test('undrain stops further moves: the hand-off under way finishes, the rest stay', async () => {
  const { store, events, drain, onHandOff } = setup();
  for (const each of [app('a1', 'old'), app('a2', 'old'), app('a3', 'old')]) await store.insert(each);
  const draining = [node('old', 1_000, { draining: true }), node('target')];
  // While a1 is handed over, a read of the nodes finds this node undrained.
  onHandOff((appId) => {
    if (appId === 'a1') void drain.round([node('old'), node('target')]);
  });
  assert.equal(await drain.round(draining), 1);
  assert.deepEqual(events, ['hold a1', 'ask target a1', 'moved a1 to target', 'release a1']);
  assert.deepEqual((await store.listOfNode('old')).map((each) => each.name).sort(), ['a2', 'a3']);
});
