/**
 * Certificates from an ACME directory, end to end against Debian's pebble and
 * pebble-challtestsrv (its DNS, resolving every test name to 127.0.0.1), with a real `alto up`
 * trusting pebble's own HTTPS certificate through NODE_EXTRA_CA_CERTS:
 * - HTTP-01 on the plain port for the console's domain: the certificate is issued at start,
 *   served over HTTP/2 and verified against pebble's root, shown in `alto status` and /metrics,
 *   and renewed before it expires (pebble issues short-lived ones here).
 * - TLS-ALPN-01 on the HTTPS port for an app's host, asked for by the first handshake naming
 *   it; a name Alto does not serve gets no certificate and is never asked for.
 * - A challenge that cannot pass, and a directory that is down: the reason shows in the status
 *   (and, for the directory, on the console's overview in a real browser).
 * - Two nodes on one PostgreSQL store: one certificate is issued, and both serve it (the
 *   directory validates through one node's port, whichever node asked).
 */
import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startProcess, temporaryDataDir, waitFor, waitForAsync, type ServerProcess } from './harness.js';
import { chromiumPath, ensureConsoleBuilt } from './console-fixture.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { freePort, startPebble, type Pebble } from './acme-fixture.js';
import { echoImage, http2Request, servedCertificate, testAuthority, type TestAuthority } from './tls-fixture.js';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';

const CONSOLE_DOMAIN = 'alto.test';
const APPS_DOMAIN = 'apps.test';

interface CertificateStatus {
  host: string;
  status: string;
  error?: string;
  failures: number;
  not_after?: string;
}

async function certificatesOf(alto: ServerProcess): Promise<CertificateStatus[]> {
  const response = await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } });
  const body = (await response.json()) as { https?: { certificates?: CertificateStatus[] } };
  return body.https?.certificates ?? [];
}

async function statusOf(alto: ServerProcess, host: string): Promise<CertificateStatus | undefined> {
  return (await certificatesOf(alto)).find((certificate) => certificate.host === host);
}

/** Starts `alto up` on the given ports, with ACME at `directoryUrl`. */
function startWithAcme(options: { port: number; httpsPort: number; directoryUrl: string; authority: TestAuthority; challenges: string; dataDir?: string; args?: string[]; env?: Record<string, string> }) {
  return startProcess({
    dataDir: options.dataDir,
    args: [
      '--port', String(options.port),
      '--https-port', String(options.httpsPort),
      '--domain', CONSOLE_DOMAIN,
      '--apps-domain', APPS_DOMAIN,
      '--acme-email', 'ops@alto.test',
      '--acme-directory', options.directoryUrl,
      ...(options.args ?? []),
    ],
    env: { NODE_EXTRA_CA_CERTS: options.authority.rootPath, ALTO_ACME_CHALLENGES: options.challenges, ALTO_ACME_CHECK_MS: '500', ALTO_ACME_RETRY_MS: '1000', ...options.env },
  });
}

describe('ACME over HTTP-01: the console domain, renewal, status and metrics', () => {
  let authority: TestAuthority;
  let pebble: Pebble;
  let alto: ServerProcess;
  let httpsPort: number;

  before(async () => {
    authority = testAuthority();
    const port = await freePort();
    httpsPort = await freePort();
    // Certificates that live 15 s: renewed 10 s in.
    pebble = await startPebble({ authority, httpPort: port, tlsPort: httpsPort, validitySeconds: 15 });
    alto = await startWithAcme({ port, httpsPort, directoryUrl: pebble.directoryUrl, authority, challenges: 'http-01' });
  });

  after(async () => {
    await alto?.close();
    await pebble?.stop();
    authority?.remove();
  });

  test('the console domain gets its certificate at start, served over HTTP/2 and verified against pebble', async () => {
    await waitForAsync(async () => (await statusOf(alto, CONSOLE_DOMAIN))?.status === 'active', 'the certificate issued', 30_000).catch((error) => {
      throw new Error(`${error.message}\n${alto.stdout().slice(-3000)}\n${pebble.output().slice(-2000)}`);
    });
    // The record is saved before the line is logged: wait for the line rather than read it once.
    await waitFor(() => /"host":"alto\.test".*"challenge":"http-01".*"certificate issued"/.test(alto.stdout()), 'the issuance logged with its challenge');
    const root = await pebble.root();
    const live = await http2Request({ port: httpsPort, host: CONSOLE_DOMAIN, path: '/livez', ca: root });
    assert.equal(live.protocol, 'h2');
    assert.equal(live.status, 200);
    const status = await http2Request({ port: httpsPort, host: CONSOLE_DOMAIN, path: '/v1/status', headers: { authorization: `Bearer ${alto.adminKey}` }, ca: root });
    assert.equal(status.status, 200);
    assert.equal(JSON.parse(status.body).https.acme_directory, pebble.directoryUrl);
    const metrics = await fetch(`${alto.url}/metrics`, { headers: { authorization: `Bearer ${alto.adminKey}` } }).then((response) => response.text());
    assert.match(metrics, new RegExp(`alto_tls_certificate_expiry_seconds\\{host="${CONSOLE_DOMAIN}"\\} \\d+`));
    assert.match(metrics, new RegExp(`alto_tls_certificate_failures\\{host="${CONSOLE_DOMAIN}"\\} 0`));
    // Once it has its certificate, plain HTTP to the domain is sent to HTTPS; challenges are not.
    const plainPort = Number(new URL(alto.url).port);
    const redirected = await getThroughEdge(plainPort, CONSOLE_DOMAIN, '/v1/openapi.json');
    assert.equal(redirected.status, 308);
    assert.equal(redirected.headers.location, `https://${CONSOLE_DOMAIN}:${httpsPort}/v1/openapi.json`);
    assert.equal((await getThroughEdge(plainPort, CONSOLE_DOMAIN, '/.well-known/acme-challenge/no-such-token')).status, 404);
    assert.equal(live.headers['strict-transport-security'], 'max-age=31536000');
  });

  test('the certificate is renewed at two thirds of its life and the new one served', async () => {
    const first = new X509Certificate((await servedCertificate(httpsPort, CONSOLE_DOMAIN)).raw);
    await waitForAsync(async () => new X509Certificate((await servedCertificate(httpsPort, CONSOLE_DOMAIN)).raw).serialNumber !== first.serialNumber, 'a renewed certificate', 30_000);
    const renewed = new X509Certificate((await servedCertificate(httpsPort, CONSOLE_DOMAIN)).raw);
    assert.ok(Date.parse(renewed.validTo) > Date.parse(first.validTo), 'the renewed certificate lives longer');
    // Issued before the first expired: the domain was never without a valid certificate.
    assert.ok(Date.parse(renewed.validFrom) < Date.parse(first.validTo), `${renewed.validFrom} before ${first.validTo}`);
    const live = await http2Request({ port: httpsPort, host: CONSOLE_DOMAIN, path: '/livez', ca: await pebble.root() });
    assert.equal(live.status, 200);
  });
});

describe('ACME over TLS-ALPN-01: an app host on demand, never a name Alto does not serve', () => {
  let authority: TestAuthority;
  let pebble: Pebble;
  let alto: ServerProcess;
  let registry: TestRegistry;
  let httpsPort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    authority = testAuthority();
    registry = await startRegistry();
    await registry.push('demo/echo', 'v1', await echoImage());
    const port = await freePort();
    httpsPort = await freePort();
    pebble = await startPebble({ authority, httpPort: port, tlsPort: httpsPort });
    alto = await startWithAcme({
      port,
      httpsPort,
      directoryUrl: pebble.directoryUrl,
      authority,
      challenges: 'tls-alpn-01',
      dataDir,
      args: ['--sandbox', 'process'],
      env: { ALTO_SANDBOX_CACHE: cache.dir },
    });
    const key = await alto.projectKey('shop', ['app']);
    const run = await alto.call('app', 'Run', { name: 'web', image: `${registry.host}/demo/echo:v1`, port: 8080, min_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
  });

  after(async () => {
    await alto?.close();
    await pebble?.stop();
    await registry?.stop();
    authority?.remove();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("the first handshake naming an app's host gets a certificate issued for it, and the app answers over HTTP/2", async () => {
    const host = `web.shop.${APPS_DOMAIN}`;
    const root = await pebble.root();
    // The first handshake waits for the certificate; retried in case issuance took longer.
    const page = await waitForAsync(async () => (await http2Request({ port: httpsPort, host, path: '/cgi-bin/echo', ca: root }).catch(() => undefined))?.status === 200, 'the app over HTTPS', 30_000)
      .then(() => http2Request({ port: httpsPort, host, path: '/cgi-bin/echo', ca: root }))
      .catch((error) => {
        throw new Error(`${error.message}\n${alto.stdout().slice(-3000)}\n${pebble.output().slice(-2000)}`);
      });
    assert.equal(page.protocol, 'h2');
    assert.match(page.body, /^proto=https$/m);
    assert.equal((await statusOf(alto, host))?.status, 'active');
    const logged = new RegExp(`"host":"${host.replace(/\./g, '\\.')}".*"challenge":"tls-alpn-01".*"certificate issued"`);
    await waitFor(() => logged.test(alto.stdout()), 'the issuance logged with its challenge');
  });

  test('a name Alto does not serve fails the handshake and is never asked for', async () => {
    for (const host of [`nothing.shop.${APPS_DOMAIN}`, 'random.example.test']) {
      await assert.rejects(servedCertificate(httpsPort, host));
      assert.equal(await statusOf(alto, host), undefined, `${host} was not asked for`);
    }
    assert.doesNotMatch(pebble.output(), /nothing\.shop|random\.example/);
  });
});

describe('ACME failures are reported with their reason', () => {
  let authority: TestAuthority;
  let pebble: Pebble;

  before(async () => {
    authority = testAuthority();
  });

  after(async () => {
    await pebble?.stop();
    authority?.remove();
  });

  test('a challenge the directory cannot validate shows as failed with why, and is tried again', async () => {
    const port = await freePort();
    const httpsPort = await freePort();
    // Pebble validates HTTP-01 on a port where nothing listens.
    pebble = await startPebble({ authority, httpPort: await freePort(), tlsPort: httpsPort });
    const alto = await startWithAcme({ port, httpsPort, directoryUrl: pebble.directoryUrl, authority, challenges: 'http-01' });
    try {
      const failed = await waitForAsync(async () => ((await statusOf(alto, CONSOLE_DOMAIN))?.failures ?? 0) >= 2, 'two failed attempts', 90_000).then(() => statusOf(alto, CONSOLE_DOMAIN));
      assert.equal(failed?.status, 'failed');
      assert.match(failed?.error ?? '', /connection refused|connect/i);
      await assert.rejects(servedCertificate(httpsPort, CONSOLE_DOMAIN));
    } finally {
      await alto.close();
    }
  });

  test('a directory that is down shows as failed with the directory named', async () => {
    const port = await freePort();
    const httpsPort = await freePort();
    const down = `https://127.0.0.1:${await freePort()}/dir`;
    const alto = await startWithAcme({ port, httpsPort, directoryUrl: down, authority, challenges: 'http-01' });
    try {
      await waitForAsync(async () => (await statusOf(alto, CONSOLE_DOMAIN))?.status === 'failed', 'the failure', 30_000);
      const failed = await statusOf(alto, CONSOLE_DOMAIN);
      assert.match(failed?.error ?? '', new RegExp(`cannot reach the ACME directory at ${down.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\)`));
      // Alto itself keeps serving.
      assert.equal((await fetch(`${alto.url}/livez`)).status, 200);

      // The console's overview shows the failure and its reason to the operator, in a real browser.
      ensureConsoleBuilt();
      const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
      try {
        const page = await browser.newPage();
        page.setDefaultTimeout(10_000);
        await page.goto(alto.url);
        await page.getByLabel('API key', { exact: true }).fill(alto.adminKey);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByRole('heading', { level: 2, name: 'HTTPS' }).waitFor();
        const row = page.getByRole('table', { name: 'Certificates' }).locator(`tr[data-host="${CONSOLE_DOMAIN}"]`);
        await row.waitFor();
        const shown = await row.innerText();
        assert.match(shown, /failed/);
        assert.match(shown, /cannot reach the ACME directory/);
        assert.match(shown, /ECONNREFUSED/);
      } finally {
        await browser.close();
      }
    } finally {
      await alto.close();
    }
  });
});

describe('ACME on PostgreSQL: two nodes share the account and the certificate', () => {
  let authority: TestAuthority;
  let pebble: Pebble;
  let database: TestDatabase;
  const nodes: ServerProcess[] = [];
  const ports: { port: number; httpsPort: number }[] = [];

  before(async () => {
    authority = testAuthority();
    database = await createTestDatabase('acme');
    for (let index = 0; index < 2; index++) ports.push({ port: await freePort(), httpsPort: await freePort() });
    // The directory validates HTTP-01 on the first node's port only.
    pebble = await startPebble({ authority, httpPort: ports[0].port, tlsPort: ports[0].httpsPort });
    const env = { ALTO_MASTER_KEY: randomBytes(32).toString('hex'), ALTO_ADMIN_KEY: `admin-${randomBytes(16).toString('hex')}` };
    for (const [index, { port, httpsPort }] of ports.entries()) {
      nodes.push(await startWithAcme({ port, httpsPort, directoryUrl: pebble.directoryUrl, authority, challenges: 'http-01', args: ['--store', database.url, '--node', `node-${index}`], env }));
    }
  });

  after(async () => {
    for (const node of nodes) await node.close();
    await pebble?.stop();
    await database?.drop();
    authority?.remove();
  });

  test('one certificate is issued for the cloud and every node serves it', async () => {
    await waitForAsync(async () => (await statusOf(nodes[1], CONSOLE_DOMAIN))?.status === 'active', 'the certificate issued', 30_000);
    const root = await pebble.root();
    const serials = new Set<string>();
    for (const { httpsPort } of ports) {
      await waitForAsync(async () => (await http2Request({ port: httpsPort, host: CONSOLE_DOMAIN, path: '/livez', ca: root }).catch(() => undefined))?.status === 200, `node on ${httpsPort} serving it`, 15_000);
      serials.add(new X509Certificate((await servedCertificate(httpsPort, CONSOLE_DOMAIN)).raw).serialNumber);
    }
    assert.equal(serials.size, 1, 'both nodes serve the same certificate');
    const issuedBy = (node: ServerProcess) => node.stdout().split('\n').filter((line) => line.includes('"certificate issued"')).length;
    // The record is saved before the line is logged: wait for one line, then count them all.
    await waitFor(() => nodes.some((node) => issuedBy(node) > 0), 'the issuance logged');
    const issued = nodes.map(issuedBy);
    assert.equal(issued[0] + issued[1], 1, `issued once in the cloud (per node: ${issued.join(', ')})`);
  });
});
