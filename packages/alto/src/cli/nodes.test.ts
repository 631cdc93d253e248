/**
 * How `alto nodes` shows a node in its table: state, address, free and total memory, the driver
 * with its accelerator once probed, instances by state, how long since its last heartbeat, and a
 * draining node's progress.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ago, drainText, nodeRow, type NodeView } from './nodes.js';

const NOW = Date.parse('2026-12-06T12:00:00.000Z');
const node = (changes: Partial<NodeView> = {}): NodeView => ({
  name: 'node-1',
  id: 'a1b2c3d4e5f6',
  state: 'ready',
  live: true,
  draining: false,
  advertise_url: 'http://10.0.0.5:4000',
  version: '0.1.0',
  started_at: '2026-12-06T11:00:00.000Z',
  heartbeat_at: '2026-12-06T11:59:58.600Z',
  lease_expires_at: '2026-12-06T12:00:08.600Z',
  capacity: { memory_total_mib: 16_384, memory_free_mib: 9_000, cpus: 8, driver: 'microvm', accelerator: 'kvm', instances: { running: 2, suspended: 0, snapshotted: 3 }, sandboxes: 2, max_instances: 4 },
  ...changes,
});

test('a node row: state, address, memory, driver with its accelerator, instances, heartbeat age', () => {
  assert.deepEqual(nodeRow(node(), NOW), {
    name: 'node-1',
    state: 'ready',
    advertise: 'http://10.0.0.5:4000',
    version: '0.1.0',
    memory: '9000/16384 MiB free',
    cpus: '8',
    driver: 'microvm (kvm)',
    instances: '2 running, 3 snapshotted',
    sandboxes: '2/4',
    heartbeat: '1s ago',
    drain: '',
  });
  const idle = nodeRow(node({ state: 'lost', live: false, capacity: { ...node().capacity, driver: 'auto', accelerator: 'unknown', instances: {} } }), NOW);
  assert.deepEqual([idle.state, idle.driver, idle.instances], ['lost', 'auto', '0']);
  const uncapped = nodeRow(node({ capacity: { ...node().capacity, sandboxes: 5, max_instances: 0 } }), NOW);
  assert.equal(uncapped.sandboxes, '5', 'no cap: the count alone');
});

test('heartbeat ages read in seconds, minutes, then hours', () => {
  assert.equal(ago('2026-12-06T12:00:00.000Z', NOW), '0s ago');
  assert.equal(ago('2026-12-06T11:58:01.000Z', NOW), '119s ago');
  assert.equal(ago('2026-12-06T11:30:00.000Z', NOW), '30m ago');
  assert.equal(ago('2026-12-06T07:00:00.000Z', NOW), '5h ago');
  assert.equal(ago('2026-12-06T12:00:05.000Z', NOW), '0s ago', 'a clock a little ahead is not a negative age');
});

test("a draining node's progress: apps left to move, then pinned apps with volumes", () => {
  assert.equal(nodeRow(node({ state: 'draining', draining: true, apps: { to_move: 2, pinned: [] } }), NOW).drain, '2 apps to move');
  assert.equal(drainText({ apps: { to_move: 1, pinned: ['db.shop'] } }), '1 app to move, pinned (volumes): db.shop');
  assert.equal(drainText({ apps: { to_move: 0, pinned: ['db.shop', 'files.shop'] } }), 'nothing left to move, pinned (volumes): db.shop, files.shop');
  assert.equal(drainText({}), '', 'a node that is not draining shows nothing');
});
