/**
 * Custom domains of apps end to end, against pebble and pebble-challtestsrv (whose DNS answers
 * only the names the test adds), with a real `alto up --sandbox process` using that DNS for its
 * pre-check (ALTO_DNS_SERVER): `alto domains add` shows the CNAME to create and "pending DNS";
 * once the name resolves the certificate is obtained (HTTP-01) and the app answers on the domain
 * over HTTPS, verified against pebble's root; removed, it is no longer served. Bad input: not a
 * name, an address, a name under the apps domain, an unknown app, a domain another project has
 * (409, and an app/Update naming it saves none of its list).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, waitForAsync, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { privateSandboxCache, runCli } from './apps-fixture.js';
import { freePort, startPebble, type Pebble } from './acme-fixture.js';
import { echoImage, http2Request, testAuthority, type TestAuthority } from './tls-fixture.js';

const APPS_DOMAIN = 'apps.test';
const DOMAIN = 'www.shop.test';

describe('custom domains of apps', () => {
  let authority: TestAuthority;
  let pebble: Pebble;
  let registry: TestRegistry;
  let alto: ServerProcess;
  let shopKey: string;
  let otherKey: string;
  let httpsPort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    authority = testAuthority();
    registry = await startRegistry();
    await registry.push('demo/echo', 'v1', await echoImage());
    const port = await freePort();
    httpsPort = await freePort();
    pebble = await startPebble({ authority, httpPort: port, tlsPort: httpsPort, resolveAll: false });
    alto = await startProcess({
      dataDir,
      args: ['--port', String(port), '--https-port', String(httpsPort), '--sandbox', 'process', '--apps-domain', APPS_DOMAIN, '--acme-email', 'ops@shop.test', '--acme-directory', pebble.directoryUrl],
      env: {
        NODE_EXTRA_CA_CERTS: authority.rootPath,
        ALTO_SANDBOX_CACHE: cache.dir,
        ALTO_DNS_SERVER: pebble.dnsServer,
        ALTO_ACME_CHALLENGES: 'http-01',
        ALTO_ACME_CHECK_MS: '500',
        ALTO_DOMAIN_CHECK_MS: '300',
      },
    });
    shopKey = await alto.projectKey('shop', ['app', 'domains']);
    otherKey = await alto.projectKey('other', ['app', 'domains']);
    for (const [key, name] of [[shopKey, 'web'], [otherKey, 'site']]) {
      const run = await alto.call('app', 'Run', { name, image: `${registry.host}/demo/echo:v1`, port: 8080, min_instances: 1 }, key);
      assert.equal(run.status, 200, JSON.stringify(run.body));
    }
  });

  after(async () => {
    await alto?.close();
    await pebble?.stop();
    await registry?.stop();
    authority?.remove();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const listOf = async (key: string) => (await alto.call('domains', 'List', {}, key)).body.domains as { domain: string; app: string; status: string; error?: string }[];

  test('a name that is not a domain, an address, a name under the apps domain, or an unknown app is refused', async () => {
    for (const [domain, pattern] of [
      ['not a name!', /is not a domain name/],
      ['127.0.0.1', /is not a domain name/],
      ['localhost', /is not a domain name/],
      [`x.shop.${APPS_DOMAIN}`, /under the apps domain/],
    ] as const) {
      const refused = await alto.call('domains', 'Add', { domain, app: 'web' }, shopKey);
      assert.equal(refused.status, 400, domain);
      assert.match(refused.body.detail, pattern);
    }
    const unknown = await alto.call('domains', 'Add', { domain: DOMAIN, app: 'nope' }, shopKey);
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.detail, /app "nope" does not exist/);
    // Another project's app is not this project's to give a domain.
    const foreign = await alto.call('domains', 'Add', { domain: DOMAIN, app: 'site' }, shopKey);
    assert.equal(foreign.status, 404);
    assert.deepEqual(await listOf(shopKey), []);
  });

  test('alto domains add shows the CNAME to create; the domain waits for DNS', async () => {
    // Its output is JSON when not on a terminal.
    const added = await runCli(['domains', 'add', DOMAIN, '--app', 'web', '--url', alto.url, '--key', shopKey]);
    assert.equal(added.code, 0, added.stderr);
    const view = JSON.parse(added.stdout).domain;
    assert.deepEqual(view.dns, { type: 'CNAME', name: DOMAIN, value: `web.shop.${APPS_DOMAIN}` });
    assert.equal(view.status, 'pending_dns');
    const [listed] = await listOf(shopKey);
    assert.equal(listed.domain, DOMAIN);
    assert.equal(listed.status, 'pending_dns');
  });

  test("another project cannot claim it, and an app/Update naming it saves none of its list", async () => {
    const claimed = await alto.call('domains', 'Add', { domain: DOMAIN, app: 'site' }, otherKey);
    assert.equal(claimed.status, 409);
    assert.match(claimed.body.detail, /belongs to an app of another project/);
    const update = await alto.call('app', 'Update', { name: 'site', custom_domains: ['free.shop.test', DOMAIN] }, otherKey);
    assert.equal(update.status, 409);
    assert.deepEqual(await listOf(otherKey), []);
    const bad = await alto.call('app', 'Update', { name: 'site', custom_domains: ['fine.shop.test', 'not valid'] }, otherKey);
    assert.equal(bad.status, 400);
    assert.deepEqual(await listOf(otherKey), []);
    assert.equal((await listOf(shopKey))[0].app, 'web');
  });

  test('once the name resolves, the certificate is obtained and the app answers on its domain over HTTPS', async () => {
    await pebble.addAddress(DOMAIN);
    await waitForAsync(async () => (await listOf(shopKey))[0]?.status === 'active', 'the domain active', 40_000).catch(async (error) => {
      throw new Error(`${error.message}: ${JSON.stringify(await listOf(shopKey))}\n${alto.stdout().slice(-3000)}`);
    });
    const page = await http2Request({ port: httpsPort, host: DOMAIN, path: '/cgi-bin/echo', ca: await pebble.root() });
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /^proto=https$/m);
    assert.match(page.body, new RegExp(`^host=${DOMAIN.replace(/\./g, '\\.')}:${httpsPort}$`, 'm'));
    const listed = await runCli(['domains', '--url', alto.url, '--key', shopKey]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(JSON.parse(listed.stdout).domains.map((row: { domain: string; status: string }) => [row.domain, row.status]), [[DOMAIN, 'active']]);
    const app = await alto.call('app', 'Get', { name: 'web' }, shopKey);
    assert.deepEqual(app.body.service.custom_domains, [DOMAIN]);
  });

  test('app/Update sets the whole list; a removed domain is no longer served', async () => {
    const updated = await alto.call('app', 'Update', { name: 'web', custom_domains: [DOMAIN, 'shop.test'] }, shopKey);
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.deepEqual(updated.body.service.custom_domains, ['shop.test', DOMAIN]);
    const removed = await runCli(['domains', 'remove', DOMAIN, '--url', alto.url, '--key', shopKey]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual((await listOf(shopKey)).map((row) => row.domain), ['shop.test']);
    const root = await pebble.root();
    await waitForAsync(async () => (await http2Request({ port: httpsPort, host: DOMAIN, path: '/cgi-bin/echo', ca: root })).status === 404, 'the domain no longer routed', 10_000);
    // Now free: the other project may take it.
    const taken = await alto.call('domains', 'Add', { domain: DOMAIN, app: 'site' }, otherKey);
    assert.equal(taken.status, 200, JSON.stringify(taken.body));
  });
});
