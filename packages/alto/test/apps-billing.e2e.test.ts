/**
 * Billing matches running time: an always-on app (min_instances 1) run for a measured time and
 * deleted is billed, in usage/Read's compute rows, for the time its instance ran (between the
 * tightest and loosest spans the test can see from outside, and within 5% of Run's answer to
 * Delete's answer), at its memory size; its time shows while it runs (usage flushed every 100 ms,
 * ALTO_USAGE_FLUSH_MS); and nothing more accrues once it stopped, while another app's time keeps
 * being counted. On the process sandbox: metering lives in the app manager, the same for both
 * drivers. (Suspended time, unbilled, is serverless.e2e.test.ts's.)
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { busyboxHttpdImage } from './app-images.js';
import { eventually, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'billed';
const MEMORY_MIB = 64;
const RUN_FOR_MS = 4_000;

interface ComputeRow {
  app: string;
  running_ms: number;
  mib_ms: number;
}

describe('apps: billed running time', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const call = (service: string, endpoint: string, body: unknown) => alto.call(service, endpoint, body, key);

  /** The app's compute totals over today's rows (two rows when the test spans midnight UTC). */
  async function billed(app: string): Promise<{ runningMs: number; mibMs: number }> {
    const read = await call('usage', 'Read', { from: new Date(Date.now() - 86_400_000).toISOString().slice(0, 10) });
    assert.equal(read.status, 200, JSON.stringify(read.body));
    const rows = (read.body.compute as ComputeRow[]).filter((row) => row.app === app);
    return { runningMs: rows.reduce((sum, row) => sum + row.running_ms, 0), mibMs: rows.reduce((sum, row) => sum + row.mib_ms, 0) };
  }

  before(async () => {
    registry = await startRegistry();
    await registry.push('billing/httpd', 'v1', await busyboxHttpdImage());
    alto = await startProcess({
      dataDir,
      args: ['--sandbox', 'process'],
      env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_USAGE_FLUSH_MS: '100' },
    });
    key = await alto.projectKey(PROJECT, ['app', 'usage']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('an app is billed for the time it ran, at its memory size, and for nothing after it stopped', async (t) => {
    const image = `${registry.host}/billing/httpd:v1`;
    // Another app that keeps running (always on): the clock that shows usage is still being counted later.
    assert.equal((await call('app', 'Run', { name: 'clock', image, memory: MEMORY_MIB, min_instances: 1 })).status, 200);

    const runCalled = Date.now();
    const run = await call('app', 'Run', { name: 'metered', image, memory: MEMORY_MIB, min_instances: 1 });
    const runAnswered = Date.now();
    assert.equal(run.status, 200, JSON.stringify(run.body));
    // Its time shows while it runs, not only once it ends.
    await eventually(async () => (await billed('metered')).runningMs > 0, 'running time reported while the app runs');
    await eventually(async () => Date.now() - runAnswered >= RUN_FOR_MS, `the app running for ${RUN_FOR_MS} ms`, RUN_FOR_MS + 5_000);
    const deleteCalled = Date.now();
    assert.equal((await call('app', 'Delete', { name: 'metered' })).status, 200);
    const deleteAnswered = Date.now();

    const bill = await billed('metered');
    // The instance was ready before Run answered and stopped after Delete was called...
    assert.ok(bill.runningMs >= deleteCalled - runAnswered - 2, `billed ${bill.runningMs} ms, ran at least ${deleteCalled - runAnswered} ms`);
    // ...and it was not started before Run was called nor still running when Delete answered.
    assert.ok(bill.runningMs <= deleteAnswered - runCalled + 2, `billed ${bill.runningMs} ms, ran at most ${deleteAnswered - runCalled} ms`);
    const ran = deleteAnswered - runAnswered;
    t.diagnostic(`billed ${bill.runningMs} ms; from Run's answer to Delete's answer ${ran} ms`);
    assert.ok(Math.abs(bill.runningMs - ran) <= ran * 0.05, `billed ${bill.runningMs} ms for ${ran} ms of running`);
    assert.equal(bill.mibMs, bill.runningMs * MEMORY_MIB);

    // Nothing accrues after the stop, while the other app's time keeps being counted.
    const clockAtStop = (await billed('clock')).runningMs;
    await eventually(async () => (await billed('clock')).runningMs >= clockAtStop + 1_000, 'another second of the other app billed');
    assert.deepEqual(await billed('metered'), bill);
    assert.equal((await call('app', 'Delete', { name: 'clock' })).status, 200);
  });
});
