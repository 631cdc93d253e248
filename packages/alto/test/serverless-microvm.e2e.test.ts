/**
 * The serverless lifecycle on microVMs (issue 8; QEMU under tcg here, so this file stays lean): an
 * app with `min_instances: 0` is paused once ready (QEMU's own run state says so), a request wakes
 * it, it pauses again after `idle_timeout`; suspended past ALTO_SNAPSHOT_AFTER_MS it is snapshotted
 * to disk and its QEMU ended, requests arriving while it is being snapshotted all succeed, the next
 * request restores it; and after a restart of Alto the snapshotted app comes back on its next
 * request. An app that may run more instances (pool spares, scale-out) boots its first one only:
 * the others are restored from the version's ready snapshot, and serve; at max_instances requests
 * queue, then get 503; the one added for load stops once idle. Requests arriving while an instance
 * is being suspended or snapshotted all succeed, an open websocket keeps its instance running, and
 * only running time is billed (an app asleep meanwhile is billed nothing). Under memory pressure
 * (Alto restarted with a memory reserve larger than the machine, and the default 10-minute snapshot
 * delay) a suspended instance is snapshotted at once, and restored on request; and a snapshot gone
 * from the disk gives way to a boot on the next request.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { billedMs, metricValue, openWebsocket, requestLoop, sleepyImage, slotsOf, type OpenWebsocket } from './serverless-fixture.js';

const PROJECT = 'vmsleep';
const HOST = `web.${PROJECT}.localhost`;
const SNAPSHOT_AFTER_MS = 2_000;

describe('serverless lifecycle (microvm sandbox)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let image: string;
  let appId = '';
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const env = { ALTO_SANDBOX_CACHE: cache.dir, ALTO_SNAPSHOT_AFTER_MS: String(SNAPSHOT_AFTER_MS), ALTO_USAGE_FLUSH_MS: '100' };
  const edgePort = () => Number(new URL(alto.url).port);
  const slot = async () => (await slotsOf(alto, key, 'web'))[0];
  const web = () => getThroughEdge(edgePort(), HOST);
  const metric = async (sample: string) => metricValue(await (await fetch(`${alto.url}/metrics`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).text(), sample);
  const billed = (app: string) => billedMs(alto, key, app);

  async function whenIn(state: 'suspended' | 'snapshotted'): Promise<void> {
    await eventually(
      async () => {
        const current = await slot();
        // Suspended: QEMU's run state says paused. Snapshotted: no instance (its QEMU ended).
        return current.state === state && (state === 'suspended' ? current.frozen === true : current.instance === '');
      },
      `the instance ${state}`,
      60_000,
    );
  }

  before(async () => {
    registry = await startRegistry();
    await registry.push('vmsleep/web', 'v1', await sleepyImage());
    image = `${registry.host}/vmsleep/web:v1`;
    alto = await startProcess({ dataDir, args: ['--sandbox', 'microvm'], env });
    key = await alto.projectKey(PROJECT, ['app', 'usage']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('paused once ready, woken by a request, paused again, snapshotted after a long idle, restored on request', async (t) => {
    const run = await alto.call('app', 'Run', { name: 'web', image, memory: 128, min_instances: 0, idle_timeout: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.equal(run.body.service.instances[0].driver, 'microvm');
    appId = run.body.service.id as string;
    await whenIn('suspended');

    const first = await web();
    assert.equal(first.status, 200);
    assert.equal(first.body, 'awake\n');
    assert.ok((await metric('alto_app_activations_total{from="suspended"}')) >= 1);
    await whenIn('suspended');

    // Requests sent while the snapshot is being written wait for it (and for the restore that
    // follows) and all succeed.
    const caught = await eventually(
      async () => {
        const current = await slot();
        return current.state === 'snapshotting' || current.state === 'snapshotted' ? current.state : undefined;
      },
      'the snapshot begun',
      SNAPSHOT_AFTER_MS + 10_000,
    );
    const during = await Promise.all(Array.from({ length: 5 }, () => web()));
    t.diagnostic(`requests sent while the slot was ${caught}`);
    assert.equal(caught, 'snapshotting', 'the requests were sent while the snapshot was being written');
    assert.deepEqual(
      during.map((result) => `${result.status} ${result.body}`),
      Array.from({ length: 5 }, () => '200 awake\n'),
    );
    assert.ok((await metric('alto_app_activations_total{from="snapshotted"}')) >= 1, 'restored after the snapshot');

    await whenIn('suspended');
    await whenIn('snapshotted');
    const instances = (await alto.call('app', 'Status', { name: 'web' }, key)).body.service.instances as { state: string }[];
    assert.ok(instances.some((instance) => instance.state === 'snapshotted'), JSON.stringify(instances));
    const restored = await web();
    assert.equal(restored.status, 200);
    assert.equal(restored.body, 'awake\n');
    assert.ok((await metric('alto_app_activations_total{from="snapshotted"}')) >= 1);
    const own = readdirSync(join(dataDir, 'apps', 'snapshots', appId)).filter((name) => name.startsWith('v1-0-'));
    assert.equal(own.length, 1, `one snapshot of the slot on disk, older ones removed: ${own.join(', ')}`);
    assert.ok(existsSync(join(dataDir, 'apps', 'snapshots', appId, own[0], 'snapshot.json')), 'the snapshot is on disk');
  });

  test('a restart of Alto keeps a snapshotted app; its next request restores it', async () => {
    await whenIn('snapshotted');
    assert.equal(await alto.stop('SIGTERM'), 0);
    alto = await startProcess({ dataDir, args: ['--sandbox', 'microvm'], env });
    const atStart = await slot();
    assert.equal(atStart.state, 'snapshotted', 'no boot at start: it waits for a request');
    const answer = await web();
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'awake\n');
    assert.ok((await metric('alto_app_activations_total{from="snapshotted"}')) >= 1);
    assert.equal((await alto.call('app', 'Delete', { name: 'web' }, key)).status, 200);
    assert.equal(existsSync(join(dataDir, 'apps', 'snapshots', appId)), false, 'the snapshot went with the app');
  });

  test('pool spares and scale-out are restored from the ready snapshot, not booted; at max_instances a bounded queue, then 503', async () => {
    const run = await alto.call('app', 'Run', { name: 'spares', image, memory: 128, min_instances: 0, pool: 1, max_instances: 3, concurrency: 1, idle_timeout: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const id = run.body.service.id as string;
    assert.ok(existsSync(join(dataDir, 'apps', 'snapshots', id, 'v1-ready', 'snapshot.json')), 'the ready snapshot is on disk');
    const asleep = await eventually(
      async () => {
        const slots = await slotsOf(alto, key, 'spares');
        return slots.length === 2 && slots.every((current) => current.state === 'suspended' && current.frozen === true) && slots;
      },
      'the instance and its spare, suspended',
      60_000,
    );
    assert.deepEqual(asleep.map((current) => current.origin), ['boot', 'ready_snapshot']);

    // Three exchanges held open at concurrency 1: the two sleepers wake, a third instance is added.
    const host = `spares.${PROJECT}.localhost`;
    const sockets: OpenWebsocket[] = [];
    for (let i = 0; i < 3; i++) sockets.push(await openWebsocket(edgePort(), host));
    const busy = await slotsOf(alto, key, 'spares');
    assert.deepEqual(busy.map((current) => [current.state, current.in_flight]), [['running', 1], ['running', 1], ['running', 1]]);
    assert.deepEqual(busy.map((current) => current.origin), ['boot', 'ready_snapshot', 'ready_snapshot'], 'the added instance is a copy of the ready snapshot');
    await eventually(async () => sockets.every((socket) => socket.ticks() > 0), 'each copy streams its answer');

    // At max_instances, all busy: requests wait in a queue as long as the capacity (1 × 3), one
    // more is turned away at once with Retry-After, and the queued ones are served once the
    // exchanges end.
    const queued = Array.from({ length: 3 }, () => getThroughEdge(edgePort(), host));
    await eventually(async () => (await metric('alto_app_queue_depth')) === 3, 'three requests queued');
    const refused = await getThroughEdge(edgePort(), host);
    assert.equal(refused.status, 503, refused.body);
    assert.equal(refused.headers['retry-after'], '1');
    await Promise.all(sockets.map((socket) => socket.close()));
    assert.deepEqual((await Promise.all(queued)).map((result) => [result.status, result.body]), Array.from({ length: 3 }, () => [200, 'awake\n']));
    // Load gone: the added instance stops once idle; the first one and its spare sleep on.
    const after = await eventually(
      async () => {
        const slots = await slotsOf(alto, key, 'spares');
        return slots.length === 2 && slots.every((current) => current.state === 'suspended') && slots;
      },
      'the added instance gone, the others suspended',
      30_000,
    );
    assert.deepEqual(after.map((current) => current.origin), ['boot', 'ready_snapshot']);
    assert.equal((await alto.call('app', 'Delete', { name: 'spares' }, key)).status, 200);
    assert.equal(existsSync(join(dataDir, 'apps', 'snapshots', id)), false, 'the ready snapshot went with the app');
  });

  test('requests around suspension and snapshot all succeed; an open websocket keeps the instance running; only running time is billed', async () => {
    const settings = { image, memory: 128, min_instances: 0, idle_timeout: 1 };
    // Another app that sleeps throughout: its bill must not grow.
    const [run, asleep] = await Promise.all([alto.call('app', 'Run', { name: 'around', ...settings }, key), alto.call('app', 'Run', { name: 'asleep', ...settings }, key)]);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.equal(asleep.status, 200, JSON.stringify(asleep.body));
    const host = `around.${PROJECT}.localhost`;
    const slotOf = async () => (await slotsOf(alto, key, 'around'))[0];
    await eventually(async () => (await slotOf()).state === 'suspended', 'around suspended', 60_000);
    const activations = async () =>
      (await metric('alto_app_activations_total{from="suspended"}')) + (await metric('alto_app_activations_total{from="snapshotted"}'));
    const before = await activations();
    // Bursts of 3 with gaps around idle_timeout (+ the idle check) and the 2 s snapshot delay:
    // they land while the instance runs, is being suspended, sleeps, or is being snapshotted.
    const seen = new Set<string>();
    const statuses = await requestLoop(
      1,
      8_000,
      async () => {
        seen.add((await slotOf()).state);
        const results = await Promise.all(Array.from({ length: 3 }, () => getThroughEdge(edgePort(), host)));
        return results.reduce((worst, result) => (result.status !== 200 ? result.status : worst), 200);
      },
      () => 900 + Math.random() * 1_500,
    );
    assert.ok(statuses.length >= 3, `${statuses.length} bursts`);
    assert.deepEqual(statuses.filter((status) => status !== 200), [], `every request answered 200 (states seen: ${[...seen].join(', ')})`);
    assert.ok((await activations()) - before >= 1, 'the instance was woken during the loop');

    await eventually(async () => (await slotOf()).state === 'suspended', 'around suspended again', 60_000);
    assert.ok(['suspended', 'snapshotted'].includes((await slotsOf(alto, key, 'asleep'))[0].state), 'the other app asleep');
    const asleepBilled = await billed('asleep');
    const aroundBilled = await billed('around');
    const socket = await openWebsocket(edgePort(), host);
    const ticks = socket.ticks();
    // Past three idle timeouts with the socket open, counted in ticks (one each 200 ms): still running.
    await eventually(async () => socket.ticks() >= ticks + 15, 'three seconds of ticks', 30_000);
    const during = await slotOf();
    assert.deepEqual([during.state, during.frozen, during.in_flight], ['running', false, 1]);
    // Its running seconds are billed meanwhile; the sleeping app's are not.
    await eventually(async () => (await billed('around')) >= aroundBilled + 2_000, 'two seconds of the open socket billed', 15_000);
    assert.equal(await billed('asleep'), asleepBilled, 'nothing billed while asleep');
    await socket.close();
    await eventually(async () => (await slotOf()).state === 'suspended', 'around suspended once the socket closed', 30_000);
    assert.equal((await alto.call('app', 'Delete', { name: 'around' }, key)).status, 200);
    assert.equal((await alto.call('app', 'Delete', { name: 'asleep' }, key)).status, 200);
  });

  test('under memory pressure a suspended instance is snapshotted without waiting for the long idle; a request restores it; a snapshot gone from the disk gives way to a boot', async () => {
    assert.equal(await alto.stop('SIGTERM'), 0);
    // A reserve no machine has: memory is always short. The snapshot delay is the default 10 minutes.
    alto = await startProcess({ dataDir, args: ['--sandbox', 'microvm'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_MEMORY_RESERVE_MB: String(1024 ** 3) } });
    key = await alto.projectKey(PROJECT, ['app']);
    const run = await alto.call('app', 'Run', { name: 'pressed', image, memory: 128, min_instances: 0, idle_timeout: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const host = `pressed.${PROJECT}.localhost`;
    const systemLines = async () =>
      ((await alto.call('app', 'Logs', { name: 'pressed', stream: 'system' }, key)).body.lines as { line: string }[]).map((line) => line.line);
    const snapshotted = async () => {
      const current = (await slotsOf(alto, key, 'pressed'))[0];
      return current.state === 'snapshotted' && current.instance === '';
    };
    await eventually(snapshotted, 'the suspended instance snapshotted', 60_000);
    assert.ok((await systemLines()).some((line) => /snapshotted to disk under memory pressure/.test(line)), (await systemLines()).join('\n'));

    const answer = await getThroughEdge(edgePort(), host);
    assert.deepEqual([answer.status, answer.body], [200, 'awake\n']);
    assert.ok((await metric('alto_app_activations_total{from="snapshotted"}')) >= 1, 'restored from the snapshot');
    // Idle again and memory still short: suspended, then snapshotted again.
    await eventually(snapshotted, 'snapshotted again once idle', 60_000);

    // A snapshot gone from the disk can never be restored: the next request boots the app afresh.
    rmSync(join(dataDir, 'apps', 'snapshots', run.body.service.id as string), { recursive: true, force: true });
    const afterLoss = await getThroughEdge(edgePort(), host);
    assert.deepEqual([afterLoss.status, afterLoss.body], [200, 'awake\n']);
    assert.equal((await slotsOf(alto, key, 'pressed'))[0].origin, 'boot');
    assert.ok((await systemLines()).some((line) => /snapshot cannot be restored, booting instead/.test(line)), (await systemLines()).join('\n'));
    assert.equal((await alto.call('app', 'Delete', { name: 'pressed' }, key)).status, 200);
  });
});
