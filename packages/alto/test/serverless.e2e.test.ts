/**
 * The serverless lifecycle on the process sandbox (issue 8; microVMs in
 * serverless-microvm.e2e.test.ts): an app with `min_instances: 0` (the default when Run leaves it
 * out) is suspended as soon as it is ready (the cgroup freezer says frozen), a request wakes it
 * and is answered, it is suspended
 * again after `idle_timeout` (not before), requests arriving around suspension all succeed, a
 * websocket held open keeps it running, suspended time is not billed, /metrics counts the
 * activations, and the process driver (no snapshots) keeps a long-idle instance frozen.
 * Autoscale: past its concurrency an app gets another instance up to max_instances, requests
 * beyond that wait in a bounded queue (then 503 with Retry-After), and the added instance goes
 * once idle.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { billedMs, metricValue, openWebsocket, requestLoop, sleepyImage, slotsOf } from './serverless-fixture.js';

const PROJECT = 'sleepy';
const IDLE_TIMEOUT_S = 1;

describe('serverless lifecycle (process sandbox)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  let image: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const call = (service: string, endpoint: string, body: unknown) => alto.call(service, endpoint, body, key);
  const hostOf = (app: string) => `${app}.${PROJECT}.localhost`;
  const slot = async (app: string) => (await slotsOf(alto, key, app))[0];
  const metrics = async () => (await fetch(`${alto.url}/metrics`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).text();

  const billed = (app: string) => billedMs(alto, key, app);

  async function runSleepy(name: string, extra: Record<string, unknown> = {}): Promise<void> {
    const run = await call('app', 'Run', { name, image, memory: 64, min_instances: 0, idle_timeout: IDLE_TIMEOUT_S, ...extra });
    assert.equal(run.status, 200, JSON.stringify(run.body));
  }

  async function whenSuspended(app: string): Promise<void> {
    await eventually(async () => {
      const current = await slot(app);
      return current.state === 'suspended' && current.frozen === true;
    }, `${app} suspended, and frozen by the kernel's account`);
  }

  before(async () => {
    registry = await startRegistry();
    await registry.push('sleepy/web', 'v1', await sleepyImage());
    image = `${registry.host}/sleepy/web:v1`;
    alto = await startProcess({
      dataDir,
      args: ['--sandbox', 'process'],
      // A short snapshot delay: the process driver cannot snapshot, so the instance must stay frozen.
      env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_USAGE_FLUSH_MS: '100', ALTO_SNAPSHOT_AFTER_MS: '500' },
    });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app', 'usage']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('suspended once ready; a request wakes it; suspended again after idle_timeout, not before', async () => {
    await runSleepy('web');
    await whenSuspended('web');
    const suspendedAt = Date.parse((await slot('web')).since);
    // Long past ALTO_SNAPSHOT_AFTER_MS: the process driver keeps it frozen (it has no snapshots).
    await eventually(async () => Date.now() - suspendedAt > 1_500, 'well past the snapshot delay', 5_000);
    assert.deepEqual(
      { state: (await slot('web')).state, frozen: (await slot('web')).frozen },
      { state: 'suspended', frozen: true },
    );

    const answer = await getThroughEdge(edgePort, hostOf('web'));
    const answered = Date.now();
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'awake\n');
    const text = await metrics();
    assert.ok(metricValue(text, 'alto_app_activations_total{from="suspended"}') >= 1, text);
    assert.ok(metricValue(text, 'alto_app_resume_seconds_count{from="suspended"}') >= 1);

    await whenSuspended('web');
    const since = Date.parse((await slot('web')).since);
    // Not before idle_timeout had passed since the exchange ended (the answer reached us after it did).
    assert.ok(since >= answered - 50 + IDLE_TIMEOUT_S * 1000 - 50, `suspended ${since - answered} ms after the answer`);
    assert.ok(metricValue(await metrics(), 'alto_app_instances{state="suspended"}') >= 1);
  });

  test('serverless by default: an app run without min_instances is suspended once ready, woken by a request, suspended again after the default idle_timeout', async () => {
    const run = await call('app', 'Run', { name: 'plain', image, memory: 64 });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const { min_instances, max_instances, idle_timeout } = run.body.service;
    assert.deepEqual({ min_instances, max_instances, idle_timeout }, { min_instances: 0, max_instances: 1, idle_timeout: 5 });
    await whenSuspended('plain');

    const answer = await getThroughEdge(edgePort, hostOf('plain'));
    const answered = Date.now();
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'awake\n');
    await whenSuspended('plain');
    const since = Date.parse((await slot('plain')).since);
    // Not before the default idle_timeout, 5 s, had passed since the exchange ended.
    assert.ok(since >= answered - 100 + 5_000, `suspended ${since - answered} ms after the answer`);
    // An update that leaves min_instances out keeps it (Run's default is not applied again).
    const update = await call('app', 'Update', { name: 'plain', min_instances: 1 });
    assert.equal(update.status, 200, JSON.stringify(update.body));
    const kept = await call('app', 'Update', { name: 'plain', env_vars: { AGAIN: '1' } });
    assert.equal(kept.status, 200, JSON.stringify(kept.body));
    assert.equal(kept.body.service.min_instances, 1);
    assert.equal((await call('app', 'Delete', { name: 'plain' })).status, 200);
  });

  test('concurrent requests to a suspended app share one wake; requests around suspension all succeed', async () => {
    await whenSuspended('web');
    const first = await Promise.all(Array.from({ length: 20 }, () => getThroughEdge(edgePort, hostOf('web'))));
    assert.deepEqual(new Set(first.map((result) => result.status)), new Set([200]));
    const before = metricValue(await metrics(), 'alto_app_activations_total{from="suspended"}');
    // Bursts of 3 with gaps around idle_timeout (+ the 100 ms idle check): they land while the
    // instance runs, while it is being suspended and while it sleeps.
    const burst = async () => {
      const results = await Promise.all(Array.from({ length: 3 }, () => getThroughEdge(edgePort, hostOf('web'))));
      return results.map((result) => result.status);
    };
    const statuses = (await requestLoop(1, 8_000, async () => (await burst()).reduce((worst, status) => (status !== 200 ? status : worst), 200), () => 900 + Math.random() * 500)).flat();
    assert.ok(statuses.length >= 5, `${statuses.length} bursts`);
    assert.deepEqual(
      statuses.filter((status) => status !== 200),
      [],
      'every request answered 200',
    );
    const activations = metricValue(await metrics(), 'alto_app_activations_total{from="suspended"}') - before;
    assert.ok(activations >= 1, `the instance was woken ${activations} times during the loop`);
  });

  test('a websocket held open keeps the instance running; it sleeps once the socket closes', async () => {
    await whenSuspended('web');
    const socket = await openWebsocket(edgePort, hostOf('web'));
    assert.match(socket.head, /^HTTP\/1\.1 101/);
    const opened = Date.now();
    // Three idle timeouts with the socket open: still running, ticks still flowing.
    await eventually(async () => Date.now() - opened > IDLE_TIMEOUT_S * 3000, 'three idle timeouts', 10_000);
    const during = await slot('web');
    assert.equal(during.state, 'running');
    assert.equal(during.frozen, false);
    assert.equal(during.in_flight, 1);
    const ticks = socket.ticks();
    await eventually(async () => socket.ticks() > ticks, 'more ticks on the open socket');
    await socket.close();
    await whenSuspended('web');
  });

  test('suspended time is not billed; running time is', async () => {
    await runSleepy('meter');
    // Another app that keeps running (min_instances 1): the clock showing usage is being counted.
    const clock = await call('app', 'Run', { name: 'clock', image, memory: 64, min_instances: 1 });
    assert.equal(clock.status, 200, JSON.stringify(clock.body));
    await whenSuspended('meter');
    await eventually(async () => (await billed('clock')) > 0, 'the running app billed');
    const asleep = await billed('meter');
    const clockBefore = await billed('clock');
    await eventually(async () => (await billed('clock')) >= clockBefore + 2_000, 'two more seconds of the running app billed', 15_000);
    assert.equal(await billed('meter'), asleep, 'nothing billed while suspended');
    // Woken, it runs (and is billed) until it is idle again.
    assert.equal((await getThroughEdge(edgePort, hostOf('meter'))).status, 200);
    await whenSuspended('meter');
    await eventually(async () => (await billed('meter')) >= asleep + IDLE_TIMEOUT_S * 1000 - 100, 'the awake second billed');
    assert.equal((await call('app', 'Delete', { name: 'clock' })).status, 200);
  });

  test('autoscale: another instance past the concurrency, a bounded queue, then 503; the extra instance goes when idle', async () => {
    const run = await call('app', 'Run', { name: 'scaler', image, memory: 64, min_instances: 1, max_instances: 2, concurrency: 1, idle_timeout: IDLE_TIMEOUT_S });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const first = await openWebsocket(edgePort, hostOf('scaler'));
    assert.equal((await slotsOf(alto, key, 'scaler')).length, 1);
    // The only instance is at its concurrency (1): a second exchange gets a second instance.
    const second = await openWebsocket(edgePort, hostOf('scaler'));
    const busy = await slotsOf(alto, key, 'scaler');
    assert.deepEqual(busy.map((view) => [view.state, view.in_flight]), [['running', 1], ['running', 1]]);
    assert.notEqual(busy[0].instance, busy[1].instance);

    // At max_instances: requests wait in a queue as long as the capacity (1 × 2)...
    const queued = [getThroughEdge(edgePort, hostOf('scaler')), getThroughEdge(edgePort, hostOf('scaler'))];
    await eventually(async () => metricValue(await metrics(), 'alto_app_queue_depth') === 2, 'two requests queued');
    // ...and one more is turned away at once, saying when to come back.
    const refused = await getThroughEdge(edgePort, hostOf('scaler'));
    assert.equal(refused.status, 503, refused.body);
    assert.equal(refused.headers['retry-after'], '1');
    assert.match(JSON.parse(refused.body).detail, /at capacity/);

    // Capacity frees up: the queued requests are served.
    await first.close();
    assert.deepEqual((await Promise.all(queued)).map((result) => result.status), [200, 200]);
    await second.close();
    // Idle again: back to min_instances.
    await eventually(async () => (await slotsOf(alto, key, 'scaler')).length === 1, 'the added instance removed');
    assert.equal((await call('app', 'Delete', { name: 'scaler' })).status, 200);
  });
});
