/**
 * The catalogue's real-world stack (issue "Templates and stateful services"): `postgres-adminer`,
 * the compose file the official postgres image's page publishes (a `db` service running the
 * postgres image and an `adminer` service running the adminer image on 8080), deployed by its
 * catalogue name on the process sandbox.
 *
 * The compose file names the images as a user pulls them (`postgres`, `adminer`); the test builds
 * both from Debian's packages (app-images.ts: PostgreSQL 15 with the official entrypoint, adminer
 * 4.8.1 on PHP 8.2 laid out as the official adminer image) and loads them into Alto under those
 * names, as `docker load` would, so the deploy runs them without pulling anything.
 *
 * Through the edge: adminer's login form, then a login to the server `db` (its compose name,
 * resolved through the link) as postgres with the generated password read from `secret`, with
 * adminer's session cookie and CSRF token kept as a browser does, and an SQL command run there;
 * a wrong password is refused by PostgreSQL itself. `alto template destroy --volumes` removes it all.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { adminerImage, postgresImage } from './app-images.js';
import { eventually, privateSandboxCache, runCli } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { writeOciLayout, type BuiltImage } from './images-fixture.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A browser's share of adminer: its cookies (session, key) kept from answer to answer. */
class Browser {
  private readonly cookies = new Map<string, string>();

  constructor(
    private readonly port: number,
    private readonly host: string,
  ) {}

  request(method: 'GET' | 'POST', path: string, form?: Record<string, string>): Promise<Answer> {
    const body = form ? new URLSearchParams(form).toString() : undefined;
    const headers: Record<string, string> = { host: this.host };
    if (this.cookies.size > 0) headers.cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    if (body !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    return new Promise<Answer>((resolve, reject) => {
      const sent = httpRequest({ host: '127.0.0.1', port: this.port, path, method, headers, agent: false }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          for (const line of answer.headers['set-cookie'] ?? []) {
            const [pair] = line.split(';');
            const equals = pair.indexOf('=');
            this.cookies.set(pair.slice(0, equals).trim(), pair.slice(equals + 1).trim());
          }
          resolve({ status: answer.statusCode ?? 0, headers: answer.headers, body: Buffer.concat(chunks).toString() });
        });
        answer.on('error', reject);
      });
      sent.on('error', reject);
      sent.end(body);
    });
  }

  /** The request, then its redirects (adminer answers a login with one, and the database page with another). */
  async follow(method: 'GET' | 'POST', path: string, form?: Record<string, string>): Promise<Answer & { path: string }> {
    let answer = await this.request(method, path, form);
    let at = path;
    for (let hops = 0; answer.status === 302 && hops < 5; hops++) {
      const location = new URL(String(answer.headers.location), `http://${this.host}${at}`);
      at = location.pathname + location.search;
      answer = await this.request('GET', at);
    }
    return { ...answer, path: at };
  }

  has(cookie: string): boolean {
    return this.cookies.has(cookie);
  }
}

/** The value of adminer's CSRF token in a page's form. */
function csrfToken(page: string): string {
  const token = /name=['"]token['"] value=['"](\d+:\d+)['"]/.exec(page)?.[1];
  assert.ok(token, `a CSRF token in the page:\n${page.slice(0, 2000)}`);
  return token;
}

describe('templates: the catalogue\'s postgres-adminer stack, deployed by name', () => {
  let alto: ServerProcess;
  let key: string;
  const images: Record<'postgres' | 'adminer', string> = { postgres: '', adminer: '' };
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const layouts = mkdtempSync(join(tmpdir(), 'alto-catalogue-images-'));

  before(async () => {
    const [postgres, adminer] = await Promise.all([postgresImage(), adminerImage()]);
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    key = await alto.projectKey('catalogue', ['template', 'app', 'secret']);
    // The images under the names the compose file gives, as `docker load` leaves them: the
    // deploy finds them here and pulls nothing.
    for (const [name, image] of [['postgres', postgres], ['adminer', adminer]] as [keyof typeof images, BuiltImage][]) {
      const layout = join(layouts, name);
      writeOciLayout(layout, [{ image }]);
      const imported = await alto.call('images', 'Import', { path: layout, reference: `${name}:latest` });
      assert.equal(imported.status, 200, JSON.stringify(imported.body));
      assert.deepEqual(imported.body.images[0].references, [`docker.io/library/${name}:latest`]);
      const shared = await alto.call('images', 'Share', { image: name, project: 'catalogue' });
      assert.equal(shared.status, 200, JSON.stringify(shared.body));
      images[name] = image.manifest.digest;
    }
  });

  after(async () => {
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(layouts, { recursive: true, force: true });
  });

  const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);

  test('alto template list shows it with its description', async () => {
    // Piped, the CLI answers JSON; at a terminal the same entries are printed one a line.
    const listed = await cli(['template', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    const entry = JSON.parse(listed.stdout).catalogue.find((template: { name: string }) => template.name === 'postgres-adminer');
    assert.equal(entry?.description, "PostgreSQL with Adminer (the official postgres image's example stack); the password is generated and kept in secret");
  });

  test('deploy postgres-adminer by name; log in through adminer to db by its compose name and run a query; destroy', async () => {
    const deployed = await cli(['template', 'deploy', 'postgres-adminer', '--name', 'pa', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
    const result = JSON.parse(deployed.stdout);
    assert.deepEqual(result.warnings, [], 'the catalogue template plans without a warning');
    assert.deepEqual(result.stack.services.map((service: { service: string; app: string }) => [service.service, service.app]), [['db', 'pa-db'], ['adminer', 'pa-adminer']]);
    assert.deepEqual(result.secrets, ['pa-postgres-password']);
    assert.match(result.public, /^http:\/\/pa-adminer\.catalogue\./);
    for (const [app, image] of [['pa-db', 'postgres'], ['pa-adminer', 'adminer']] as const) {
      const got = await alto.call('app', 'Get', { name: app }, key);
      assert.equal(got.body.service.digest, images[image], `${app} runs the loaded ${image} image`);
    }
    const adminerApp = (await alto.call('app', 'Get', { name: 'pa-adminer' }, key)).body.service;
    assert.deepEqual([adminerApp.links, adminerApp.link_aliases], [['pa-db'], { db: 'pa-db' }]);
    const password = (await alto.call('secret', 'Get', { key: 'pa-postgres-password' }, key)).body.value as string;
    assert.equal(password.length, 32);
    assert.ok(!deployed.stdout.includes(password), 'the deploy does not print the password');

    // Up once PostgreSQL answers a login (its first start runs initdb): from here, through the
    // database's own TCP port on the edge, as a client of the stack would.
    const tcpPort = result.stack.services[0].tcp_port as number;
    await eventually(async () => {
      const client = new pg.Client({ host: '127.0.0.1', port: tcpPort, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 20_000 });
      try {
        await client.connect();
        return (await client.query('select 1 as up')).rows[0].up === 1;
      } finally {
        await client.end().catch(() => undefined);
      }
    }, 'PostgreSQL accepting the generated password', 60_000);

    const port = Number(new URL(alto.url).port);
    const browser = new Browser(port, `pa-adminer.catalogue.localhost:${port}`);
    // Adminer's login form, its server filled with db as the official image does.
    const form = await eventually(async () => {
      const answer = await browser.request('GET', '/');
      return answer.status === 200 && answer.body;
    }, "adminer's login page", 60_000);
    assert.match(form, /<title>Login - Adminer<\/title>/);
    assert.match(form, /name="auth\[server\]" value="db"/);
    assert.ok(browser.has('adminer_sid'), 'adminer started a PHP session');

    const login = (password: string) => ({ 'auth[driver]': 'pgsql', 'auth[server]': 'db', 'auth[username]': 'postgres', 'auth[password]': password, 'auth[db]': 'postgres' });
    // PostgreSQL itself refuses a wrong password: adminer reached the stack's database.
    const refused = await browser.follow('POST', '/', login('not the password'));
    assert.equal(refused.status, 403, refused.body.slice(0, 2000));
    assert.match(refused.body, /password authentication failed for user &quot;postgres&quot;|password authentication failed for user "postgres"/);

    const database = await browser.follow('POST', '/', login(password));
    assert.equal(database.status, 200, database.body.slice(0, 2000));
    assert.match(database.path, /[?&]pgsql=db&username=postgres&db=postgres/);
    assert.match(database.body, /<h2>Schema: public<\/h2>/);
    assert.match(database.body, /<option selected>postgres<option>template0<option>template1<\/select>/, 'the databases of the server are listed');

    // Adminer's SQL command page: its form's CSRF token, then the query, run in db.
    const sqlPath = `${database.path}&sql=`;
    const sqlPage = await browser.request('GET', sqlPath);
    assert.equal(sqlPage.status, 200);
    const ran = await browser.request('POST', sqlPath, { query: 'select 6 * 7 as answer, current_user as who', limit: '', token: csrfToken(sqlPage.body) });
    assert.equal(ran.status, 200, ran.body.slice(0, 2000));
    assert.match(ran.body, /<th>answer<th>who<\/thead>\s*<tr><td>42<td>postgres<\/table>/);
    assert.doesNotMatch(ran.body, /Invalid CSRF token|<b>Warning<\/b>/);

    const destroyed = await cli(['template', 'destroy', 'pa', '--volumes', '--json']);
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.deepEqual(JSON.parse(destroyed.stdout).removed.sort(), ['pa-adminer', 'pa-db']);
    for (const app of ['pa-adminer', 'pa-db']) assert.equal((await alto.call('app', 'Get', { name: app }, key)).status, 404);
    assert.equal((await alto.call('secret', 'Get', { key: 'pa-postgres-password' }, key)).status, 404, 'with --volumes, the secret goes too');
    assert.deepEqual((await alto.call('template', 'List', {}, key)).body.stacks, []);
  });
});
