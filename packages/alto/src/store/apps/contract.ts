/**
 * @module store/apps/contract
 * The behaviour every apps store adapter must have, as one node:test suite;
 * `apps.contract.test.ts` runs it per adapter. `other` is a second store on the same data, as
 * another process would open it: names and addresses stay unique across the two, and each
 * unowned app goes to one node.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { KEPT_INSTANCE_ROWS, UNOWNED, type AppStore, type InstanceRecord, type StoredApp } from './port.js';

export interface AppsAdapterUnderTest {
  store: AppStore;
  /** Another store on the same data, as a second process sees it. */
  other: AppStore;
  /** Removes whatever the suite left behind (a database file, a database). */
  dispose(): Promise<void>;
}

export function runAppStoreContract(name: string, open: () => Promise<AppsAdapterUnderTest>): void {
  describe(`apps store contract: ${name}`, () => {
    let adapter: AppsAdapterUnderTest;
    let store: AppStore;
    const run = randomBytes(4).toString('hex');
    const unique = (label: string) => `${label}-${run}`;
    const app = (projectId: string, appName: string, changes: Partial<StoredApp> = {}): StoredApp => ({
      id: unique(`${projectId}-${appName}`),
      projectId,
      projectName: `name-of-${projectId}`,
      environment: 'dev',
      name: appName,
      node: 'node-a',
      image: 'registry.example/web:v1',
      digest: `sha256:${'a'.repeat(64)}`,
      settings: '{"port":8080,"hidden_env":{"env":{"KEY":"sealed:ünïcødé 🚀"}}}',
      version: 1,
      status: 'deploying',
      createdAt: 1_700_000_000_000,
      updatedAt: 1_700_000_000_000,
      ...changes,
    });
    const instance = (appId: string, id: string, changes: Partial<InstanceRecord> = {}): InstanceRecord => ({
      id: unique(id),
      appId,
      version: 1,
      state: 'running',
      driver: 'process',
      startedAt: 1_800_000_000_000,
      ...changes,
    });

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(() => adapter.dispose());

    test('insert, get by id, name and address, exactly as given; save and status changes; remove', async () => {
      const project = unique('basic');
      const web = app(project, 'web', { tcpPort: 5432 });
      assert.equal(await store.insert(web), true);
      assert.deepEqual(await store.get(web.id), web);
      assert.deepEqual(await adapter.other.findByName(project, 'dev', 'web'), web);
      assert.deepEqual(await store.findByAddress(web.projectName, 'dev', 'web'), web);
      assert.equal(await store.findByName(project, 'staging', 'web'), undefined, 'another environment of the project has no such app');
      assert.equal(await store.findByAddress(web.projectName, 'staging', 'web'), undefined);
      assert.equal(await store.get(unique('missing')), undefined);
      assert.equal(await store.findByName(project, 'dev', 'missing'), undefined);

      const next = { ...web, image: 'registry.example/web:v2', digest: `sha256:${'b'.repeat(64)}`, settings: '{"port":9090}', version: 2, status: 'running' as const, error: 'last instance exited', updatedAt: 1_700_000_000_123 };
      await store.save({ ...next, node: 'ignored', name: 'ignored', tcpPort: undefined });
      const { tcpPort: _dropped, ...withoutPort } = next;
      assert.deepEqual(await adapter.other.get(web.id), { ...withoutPort }, 'save keeps the node and name; the TCP port as given');
      await store.setTcpPort(web.id, 40_001);
      await store.setStatus(web.id, 'crashing', 'exited with code 3', 1_700_000_000_999);
      assert.deepEqual(await store.get(web.id), { ...withoutPort, tcpPort: 40_001, status: 'crashing', error: 'exited with code 3', updatedAt: 1_700_000_000_999 });
      await store.setStatus(web.id, 'running', undefined, 1_700_000_001_000);
      assert.equal((await store.get(web.id))!.error, undefined);

      await store.remove(web.id);
      assert.equal(await adapter.other.get(web.id), undefined);
      assert.equal(await store.findByAddress(web.projectName, 'dev', 'web'), undefined);
      assert.equal(await store.insert(app(project, 'web', { id: unique('web-again') })), true, 'the name is free again');
    });

    test('a name is unique per project and an address cloud-wide, across processes, racing or not', async () => {
      const project = unique('names');
      assert.equal(await store.insert(app(project, 'api')), true);
      assert.equal(await adapter.other.insert(app(project, 'api', { id: unique('api-2') })), false, 'same project and name');
      assert.equal(
        await adapter.other.insert(app(unique('names-other'), 'api', { id: unique('api-3'), projectName: `name-of-${project}` })),
        false,
        'another project with the same name (same address)',
      );
      assert.equal(await store.get(unique('api-2')), undefined, 'nothing written');
      assert.equal(await store.insert(app(unique('names-third'), 'api', { id: unique('api-4') })), true, 'the same app name in another project');

      const racers = Array.from({ length: 8 }, (_, index) => (index % 2 ? adapter.other : store).insert(app(project, 'raced', { id: unique(`raced-${index}`) })));
      assert.equal((await Promise.all(racers)).filter(Boolean).length, 1, 'one of eight racing inserts wins');
    });

    test('a name is unique per project and environment: the same name in two environments, each found by its own', async () => {
      const project = unique('environments');
      const dev = app(project, 'web');
      const staging = app(project, 'web', { id: unique('web-staging'), environment: 'staging', image: 'registry.example/web:staging' });
      assert.equal(await store.insert(dev), true);
      assert.equal(await adapter.other.insert(staging), true, 'the same name in another environment of the project');
      assert.equal(await store.insert(app(project, 'web', { id: unique('web-staging-2'), environment: 'staging' })), false, 'same project, environment and name');
      assert.deepEqual(await store.findByName(project, 'staging', 'web'), staging);
      assert.deepEqual(await adapter.other.findByAddress(dev.projectName, 'staging', 'web'), staging);
      assert.deepEqual(await store.findByAddress(dev.projectName, 'dev', 'web'), dev);
      assert.deepEqual((await store.listOfProject(project, 'staging')).map((each) => each.id), [staging.id]);
      assert.deepEqual((await store.listOfProject(project, 'dev')).map((each) => each.id), [dev.id]);
      assert.deepEqual((await store.listOfProject(project)).map((each) => each.environment), ['dev', 'staging'], 'without an environment: all of them');
      assert.equal(await store.countOfProject(project), 2);
      await store.removeProject(project);
      assert.deepEqual(await store.listOfProject(project), []);
    });

    test('lists: a project by name in byte order, a node oldest first; count', async () => {
      const project = unique('lists');
      for (const [appName, createdAt, node] of [['b', 3, 'node-x'], ['a', 2, 'node-y'], ['Z', 1, 'node-x']] as const) {
        await store.insert(app(project, appName, { createdAt, updatedAt: createdAt, node: `${node}-${run}` }));
      }
      assert.deepEqual((await adapter.other.listOfProject(project)).map((each) => each.name), ['Z', 'a', 'b']);
      assert.deepEqual((await store.listOfNode(`node-x-${run}`)).map((each) => each.name), ['Z', 'b']);
      assert.deepEqual(await store.listOfNode(`node-none-${run}`), []);
      assert.equal(await store.countOfProject(project), 3);
      assert.equal(await store.countOfProject(unique('lists-none')), 0);
      assert.deepEqual(await store.listOfProject(unique('lists-none')), []);
    });

    test('unowned apps: each goes to exactly one of many racing adopters', async () => {
      const project = unique('adopt');
      for (let index = 0; index < 5; index++) await store.insert(app(project, `app-${index}`, { node: UNOWNED }));
      const nodes = Array.from({ length: 6 }, (_, index) => `adopter-${index}-${run}`);
      const counts = await Promise.all(nodes.map((node, index) => (index % 2 ? adapter.other : store).adoptUnowned(node)));
      assert.equal(counts.reduce((sum, count) => sum + count, 0), 5, `adopted: ${counts}`);
      const owners = (await store.listOfProject(project)).map((each) => each.node);
      assert.ok(owners.every((node) => nodes.includes(node)), owners.join());
      for (const [index, node] of nodes.entries()) assert.equal((await store.listOfNode(node)).length, counts[index]);
      assert.equal(await store.adoptUnowned(`late-${run}`), 0);
    });

    test("move: an app of a lost node goes to exactly one of the nodes that ask at once, only from the node that ran it", async () => {
      const project = unique('move');
      const moved = app(project, 'web', { node: `lost-${run}` });
      await store.insert(moved);
      const nodes = Array.from({ length: 6 }, (_, index) => `taker-${index}-${run}`);
      const results = await Promise.all(nodes.map((node, index) => (index % 2 ? adapter.other : store).move(moved.id, `lost-${run}`, node)));
      assert.equal(results.filter(Boolean).length, 1, `moved: ${results}`);
      const winner = nodes[results.indexOf(true)];
      assert.equal((await adapter.other.get(moved.id))?.node, winner);
      assert.equal(await store.move(moved.id, `lost-${run}`, `late-${run}`), false, 'no longer on the lost node');
      assert.equal(await store.move(unique('no-such-app'), winner, `late-${run}`), false);
    });

    test(`instances: newest first, insertion order among equal starts, limited, the newest ${KEPT_INSTANCE_ROWS} kept`, async () => {
      const owner = app(unique('instances'), 'web');
      await store.insert(owner);
      await store.addInstance(instance(owner.id, 'same-1', { startedAt: 5 }));
      await store.addInstance(instance(owner.id, 'same-2', { startedAt: 5 }));
      await store.addInstance(instance(owner.id, 'earlier', { startedAt: 4 }));
      assert.deepEqual((await adapter.other.instancesOf(owner.id, 10)).map((each) => each.id), [unique('same-2'), unique('same-1'), unique('earlier')]);
      assert.deepEqual(await store.instancesOf(owner.id, 1), [instance(owner.id, 'same-2', { startedAt: 5 })]);
      for (let index = 0; index < KEPT_INSTANCE_ROWS + 5; index++) await store.addInstance(instance(owner.id, `many-${index}`, { startedAt: 100 + index }));
      const kept = await store.instancesOf(owner.id, 1_000);
      assert.equal(kept.length, KEPT_INSTANCE_ROWS);
      assert.equal(kept[0].id, unique(`many-${KEPT_INSTANCE_ROWS + 4}`));
      assert.equal(kept.at(-1)!.id, unique('many-5'));

      await store.addInstance(instance(unique('no-such-app'), 'orphan'));
      assert.deepEqual(await store.instancesOf(unique('no-such-app'), 10), [], 'no instance for an app that is gone');
    });

    test('instance states and exits; a node start ends only its own open instances', async () => {
      const mine = app(unique('exits'), 'web', { node: `node-a-${run}` });
      const theirs = app(unique('exits'), 'api', { node: `node-b-${run}` });
      await store.insert(mine);
      await store.insert(theirs);
      await store.addInstance(instance(mine.id, 'suspended', { startedAt: 1 }));
      await store.addInstance(instance(mine.id, 'crashed', { startedAt: 2 }));
      await store.addInstance(instance(mine.id, 'stopped', { startedAt: 3 }));
      await store.addInstance(instance(mine.id, 'snapshotted', { startedAt: 4 }));
      await store.addInstance(instance(theirs.id, 'theirs', { startedAt: 5 }));
      await store.setInstanceState(unique('suspended'), 'suspended');
      await adapter.other.endInstance(unique('crashed'), 'failed', { code: 3, reason: 'exited' }, 10);
      await store.endInstance(unique('stopped'), 'exited', { code: null, reason: 'stopped' }, 11);
      await store.endInstance(unique('snapshotted'), 'snapshotted', { code: null, reason: 'snapshotted to disk' }, 12);
      assert.deepEqual(await store.instancesOf(mine.id, 10), [
        instance(mine.id, 'snapshotted', { startedAt: 4, state: 'snapshotted', endedAt: 12, exitCode: null, exitReason: 'snapshotted to disk' }),
        instance(mine.id, 'stopped', { startedAt: 3, state: 'exited', endedAt: 11, exitCode: null, exitReason: 'stopped' }),
        instance(mine.id, 'crashed', { startedAt: 2, state: 'failed', endedAt: 10, exitCode: 3, exitReason: 'exited' }),
        instance(mine.id, 'suspended', { startedAt: 1, state: 'suspended' }),
      ]);
      await store.endOpenInstances(`node-a-${run}`, 'Alto stopped', 20);
      assert.deepEqual((await store.instancesOf(mine.id, 10)).at(-1), instance(mine.id, 'suspended', { startedAt: 1, state: 'exited', endedAt: 20, exitCode: null, exitReason: 'Alto stopped' }));
      assert.equal((await store.instancesOf(mine.id, 10))[2].exitReason, 'exited', 'ended instances keep their exit');
      assert.deepEqual(await store.instancesOf(theirs.id, 10), [instance(theirs.id, 'theirs', { startedAt: 5 })], "another node's instance runs on");
    });

    test('snapshots: replaced per slot, by version then slot, removed per version or all; with the app', async () => {
      const owner = app(unique('snapshots'), 'web');
      await store.insert(owner);
      const snapshot = (version: number, slot: number, dir: string) => ({ appId: owner.id, version, slot, dir, createdAt: 1_800_000_000_000 + version });
      await store.saveSnapshot(snapshot(2, 1, '/data/v2-1'));
      await store.saveSnapshot(snapshot(1, 0, '/data/v1-0'));
      await store.saveSnapshot(snapshot(2, -1, '/data/v2-ready'));
      await adapter.other.saveSnapshot(snapshot(2, 1, '/data/v2-1-again'));
      assert.deepEqual(await store.snapshotsOf(owner.id), [snapshot(1, 0, '/data/v1-0'), snapshot(2, -1, '/data/v2-ready'), snapshot(2, 1, '/data/v2-1-again')]);
      await store.removeSnapshots(owner.id, 1);
      assert.deepEqual((await store.snapshotsOf(owner.id)).map((each) => each.dir), ['/data/v2-ready', '/data/v2-1-again']);
      await store.removeSnapshots(owner.id);
      assert.deepEqual(await store.snapshotsOf(owner.id), []);
      await store.saveSnapshot(snapshot(3, 0, '/data/v3-0'));
      await store.remove(owner.id);
      assert.deepEqual(await store.snapshotsOf(owner.id), [], 'removing the app forgets its snapshots');
    });

    test('reservations: created, replaced, per address', async () => {
      const reservation = { projectName: unique('shop'), name: 'web', projectId: unique('p1'), createdAt: 1, expiresAt: 1_900_000_000_000 };
      assert.equal(await store.reservation(reservation.projectName, 'web'), undefined);
      await store.reserve(reservation);
      assert.deepEqual(await adapter.other.reservation(reservation.projectName, 'web'), reservation);
      const replaced = { ...reservation, projectId: unique('p2'), createdAt: 2, expiresAt: 1_900_000_000_001 };
      await adapter.other.reserve(replaced);
      assert.deepEqual(await store.reservation(reservation.projectName, 'web'), replaced);
      assert.equal(await store.reservation(reservation.projectName, 'api'), undefined);
    });

    test('removeProject forgets that project’s apps, instances, snapshots and reservations only', async () => {
      const project = unique('gone');
      const neighbour = unique('gone0');
      const doomed = app(project, 'web');
      const kept = app(neighbour, 'web');
      for (const each of [doomed, kept]) {
        await store.insert(each);
        await store.addInstance(instance(each.id, `${each.projectId}-i`));
        await store.saveSnapshot({ appId: each.id, version: 1, slot: 0, dir: '/data/x', createdAt: 1 });
        await store.reserve({ projectName: each.projectName, name: 'later', projectId: each.projectId, createdAt: 1, expiresAt: 2 });
      }
      await adapter.other.removeProject(project);
      assert.deepEqual(await store.listOfProject(project), []);
      assert.deepEqual(await store.instancesOf(doomed.id, 10), []);
      assert.deepEqual(await store.snapshotsOf(doomed.id), []);
      assert.equal(await store.reservation(doomed.projectName, 'later'), undefined);
      assert.equal((await store.listOfProject(neighbour)).length, 1);
      assert.equal((await store.instancesOf(kept.id, 10)).length, 1);
      assert.equal((await store.snapshotsOf(kept.id)).length, 1);
      assert.ok(await store.reservation(kept.projectName, 'later'));
    });
  });
}
