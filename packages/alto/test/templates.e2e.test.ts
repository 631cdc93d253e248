/**
 * Templates (issue "Templates and stateful services"): a stack of apps from a compose.yaml and an
 * alto.yaml, on the process sandbox.
 * - `alto template deploy <local git repository>` of a PostgreSQL + Node.js app template: the
 *   database (the image built like the official one, a named volume, a TCP port) and a web app
 *   built from the template's folder (package.json depending on `pg`, installed from the npm
 *   registry) that reaches it as `db:5432`, as in compose (its link, named in /etc/hosts); the
 *   password is a generated secret: in `secret`, never in an answer or an app's env_vars. Rows written through the app survive an update of
 *   the app, a restart of Alto and a suspend and wake of the database. Destroy keeps the data and
 *   the secret, and a new deploy finds both.
 * - A compose file with an unsupported key, or a bind mount, is refused naming them, and
 *   nothing is made; a deploy that fails on its second service removes the first and its secret.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { postgresImage } from './app-images.js';
import { request as httpRequest } from 'node:http';
import { eventually, privateSandboxCache, runCli } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

async function npmReachable(): Promise<boolean> {
  try {
    const response = await fetch('https://registry.npmjs.org/pg', { method: 'HEAD', signal: AbortSignal.timeout(5_000) });
    return response.ok;
  } catch {
    return false;
  }
}
const reachable = await npmReachable();

const COMPOSE = `
name: shop
services:
  db:
    image: \${REGISTRY}/db/postgres:15
    environment:
      POSTGRES_USER: shop
      POSTGRES_DB: shop
      POSTGRES_PASSWORD: \${DB_PASSWORD}
    volumes:
      - data:/var/lib/postgresql/data
    expose: ["5432"]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U shop"]
      interval: 2s
    x-alto:
      idle_timeout: 1
  web:
    build: ./web
    ports: ["8080:8080"]
    environment:
      DATABASE_URL: postgres://shop:\${DB_PASSWORD}@db:5432/shop
      GREETING: hello
    depends_on:
      db:
        condition: service_healthy
volumes:
  data: {}
`;

const ALTO_YAML = `
parameters:
  REGISTRY:
    description: the registry holding the images
  DB_PASSWORD:
    description: the database password
    secret: true
    generate: 24
public: web
services:
  db:
    protocol: tcp
`;

/** A web app keeping orders in PostgreSQL: a new client per request, so the database can sleep between them. */
const SERVER = `
const http = require('node:http');
const { Client } = require('pg');
async function withClient(work) {
  const client = new Client({ connectionString: process.env.DATABASE_URL, connectionTimeoutMillis: 30000 });
  await client.connect();
  try { return await work(client); } finally { await client.end(); }
}
http.createServer(async (request, response) => {
  try {
    const url = new URL(request.url, 'http://x');
    const rows = await withClient(async (client) => {
      await client.query('CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text NOT NULL)');
      if (request.method === 'POST') await client.query('INSERT INTO orders (item) VALUES ($1)', [url.searchParams.get('item')]);
      return (await client.query('SELECT item FROM orders ORDER BY id')).rows.map((row) => row.item);
    });
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ greeting: process.env.GREETING, rows }));
  } catch (error) {
    response.writeHead(500, { 'content-type': 'text/plain' });
    response.end(String(error && error.message));
  }
}).listen(Number(process.env.PORT || 8080));
`;

function writeTemplate(dir: string, compose = COMPOSE, alto = ALTO_YAML): void {
  mkdirSync(join(dir, 'web'), { recursive: true });
  writeFileSync(join(dir, 'compose.yaml'), compose);
  writeFileSync(join(dir, 'alto.yaml'), alto);
  writeFileSync(join(dir, 'web', 'package.json'), JSON.stringify({ name: 'web', version: '1.0.0', main: 'server.js', dependencies: { pg: '8.13.1' } }));
  writeFileSync(join(dir, 'web', 'server.js'), SERVER);
}

describe('templates: a PostgreSQL + Node.js stack from a local git repository', { skip: reachable ? false : 'the npm registry (registry.npmjs.org) cannot be reached from this machine' }, () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let repo: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const altoOptions = () => ({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host' } });

  before(async () => {
    registry = await startRegistry();
    await registry.push('db/postgres', '15', await postgresImage());
    alto = await startProcess(altoOptions());
    key = await alto.projectKey('stacks', ['template', 'app', 'secret']);
    repo = mkdtempSync(join(tmpdir(), 'alto-template-repo-'));
    writeTemplate(repo);
    const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.test', ...args], { cwd: repo, stdio: 'ignore' });
    git('init', '--quiet', '--initial-branch', 'main');
    git('add', '.');
    git('commit', '--quiet', '-m', 'template');
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    if (repo) rmSync(repo, { recursive: true, force: true });
  });

  const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);
  const webHost = () => `shop-web.stacks.localhost:${new URL(alto.url).port}`;
  async function orders(method: 'GET' | 'POST' = 'GET', item?: string): Promise<{ greeting: string; rows: string[] }> {
    const path = item ? `/?item=${encodeURIComponent(item)}` : '/';
    const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const sent = httpRequest({ host: '127.0.0.1', port: Number(new URL(alto.url).port), path, method, headers: { host: webHost() }, agent: false }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => resolve({ status: answer.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        answer.on('error', reject);
      });
      sent.on('error', reject);
      sent.end();
    });
    assert.equal(response.status, 200, `${method} ${path}: ${response.body}`);
    return JSON.parse(response.body);
  }
  async function dbSlot(): Promise<{ state: string; instance?: string }> {
    const status = await alto.call('app', 'Status', { name: 'shop-db' }, key);
    return status.body.service.slots[0];
  }

  test('deploy from the repository: apps in order, linked, the generated password kept in secret and never shown; rows through the app', async () => {
    const deployed = await cli(['template', 'deploy', `file://${repo}`, '--name', 'shop', '--set', `REGISTRY=${registry.host}`, '--json']);
    assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
    const result = JSON.parse(deployed.stdout);
    assert.deepEqual(result.stack.services.map((service: { service: string; app: string }) => [service.service, service.app]), [['db', 'shop-db'], ['web', 'shop-web']]);
    assert.equal(typeof result.stack.services[0].tcp_port, 'number', 'the database is a TCP app');
    assert.deepEqual(result.secrets, ['shop-db-password']);
    assert.match(result.public, /^http:\/\/shop-web\.stacks\./);
    // The password: 24 characters in secret, and nowhere in what the deploy or the apps answer.
    const secret = await alto.call('secret', 'Get', { key: 'shop-db-password' }, key);
    assert.equal(secret.status, 200);
    const password = secret.body.value as string;
    assert.equal(password.length, 24);
    assert.ok(!deployed.stdout.includes(password), 'the deploy does not print the password');
    for (const name of ['shop-db', 'shop-web']) {
      const app = await alto.call('app', 'Get', { name }, key);
      assert.ok(!JSON.stringify(app.body).includes(password), `${name} does not show the password`);
      assert.deepEqual(app.body.service.secrets, ['shop-db-password']);
      assert.deepEqual([app.body.service.stack.name, app.body.service.stack.service], ['shop', name.slice('shop-'.length)]);
    }
    const web = (await alto.call('app', 'Get', { name: 'shop-web' }, key)).body.service;
    assert.equal(web.env_vars.DATABASE_URL, 'postgres://shop:$(SHOP_DB_PASSWORD)@db:5432/shop');
    assert.deepEqual([web.links, web.link_aliases], [['shop-db'], { db: 'shop-db' }]);
    // The app reaches the database by its compose name and port (its link, in /etc/hosts), with the password expanded in its instance.
    await orders('POST', 'apples');
    assert.deepEqual((await orders('POST', 'pears')).rows, ['apples', 'pears']);
    const listed = await cli(['template', 'list', '--json']);
    assert.deepEqual(JSON.parse(listed.stdout).stacks.map((stack: { name: string; services: unknown[] }) => [stack.name, stack.services.length]), [['shop', 2]]);
  });

  test('the rows survive an update of the app, a restart of Alto, and a suspend and wake of the database', async () => {
    const updated = await alto.call('app', 'Update', { name: 'shop-web', env_vars: { GREETING: 'updated' } }, key);
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    const afterUpdate = await orders();
    assert.deepEqual([afterUpdate.greeting, afterUpdate.rows], ['updated', ['apples', 'pears']]);

    await alto.close();
    alto = await startProcess(altoOptions());
    assert.deepEqual((await eventually(async () => (await orders().catch(() => undefined))?.rows, 'the stack back after the restart', 90_000)), ['apples', 'pears']);

    // The database sleeps once idle (min_instances 0, idle_timeout 1 from x-alto), and the app's next request wakes it.
    const instance = await eventually(async () => {
      const slot = await dbSlot();
      return slot?.state === 'suspended' && slot.instance;
    }, 'the database suspended', 60_000);
    assert.deepEqual((await orders('POST', 'plums')).rows, ['apples', 'pears', 'plums']);
    assert.equal((await dbSlot()).instance, instance, 'the same database instance, woken');
  });

  test('update applies the changed template as a diff: the changed service is updated, a new one added, a dropped one removed; the database is untouched', async () => {
    const dbBefore = (await dbSlot()).instance;
    const withWorker = COMPOSE.replace('GREETING: hello', 'GREETING: bonjour').replace(
      'volumes:\n  data: {}',
      'worker:\n    build: ./web\n    expose: ["8080"]\n    environment:\n      DATABASE_URL: postgres://shop:${DB_PASSWORD}@$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)/shop\nvolumes:\n  data: {}',
    );
    writeTemplate(repo, withWorker.replace('\nworker:', '\n  worker:'));
    const first = await cli(['template', 'update', repo, '--name', 'shop', '--set', `REGISTRY=${registry.host}`, '--json']);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const changes = (result: string) => Object.fromEntries(JSON.parse(result).changes.map((change: { service: string; change: string }) => [change.service, change.change]));
    assert.deepEqual(changes(first.stdout), { db: 'unchanged', web: 'updated', worker: 'added' });
    const afterFirst = await orders();
    assert.deepEqual([afterFirst.greeting, afterFirst.rows], ['bonjour', ['apples', 'pears', 'plums']]);
    assert.equal((await alto.call('app', 'Get', { name: 'shop-worker' }, key)).status, 200);

    writeTemplate(repo);
    const second = await cli(['template', 'update', repo, '--name', 'shop', '--set', `REGISTRY=${registry.host}`, '--json']);
    assert.equal(second.code, 0, second.stderr + second.stdout);
    assert.deepEqual(changes(second.stdout), { db: 'unchanged', web: 'updated', worker: 'removed' });
    assert.equal((await alto.call('app', 'Get', { name: 'shop-worker' }, key)).status, 404);
    assert.equal((await orders()).greeting, 'hello');
    assert.equal((await dbSlot()).instance, dbBefore, 'the database kept its instance through both updates');
  });

  test('destroy keeps the volume and the secret: a new deploy of the stack finds its rows with the same password', async () => {
    const password = (await alto.call('secret', 'Get', { key: 'shop-db-password' }, key)).body.value;
    const destroyed = await cli(['template', 'destroy', 'shop', '--json']);
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.deepEqual(JSON.parse(destroyed.stdout).removed.sort(), ['shop-db', 'shop-web']);
    assert.equal((await alto.call('app', 'Get', { name: 'shop-web' }, key)).status, 404);
    const again = await cli(['template', 'deploy', repo, '--name', 'shop', '--set', `REGISTRY=${registry.host}`, '--json']);
    assert.equal(again.code, 0, again.stderr + again.stdout);
    assert.equal((await alto.call('secret', 'Get', { key: 'shop-db-password' }, key)).body.value, password, 'the kept secret is used again');
    assert.deepEqual((await orders()).rows, ['apples', 'pears', 'plums']);
    const gone = await alto.call('template', 'Destroy', { name: 'shop', volumes: true }, key);
    assert.equal(gone.status, 200, JSON.stringify(gone.body));
    assert.equal((await alto.call('secret', 'Get', { key: 'shop-db-password' }, key)).status, 404, 'with volumes, the secret goes too');
  });
});

describe('templates: refusals, and nothing half-made', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    registry = await startRegistry();
    await registry.push('db/postgres', '15', await postgresImage());
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    key = await alto.projectKey('refusals', ['template', 'app', 'secret']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function nothingMade(): Promise<void> {
    assert.deepEqual((await alto.call('app', 'List', {}, key)).body.services, []);
    assert.deepEqual((await alto.call('secret', 'List', {}, key)).body.keys ?? [], []);
  }

  test('an unsupported key and a bind mount are refused with their names and lines; nothing is made', async () => {
    const compose = ['services:', '  db:', `    image: ${registry.host}/db/postgres:15`, '    privileged: true', '    volumes:', '      - ./data:/var/lib/postgresql/data', ''].join('\n');
    const refused = await alto.call('template', 'Deploy', { name: 'bad', compose, alto: 'parameters:\n  PW:\n    secret: true\n    generate: 16\n' }, key);
    assert.equal(refused.status, 400);
    assert.match(refused.body.detail, /line 4: services\.db\.privileged/);
    assert.match(refused.body.detail, /line 6: services\.db\.volumes.*bind mount \.\/data is refused/);
    await nothingMade();
  });

  test('a deploy that fails on its second service removes the first and the secret it made', async () => {
    const compose = [
      'services:',
      '  db:',
      `    image: ${registry.host}/db/postgres:15`,
      '    environment:',
      '      POSTGRES_PASSWORD: ${PW}',
      '    expose: ["5432"]',
      '  web:',
      `    image: ${registry.host}/no/such-image:v1`,
      '    depends_on: [db]',
      '',
    ].join('\n');
    const failed = await alto.call('template', 'Deploy', { name: 'half', compose, alto: 'parameters:\n  PW:\n    secret: true\n    generate: 16\nservices:\n  db:\n    protocol: tcp\n' }, key);
    assert.ok(failed.status >= 400, JSON.stringify(failed.body));
    assert.match(failed.body.detail, /^service web: /);
    await nothingMade();
    // A secret that was there before, given anew with --set, gets its old value back.
    assert.equal((await alto.call('secret', 'Set', { key: 'half-pw', value: 'the original' }, key)).status, 200);
    const again = await alto.call('template', 'Deploy', { name: 'half', compose, alto: 'parameters:\n  PW:\n    secret: true\n    generate: 16\nservices:\n  db:\n    protocol: tcp\n', set: { PW: 'a new one' } }, key);
    assert.ok(again.status >= 400, JSON.stringify(again.body));
    assert.equal((await alto.call('secret', 'Get', { key: 'half-pw' }, key)).body.value, 'the original');
    assert.equal((await alto.call('secret', 'Delete', { key: 'half-pw' }, key)).status, 200);
    await nothingMade();
  });

  test('a key without the app scope cannot deploy a stack through the template scope', async () => {
    const narrow = await alto.projectKey('refusals', ['template']);
    const refused = await alto.call('template', 'Deploy', { name: 'sneaky', compose: `services:\n  web:\n    image: ${registry.host}/db/postgres:15\n` }, narrow);
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    await nothingMade();
  });
});
