/**
 * Rollouts with a stand-in driver, images, records and scheduler: Update starts the new version
 * while the old one serves, moves traffic only once it is ready, then stops the old one and
 * records the new; a new version that never becomes ready is stopped, answered with a 400 that
 * says why, and the old one keeps serving; with volumes the old version stops first (one user at
 * a time) and is put back when the new one fails. At a start of Alto a version comes back with
 * the slots it had snapshotted left so until their next request, unless the snapshots are not
 * this node's. (Real drivers, with requests during the switch: test/apps.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { isAltoError } from '../../kit/errors.js';
import type { ImageManager } from '../images/manager.js';
import type { ImageSpec } from '../images/spec.js';
import type { Instance, InstanceExit, SandboxDriver, SandboxSpec } from '../sandbox/index.js';
import type { ComputeMeter } from './metering.js';
import type { Placement } from './placement.js';
import type { AppRecord, AppRecords, AppSettings } from './records.js';
import { Rollouts } from './rollout.js';
import type { RootFilesystems } from './rootfs.js';
import { AppRuntime, type ExchangeMeter, type RuntimeScheduler } from './runtime.js';
import { AppSpecs, settingsOf } from './spec.js';

const dataDir = mkdtempSync(join(tmpdir(), 'alto-rollout-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });
const owner = { projectId: 'p1', projectName: 'shop', admin: false };
const image: ImageSpec = { os: 'linux', architecture: 'amd64', entrypoint: [], cmd: ['serve'], env: {}, workingDir: '/', user: '', exposedPorts: [], volumes: [], labels: {} };

/** A driver whose instances start at once, unless the image's rootfs names a broken one; it tells what happened, in order. */
function driverOf(events: string[]): SandboxDriver {
  let count = 0;
  return {
    async start(spec: SandboxSpec): Promise<Instance> {
      const id = `i${count++}`;
      if (spec.rootfs.includes('broken')) {
        events.push(`failed ${spec.rootfs}`);
        throw new Error('the app exited before it listened');
      }
      events.push(`started ${id} ${spec.rootfs}`);
      let end!: (exit: InstanceExit) => void;
      const exited = new Promise<InstanceExit>((resolve) => (end = resolve));
      return {
        id,
        driver: 'process',
        host: '10.0.0.2',
        port: 8080,
        state: 'running',
        exited,
        async stop() {
          events.push(`stopped ${id}`);
          end({ code: 0, reason: 'stopped' });
          return exited;
        },
      } as unknown as Instance;
    },
  } as unknown as SandboxDriver;
}

const scheduler = {
  startTurn: async () => () => undefined,
  slotStarted: () => undefined,
  slotExited: () => undefined,
  slotStartFailed: () => undefined,
  slotRestarting: () => undefined,
  scaleOut: () => false,
} as unknown as RuntimeScheduler;

function rolloutsOf(events: string[], snapshots: { version: number; slot: number; dir: string }[] = []): Rollouts {
  const placement = { place: async () => driverOf(events), canSnapshot: false } as unknown as Placement;
  const records = {
    save: async (app: AppRecord) => events.push(`saved version ${app.version}`),
    snapshotsOf: async () => snapshots,
    removeSnapshots: async () => undefined,
    hereByName: () => undefined,
  } as unknown as AppRecords;
  const images = {
    inspect: (digest: string) => ({ digest, spec: image }),
    addUser: () => undefined,
    removeUser: (digest: string) => events.push(`unused ${digest}`),
  } as unknown as ImageManager;
  const rootfs = {
    imageFor: async (_owner: unknown, reference: string) => ({ digest: reference, spec: image }),
    ensure: async (digest: string) => `/rootfs/${digest}`,
    dropIfUnused: async () => undefined,
  } as unknown as RootFilesystems;
  const specs = new AppSpecs({ dataDir, records, placement, gateway: {} as never, platformPort: () => undefined });
  return new Rollouts({
    dataDir,
    log,
    records,
    images,
    rootfs,
    placement,
    meter: { assertCaps: async () => undefined } as unknown as ComputeMeter,
    specs,
    scheduler: {
      positions: (settings: AppSettings) => Math.max(1, settings.min_instances) + settings.pool,
      sleepsWhenIdleAt: (app: AppRecord) => app.settings.min_instances === 0,
    },
    graceMs: 100,
    reopenTcp: async () => undefined,
  });
}

/** An app serving version 1 of `digest`. */
async function servingApp(rollouts: Rollouts, settings: Partial<AppSettings> = {}): Promise<{ runtime: AppRuntime; app: AppRecord }> {
  const app = { id: 'id-web', name: 'web', projectId: 'p1', projectName: 'shop', node: 'node-a', image: 'good', digest: 'good', version: 1, status: 'running', settings: { ...settingsOf({}, undefined, image), ...settings } } as AppRecord;
  const runtime = new AppRuntime(app, scheduler, log, {} as ExchangeMeter);
  const version = rollouts.newVersion(runtime, app, image, '/rootfs/good');
  await rollouts.startVersion(runtime, version);
  runtime.serve(version);
  return { runtime, app };
}

test('Update: the new version starts while the old serves, traffic moves once it is ready, then the old one stops', async () => {
  const events: string[] = [];
  const rollouts = rolloutsOf(events);
  const { runtime, app } = await servingApp(rollouts);
  const old = runtime.serving;
  const next = await rollouts.update(owner, runtime, app, { name: 'web', image: 'better' });
  assert.deepEqual(events, ['started i0 /rootfs/good', 'started i0 /rootfs/better', 'saved version 2', 'stopped i0', 'unused good']);
  assert.deepEqual([next.version, next.digest, next.status, runtime.app, runtime.candidate], [2, 'better', 'running', next, undefined]);
  assert.notEqual(runtime.serving, old);
  assert.equal(runtime.serving?.version, 2);
  assert.deepEqual(old?.slots.map((slot) => slot.state), ['stopped']);
});

test('a new version that never becomes ready is stopped and answered with a 400; the old one keeps serving', async () => {
  const events: string[] = [];
  const rollouts = rolloutsOf(events);
  const { runtime, app } = await servingApp(rollouts);
  const old = runtime.serving;
  await assert.rejects(rollouts.update(owner, runtime, app, { name: 'web', image: 'broken' }), (error) => isAltoError(error) && error.status === 400 && /version 2 of app "web" did not become ready: the app exited before it listened/.test(error.detail));
  assert.equal(runtime.serving, old);
  assert.deepEqual([runtime.app.version, runtime.candidate, old?.slots[0].state], [1, undefined, 'running']);
  assert.ok(!events.includes('saved version 2'));
  assert.ok(runtime.tail(10).some((line) => /update to version 2 failed; version 1 keeps serving/.test(line.line)));
});

test('with volumes the old version stops first, and is put back when the new one fails', async () => {
  const events: string[] = [];
  const rollouts = rolloutsOf(events);
  const { runtime, app } = await servingApp(rollouts, { volumes: [{ name: 'data', path: '/data' }] });
  await assert.rejects(rollouts.update(owner, runtime, app, { name: 'web', image: 'broken' }), (error) => isAltoError(error) && error.status === 400);
  assert.deepEqual(events.slice(0, 3), ['started i0 /rootfs/good', 'stopped i0', 'failed /rootfs/broken']);
  assert.equal(runtime.serving?.version, 1, 'a version 1 serves again');
  assert.equal(runtime.serving?.spec.rootfs, '/rootfs/good');
  events.length = 0;
  const next = await rollouts.update(owner, runtime, app, { name: 'web', image: 'better' });
  assert.equal(next.version, 2);
  assert.equal(events.indexOf('saved version 2') > events.findIndex((event) => event.startsWith('started') && event.endsWith('/rootfs/better')), true);
  assert.ok(events.findIndex((event) => event.startsWith('stopped')) < events.findIndex((event) => event.endsWith('/rootfs/better')), 'the old one stopped before the new one started');
});

test('at a start of Alto, a slot snapshotted before stays so until its next request; the others start; not with snapshots of another node', async () => {
  const dir = join(dataDir, 'snapshots', 'slot-0');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'snapshot.json'), '{}');
  const app = { id: 'id-web', name: 'web', projectId: 'p1', projectName: 'shop', node: 'node-a', image: 'good', digest: 'good', version: 3, status: 'running', settings: { ...settingsOf({ min_instances: 0, max_instances: 2, pool: 1 }, undefined, image) } } as AppRecord;
  const snapshots = [{ version: 3, slot: 0, dir }];
  const events: string[] = [];
  const runtime = new AppRuntime(app, scheduler, log, {} as ExchangeMeter);
  await rolloutsOf(events, snapshots).restart(runtime);
  assert.deepEqual(runtime.serving?.slots.map((slot) => slot.state === 'snapshotted'), [true, false], 'the first waits for its request, the spare starts');
  assert.equal(runtime.serving?.slots[0].snapshotDir, dir);
  assert.ok(runtime.tail(5).some((line) => /instance 1 stays snapshotted until its next request/.test(line.line)));
  const moved = new AppRuntime(app, scheduler, log, {} as ExchangeMeter);
  await rolloutsOf([], snapshots).restart(moved, false);
  assert.deepEqual(moved.serving?.slots.map((slot) => slot.state === 'snapshotted'), [false, false], "another node's snapshots are not restored here");
  await Promise.all([runtime.serving?.stop(100), moved.serving?.stop(100)]);
});
