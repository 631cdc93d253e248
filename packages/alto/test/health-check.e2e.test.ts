/**
 * An app's health check (`health_check`, Docker's HEALTHCHECK) on the process sandbox, with the
 * app's own command (`command`, with a `$(NAME)` reference to its env): the supervisor runs the
 * check in the sandbox as the app; Run answers only once the port listens and the check has
 * passed once, and from then on Status shows the instance unhealthy after `retries` failures in
 * a row (said in the app's log too) and healthy again when it passes. Update's `reset` returns
 * the command and the check to the image's (none).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { busyboxHttpdImage, HTTPD_PAGE } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

describe('health checks (process sandbox)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let image: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    registry = await startRegistry();
    await registry.push('health/httpd', 'v1', await busyboxHttpdImage());
    image = `${registry.host}/health/httpd:v1`;
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    key = await alto.projectKey('health', ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const slotOf = async (name: string) => (await alto.call('app', 'Status', { name }, key)).body.service.slots[0] as { state: string; health?: string };

  test('Run answers once the check passed; then unhealthy after retries failures in a row, and healthy again', async () => {
    // The app marks itself ready after 2 s; /www/sick, written on request through a file the
    // check reads, makes the check fail until it is gone.
    const command = [
      '/bin/sh',
      '-c',
      '(busybox sleep 2; echo $(MARK) > /www/ready; busybox sleep 4; echo > /www/sick; busybox sleep 4; busybox rm /www/sick) & exec httpd -f -p $(PORT) -h /www',
    ];
    const run = await alto.call(
      'app',
      'Run',
      {
        name: 'checked',
        image,
        min_instances: 1,
        env_vars: { MARK: 'yes' },
        command,
        health_check: { test: ['/bin/sh', '-c', '[ -e /www/ready ] && [ ! -e /www/sick ]'], interval: 0.5, timeout: 5, retries: 2 },
      },
      key,
    );
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.deepEqual(run.body.service.command, command, 'the command is kept as given');
    const port = Number(new URL(alto.url).port);
    // Answered only after the check first passed: the file it waits for is there, holding
    // $(MARK) as Alto expanded it in the command (the shell alone would have run MARK).
    const ready = await getThroughEdge(port, `checked.health.localhost:${port}`, '/ready');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.trim(), 'yes');
    assert.equal((await slotOf('checked')).health, 'healthy');
    // /www/sick appears 4 s later: the check fails from then on.
    await eventually(async () => (await slotOf('checked')).health === 'unhealthy', 'the instance unhealthy', 20_000);
    const logs = (await alto.call('app', 'Logs', { name: 'checked' }, key)).body.lines as { line: string }[];
    assert.ok(logs.some((entry) => /health check failed 2 times in a row/.test(entry.line)), logs.map((entry) => entry.line).join('\n'));
    await eventually(async () => (await slotOf('checked')).health === 'healthy', 'the instance healthy again once the file is gone', 20_000);

    // Update can return settings to what the app has without them: the image's own command, no
    // check (what a template does when its compose file drops them). An unknown one is refused.
    const unknown = await alto.call('app', 'Update', { name: 'checked', reset: ['memory'] }, key);
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.detail, /reset: each one of entrypoint, command, health_check/);
    const reset = await alto.call('app', 'Update', { name: 'checked', reset: ['command', 'health_check'] }, key);
    assert.equal(reset.status, 200, JSON.stringify(reset.body));
    assert.equal(reset.body.service.command, undefined, 'the image\'s command again');
    assert.equal(reset.body.service.health_check, undefined, 'no health check');
    const page = await getThroughEdge(port, `checked.health.localhost:${port}`, '/');
    assert.deepEqual([page.status, page.body], [200, HTTPD_PAGE], 'served by the image\'s own command');
    assert.equal((await slotOf('checked')).health, undefined);
  });

  test('bad health checks, commands and link aliases are refused with what was wrong', async () => {
    const noTest = await alto.call('app', 'Run', { name: 'bad', image, health_check: { test: [] } }, key);
    assert.equal(noTest.status, 400);
    assert.match(noTest.body.detail, /health_check\.test/);
    const badInterval = await alto.call('app', 'Run', { name: 'bad', image, health_check: { test: ['true'], interval: 0 } }, key);
    assert.equal(badInterval.status, 400);
    assert.match(badInterval.body.detail, /health_check\.interval: 0\.1-300 seconds/);
    const nul = await alto.call('app', 'Run', { name: 'bad', image, command: ['a\u0000b'] }, key);
    assert.equal(nul.status, 400);
    assert.match(nul.body.detail, /^command\[0\]: text may not hold a NUL character/);
    const alias = await alto.call('app', 'Run', { name: 'bad', image, links: ['cache'], link_aliases: { db: 'postgres' } }, key);
    assert.equal(alias.status, 400);
    assert.match(alias.body.detail, /link_aliases\.db: "postgres" is not one of the app's links \(cache\)/);
    assert.equal((await alto.call('app', 'Get', { name: 'bad' }, key)).status, 404);
  });
});
