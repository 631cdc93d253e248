/**
 * How an app's instances are stopped, as Docker stops a container: the app gets its image's
 * STOPSIGNAL (or the app's `stop_signal`), SIGTERM when neither names one, and has
 * `stop_timeout` seconds (default 5) to end before it is killed. The app runs as a sandbox's
 * child with every signal at its default (a shell supervisor would otherwise start it with
 * SIGINT and SIGQUIT ignored, so it could not even trap them). Each case replaces the running
 * instance with app/Update and reads how the old one ended in its log and its exit. Process
 * driver.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { eventually, privateSandboxCache, stoppableImage } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

describe('stopping an app: its stop signal and stop_timeout', () => {
  let alto: ServerProcess;
  let registry: TestRegistry;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const images: Record<string, string> = {};

  before(async () => {
    registry = await startRegistry();
    await registry.push('stops/sigint', 'v1', await stoppableImage('SIGINT'));
    await registry.push('stops/plain', 'v1', await stoppableImage(undefined));
    await registry.push('stops/slow', 'v1', await stoppableImage('SIGINT', 3));
    for (const name of ['sigint', 'plain', 'slow']) images[name] = `${registry.host}/stops/${name}:v1`;
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    key = await alto.projectKey('stops', ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const call = async (endpoint: string, body: unknown) => {
    const result = await alto.call('app', endpoint, body, key);
    assert.equal(result.status, 200, `${endpoint}: ${JSON.stringify(result.body)}`);
    return result.body;
  };
  const lines = async (name: string) => ((await call('Logs', { name, stream: 'stdout' })).lines as { line: string }[]).map((entry) => entry.line);

  /** Runs the app, replaces its instance with an Update, and answers how the first instance ended and what the app said. */
  async function replaceInstance(name: string, settings: Record<string, unknown>) {
    const run = await call('Run', { name, min_instances: 1, ...settings });
    assert.equal(run.service.status, 'running', JSON.stringify(run.service));
    const first = (await call('Get', { name })).service.instances[0].id as string;
    await eventually(async () => (await lines(name)).includes('stoppable starting'), `${name} started`);
    await call('Update', { name, env_vars: { ROUND: '2' } });
    const ended = await eventually(async () => {
      const instance = ((await call('Get', { name })).service.instances as { id: string; ended?: string; exit_code?: number | null; exit_reason?: string }[]).find((entry) => entry.id === first);
      return instance?.ended ? instance : undefined;
    }, `the first instance of ${name} ended`);
    const said = await lines(name);
    await call('Delete', { name });
    return { ended, said };
  }

  test("the image's STOPSIGNAL reaches the app (here SIGINT, which a shell's background child would have ignored); an app's stop_signal overrides it", async () => {
    const fromImage = await replaceInstance('from-image', { image: images.sigint });
    assert.ok(fromImage.said.includes('stopping on SIGINT'), fromImage.said.join('\n'));
    assert.ok(fromImage.said.includes('stopped cleanly'));
    assert.ok(!fromImage.said.includes('ignoring SIGTERM'), 'no SIGTERM was sent');
    assert.deepEqual([fromImage.ended.exit_code, fromImage.ended.exit_reason], [0, 'stopped']);

    const fromSetting = await replaceInstance('from-setting', { image: images.plain, stop_signal: 'SIGQUIT' });
    assert.ok(fromSetting.said.includes('stopping on SIGQUIT'), fromSetting.said.join('\n'));
    assert.deepEqual([fromSetting.ended.exit_code, fromSetting.ended.exit_reason], [0, 'stopped']);

    // With neither, SIGTERM, as Docker sends: this app ignores it and is killed after the grace period.
    const plain = await replaceInstance('plain', { image: images.plain, stop_timeout: 1 });
    assert.ok(plain.said.includes('ignoring SIGTERM'), plain.said.join('\n'));
    assert.equal(plain.ended.exit_reason, 'killed after grace period');

    const refused = await alto.call('app', 'Run', { name: 'bad', image: images.plain, stop_signal: 'SIGSEGV' }, key);
    assert.equal(refused.status, 400);
    assert.match(refused.body.detail, /stop_signal: one of SIGTERM, SIGINT, SIGQUIT/);
  });

  test('stop_timeout is how long the app has to end after its stop signal', async () => {
    // A shutdown of 3 s within 10: it ends on its own.
    const patient = await replaceInstance('patient', { image: images.slow, stop_timeout: 10 });
    assert.ok(patient.said.includes('stopped cleanly'), patient.said.join('\n'));
    assert.deepEqual([patient.ended.exit_code, patient.ended.exit_reason], [0, 'stopped']);
    // The same within 1 s: killed before it says it is done.
    const hasty = await replaceInstance('hasty', { image: images.slow, stop_timeout: 1 });
    assert.ok(hasty.said.includes('stopping on SIGINT'), hasty.said.join('\n'));
    assert.ok(!hasty.said.includes('stopped cleanly'), hasty.said.join('\n'));
    assert.equal(hasty.ended.exit_reason, 'killed after grace period');
  });
});
