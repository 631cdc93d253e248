/**
 * Apps belong to an environment of their project, like its data (issue 27): the same app name
 * runs in `dev` (the default environment, at `<app>.<project>.localhost`) and in `staging` (at
 * `<app>.staging.<project>.localhost`) with different pages, each reached by its own host; a key
 * of one environment sees and changes only its own environment's apps, and may not name another;
 * the admin key acts in any environment with `alto deploy --env-name`; functions too belong to
 * their environment; `alto envs copy` runs an environment's apps in another and deploys its
 * functions there (function/Copy: built again from the kept source).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli, webImage } from './apps-fixture.js';

/** The admin key's own project: its admin key may act in each of its environments. */
const PROJECT = 'default';

describe('apps in two environments of one project', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let edgePort: number;
  let devKey: string;
  let stagingKey: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  const page = async (host: string) => {
    const { status, body } = await getThroughEdge(edgePort, host, '/');
    return { status, body };
  };
  const keyOf = async (environment: string) => {
    const generated = await alto.call('keys', 'Generate', { project: PROJECT, scopes: ['app', 'function'], environment });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    return generated.body.key as string;
  };
  const inEnvironment = (key: string, environment: string, endpoint: string, body: unknown) =>
    fetch(`${alto.url}/v1/app/${endpoint}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'x-alto-environment': environment, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  before(async () => {
    registry = await startRegistry();
    const [dev, staging] = await Promise.all([webImage('web dev', 'web dev\n'), webImage('web staging', 'web staging\n')]);
    await registry.push('demo/web', 'dev', dev);
    await registry.push('demo/web', 'staging', staging);
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host' } });
    edgePort = Number(new URL(alto.url).port);
    devKey = await keyOf('dev');
    stagingKey = await keyOf('staging');
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the same app name in dev and staging: each host serves its own environment', async () => {
    const inDev = await runCli(['deploy', `${registry.host}/demo/web:dev`, '--name', 'web', '--port', '8080', '--url', alto.url, '--key', devKey, '--json']);
    assert.equal(inDev.code, 0, inDev.stderr);
    assert.equal(JSON.parse(inDev.stdout).url, `http://web.${PROJECT}.localhost:${edgePort}`);
    // The admin key names the environment it deploys to.
    const inStaging = await runCli(['deploy', `${registry.host}/demo/web:staging`, '--name', 'web', '--port', '8080', '--env-name', 'staging', '--url', alto.url, '--key', alto.adminKey, '--json']);
    assert.equal(inStaging.code, 0, inStaging.stderr);
    assert.equal(JSON.parse(inStaging.stdout).url, `http://web.staging.${PROJECT}.localhost:${edgePort}`);

    assert.deepEqual(await page(`web.${PROJECT}.localhost`), { status: 200, body: 'web dev\n' });
    assert.deepEqual(await page(`web.staging.${PROJECT}.localhost`), { status: 200, body: 'web staging\n' });
    assert.deepEqual(await page(`web.dev.${PROJECT}.localhost`), { status: 200, body: 'web dev\n' }, 'the default environment named in the host is the same app');
    assert.equal((await page(`web.prod.${PROJECT}.localhost`)).status, 404, 'an environment without the app');
    assert.equal((await page(`web.staging.other.localhost`)).status, 404, 'another project');

    // The request log keeps staging's requests too (its app is found in its environment).
    await getThroughEdge(edgePort, `web.staging.${PROJECT}.localhost`, '/from-staging');
    await eventually(async () => {
      const listed = await runCli(['requests', '--app', 'web', '--kind', 'app', '--json', '--url', alto.url, '--key', alto.adminKey]);
      return listed.code === 0 && listed.stdout.includes('/from-staging');
    }, 'the staging request in the request log');
  });

  test("a key of one environment sees and changes only its environment's apps", async () => {
    const listed = await alto.call('app', 'List', {}, stagingKey);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.deepEqual(listed.body.services.map((service: any) => [service.name, service.url]), [['web', `http://web.staging.${PROJECT}.localhost:${edgePort}`]]);
    const devListed = await alto.call('app', 'List', {}, devKey);
    assert.deepEqual(devListed.body.services.map((service: any) => [service.name, service.url]), [['web', `http://web.${PROJECT}.localhost:${edgePort}`]]);
    assert.match((await alto.call('app', 'Get', { name: 'web' }, stagingKey)).body.service.image, /demo\/web:staging$/);

    // A project key may not name another environment than its own.
    const refused = await inEnvironment(stagingKey, 'dev', 'Delete', { name: 'web' });
    assert.equal(refused.status, 403, await refused.text());
    const own = await inEnvironment(stagingKey, 'staging', 'Get', { name: 'web' });
    assert.equal(own.status, 200, await own.text());

    // Deleting staging's app leaves dev's serving.
    const deleted = await alto.call('app', 'Delete', { name: 'web' }, stagingKey);
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.equal((await page(`web.staging.${PROJECT}.localhost`)).status, 404);
    assert.deepEqual(await page(`web.${PROJECT}.localhost`), { status: 200, body: 'web dev\n' });
    assert.equal((await alto.call('app', 'Get', { name: 'web' }, stagingKey)).status, 404);
    assert.equal((await alto.call('app', 'Get', { name: 'web' }, devKey)).status, 200);
  });

  test('a function of the same name in each environment: each key calls and lists its own, each host serves its own', async () => {
    const source = (label: string) => `export default async function handle(): Promise<Response> { return new Response('hello from ${label}'); }`;
    for (const [key, label] of [[devKey, 'dev'], [stagingKey, 'staging']]) {
      const deployed = await alto.call('function', 'Deploy', { name: 'hello', source: source(label) }, key);
      assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    }
    const called = await alto.call('function', 'Call', { name: 'hello' }, stagingKey);
    assert.equal(called.status, 200, JSON.stringify(called.body));
    assert.equal(called.body.response, 'hello from staging');
    assert.equal((await alto.call('function', 'Call', { name: 'hello' }, devKey)).body.response, 'hello from dev');
    const listed = await alto.call('function', 'List', {}, stagingKey);
    assert.deepEqual(listed.body.functions.map((fn: any) => [fn.name, fn.url]), [['hello', `http://hello.staging.${PROJECT}.localhost:${edgePort}`]]);
    assert.deepEqual(await page(`hello.staging.${PROJECT}.localhost`), { status: 200, body: 'hello from staging' });
    assert.deepEqual(await page(`hello.${PROJECT}.localhost`), { status: 200, body: 'hello from dev' });
  });

  test('alto envs copy dev staging runs dev\'s apps in staging with their settings and deploys its functions there; --dry-run only lists them', async () => {
    const updated = await alto.call('app', 'Update', { name: 'web', env_vars: { GREETING: 'hello' }, max_instances: 2 }, devKey);
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    // A function of dev only, deployed from an uploaded folder (copied from the source Alto kept).
    const files = {
      'index.ts': Buffer.from("import { word } from './word.js';\nexport default async function handle(): Promise<Response> { return new Response(`${word} ${process.env.TONE}`); }\n").toString('base64'),
      'word.ts': Buffer.from("export const word = 'copied';\n").toString('base64'),
    };
    const deployed = await alto.call('function', 'Deploy', { name: 'folder', files, env_vars: { TONE: 'calm' } }, devKey);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    // A project key reaches only its own environment: it cannot copy into another.
    assert.equal((await alto.call('function', 'Copy', { name: 'hello', environment: 'dev' }, stagingKey)).status, 403);
    const copy = (extra: string[]) => runCli(['envs', 'copy', 'dev', 'staging', ...extra, '--url', alto.url, '--key', alto.adminKey, '--json']);

    const dry = await copy(['--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout).apps, [{ app: 'web', action: 'run', image: `${registry.host}/demo/web:dev` }]);
    assert.deepEqual(JSON.parse(dry.stdout).functions, [{ function: 'folder', action: 'deploy' }, { function: 'hello', action: 'update' }]);
    assert.equal((await page(`web.staging.${PROJECT}.localhost`)).status, 404, 'a dry run changes nothing');
    assert.equal((await page(`folder.staging.${PROJECT}.localhost`)).status, 404, 'a dry run deploys nothing');

    const copied = await copy([]);
    assert.equal(copied.code, 0, copied.stderr);
    assert.deepEqual(JSON.parse(copied.stdout).functions, [{ function: 'folder', action: 'deploy' }, { function: 'hello', action: 'update' }]);
    assert.deepEqual(await page(`web.staging.${PROJECT}.localhost`), { status: 200, body: 'web dev\n' });
    // The functions answer in staging with dev's code: the folder one built from its kept files, hello replaced.
    assert.deepEqual(await page(`folder.staging.${PROJECT}.localhost`), { status: 200, body: 'copied calm' });
    assert.deepEqual(await page(`hello.staging.${PROJECT}.localhost`), { status: 200, body: 'hello from dev' });
    assert.equal((await alto.call('function', 'Call', { name: 'hello' }, stagingKey)).body.response, 'hello from dev');
    const inStaging = (await alto.call('app', 'Get', { name: 'web' }, stagingKey)).body.service;
    assert.deepEqual([inStaging.env_vars, inStaging.max_instances, inStaging.port], [{ GREETING: 'hello' }, 2, 8080]);

    // Copied again, the staging app is updated to dev's definition.
    assert.equal((await alto.call('app', 'Update', { name: 'web', env_vars: { GREETING: 'hi again' } }, devKey)).status, 200);
    const again = await copy([]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout).apps.map((step: any) => step.action), ['update']);
    assert.deepEqual((await alto.call('app', 'Get', { name: 'web' }, stagingKey)).body.service.env_vars, { GREETING: 'hi again' });
  });
});
