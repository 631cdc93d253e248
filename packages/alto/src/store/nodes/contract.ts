/**
 * @module store/nodes/contract
 * The behaviour every nodes store adapter must have, as one node:test suite;
 * `nodes.contract.test.ts` runs it per adapter. `other` is a second store on the same data, as
 * another process would open it: a name taken in one is taken in the other, and of nodes racing
 * for one name in both exactly one gets it. Times are given, so nothing here waits on a clock.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import type { NodeCapacity, NodeHeartbeat, NodeStore } from './port.js';

export interface NodesAdapterUnderTest {
  store: NodeStore;
  /** Another store on the same data, as a second process sees it. */
  other: NodeStore;
  /** Removes whatever the suite left behind (a database file, a database). */
  dispose(): Promise<void>;
}

const LEASE_MS = 10_000;
const T0 = 1_800_000_000_000;

export function runNodesStoreContract(name: string, open: () => Promise<NodesAdapterUnderTest>): void {
  describe(`nodes store contract: ${name}`, () => {
    let adapter: NodesAdapterUnderTest;
    let store: NodeStore;
    const run = randomBytes(4).toString('hex');
    const nodeName = (label: string) => `${label}-${run}`;
    const capacity = (changes: Partial<NodeCapacity> = {}): NodeCapacity => ({
      memoryTotalMiB: 16_384,
      memoryFreeMiB: 9_000,
      cpus: 8,
      driver: 'process',
      accelerator: 'none',
      instances: { running: 2, suspended: 5 },
      sandboxes: 3,
      maxInstances: 4,
      ...changes,
    });
    const beat = (id: string, label: string, changes: Partial<NodeHeartbeat> = {}): NodeHeartbeat => ({
      id,
      name: nodeName(label),
      advertiseUrl: `http://10.0.0.1:4000/${id}`,
      version: '0.1.0',
      startedAt: T0 - 5_000,
      capacity: capacity(),
      ...changes,
    });
    const mine = async (at: number) => (await store.list(at)).filter((node) => node.name.endsWith(`-${run}`));
    const refusal = (label: string) => (error: unknown) =>
      isAltoError(error) && error.status === 409 && error.detail.includes(`"${nodeName(label)}"`) && /another live node/.test(error.detail);

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(() => adapter.dispose());

    test('heartbeat records a node with its capacity and lease; list shows it live until the lease ends', async () => {
      const stored = await store.heartbeat(beat('n-a', 'alpha', { capacity: capacity({ instances: { running: 1, 'ünïcødé': 3 } }) }), T0, LEASE_MS);
      assert.deepEqual(stored, {
        ...beat('n-a', 'alpha', { capacity: capacity({ instances: { running: 1, 'ünïcødé': 3 } }) }),
        heartbeatAt: T0,
        leaseExpiresAt: T0 + LEASE_MS,
        draining: false,
      });
      const [listed] = await mine(T0 + 1);
      assert.deepEqual(listed, { ...stored, live: true });
      assert.deepEqual(await adapter.other.find(nodeName('alpha'), T0 + LEASE_MS - 1), { ...stored, live: true }, 'seen by another process');
      assert.equal((await store.find(nodeName('alpha'), T0 + LEASE_MS))!.live, false, 'the lease ends at its expiry');
      assert.equal(await store.find(nodeName('nobody'), T0), undefined);

      const renewed = await store.heartbeat(beat('n-a', 'alpha', { advertiseUrl: 'http://10.0.0.9:4000', capacity: capacity({ memoryFreeMiB: 100 }) }), T0 + 2_000, LEASE_MS);
      assert.equal(renewed.leaseExpiresAt, T0 + 2_000 + LEASE_MS);
      assert.equal(renewed.heartbeatAt, T0 + 2_000);
      assert.equal(renewed.advertiseUrl, 'http://10.0.0.9:4000');
      assert.equal(renewed.capacity.memoryFreeMiB, 100);
      assert.equal((await mine(T0)).length, 1, 'one row per node id');
    });

    test('list is by name, every node, live computed at the time asked', async () => {
      await store.heartbeat(beat('n-c', 'list-c'), T0, LEASE_MS);
      await adapter.other.heartbeat(beat('n-b', 'list-b'), T0 + 5_000, LEASE_MS);
      const at = T0 + LEASE_MS + 1;
      const listed = (await store.list(at)).filter((node) => node.name.startsWith('list-') && node.name.endsWith(run));
      assert.deepEqual(listed.map((node) => [node.name, node.live]), [[nodeName('list-b'), true], [nodeName('list-c'), false]]);
    });

    test('a name held by another live node is refused, in either process; a lapsed holder gives it up', async () => {
      await store.heartbeat(beat('n-holder', 'taken'), T0, LEASE_MS);
      await assert.rejects(adapter.other.heartbeat(beat('n-intruder', 'taken'), T0 + LEASE_MS - 1, LEASE_MS), refusal('taken'));
      await assert.rejects(store.heartbeat(beat('n-intruder', 'taken'), T0 + 1, LEASE_MS), /n-holder/, 'the refusal names the holder');
      assert.equal((await store.find(nodeName('taken'), T0))!.id, 'n-holder', 'the holder keeps it');
      // The holder restarting (same id) keeps its name even while its old lease runs.
      await store.heartbeat(beat('n-holder', 'taken', { startedAt: T0 + 3 }), T0 + 3, LEASE_MS);
      assert.equal((await store.find(nodeName('taken'), T0 + 3))!.startedAt, T0 + 3);

      const taken = await adapter.other.heartbeat(beat('n-successor', 'taken'), T0 + 3 + LEASE_MS, LEASE_MS);
      assert.equal(taken.id, 'n-successor', 'the lease lapsed: the name passes');
      assert.deepEqual((await mine(T0 + 3 + LEASE_MS)).filter((node) => node.name === nodeName('taken')).map((node) => node.id), ['n-successor']);
    });

    test('of nodes racing for one name in two processes, exactly one gets it', async () => {
      const racers = Array.from({ length: 10 }, (_, index) => `n-racer-${index}`);
      const results = await Promise.allSettled(
        racers.map((id, index) => (index % 2 ? adapter.other : store).heartbeat(beat(id, 'race'), T0, LEASE_MS)),
      );
      const winners = results.filter((result) => result.status === 'fulfilled');
      assert.equal(winners.length, 1, JSON.stringify(results.map((result) => result.status)));
      for (const result of results) if (result.status === 'rejected') assert.ok(refusal('race')(result.reason), String(result.reason));
      assert.equal((await store.find(nodeName('race'), T0))!.id, (winners[0] as PromiseFulfilledResult<{ id: string }>).value.id);
    });

    test('a node may change its name; the old one is free at once', async () => {
      await store.heartbeat(beat('n-renamer', 'old-name'), T0, LEASE_MS);
      await store.heartbeat(beat('n-renamer', 'new-name'), T0 + 1, LEASE_MS);
      assert.equal(await store.find(nodeName('old-name'), T0 + 1), undefined);
      assert.equal((await store.find(nodeName('new-name'), T0 + 1))!.id, 'n-renamer');
      assert.equal((await adapter.other.heartbeat(beat('n-newcomer', 'old-name'), T0 + 2, LEASE_MS)).id, 'n-newcomer');
    });

    test('draining: set and cleared by name, kept across heartbeats and restarts; undefined for an unknown name', async () => {
      await store.heartbeat(beat('n-drain', 'drain'), T0, LEASE_MS);
      const drained = await adapter.other.setDraining(nodeName('drain'), true, T0 + 1);
      assert.equal(drained!.draining, true);
      assert.equal(drained!.live, true);
      await store.heartbeat(beat('n-drain', 'drain', { startedAt: T0 + 2 }), T0 + 2, LEASE_MS);
      assert.equal((await store.find(nodeName('drain'), T0 + 2))!.draining, true, 'a heartbeat, even from a restart, keeps it');
      assert.equal((await store.setDraining(nodeName('drain'), false, T0 + 3))!.draining, false);
      assert.equal((await adapter.other.find(nodeName('drain'), T0 + 3))!.draining, false);
      assert.equal(await store.setDraining(nodeName('no-such-node'), true, T0), undefined);
    });

    test('leave ends the lease at once and marks the node as gone; its next heartbeat brings it back', async () => {
      await store.heartbeat(beat('n-leaver', 'leaver'), T0, LEASE_MS);
      await adapter.other.leave('n-leaver', T0 + 100);
      const left = (await store.find(nodeName('leaver'), T0 + 100))!;
      assert.equal(left.live, false);
      assert.equal(left.leftAt, T0 + 100);
      assert.equal(left.leaseExpiresAt, T0 + 100);
      assert.equal((await store.heartbeat(beat('n-other', 'leaver'), T0 + 101, LEASE_MS)).id, 'n-other', 'its name is free at once');
      const back = await store.heartbeat(beat('n-leaver', 'leaver-again'), T0 + 200, LEASE_MS);
      assert.equal(back.leftAt, undefined);
      assert.equal((await store.find(nodeName('leaver-again'), T0 + 200))!.live, true);
      await store.leave('n-unknown', T0);
    });

    test('remove: a lapsed node goes, a live one stays, an unknown name is missing', async () => {
      await store.heartbeat(beat('n-remove', 'remove'), T0, LEASE_MS);
      assert.equal(await adapter.other.remove(nodeName('remove'), T0 + 1), 'live');
      assert.ok(await store.find(nodeName('remove'), T0 + 1));
      assert.equal(await adapter.other.remove(nodeName('remove'), T0 + LEASE_MS), 'removed');
      assert.equal(await store.find(nodeName('remove'), T0 + LEASE_MS), undefined);
      assert.equal(await store.remove(nodeName('remove'), T0 + LEASE_MS), 'missing');
    });
  });
}
