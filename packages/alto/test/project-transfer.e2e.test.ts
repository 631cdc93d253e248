/**
 * Moving a project between two Alto instances (two `alto up --sandbox process` processes), as a
 * user does it, with the CLI: fill project `shop` on A with one of everything (db rows and an
 * index, a file, a space object, a secret, a user with a password, a short URL, a search
 * document, retained events, a function, an app from an image the test built and pushed to a
 * registry, a cron job calling that app), stop the registry (so the image is only on A and
 * travels in the archive), `alto projects export` it, `alto projects import` it into B as
 * `shop2` and find each part there: the user logs in with the same password, the
 * secret reads back (sealed again with B's own master key), the app and the function answer
 * through B's edge. Then `alto push` and `alto pull` through saved profiles both ways (a dry
 * run first, `--only data`), an import refused on a taken name, an archive sealed with a
 * passphrase, and an import failing part way that leaves no project behind.
 *
 * The project has a second environment, `staging`, with its own app (another image), function and
 * record: every environment's apps and functions travel and answer at their hosts
 * (`<app>.staging.<project>`) on the target, and `--env staging:qa` brings staging in as `qa`.
 */
import assert from 'node:assert/strict';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { ArchiveWriter } from '../src/platform/transfer/archive.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli, webImage } from './apps-fixture.js';

const GREETER = `export default async function (request: Request): Promise<Response> {
  return Response.json({ hello: new URL(request.url).searchParams.get('name') ?? 'world', greeting: process.env.GREETING ?? 'none' });
}
`;
const PASSWORD = 'correct horse battery';
const SECRET_VALUE = 'sk_live_transfer_0123456789';

describe('projects move between instances', () => {
  let registry: TestRegistry;
  let registryStopped = false;
  let a: ServerProcess;
  let b: ServerProcess;
  let shopKey: string;
  let stagingKey: string;
  const cacheA = privateSandboxCache();
  const cacheB = privateSandboxCache();
  const dataA = temporaryDataDir();
  const dataB = temporaryDataDir();
  const scratch = mkdtempSync(join(tmpdir(), 'alto-transfer-'));
  const archive = join(scratch, 'shop.tgz');
  const cliEnv = { ALTO_CONFIG: join(scratch, 'config.json') };

  const start = (dataDir: string, cache: string) =>
    startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache, ALTO_FUNCTIONS_NODE: 'host', ALTO_ALLOW_PRIVATE_CALLBACKS: '1' } });
  const edgePort = (alto: ServerProcess) => Number(new URL(alto.url).port);
  /** A call that must succeed: its body. */
  async function ok(alto: ServerProcess, key: string, service: string, endpoint: string, body: unknown): Promise<any> {
    const result = await alto.call(service, endpoint, body, key);
    assert.equal(result.status, 200, `${service}/${endpoint}: ${JSON.stringify(result.body)}`);
    return result.body;
  }
  const cliOn = (alto: ServerProcess, args: string[]) => runCli([...args, '--url', alto.url, '--key', alto.adminKey], cliEnv);

  before(async () => {
    registry = await startRegistry();
    await registry.push('demo/web', 'v1', await webImage('web v1', 'web v1 page\n'));
    await registry.push('demo/web', 'v2', await webImage('web v2', 'web v2 page\n'));
    [a, b] = await Promise.all([start(dataA, cacheA.dir), start(dataB, cacheB.dir)]);
    shopKey = await a.projectKey('shop', ['*']);
    // The project's log settings, kept beside its limits, move with it.
    await ok(a, a.adminKey, 'projects', 'Update', { name: 'shop', request_log_days: 3, log_days: 2, log_bytes: 1024 * 1024 });
    const fill = (service: string, endpoint: string, body: unknown) => ok(a, shopKey, service, endpoint, body);
    await fill('db', 'Create', { table: 'orders', record: { id: 'o1', item: 'milk', qty: 2 } });
    await fill('db', 'Create', { table: 'orders', record: { id: 'o2', item: 'bread', qty: 1 } });
    await fill('db', 'CreateIndex', { table: 'orders', field: 'qty' });
    await fill('file', 'Save', { file: { project: 'site', path: '/docs/readme.md', content: '# shop' } });
    await fill('space', 'Create', { name: 'images/logo.bin', object: Buffer.from('logo bytes \u0000\u00ff').toString('base64') });
    await fill('secret', 'Set', { key: 'stripe', value: SECRET_VALUE });
    await fill('user', 'Create', { email: 'ann@example.com', username: 'ann', password: PASSWORD });
    await fill('url', 'Create', { id: 'shop-sale', destinationURL: 'https://example.com/sale' });
    await fill('search', 'Index', { index: 'products', data: { id: 'p1', title: 'fresh milk' } });
    await fill('event', 'Publish', { topic: 'orders', message: { order: 'o1' } });
    await fill('event', 'Publish', { topic: 'orders', message: { order: 'o2' } });
    await fill('function', 'Deploy', { name: 'greeter', source: GREETER, env_vars: { GREETING: 'hi' } });
    await fill('app', 'Run', { name: 'web', image: `${registry.host}/demo/web:v1`, port: 8080, env_vars: { MODE: 'shop' }, secrets: ['stripe'], secret_files: [{ secret: 'stripe', target: 'stripe-key', mode: 0o440 }] });
    await fill('cron', 'Schedule', { id: 'nightly', name: 'nightly', interval: '0 3 * * *', callback: 'app://web/hook' });
    // staging: its own app (another image), function and record, beside dev's of the same names.
    const generated = await a.call('keys', 'Generate', { project: 'shop', scopes: ['*'], environment: 'staging' });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    stagingKey = generated.body.key;
    await ok(a, stagingKey, 'db', 'Create', { table: 'orders', record: { id: 's1', item: 'staging only', qty: 9 } });
    await ok(a, stagingKey, 'function', 'Deploy', { name: 'greeter', source: GREETER, env_vars: { GREETING: 'hi staging' } });
    await ok(a, stagingKey, 'app', 'Run', { name: 'web', image: `${registry.host}/demo/web:v2`, port: 8080, env_vars: { MODE: 'staging' } });
    assert.equal((await getThroughEdge(edgePort(a), 'web.shop.localhost')).body, 'web v1 page\n');
    assert.equal((await getThroughEdge(edgePort(a), 'web.staging.shop.localhost')).body, 'web v2 page\n');
    // From here on the image is only on A: the archives carry it, no instance can pull it again.
    await registry.stop();
    registryStopped = true;
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    if (!registryStopped) await registry?.stop();
    cacheA.remove();
    cacheB.remove();
    for (const folder of [dataA, dataB, scratch]) rmSync(folder, { recursive: true, force: true });
  });

  /** Every part of the filled project, checked on `alto` in `project` with `key`. */
  async function assertMoved(alto: ServerProcess, project: string, key: string, only: 'all' | 'data' = 'all'): Promise<void> {
    const read = (service: string, endpoint: string, body: unknown) => ok(alto, key, service, endpoint, body);
    const orders = await read('db', 'Read', { table: 'orders', order: 'asc', orderBy: 'id' });
    assert.deepEqual(orders.records.map((record: any) => [record.id, record.item, record.qty]), [['o1', 'milk', 2], ['o2', 'bread', 1]]);
    const indexes = await read('db', 'ListIndexes', { table: 'orders' });
    assert.ok(JSON.stringify(indexes).includes('qty'), JSON.stringify(indexes));
    assert.equal((await read('file', 'Read', { project: 'site', path: '/docs/readme.md' })).file.content, '# shop');
    const object = await read('space', 'Read', { name: 'images/logo.bin' });
    assert.equal(Buffer.from(object.object.data, 'base64').toString(), 'logo bytes \u0000\u00ff');
    assert.equal((await read('secret', 'Get', { key: 'stripe' })).value, SECRET_VALUE);
    // The password hash came along: the same password logs in, another does not.
    const login = await read('user', 'Login', { email: 'ann@example.com', password: PASSWORD });
    assert.ok(login.session.id);
    assert.equal((await alto.call('user', 'Login', { email: 'ann@example.com', password: 'wrong password' }, key)).status, 401);
    const urls = await read('url', 'List', {});
    assert.ok(urls.urlPairs.some((pair: any) => pair.destinationURL === 'https://example.com/sale'), JSON.stringify(urls));
    const found = await read('search', 'Search', { index: 'products', query: 'milk' });
    assert.deepEqual(found.records.map((record: any) => record.data.title), ['fresh milk']);
    const events = await read('event', 'Read', { topic: 'orders' });
    assert.deepEqual(events.events.map((event: any) => event.message.order), ['o1', 'o2']);
    const jobs = await read('cron', 'Jobs', {});
    assert.deepEqual(jobs.jobs.map((job: any) => [job.id, job.callback]), [['nightly', 'app://web/hook']]);
    const apps = await read('app', 'List', {});
    const functions = await read('function', 'List', {});
    if (only === 'data') {
      assert.deepEqual(apps.services, []);
      assert.deepEqual(functions.functions, []);
      return;
    }
    // The app and the function were deployed on the target and answer through its edge.
    const web = apps.services.find((service: any) => service.name === 'web');
    assert.equal(web.env_vars.MODE, 'shop');
    assert.deepEqual(web.secrets, ['stripe']);
    assert.deepEqual(web.secret_files, [{ secret: 'stripe', target: 'stripe-key', mode: 0o440 }]);
    assert.equal(web.image, `${registry.host}/demo/web:v1`);
    const page = await eventually(async () => {
      const answer = await getThroughEdge(edgePort(alto), `web.${project}.localhost`);
      return answer.status === 200 && answer;
    }, `web.${project} answering on ${alto.url}`);
    assert.equal(page.body, 'web v1 page\n');
    const greeting = await getThroughEdge(edgePort(alto), `greeter.${project}.localhost`, '/?name=moved');
    assert.equal(greeting.status, 200, greeting.body);
    assert.deepEqual(JSON.parse(greeting.body), { hello: 'moved', greeting: 'hi' });
  }

  /** The staging environment's record, app and function, on `alto` in `project`'s environment `environment`. */
  async function assertStaging(alto: ServerProcess, project: string, environment = 'staging'): Promise<void> {
    const generated = await alto.call('keys', 'Generate', { project, scopes: ['*'], environment });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    const key = generated.body.key;
    const orders = await ok(alto, key, 'db', 'Read', { table: 'orders' });
    assert.deepEqual(orders.records.map((record: any) => [record.id, record.item]), [['s1', 'staging only']]);
    const apps = await ok(alto, key, 'app', 'List', {});
    assert.deepEqual(apps.services.map((service: any) => [service.name, service.env_vars.MODE]).filter(([name]: string[]) => name === 'web'), [['web', 'staging']]);
    const page = await eventually(async () => {
      const answer = await getThroughEdge(edgePort(alto), `web.${environment}.${project}.localhost`);
      return answer.status === 200 && answer;
    }, `web.${environment}.${project} answering on ${alto.url}`);
    assert.equal(page.body, 'web v2 page\n');
    const greeting = await getThroughEdge(edgePort(alto), `greeter.${environment}.${project}.localhost`, '/?name=staged');
    assert.equal(greeting.status, 200, greeting.body);
    assert.deepEqual(JSON.parse(greeting.body), { hello: 'staged', greeting: 'hi staging' });
  }

  test('export on A, import on B as another name: every part is there and works', async () => {
    const exported = await cliOn(a, ['projects', 'export', 'shop', '-o', archive]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stderr, /holds the project's secrets in clear/);
    assert.match(exported.stderr, /exported shop to .*db 3.*/);
    // Keys never leave: the archive holds neither A's admin key nor the project's.
    const tar = gunzipSync(readFileSync(archive));
    assert.ok(!tar.includes(Buffer.from(shopKey)) && !tar.includes(Buffer.from(a.adminKey)));
    // The app's image travels with it, blob by blob.
    assert.ok(tar.includes(Buffer.from('app/blobs/')), 'the archive holds the image blobs');

    const imported = await cliOn(b, ['projects', 'import', archive, '--as', 'shop2', '--json']);
    assert.equal(imported.code, 0, imported.stderr);
    const answer = JSON.parse(imported.stdout);
    assert.equal(answer.project.name, 'shop2');
    assert.match(answer.key, /^alto_/);
    assert.equal(answer.sections.db, 3);
    assert.equal(answer.sections.app, 2, JSON.stringify(answer));
    assert.equal(answer.sections.function, 2);
    assert.deepEqual(answer.environments, { dev: 'dev', staging: 'staging' });
    // The short id is B's to give: shop-sale is free there, so it stayed.
    assert.deepEqual(answer.warnings, []);
    await assertMoved(b, 'shop2', answer.key);
    await assertStaging(b, 'shop2');
    const settings = (await ok(b, b.adminKey, 'projects', 'List', {})).projects.find((project: any) => project.name === 'shop2');
    assert.deepEqual([settings.request_log_days, settings.log_days, settings.log_bytes], [3, 2, 1024 * 1024]);
    assert.equal((await ok(b, answer.key, 'url', 'List', {})).urlPairs[0].id, 'shop-sale');

    // The name is taken now: a second import is refused, and changes nothing.
    const again = await cliOn(b, ['projects', 'import', archive, '--as', 'shop2']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /project "shop2" exists already.*--as NAME/);
  });

  test('push and pull through saved profiles, both ways; a dry run creates nothing', async () => {
    const login = await runCli(['login', '--url', b.url, '--key', b.adminKey, '--profile', 'prod'], cliEnv);
    assert.equal(login.code, 0, login.stderr);

    const dryRun = await cliOn(a, ['push', 'shop', '--to', 'prod', '--as', 'shop3', '--dry-run']);
    assert.equal(dryRun.code, 0, dryRun.stderr);
    const plan = JSON.parse(dryRun.stdout);
    assert.equal(plan.action, 'create');
    assert.equal(plan.sections.db, 3);
    assert.equal(plan.sections.app, 2);
    assert.deepEqual(plan.environments, { dev: 'dev', staging: 'staging' });
    const projectsOnB = async () => (await ok(b, b.adminKey, 'projects', 'List', {})).projects.map((project: any) => project.name);
    assert.ok(!(await projectsOnB()).includes('shop3'), 'the dry run created nothing');
    const refusedPlan = JSON.parse((await cliOn(a, ['push', 'shop', '--to', 'prod', '--as', 'shop2', '--dry-run'])).stdout);
    assert.match(refusedPlan.action, /refused: the project exists there/);

    const pushed = await cliOn(a, ['push', 'shop', '--to', 'prod', '--as', 'shop3', '--only', 'data', '--json']);
    assert.equal(pushed.code, 0, pushed.stderr);
    const pushedAnswer = JSON.parse(pushed.stdout);
    assert.equal(pushedAnswer.project.name, 'shop3');
    assert.equal(pushedAnswer.sections.app, undefined);
    await assertMoved(b, 'shop3', pushedAnswer.key, 'data');

    // Back the other way: B's shop2 (itself imported) comes to A as shop4, its app running on A.
    const pulled = await cliOn(a, ['pull', 'shop2', '--from', 'prod', '--as', 'shop4', '--json']);
    assert.equal(pulled.code, 0, pulled.stderr);
    const pulledAnswer = JSON.parse(pulled.stdout);
    assert.equal(pulledAnswer.project.name, 'shop4');
    // shop-sale is shop's on A: the pulled short URL got a new id, and the import said so.
    assert.ok(pulledAnswer.warnings.some((line: string) => /short id "shop-sale" is taken/.test(line)), JSON.stringify(pulledAnswer.warnings));
    await assertMoved(a, 'shop4', pulledAnswer.key);
    await assertStaging(a, 'shop4');

    // Code only: the apps and functions, without the data; the app runs without the secret that stayed behind.
    const codeOnly = await cliOn(a, ['push', 'shop', '--to', 'prod', '--as', 'shop5', '--only', 'code', '--json']);
    assert.equal(codeOnly.code, 0, codeOnly.stderr);
    const codeAnswer = JSON.parse(codeOnly.stdout);
    assert.deepEqual(Object.keys(codeAnswer.sections).sort(), ['app', 'function', 'project']);
    assert.ok(codeAnswer.warnings.some((line: string) => /app web: runs without its secrets \(stripe\)/.test(line)), JSON.stringify(codeAnswer.warnings));
    assert.ok(codeAnswer.warnings.some((line: string) => /app web: runs without its secret files \(\/run\/secrets\/stripe-key\)/.test(line)), JSON.stringify(codeAnswer.warnings));
    assert.equal((await ok(b, codeAnswer.key, 'db', 'ListTables', {})).tables.length, 0);
    const page = await eventually(async () => {
      const answer = await getThroughEdge(edgePort(b), 'web.shop5.localhost');
      return answer.status === 200 && answer;
    }, 'web.shop5 answering on B');
    assert.equal(page.body, 'web v1 page\n');
  });

  test('push --env staging:qa brings staging in as qa; the dry run shows the mapping and refuses two environments in one', async () => {
    const plan = await cliOn(a, ['push', 'shop', '--to', 'prod', '--as', 'shop6', '--env', 'staging:qa', '--only', 'code', '--dry-run']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.deepEqual(JSON.parse(plan.stdout).environments, { dev: 'dev', staging: 'qa' });
    const merged = await cliOn(a, ['push', 'shop', '--to', 'prod', '--as', 'shop6', '--env', 'dev:staging', '--only', 'code', '--dry-run']);
    assert.notEqual(merged.code, 0);
    assert.match(merged.stderr, /environments "dev" and "staging" would both arrive in "staging"/);

    const pushed = await cliOn(a, ['push', 'shop', '--to', 'prod', '--as', 'shop6', '--env', 'staging:qa', '--only', 'code', '--json']);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.deepEqual(JSON.parse(pushed.stdout).environments, { dev: 'dev', staging: 'qa' });
    const page = await eventually(async () => {
      const answer = await getThroughEdge(edgePort(b), 'web.qa.shop6.localhost');
      return answer.status === 200 && answer;
    }, 'web.qa.shop6 answering on B');
    assert.equal(page.body, 'web v2 page\n');
    assert.equal((await getThroughEdge(edgePort(b), 'web.shop6.localhost')).body, 'web v1 page\n');
    assert.deepEqual(JSON.parse((await getThroughEdge(edgePort(b), 'greeter.qa.shop6.localhost', '/?name=q')).body), { hello: 'q', greeting: 'hi staging' });
    assert.equal((await getThroughEdge(edgePort(b), 'web.staging.shop6.localhost')).status, 404, 'nothing arrived under the name staging');
  });

  test('a passphrase seals the secrets in the archive; the import needs it', async () => {
    const passphraseFile = join(scratch, 'passphrase');
    writeFileSync(passphraseFile, 'a long enough passphrase\n');
    const sealed = join(scratch, 'sealed.tgz');
    const exported = await cliOn(a, ['projects', 'export', 'shop', '-o', sealed, '--only', 'data', '--passphrase-file', passphraseFile]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.doesNotMatch(exported.stderr, /in clear/);
    assert.ok(!gunzipSync(readFileSync(sealed)).includes(Buffer.from(SECRET_VALUE)), 'the secret is not in the archive in clear');
    const without = await cliOn(b, ['projects', 'import', sealed, '--as', 'sealed']);
    assert.notEqual(without.code, 0);
    assert.match(without.stderr, /sealed with a passphrase: give it/);
    const wrongFile = join(scratch, 'wrong');
    writeFileSync(wrongFile, 'not the passphrase at all\n');
    const wrong = await cliOn(b, ['projects', 'import', sealed, '--as', 'sealed', '--passphrase-file', wrongFile]);
    assert.match(wrong.stderr, /does not open with this passphrase/);
    const imported = await cliOn(b, ['projects', 'import', sealed, '--as', 'sealed', '--passphrase-file', passphraseFile, '--json']);
    assert.equal(imported.code, 0, imported.stderr);
    const key = JSON.parse(imported.stdout).key;
    assert.equal((await ok(b, key, 'secret', 'Get', { key: 'stripe' })).value, SECRET_VALUE);
  });

  test('an import that fails part way leaves no project and none of its data', async () => {
    // Sound archive, but its app's image cannot be pulled: the import fails after the data went in.
    const broken = join(scratch, 'broken.tgz');
    const writer = new ArchiveWriter({ format: 'alto-project/1', altoVersion: 'test', project: 'broken', createdAt: new Date().toISOString(), secrets: 'none', only: 'all' });
    const written = pipeline(writer.output, createWriteStream(broken));
    await writer.begin();
    const records = writer.records('db', 'dev/orders/records');
    await records.write({ id: 'x1', data: { id: 'x1', item: 'ghost' } });
    await records.close();
    await writer.json('app', 'web/app.json', { name: 'web', image: `${registry.host}/demo/missing:v1`, digest: '', settings: { port: 8080 } }, 1);
    await writer.finish();
    await written;
    const failed = await cliOn(b, ['projects', 'import', broken]);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /missing/);
    const names = (await ok(b, b.adminKey, 'projects', 'List', {})).projects.map((project: any) => project.name);
    assert.ok(!names.includes('broken'), `no half project: ${names.join(', ')}`);
    // A project made again under that name starts empty: the records were removed with it.
    const key = await b.projectKey('broken', ['db']);
    assert.deepEqual((await ok(b, key, 'db', 'Read', { table: 'orders' })).records, []);
  });
});
