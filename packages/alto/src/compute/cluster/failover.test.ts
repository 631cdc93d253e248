/**
 * @module compute/cluster/failover.test
 * Failover rounds on a real apps store (SQLite in memory, the contract runs it on PostgreSQL
 * too): three live nodes split a lost node's movable apps between them, each app to one node;
 * apps with volumes stay; a node that left cleanly keeps its apps through the grace; a draining
 * or lost node takes nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../kit/logger.js';
import { migrate, openSqlite } from '../../store/sqlite/database.js';
import { MIGRATIONS, SqliteAppStore } from '../../store/apps/sqlite.js';
import type { StoredApp } from '../../store/apps/port.js';
import type { ListedNode } from '../../store/nodes/port.js';
import { Failover } from './failover.js';
import { LEFT_GRACE_MS } from './peers.js';

const NOW = 1_000_000;

function node(id: string, fields: Partial<ListedNode> = {}): ListedNode {
  return {
    id,
    name: `name-${id}`,
    advertiseUrl: `http://127.0.0.1:1/${id}`,
    version: 'test',
    startedAt: 0,
    capacity: { memoryTotalMiB: 1, memoryFreeMiB: 1, cpus: 1, driver: 'process', accelerator: 'none', instances: {} },
    heartbeatAt: NOW,
    leaseExpiresAt: NOW + 10_000,
    draining: false,
    live: true,
    ...fields,
  };
}

function app(id: string, owner: string, volumes = false): StoredApp {
  return {
    id,
    projectId: 'p1',
    projectName: 'shop',
    environment: 'dev',
    name: id,
    node: owner,
    image: 'web:v1',
    digest: 'sha256:1',
    settings: JSON.stringify({ port: 8080, ...(volumes ? { volumes: [{ name: 'data', path: '/data' }] } : {}) }),
    version: 1,
    status: 'running',
    createdAt: 1,
    updatedAt: 1,
  };
}

function setup() {
  const db = openSqlite(':memory:');
  migrate(db, 'apps', MIGRATIONS);
  return new SqliteAppStore(db);
}

function failoverOf(store: SqliteAppStore, self: string, adopted: string[]): Failover {
  return new Failover({
    apps: store,
    self,
    movable: (stored) => !(JSON.parse(stored.settings) as { volumes?: unknown[] }).volumes?.length,
    adopt: async (id) => void adopted.push(`${self}:${id}`),
    log: silentLogger(),
  });
}

test("live nodes split a lost node's movable apps, each to one node; apps with volumes stay", async () => {
  const store = setup();
  for (let index = 0; index < 6; index++) await store.insert(app(`web-${index}`, 'dead'));
  await store.insert(app('db', 'dead', true));
  const nodes = [node('a'), node('b'), node('c'), node('dead', { live: false, leaseExpiresAt: NOW - 1 })];
  const adopted: string[] = [];
  const rounds = ['a', 'b', 'c'].map((self) => failoverOf(store, self, adopted));
  const taken = await Promise.all(rounds.map((round) => round.round(nodes, NOW)));
  assert.deepEqual(taken, [2, 2, 2], 'a fair share each: 6 apps over 3 live nodes');
  assert.equal(adopted.length, 6);
  assert.equal(new Set(adopted.map((entry) => entry.split(':')[1])).size, 6, 'each app adopted once');
  for (const self of ['a', 'b', 'c']) assert.equal((await store.listOfNode(self)).length, 2);
  assert.deepEqual((await store.listOfNode('dead')).map((stored) => stored.id), ['db'], 'the app with volumes waits for its node');
  assert.equal(await rounds[0].round(nodes, NOW), 0, 'nothing left to take');
});

test('a node that stopped cleanly keeps its apps through the grace; a draining or lost node takes nothing', async () => {
  const store = setup();
  await store.insert(app('web', 'gone'));
  const adopted: string[] = [];
  const left = node('gone', { live: false, leaseExpiresAt: NOW - 1, leftAt: NOW - 1_000 });
  assert.equal(await failoverOf(store, 'a', adopted).round([node('a'), left], NOW), 0, 'within the grace of a clean stop');
  const lapsed = { ...left, leftAt: NOW - LEFT_GRACE_MS };
  assert.equal(await failoverOf(store, 'd', adopted).round([node('d', { draining: true }), lapsed], NOW), 0, 'draining');
  assert.equal(await failoverOf(store, 'e', adopted).round([node('e', { live: false }), lapsed], NOW), 0, 'itself lost');
  assert.equal(await failoverOf(store, 'a', adopted).round([node('a'), lapsed], NOW), 1, 'after the grace');
  assert.deepEqual(adopted, ['a:web']);
  assert.equal((await store.get('web'))?.node, 'a');
});
