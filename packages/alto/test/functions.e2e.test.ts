/**
 * Functions end to end on the process sandbox: a real `alto up --sandbox process` with the
 * host's node as the runtime (ALTO_FUNCTIONS_NODE=host, so nothing is downloaded) builds
 * TypeScript and JavaScript handlers into images and runs them as apps. Inline source with a
 * default export (Request -> Response) reached through the edge and with function/Call; an
 * update; a syntax error, a missing export and an unresolved import answered with a 400 naming
 * the file and line while the old version keeps serving; runtime and build logs; an M3O-style
 * entrypoint from an uploaded folder with the CLI; a git repository, branch and subfolder; a
 * function bundling @alto/sdk; name clashes with apps.
 *
 * Functions calling Alto back with the SDK (ALTO_URL, ALTO_KEY, secrets) are in
 * function-platform.e2e.test.ts; here the SDK function only builds a client.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';

const PROJECT = 'fns';

const GREETER_V1 = `
interface Greeting { hello: string; via: string }
export default async function handle(request: Request): Promise<Response> {
  const name = new URL(request.url).searchParams.get('name') ?? 'world';
  console.log('greeting ' + name);
  const body: Greeting = { hello: name, via: request.method };
  return Response.json(body);
}
`;

const GREETER_V2 = `
export default async function handle(request: Request): Promise<Response> {
  const input = request.method === 'POST' ? await request.json() : {};
  return Response.json({ version: 2, got: input, greeting: process.env.GREETING ?? 'none' });
}
`;

describe('functions on the process sandbox', () => {
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const scratch = mkdtempSync(join(tmpdir(), 'alto-fn-src-'));

  const call = (endpoint: string, body: unknown, as: string = key) => alto.call('function', endpoint, body, as);
  const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);

  before(async () => {
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host' } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['function', 'app']);
  });

  after(async () => {
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  test('inline TypeScript with a default export: deployed, reached through the edge and with Call', async () => {
    const deployed = await call('Deploy', { name: 'greeter', source: GREETER_V1, env_vars: { GREETING: 'hi' } });
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const fn = deployed.body.function;
    assert.equal(fn.name, 'greeter');
    assert.equal(fn.status, 'ACTIVE');
    assert.equal(fn.runtime, 'nodejs');
    assert.equal(fn.source, GREETER_V1);
    assert.equal(fn.url, `http://greeter.${PROJECT}.localhost:${edgePort}`);
    assert.deepEqual(fn.env_vars, { GREETING: 'hi' });

    const browsed = await getThroughEdge(edgePort, `greeter.${PROJECT}.localhost`, '/?name=edge');
    assert.equal(browsed.status, 200, browsed.body);
    assert.deepEqual(JSON.parse(browsed.body), { hello: 'edge', via: 'GET' });

    const called = await call('Call', { name: 'greeter', request: { ignored: true } });
    assert.equal(called.status, 200, JSON.stringify(called.body));
    assert.deepEqual(called.body.response, { hello: 'world', via: 'POST' });

    // A function is an app: app/List shows it, and its name cannot be taken by an app.
    const apps = await alto.call('app', 'List', {}, key);
    assert.deepEqual(apps.body.services.map((service: any) => service.name), ['greeter']);
    const clash = await alto.call('app', 'Run', { name: 'greeter', image: 'example.com/web:v1' }, key);
    assert.equal(clash.status, 409);

    const listed = await call('List', {});
    assert.deepEqual(listed.body.functions.map((entry: any) => [entry.name, entry.status]), [['greeter', 'ACTIVE']]);
    const proxy = await call('Proxy', { id: fn.id });
    assert.equal(proxy.body.url, fn.url);
    assert.deepEqual((await call('Runtimes', {})).body.runtimes, ['nodejs']);
    assert.deepEqual((await call('Regions', {})).body.regions, ['local']);
  });

  test('runtime logs carry what the function wrote; build logs say what was built', async () => {
    await getThroughEdge(edgePort, `greeter.${PROJECT}.localhost`, '/?name=logged');
    const runtime = await eventually(async () => {
      const logs = await call('Logs', { name: 'greeter', logs_type: 'runtime' });
      return logs.body.logs.includes('greeting logged') && logs.body.logs;
    }, 'the function\'s console.log line in its runtime logs');
    assert.match(runtime, /function listening on 8080/);
    const build = await call('Logs', { name: 'greeter', logs_type: 'build' });
    assert.match(build.body.logs, /bundled index\.ts \(default export/);
    assert.match(build.body.logs, /image sha256:[a-f0-9]{64} on node v\d+/);
  });

  test('Update builds a new version; a broken one is a 400 naming the line and the old version keeps serving', async () => {
    const updated = await call('Update', { name: 'greeter', source: GREETER_V2 });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.equal(updated.body.function.version, 2);
    const called = await call('Call', { name: 'greeter', request: { n: 1 } });
    assert.deepEqual(called.body.response, { version: 2, got: { n: 1 }, greeting: 'hi' });

    const syntax = await call('Update', { name: 'greeter', source: 'export default async function (request: Request) {\n  return new Response("ok"\n}\n' });
    assert.equal(syntax.status, 400, JSON.stringify(syntax.body));
    assert.match(syntax.body.detail, /index\.ts:3:1: Expected "\)" but found "}"/);

    const unresolved = await call('Update', { name: 'greeter', source: "import { thing } from 'no-such-package';\nexport default () => new Response(String(thing));\n" });
    assert.equal(unresolved.status, 400);
    assert.match(unresolved.body.detail, /index\.ts:1:\d+: Could not resolve "no-such-package"/);

    const missing = await call('Update', { name: 'greeter', source: 'export const other = () => 1;\n', entrypoint: 'main' });
    assert.equal(missing.status, 400);
    assert.match(missing.body.detail, /index\.ts has no export named "main".*it exports: other/);

    // Version 2 still answers, and the failed build is in the build log.
    const still = await call('Call', { name: 'greeter', request: { n: 2 } });
    assert.equal(still.status, 200, JSON.stringify(still.body));
    assert.equal(still.body.response.version, 2);
    const describe = await call('Describe', { name: 'greeter' });
    assert.equal(describe.body.function.version, 2);
    assert.equal(describe.body.function.source, GREETER_V2);
    assert.match((await call('Logs', { name: 'greeter', logs_type: 'build' })).body.logs, /previous version keeps serving/);

    // A handler that throws: Call says so with the function's error; the logs have its stack.
    await call('Update', { name: 'greeter', source: "export default () => { throw new Error('boom at runtime'); };\n" });
    const failed = await call('Call', { name: 'greeter', request: {} });
    assert.equal(failed.status, 400);
    assert.match(failed.body.detail, /answered 500: boom at runtime/);
  });

  test('alto fn: a folder with an M3O-style entrypoint, called, listed, logged and deleted', async () => {
    const folder = join(scratch, 'adder');
    mkdirSync(join(folder, 'lib'), { recursive: true });
    writeFileSync(join(folder, 'package.json'), JSON.stringify({ name: 'adder', main: 'handler.ts' }));
    writeFileSync(join(folder, 'lib', 'sum.ts'), 'export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);\n');
    writeFileSync(join(folder, 'handler.ts'), "import { sum } from './lib/sum';\nexport async function add(input: { values: number[] }) {\n  console.log('adding', input.values.length);\n  return { total: sum(input.values), unit: process.env.UNIT };\n}\n");
    mkdirSync(join(folder, 'node_modules', 'junk'), { recursive: true });
    writeFileSync(join(folder, 'node_modules', 'junk', 'index.js'), 'not uploaded');

    const deployed = await cli(['fn', 'deploy', folder, '--name', 'adder', '--entrypoint', 'add', '--env', 'UNIT=apples', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.equal(JSON.parse(deployed.stdout).entrypoint, 'add');

    const called = await cli(['fn', 'call', 'adder', '{"values":[1,2,3.5]}']);
    assert.equal(called.code, 0, called.stderr);
    assert.deepEqual(JSON.parse(called.stdout), { total: 6.5, unit: 'apples' });

    // Deploying again updates it.
    writeFileSync(join(folder, 'lib', 'sum.ts'), 'export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 100);\n');
    const again = await cli(['fn', 'deploy', folder, '--name', 'adder', '--entrypoint', 'add']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /updated/);
    assert.deepEqual(JSON.parse((await cli(['fn', 'call', 'adder', '{"values":[1]}'])).stdout), { total: 101, unit: 'apples' });

    const listed = await cli(['fn', 'list', '--json']);
    assert.ok(JSON.parse(listed.stdout).functions.some((entry: any) => entry.name === 'adder' && entry.status === 'ACTIVE'));
    const logs = await eventually(async () => {
      const printed = await cli(['fn', 'logs', 'adder', '--runtime']);
      return printed.stdout.includes('adding 1') && printed.stdout;
    }, 'the adder\'s output');
    assert.match(logs, /adding 1/);

    const removed = await cli(['fn', 'delete', 'adder']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal((await call('Describe', { name: 'adder' })).status, 404);
    assert.equal((await alto.call('app', 'Get', { name: 'adder' }, key)).status, 404);
  });

  test('a git repository, branch and subfolder (admin key: a repository on the server\'s disk)', async () => {
    const repo = join(scratch, 'repo');
    mkdirSync(join(repo, 'functions', 'clock'), { recursive: true });
    writeFileSync(join(repo, 'functions', 'clock', 'index.js'), "export function clock(input) { return { branch: 'release', echo: input }; }\n");
    const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { stdio: 'pipe', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } });
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('commit', '-q', '-m', 'main');
    git('checkout', '-q', '-b', 'release');
    git('commit', '-q', '--allow-empty', '-m', 'release');
    git('checkout', '-q', 'main');
    writeFileSync(join(repo, 'functions', 'clock', 'index.js'), "export function clock(input) { return { branch: 'main' }; }\n");
    git('commit', '-q', '-am', 'main moves on');

    // A project key may not read the server's disk.
    const refused = await call('Deploy', { name: 'clock', repo: `file://${repo}`, branch: 'release', subfolder: 'functions/clock' });
    assert.equal(refused.status, 403);

    const admin = alto.adminKey;
    const deployed = await call('Deploy', { name: 'clock', repo: `file://${repo}`, branch: 'release', subfolder: 'functions/clock' }, admin);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    assert.equal(deployed.body.function.repo, `file://${repo}`);
    assert.equal(deployed.body.function.branch, 'release');
    // No entrypoint and no default export: M3O's default, the export named like the function.
    const called = await call('Call', { name: 'clock', request: { at: 1 } }, admin);
    assert.deepEqual(called.body.response, { branch: 'release', echo: { at: 1 } });
    const build = await call('Logs', { name: 'clock', logs_type: 'build' }, admin);
    assert.match(build.body.logs, /source: repo file:\/\/.*#release \/functions\/clock at [a-f0-9]{12}/);

    const badBranch = await call('Update', { name: 'clock', repo: `file://${repo}`, branch: 'nope' }, admin);
    assert.equal(badBranch.status, 400);
    assert.match(badBranch.body.detail, /git clone .* failed/);
    assert.equal((await call('Delete', { name: 'clock' }, admin)).status, 200);
  });

  test('source deploys of apps: alto deploy ./my-app and app/Run with a repository; a folder with a Dockerfile is built from it', async () => {
    const site = join(scratch, 'my-site');
    mkdirSync(join(site, 'lib'), { recursive: true });
    writeFileSync(join(site, 'package.json'), JSON.stringify({ name: 'my-site', scripts: { start: 'node server.js --greeting built' } }));
    writeFileSync(join(site, 'lib', 'page.js'), "exports.page = (greeting) => '<h1>' + greeting + ' from source</h1>';\n");
    writeFileSync(
      join(site, 'server.js'),
      "const http = require('node:http');\nconst { page } = require('./lib/page.js');\nconst greeting = process.argv[process.argv.indexOf('--greeting') + 1];\nhttp.createServer((request, response) => response.end(page(greeting))).listen(Number(process.env.PORT), () => console.log('site up'));\n",
    );
    const deployed = await cli(['deploy', site, '--name', 'site', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.match(JSON.parse(deployed.stdout).image, /^functions\.alto\.internal\/.+\/site@sha256:/);
    const browsed = await getThroughEdge(edgePort, `site.${PROJECT}.localhost`);
    assert.equal(browsed.status, 200, browsed.body);
    assert.equal(browsed.body, '<h1>built from source</h1>');

    // Deploying the folder again updates the app.
    writeFileSync(join(site, 'lib', 'page.js'), "exports.page = (greeting) => '<h2>' + greeting + ' again</h2>';\n");
    const again = await cli(['deploy', site, '--name', 'site']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await getThroughEdge(edgePort, `site.${PROJECT}.localhost`)).body, '<h2>built again</h2>');

    const repo = join(scratch, 'app-repo');
    mkdirSync(join(repo, 'services', 'api'), { recursive: true });
    writeFileSync(join(repo, 'services', 'api', 'package.json'), JSON.stringify({ name: 'api', main: 'main.js' }));
    writeFileSync(join(repo, 'services', 'api', 'main.js'), "require('node:http').createServer((q, r) => r.end('api from git')).listen(Number(process.env.PORT));\n");
    const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { stdio: 'pipe', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } });
    git('init', '-q', '-b', 'trunk');
    git('add', '.');
    git('commit', '-q', '-m', 'api');
    const run = await alto.call('app', 'Run', { name: 'api', repo: `file://${repo}`, branch: 'trunk', path: 'services/api' }, alto.adminKey);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const adminProject = run.body.service.url.split('.')[1];
    assert.equal((await getThroughEdge(edgePort, `api.${adminProject}.localhost`)).body, 'api from git');
    assert.equal((await alto.call('app', 'Delete', { name: 'api' }, alto.adminKey)).status, 200);

    const docker = join(scratch, 'docker-app');
    mkdirSync(docker, { recursive: true });
    // Its Dockerfile is read, not its package.json (Dockerfile builds are build.e2e.test.ts's).
    writeFileSync(join(docker, 'Dockerfile'), 'FROM node:22\nMAINTAINER someone\n');
    writeFileSync(join(docker, 'package.json'), JSON.stringify({ name: 'docker-app', main: 'index.js' }));
    const refused = await cli(['deploy', docker, '--name', 'docker-app']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Dockerfile line 2: MAINTAINER is not supported/);

    const shell = join(scratch, 'shell-app');
    mkdirSync(shell, { recursive: true });
    writeFileSync(join(shell, 'package.json'), JSON.stringify({ name: 'shell-app', scripts: { start: 'npm run build && node dist/index.js' } }));
    const shellRefused = await cli(['deploy', shell, '--name', 'shell-app']);
    assert.notEqual(shellRefused.code, 0);
    assert.match(shellRefused.stderr, /not a plain "node <file>" command/);
    assert.equal((await alto.call('app', 'Get', { name: 'shell-app' }, key)).status, 404);
  });

  test('a function bundles @alto/sdk; bad requests are 4xx that say what is wrong', async () => {
    const sdk = "import { Alto } from '@alto/sdk';\nexport default async () => {\n  const alto = new Alto({ url: 'http://alto.invalid', key: 'k' });\n  return Response.json({ sdk: typeof alto.db });\n};\n";
    const deployed = await call('Deploy', { name: 'sdk-user', source: sdk });
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    assert.deepEqual((await call('Call', { name: 'sdk-user' })).body.response, { sdk: 'object' });

    assert.equal((await call('Deploy', { name: 'sdk-user', source: sdk })).status, 409);
    const noCode = await call('Deploy', { name: 'empty' });
    assert.equal(noCode.status, 400);
    assert.match(noCode.body.detail, /give the code/);
    assert.equal((await call('Deploy', { name: 'Bad_Name', source: sdk })).status, 400);
    assert.equal((await call('Deploy', { name: 'php', source: sdk, runtime: 'php74' })).status, 400);
    const escape = await call('Deploy', { name: 'escape', files: { '../index.ts': Buffer.from('x').toString('base64') } });
    assert.equal(escape.status, 400);
    assert.match(escape.body.detail, /relative path/);
    assert.equal((await call('Call', { name: 'nothing' })).status, 404);
  });
});
