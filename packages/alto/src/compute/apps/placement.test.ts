/**
 * The local placement before any start: nothing is probed (so `alto up` with no apps stays
 * quick), its status says the driver is chosen when the first app starts, it claims no snapshots,
 * and closing it starts nothing. With a node cap (ALTO_MAX_INSTANCES), on a driver of the test's:
 * starts within it run here, boots past it go to another node or are refused, restores stay.
 * (Starts placed on real drivers: test/apps*.e2e.test.ts; across nodes: test/cluster-placement.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { AltoError } from '../../kit/errors.js';
import type { Instance, InstanceExit, SandboxDescription, SandboxDriver, SandboxSpec } from '../sandbox/index.js';
import { LocalPlacement, type StartRequest } from './placement.js';

test('nothing is probed before the first start', async () => {
  const placement = new LocalPlacement({ sandbox: 'process', dataDir: '/nonexistent/alto-placement-test', log: pino({ level: 'silent' }) });
  assert.deepEqual(placement.status(), { choice: 'process', probed: false, reason: 'chosen when the first app starts (no app has run yet)' });
  assert.equal(placement.canSnapshot, false);
  await placement.close();
});

/** A driver whose instances are plain objects that exit when told. */
function fakeDriver() {
  const started: { spec: SandboxSpec; exit: (exit: InstanceExit) => void }[] = [];
  let restored = 0;
  const instance = (spec: SandboxSpec | undefined): Instance => {
    let exit!: (exit: InstanceExit) => void;
    const exited = new Promise<InstanceExit>((resolve) => (exit = resolve));
    if (spec) started.push({ spec, exit });
    else restored += 1;
    return { id: `i${started.length + restored}`, driver: 'process', host: '127.0.0.1', port: 1, exited, stop: async () => (exit({ code: 0, reason: 'stopped' }), exited) } as unknown as Instance;
  };
  const description: SandboxDescription = { driver: 'process', accelerator: 'none', reason: 'a test', capabilities: { suspend: true, snapshot: false, outbound: false } };
  const driver = {
    name: 'process',
    probe: async () => description,
    describe: async () => description,
    start: async (spec: SandboxSpec) => instance(spec),
    restore: async () => instance(undefined),
    close: async () => undefined,
  } as unknown as SandboxDriver;
  return { driver, description, started, restoredCount: () => restored };
}

const spec = (more: Partial<SandboxSpec> = {}): SandboxSpec => ({ rootfs: '/r', entrypoint: [], cmd: ['x'], env: {}, port: 8080, memoryMiB: 64, cpus: 1, ...more });
const start: StartRequest = { projectId: 'p1', app: 'web', version: 1, digest: `sha256:${'a'.repeat(64)}`, image: 'r/web:v1' };

test('within the cap starts run here; past it boots go to another node, and without one they are refused with 503', async () => {
  const fake = fakeDriver();
  const placement = new LocalPlacement({ sandbox: 'process', dataDir: '/nonexistent/alto-placement-test', maxInstances: 2, log: pino({ level: 'silent' }), choose: async () => fake });
  const driver = await placement.place(start);
  await driver.start(spec());
  await driver.start(spec());
  assert.equal(placement.sandboxes, 2);
  await assert.rejects(driver.start(spec()), (error: AltoError) => error.status === 503 && /as many instances as it may \(2/.test(error.detail));

  const remoteStarts: StartRequest[] = [];
  const remoteInstance = { id: 'r1' } as Instance;
  placement.placeOnOtherNodes({ start: async (request) => (remoteStarts.push(request), remoteInstance) });
  assert.equal(await driver.start(spec()), remoteInstance, 'past the cap, another node runs it');
  assert.deepEqual(remoteStarts, [start]);
  assert.equal(placement.sandboxes, 2, 'an instance on another node is not in this node\'s count');
  // Volumes and links live on this node: such an instance never goes elsewhere.
  await assert.rejects(driver.start(spec({ volumes: [{ dir: '/v', path: '/data' }] })), (error: AltoError) => error.status === 503 && /volumes or links/.test(error.detail));
  // Restores stay here (their snapshot is here) and count.
  await driver.restore('/snap');
  assert.equal(placement.sandboxes, 3);
  // Another node's start is held to the cap too.
  await assert.rejects(placement.host(spec()), (error: AltoError) => error.status === 503);

  // An instance that exits frees its room.
  fake.started[0].exit({ code: 0, reason: 'exited' });
  fake.started[1].exit({ code: 0, reason: 'exited' });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(placement.sandboxes, 1);
  await placement.host(spec());
  assert.equal(placement.sandboxes, 2);
  assert.equal(fake.started.length, 3);
  await placement.close();
});

test('with no cap every start runs here, another node or not', async () => {
  const fake = fakeDriver();
  const placement = new LocalPlacement({ sandbox: 'process', dataDir: '/nonexistent/alto-placement-test', log: pino({ level: 'silent' }), choose: async () => fake });
  placement.placeOnOtherNodes({ start: async () => assert.fail('no start goes elsewhere without a cap') });
  const driver = await placement.place(start);
  for (let i = 0; i < 5; i++) await driver.start(spec());
  assert.equal(placement.sandboxes, 5);
  assert.equal(placement.maxInstances, 0);
  await placement.close();
});
