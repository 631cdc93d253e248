/**
 * Apps end to end on the process sandbox: a real `alto up --sandbox process` pulls images the
 * test built and pushed to a real docker-registry, runs them, and serves them through the edge
 * at `<app>.<project>.localhost`. Deploy an always-on app with the CLI (`--min-instances 1`: its
 * instance keeps running, which the crash, restart and Resolve checks need; the default, scale to
 * zero, is serverless.e2e.test.ts's), reach the app by its Host, read its logs,
 * crash it and see it restarted with its exit in Status and Logs, update to a broken image (the
 * old version keeps serving), update to a good one under a loop of requests (none fails), hand an
 * app secrets as files with `alto deploy --secret-file` (a bad spec refused before any call), keep
 * apps across a restart of Alto, delete. Isolation through the apps path: an app cannot reach a
 * server on the host's 127.0.0.1, Alto's own port, nor another project's instance.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { brokenImage, eventually, getThroughEdge, privateSandboxCache, proberImage, runCli, webImage, forbiddenServer, type ForbiddenServer } from './apps-fixture.js';

const PROJECT = 'shop';
const WEB_HOST = `web.${PROJECT}.localhost`;

/** A CGI listing /run/secrets: each file's name, permissions and content, a line each. */
const SECRETS_CGI = [
  '#!/bin/sh',
  "printf 'Content-Type: text/plain\\r\\n\\r\\n'",
  'cd /run/secrets && for name in *; do echo "$name $(ls -ln "$name" | awk \'{print $1}\') $(cat "$name")"; done',
].join('\n') + '\n';

describe('apps on the process sandbox', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  let loopbackServer: ForbiddenServer;

  const start = () =>
    startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
  const call = (endpoint: string, body: unknown) => alto.call('app', endpoint, body, key);
  const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);
  const web = (path = '/') => getThroughEdge(edgePort, WEB_HOST, path);

  before(async () => {
    registry = await startRegistry();
    const [v1, v2, broken, prober] = await Promise.all([webImage('web v1', 'web v1\n', { secrets: SECRETS_CGI }), webImage('web v2', 'web v2\n'), brokenImage(), proberImage()]);
    await registry.push('demo/web', 'v1', v1);
    await registry.push('demo/web', 'v2', v2);
    await registry.push('demo/broken', 'v1', broken);
    await registry.push('demo/prober', 'v1', prober);
    loopbackServer = await forbiddenServer('127.0.0.1');
    alto = await start();
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    loopbackServer?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('alto deploy runs an image; the edge serves it at <app>.<project>.localhost', async () => {
    const deployed = await cli(['deploy', `${registry.host}/demo/web:v1`, '--name', 'web', '--port', '8080', '--env', 'GREETING=hi', '--min-instances', '1', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    const service = JSON.parse(deployed.stdout);
    assert.equal(service.name, 'web');
    assert.equal(service.status, 'running');
    assert.equal(service.version, 1);
    assert.equal(service.url, `http://${WEB_HOST}:${edgePort}`);
    assert.match(service.digest, /^sha256:/);
    assert.deepEqual(service.env_vars, { GREETING: 'hi' });
    assert.equal(service.min_instances, 1);

    const response = await web();
    assert.equal(response.status, 200);
    assert.equal(response.body, 'web v1\n');
    // Another project's address and an unknown app are not this app.
    assert.equal((await getThroughEdge(edgePort, `web.other.localhost`)).status, 404);
    assert.equal((await getThroughEdge(edgePort, `nothing.${PROJECT}.localhost`)).status, 404);

    const status = await call('Status', { name: 'web' });
    assert.equal(status.status, 200, JSON.stringify(status.body));
    const running = status.body.service.instances.filter((instance: any) => instance.state === 'running');
    assert.equal(running.length, 1);
    assert.equal(running[0].driver, 'process');
    // Resolve gives the raw address of the instance: it answers too.
    const resolved = await call('Resolve', { name: 'web' });
    assert.equal(resolved.status, 200);
    assert.equal(await (await fetch(resolved.body.url)).text(), 'web v1\n');

    const listed = await cli(['apps', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(JSON.parse(listed.stdout).services.map((entry: any) => [entry.name, entry.status]), [['web', 'running']]);

    // The driver chosen, and why, shows in the status.
    const altoStatus = await (await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).json();
    assert.equal(altoStatus.sandbox.driver, 'process');
    assert.match(altoStatus.sandbox.reason, /--sandbox process/);
    const printed = await runCli(['status', '--url', alto.url, '--key', alto.adminKey, '--json']);
    assert.equal(JSON.parse(printed.stdout).sandbox.driver, 'process');
  });

  test('Logs shows what the app wrote; alto logs prints it', async () => {
    await web('/');
    const logs = await eventually(async () => {
      const result = await call('Logs', { name: 'web' });
      return result.body.logs.includes('web v1 starting') && result.body;
    }, 'the start line in the logs');
    assert.ok(logs.lines.some((line: any) => line.stream === 'stdout' && line.line === 'web v1 starting'), JSON.stringify(logs.lines));
    const printed = await cli(['logs', 'web']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /web v1 starting/);
  });

  test('a crashed instance is restarted with back-off; its exit shows in Status and Logs', async () => {
    const before = (await call('Status', { name: 'web' })).body.service;
    // Followed logs: the stream carries the crash and the restart as they happen.
    const followed: any[] = [];
    const follow = new WebSocket(`${alto.url.replace('http', 'ws')}/v1/app/FollowLogs`, { headers: { authorization: `Bearer ${key}` } });
    follow.on('message', (data) => followed.push(JSON.parse(data.toString())));
    await new Promise<void>((resolve, reject) => {
      follow.once('open', () => follow.send(JSON.stringify({ name: 'web', lines: 1 }), (error) => (error ? reject(error) : resolve())));
      follow.once('error', reject);
    });
    await eventually(async () => followed.length >= 1, 'the last line on the followed stream');
    const crash = await web('/cgi-bin/crash');
    assert.equal(crash.status, 200, crash.body);
    const crashed = await eventually(async () => {
      const service = (await call('Status', { name: 'web' })).body.service;
      return service.last_exit && service.restarts > before.restarts && service;
    }, 'the exit in Status');
    assert.equal(crashed.last_exit.code, 3);
    assert.equal(crashed.last_exit.reason, 'exited');
    // It comes back on its own and serves again.
    await eventually(async () => (await call('Status', { name: 'web' })).body.service.status === 'running', 'the restarted instance');
    const again = await web();
    assert.equal(again.status, 200, again.body);
    assert.equal(again.body, 'web v1\n');
    await eventually(async () => followed.some((line) => line.stream === 'system' && /is ready/.test(line.line) && line.at > crashed.last_exit.at), 'the restart on the followed stream');
    follow.close();
    assert.ok(followed.some((line) => line.stream === 'stderr' && line.line === 'crashing on purpose'), JSON.stringify(followed));
    assert.ok(followed.some((line) => line.stream === 'system' && /exited unexpectedly: exited with code 3/.test(line.line)), JSON.stringify(followed));
    const logs = (await call('Logs', { name: 'web', lines: 500 })).body.logs as string;
    assert.match(logs, /crashing on purpose/);
    assert.match(logs, /alto: instance \w+ exited unexpectedly: exited with code 3/);
    assert.match(logs, /alto: restarting in 1 s/);
    const instances = (await call('Status', { name: 'web' })).body.service.instances;
    assert.ok(instances.some((instance: any) => instance.state === 'failed' && instance.exit_code === 3), JSON.stringify(instances));
  });

  test('an update to an image that never becomes ready fails, and the old version keeps serving', async () => {
    const update = await call('Update', { name: 'web', image: `${registry.host}/demo/broken:v1` });
    assert.equal(update.status, 400, JSON.stringify(update.body));
    assert.match(update.body.detail, /version 2 of app "web" did not become ready/);
    assert.match(update.body.detail, /exit code 1/);
    // The answer says why, in the broken app's own words, and so do the app's logs.
    assert.match(update.body.detail, /its last log lines:\nbroken: no configuration found/);
    const logs = (await call('Logs', { name: 'web', stream: 'stderr', lines: 50 })).body.lines;
    assert.ok(logs.some((line: any) => line.line === 'broken: no configuration found' && line.version === 2), JSON.stringify(logs));
    assert.equal((await web()).body, 'web v1\n');
    const service = (await call('Status', { name: 'web' })).body.service;
    assert.equal(service.version, 1);
    assert.equal(service.status, 'running');
    assert.match(service.image, /demo\/web:v1$/);
  });

  test('an update to a good image switches with no failed request', async () => {
    let updating = true;
    const seen = { v1: 0, v2: 0, failures: [] as string[] };
    const loop = async () => {
      while (updating) {
        try {
          const response = await web();
          if (response.status === 200 && response.body === 'web v1\n') seen.v1 += 1;
          else if (response.status === 200 && response.body === 'web v2\n') seen.v2 += 1;
          else seen.failures.push(`${response.status} ${response.body.slice(0, 200)}`);
        } catch (error) {
          seen.failures.push((error as Error).message);
        }
      }
    };
    const loops = [loop(), loop()];
    const updated = await cli(['deploy', `${registry.host}/demo/web:v2`, '--name', 'web', '--json']);
    // A few more requests after the switch, all to the new version.
    await eventually(async () => seen.v2 >= 5, 'requests served by version 2');
    updating = false;
    await Promise.all(loops);
    assert.equal(updated.code, 0, updated.stderr);
    assert.equal(JSON.parse(updated.stdout).version, 2);
    assert.deepEqual(seen.failures, []);
    assert.ok(seen.v1 > 0, 'no request was served during the update');
    assert.equal((await web()).body, 'web v2\n');
    const service = (await call('Status', { name: 'web' })).body.service;
    const running = service.instances.filter((instance: any) => instance.state === 'running');
    assert.deepEqual(running.map((instance: any) => instance.version), [2]);
    // The env and min_instances given at deploy time carried over (a redeploy without --min-instances keeps it on).
    assert.deepEqual(service.env_vars, { GREETING: 'hi' });
    assert.equal(service.min_instances, 1);
  });

  test("isolation: an app cannot reach a server on the host's 127.0.0.1, Alto's port, nor another project's instance", async () => {
    // Another tenant's app, answering at its backend address from the host (always on: a suspended one would not answer).
    const peerKey = await alto.projectKey('neighbour', ['app']);
    const peer = await alto.call('app', 'Run', { name: 'peer', image: `${registry.host}/demo/web:v1`, min_instances: 1 }, peerKey);
    assert.equal(peer.status, 200, JSON.stringify(peer.body));
    const peerUrl = new URL((await alto.call('app', 'Resolve', { name: 'peer' }, peerKey)).body.url);
    assert.equal(await (await fetch(peerUrl)).text(), 'web v1\n');
    const run = await call('Run', {
      name: 'prober',
      image: `${registry.host}/demo/prober:v1`,
      // Always on: its probes run after it is ready, and a suspended instance would be frozen mid-way.
      min_instances: 1,
      env_vars: {
        HOST_PORT: String(loopbackServer.port),
        EDGE_PORT: String(edgePort),
        PEER_HOST: peerUrl.hostname,
        PEER_PORT: peerUrl.port,
      },
    });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const logs = await eventually(async () => {
      const result = (await call('Logs', { name: 'prober', stream: 'stdout' })).body.lines.map((line: any) => line.line) as string[];
      return result.includes('probes-done') && result;
    }, 'the probes');
    assert.ok(logs.includes('self-check: ok'), logs.join('\n'));
    const probes = logs.filter((line) => line.startsWith('reach '));
    assert.ok(probes.length >= 7, logs.join('\n'));
    assert.ok(probes.includes(`reach ${peerUrl.hostname}:${peerUrl.port}: blocked`), logs.join('\n'));
    for (const probe of probes) assert.match(probe, /: blocked$/, logs.join('\n'));
    assert.equal(loopbackServer.connections(), 0);
    assert.equal((await call('Delete', { name: 'prober' })).status, 200);
    assert.equal((await alto.call('app', 'Delete', { name: 'peer' }, peerKey)).status, 200);
  });

  test('bad requests get clear 4xx answers', async () => {
    const badName = await call('Run', { name: 'Web_1', image: `${registry.host}/demo/web:v1` });
    assert.equal(badName.status, 400);
    assert.match(badName.body.detail, /app name/);
    const exists = await call('Run', { name: 'web', image: `${registry.host}/demo/web:v1` });
    assert.equal(exists.status, 409);
    const noImage = await call('Run', { name: 'other', repo: 'github.com/org/app' });
    assert.equal(noImage.status, 400);
    assert.match(noImage.body.detail, /OCI images/);
    const missing = await call('Run', { name: 'other', image: `${registry.host}/demo/missing:v1` });
    assert.ok(missing.status >= 400 && missing.status < 600, JSON.stringify(missing.body));
    assert.match(missing.body.detail, /demo\/missing/);
    const portClash = await call('Update', { name: 'web', port: 8080, tcp: 6379 });
    assert.equal(portClash.status, 400);
    assert.equal((await call('Status', { name: 'nothing' })).status, 404);
    assert.deepEqual((await call('Regions', {})).body, { regions: ['local'] });
    assert.equal((await call('Reserve', { name: 'later' })).body.reservation.name, 'later');
  });

  test('alto deploy --secret-file hands secrets as files in /run/secrets; on update the files given replace them; a bad spec creates nothing', async () => {
    const vaultKey = await alto.projectKey('vault', ['app', 'secret']);
    const vault = (args: string[]) => runCli([...args, '--url', alto.url, '--key', vaultKey]);
    const get = async () => (await alto.call('app', 'Get', { name: 'keeper' }, vaultKey)).body?.service;
    for (const [secret, value] of [['db-password', 'hunter2-database'], ['team', 'the team roster']]) {
      assert.equal((await alto.call('secret', 'Set', { key: secret, value }, vaultKey)).status, 200);
    }
    const image = `${registry.host}/demo/web:v1`;

    // Refused by the CLI, naming the spec, before any call; and by the server for a secret that does not exist.
    const badMode = await vault(['deploy', image, '--name', 'keeper', '--secret-file', 'db-password:db_password:0777']);
    assert.notEqual(badMode.code, 0);
    assert.match(badMode.stderr, /--secret-file "db-password:db_password:0777": secret_files\.mode: permission bits up to 0775/);
    const badTarget = await vault(['deploy', image, '--name', 'keeper', '--secret-file', 'team:/run/secrets/team']);
    assert.notEqual(badTarget.code, 0);
    assert.match(badTarget.stderr, /--secret-file "team:\/run\/secrets\/team": secret_files\.target: a file name/);
    const unknown = await vault(['deploy', image, '--name', 'keeper', '--secret-file', 'nothing']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /"nothing" is not a secret of project "vault"/);
    assert.equal((await alto.call('app', 'Get', { name: 'keeper' }, vaultKey)).status, 404, 'a refused deploy made no app');

    const deployed = await vault(['deploy', image, '--name', 'keeper', '--secret-file', 'db-password:db_password:0400', '--secret-file', 'team', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.ok(!deployed.stdout.includes('hunter2-database'), 'the value is never shown');
    assert.deepEqual((await get()).secret_files, [
      { secret: 'db-password', target: 'db_password', mode: 0o400 },
      { secret: 'team', target: 'team', mode: 0o444 },
    ]);
    const files = await getThroughEdge(edgePort, 'keeper.vault.localhost', '/cgi-bin/secrets');
    assert.equal(files.status, 200, files.body);
    assert.deepEqual(files.body.trim().split('\n'), ['db_password -r-------- hunter2-database', 'team -r--r--r-- the team roster']);

    // Update: the files given replace the app's; none given keeps them.
    const replaced = await vault(['deploy', image, '--name', 'keeper', '--secret-file', 'team:team.txt:0440']);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.deepEqual((await get()).secret_files, [{ secret: 'team', target: 'team.txt', mode: 0o440 }]);
    const kept = await vault(['deploy', image, '--name', 'keeper', '--env', 'MOOD=calm']);
    assert.equal(kept.code, 0, kept.stderr);
    const service = await get();
    assert.deepEqual(service.env_vars, { MOOD: 'calm' });
    assert.deepEqual(service.secret_files, [{ secret: 'team', target: 'team.txt', mode: 0o440 }]);
    assert.equal((await getThroughEdge(edgePort, 'keeper.vault.localhost', '/cgi-bin/secrets')).body, 'team.txt -r--r----- the team roster\n');
    // A bad spec on update changes nothing.
    const refusedUpdate = await vault(['deploy', image, '--name', 'keeper', '--secret-file', 'team:a', '--secret-file', 'db-password:a']);
    assert.notEqual(refusedUpdate.code, 0);
    assert.match(refusedUpdate.stderr, /--secret-file "db-password:a": \/run\/secrets\/a is already the file of --secret-file "team:a"/);
    assert.equal((await get()).version, service.version);

    assert.equal((await vault(['destroy', 'keeper'])).code, 0);
  });

  test("the project's compute cap holds: one app more than compute_apps is refused with 402", async () => {
    const capped = await alto.call('projects', 'Update', { name: PROJECT, compute_apps: 1 });
    assert.equal(capped.status, 200, JSON.stringify(capped.body));
    const refused = await call('Run', { name: 'second', image: `${registry.host}/demo/web:v1` });
    assert.equal(refused.status, 402, JSON.stringify(refused.body));
    assert.match(refused.body.detail, /compute_apps/);
    assert.equal((await alto.call('projects', 'Update', { name: PROJECT, compute_apps: 0 })).status, 200);
  });

  test('apps run again after Alto restarts', async () => {
    assert.equal(await alto.stop('SIGTERM'), 0);
    alto = await start();
    edgePort = Number(new URL(alto.url).port);
    const response = await eventually(async () => {
      const result = await web();
      return result.status === 200 && result;
    }, 'the app after the restart', 60_000);
    assert.equal(response.body, 'web v2\n');
    const service = (await call('Status', { name: 'web' })).body.service;
    assert.equal(service.version, 2);
    assert.equal(service.url, `http://${WEB_HOST}:${edgePort}`);
  });

  test('alto destroy stops the app and removes it', async () => {
    const status = (await call('Status', { name: 'web' })).body.service;
    const destroyed = await cli(['destroy', 'web']);
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.equal((await web()).status, 404);
    assert.equal((await call('Status', { name: 'web' })).status, 404);
    // Its root filesystem goes with the last app using the image.
    assert.ok(!existsSync(join(dataDir, 'apps', 'rootfs', status.digest.replace(':', '-'))));
    assert.deepEqual(readdirSync(join(dataDir, 'apps', 'rootfs')), []);
  });
});
