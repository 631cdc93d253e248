/**
 * What Get, Status, List and Resolve answer, with stand-in records and runtimes: an app this
 * node runs shows its runtime's status (or the change Update or Delete makes), a ready
 * instance's address, its slots, restarts and last exit; one another node runs shows what the
 * store last heard; Get and Resolve name the app that is not here (404, or the other node's
 * 503); Resolve needs a ready instance; withFrozen asks each slot's instance.
 * (Real apps: test/apps*.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errors, isAltoError } from '../../kit/errors.js';
import type { AppRecord, AppRecords, InstanceRecord } from './records.js';
import type { AppRuntime } from './runtime.js';
import { AppViews } from './status.js';

const owner = { projectId: 'p1', projectName: 'shop' };

function appOf(name: string, status = 'running'): AppRecord {
  return { id: `id-${name}`, name, projectId: 'p1', projectName: 'shop', environment: 'dev', status, version: 2, node: 'node-a' } as AppRecord;
}

function runtimeOf(app: AppRecord, busy?: string): AppRuntime {
  const slot = { state: 'running', instance: { id: 'i1', host: '10.0.0.2', port: 8080, isFrozen: async () => true }, inFlight: 1, stateSince: 5, origin: 'boot' };
  const asleep = { state: 'suspended', instance: { id: 'i2', host: '10.0.0.3', port: 8080, isFrozen: async () => true }, inFlight: 0, stateSince: 6, origin: 'ready_snapshot' };
  return {
    app,
    busy,
    tcp: {},
    restarts: 3,
    lastExit: { instance: 'i0', version: 2, code: 1, reason: 'exited', at: 4 },
    serving: { slots: [slot, asleep] },
    pickSlot: () => slot,
    liveStatus: () => 'crashing',
  } as unknown as AppRuntime;
}

function viewsOf(here: AppRecord[], elsewhere: AppRecord[], runtimes: AppRuntime[]): AppViews {
  const all = [...here, ...elsewhere];
  const records = {
    hereByName: (projectId: string, name: string) => here.find((app) => app.projectId === projectId && app.name === name),
    hereById: (id: string) => here.find((app) => app.id === id),
    findByName: async (projectId: string, name: string) => all.find((app) => app.projectId === projectId && app.name === name),
    findById: async (id: string) => all.find((app) => app.id === id),
    listOfProject: async (projectId: string) => all.filter((app) => app.projectId === projectId),
    instancesHere: (appId: string) => [{ id: 'i1', appId }] as InstanceRecord[],
    instancesOf: async (appId: string) => [{ id: 'recorded', appId }] as InstanceRecord[],
  } as unknown as AppRecords;
  return new AppViews({
    records,
    runtimes: new Map(runtimes.map((runtime) => [runtime.app.id, runtime])),
    appUrl: (app) => `http://${app.name}.${app.projectName}.localhost`,
    runElsewhere: (app) => errors.unavailable(`app "${app.name}" runs on node ${app.node}`),
  });
}

test("an app here shows its runtime's state; one another node runs shows what the store last heard", async () => {
  const web = appOf('web');
  const api = { ...appOf('api', 'deploying'), node: 'node-b', tcpPort: 15432 };
  const views = viewsOf([web], [api], [runtimeOf(web)]);
  const state = views.get(owner, 'web');
  assert.deepEqual([state.status, state.url, state.backend, state.restarts, state.lastExit?.reason], ['crashing', 'http://web.shop.localhost', 'http://10.0.0.2:8080', 3, 'exited']);
  assert.deepEqual(state.slots, [
    { state: 'running', instance: 'i1', inFlight: 1, since: 5, origin: 'boot' },
    { state: 'suspended', instance: 'i2', inFlight: 0, since: 6, origin: 'ready_snapshot' },
  ]);
  assert.deepEqual(state.instances.map((instance) => instance.id), ['i1']);
  const listed = await views.list(owner);
  assert.deepEqual(listed.map((entry) => [entry.record.name, entry.status, entry.backend, entry.tcpPort, entry.instances[0].id]), [
    ['web', 'crashing', 'http://10.0.0.2:8080', undefined, 'i1'],
    ['api', 'deploying', '', 15432, 'recorded'],
  ]);
  assert.equal((await views.describe(owner, 'api')).status, 'deploying');
  await assert.rejects(views.describe(owner, 'nope'), (error) => isAltoError(error) && error.status === 404);
  assert.throws(() => views.get(owner, 'api'), (error) => isAltoError(error) && error.status === 404 && /on this node/.test(error.detail));
});

test('while Update or Delete works on an app, its status says so', () => {
  const web = appOf('web');
  assert.equal(viewsOf([web], [], [runtimeOf(web, 'updating')]).get(owner, 'web').status, 'updating');
  assert.equal(viewsOf([web], [], [runtimeOf(web, 'deleting')]).get(owner, 'web').status, 'deleting');
  assert.equal(viewsOf([web], [], [runtimeOf(web, 'deploying')]).get(owner, 'web').status, 'running', 'the recorded status while deploying');
});

test("Resolve gives a ready instance's address by id or name; another node's app is its 503, a missing one a 404", async () => {
  const web = appOf('web');
  const api = { ...appOf('api'), node: 'node-b' };
  const views = viewsOf([web, appOf('idle')], [api], [runtimeOf(web)]);
  assert.deepEqual(await views.resolve(owner, 'web'), { url: 'http://10.0.0.2:8080', app: web, publicUrl: 'http://web.shop.localhost' });
  assert.equal((await views.resolve(owner, 'id-web')).url, 'http://10.0.0.2:8080');
  await assert.rejects(views.resolve(owner, 'api'), (error) => isAltoError(error) && error.status === 503 && /node node-b/.test(error.detail));
  await assert.rejects(views.resolve(owner, 'nope'), (error) => isAltoError(error) && error.status === 404);
  await assert.rejects(views.resolve(owner, 'idle'), (error) => isAltoError(error) && error.status === 503 && /no instance ready/.test(error.detail));
  await assert.rejects(views.resolve({ projectId: 'p2', projectName: 'other' }, 'id-web'), (error) => isAltoError(error) && error.status === 404, "another project's id is not found");
  await assert.rejects(
    views.resolve({ projectId: 'p1', projectName: 'shop', environment: 'staging' }, 'id-web'),
    (error) => isAltoError(error) && error.status === 404,
    "another environment's id is not found",
  );
});

test("withFrozen asks each slot's instance whether it is frozen", async () => {
  const web = appOf('web');
  const views = viewsOf([web], [], [runtimeOf(web)]);
  const state = await views.withFrozen(views.get(owner, 'web'));
  assert.deepEqual(state.slots.map((slot) => slot.frozen), [true, true]);
});
