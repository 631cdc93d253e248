/**
 * HTTPS end to end with a certificate the operator brings: a real `alto up --https-port 0
 * --tls-cert --tls-key --sandbox process` serves the API, the console's routes and an app over
 * TLS, with HTTP/2 chosen by ALPN and HTTP/1.1 still offered, verified against the test's own
 * root; a request to an app over HTTP/2 reaches it as HTTP/1.1 with its body and
 * `X-Forwarded-Proto: https` and HSTS; plain HTTP to a name the certificate covers is redirected
 * (but for ACME challenges and health checks); a websocket works over TLS; a client that sends
 * no server name gets the certificate; new certificate files are served without a restart (files
 * that do not load keep the last good ones); flags that do not go together are refused.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startProcess, temporaryDataDir, waitForAsync, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';
import { echoImage, http2Request, https1Request, servedCertificate, testAuthority, type TestAuthority } from './tls-fixture.js';

const APPS_DOMAIN = 'apps.test';
const APP_HOST = `web.shop.${APPS_DOMAIN}`;

describe('https with a certificate the operator brings', () => {
  let registry: TestRegistry;
  let authority: TestAuthority;
  let alto: ServerProcess;
  let key: string;
  let httpsPort: number;
  let files: ReturnType<TestAuthority['issue']>;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    registry = await startRegistry();
    await registry.push('demo/echo', 'v1', await echoImage());
    authority = testAuthority();
    files = authority.issue(['localhost', `*.shop.${APPS_DOMAIN}`], 'served');
    alto = await startProcess({
      dataDir,
      args: ['--sandbox', 'process', '--apps-domain', APPS_DOMAIN, '--https-port', '0', '--tls-cert', files.certificatePath, '--tls-key', files.keyPath],
      env: { ALTO_SANDBOX_CACHE: cache.dir },
    });
    assert.ok(alto.httpsPort, 'the listening line names the HTTPS port');
    httpsPort = alto.httpsPort!;
    key = await alto.projectKey('shop', ['app', 'id']);
    const run = await alto.call('app', 'Run', { name: 'web', image: `${registry.host}/demo/echo:v1`, port: 8080, min_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    authority?.remove();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the API answers over HTTP/2, verified against the root', async () => {
    const generated = await http2Request({
      port: httpsPort,
      host: 'localhost',
      method: 'POST',
      path: '/v1/id/Generate',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'uuid' }),
      ca: authority.root,
    });
    assert.equal(generated.protocol, 'h2');
    assert.equal(generated.status, 200, generated.body);
    assert.match(JSON.parse(generated.body).id, /^[0-9a-f-]{36}$/);
    const live = await http2Request({ port: httpsPort, host: 'localhost', path: '/livez', ca: authority.root });
    assert.equal(live.status, 200);
    assert.deepEqual(JSON.parse(live.body), { status: 'ok' });
    const openapi = await http2Request({ port: httpsPort, host: 'localhost', path: '/v1/openapi.json', ca: authority.root });
    assert.equal(openapi.status, 200);
    assert.ok(JSON.parse(openapi.body).paths['/v1/id/Generate']);
  });

  test('HTTP/1.1 is still offered over TLS', async () => {
    const status = await https1Request({ port: httpsPort, host: 'localhost', path: '/v1/status', headers: { authorization: `Bearer ${alto.adminKey}` }, ca: authority.root });
    assert.equal(status.protocol, 'http/1.1');
    assert.equal(status.status, 200, status.body);
    assert.equal(JSON.parse(status.body).apps_domain, APPS_DOMAIN);
  });

  test('an app is served over HTTP/2 and HTTP/1.1 with X-Forwarded-Proto: https and HSTS', async () => {
    const page = await http2Request({ port: httpsPort, host: APP_HOST, path: '/', ca: authority.root });
    assert.equal(page.protocol, 'h2');
    assert.equal(page.status, 200, page.body);
    assert.equal(page.body, 'echo app\n');
    const posted = await http2Request({ port: httpsPort, host: APP_HOST, method: 'POST', path: '/cgi-bin/echo', headers: { 'content-type': 'text/plain', 'content-length': '5' }, body: 'hello', ca: authority.root });
    assert.equal(posted.status, 200, posted.body);
    assert.match(posted.body, /^proto=https$/m);
    assert.match(posted.body, new RegExp(`^host=${APP_HOST.replace(/\./g, '\\.')}:${httpsPort}$`, 'm'));
    assert.match(posted.body, /^method=POST$/m);
    assert.match(posted.body, /^body=hello$/m);
    // A client that says otherwise over TLS is not believed.
    const overH1 = await https1Request({ port: httpsPort, host: APP_HOST, path: '/cgi-bin/echo', headers: { 'x-forwarded-proto': 'http' }, ca: authority.root });
    assert.equal(overH1.protocol, 'http/1.1');
    assert.match(overH1.body, /^proto=https$/m);
    assert.equal(page.headers['strict-transport-security'], 'max-age=31536000');
    assert.equal(overH1.headers['strict-transport-security'], 'max-age=31536000');
  });

  test('plain HTTP to a host with a certificate is redirected to HTTPS, but for ACME challenges and health checks', async () => {
    const plainPort = Number(new URL(alto.url).port);
    const app = await getThroughEdge(plainPort, APP_HOST, '/cgi-bin/echo?x=1');
    assert.equal(app.status, 308);
    assert.equal(app.headers.location, `https://${APP_HOST}:${httpsPort}/cgi-bin/echo?x=1`);
    const console = await getThroughEdge(plainPort, `localhost:${plainPort}`, '/');
    assert.equal(console.status, 308);
    assert.equal(console.headers.location, `https://localhost:${httpsPort}/`);
    // An API call too, though plain ones are otherwise answered off the connection (edge/lane.ts).
    const call = await getThroughEdge(plainPort, `localhost:${plainPort}`, '/v1/id/Generate?type=uuid');
    assert.equal(call.status, 308);
    assert.equal(call.headers.location, `https://localhost:${httpsPort}/v1/id/Generate?type=uuid`);
    for (const path of ['/livez', '/readyz']) assert.equal((await getThroughEdge(plainPort, 'localhost', path)).status, 200, path);
    const challenge = await getThroughEdge(plainPort, 'localhost', '/.well-known/acme-challenge/unknown-token');
    assert.equal(challenge.status, 404);
    // A name no certificate covers stays on plain HTTP.
    assert.equal((await getThroughEdge(plainPort, '127.0.0.1', '/livez')).status, 200);
    assert.equal((await getThroughEdge(plainPort, '127.0.0.1', '/')).status, 200);
    // The API over HTTPS carries HSTS.
    const live = await http2Request({ port: httpsPort, host: 'localhost', path: '/livez', ca: authority.root });
    assert.equal(live.headers['strict-transport-security'], 'max-age=31536000');
  });

  test('a websocket works over TLS', async () => {
    const lines: unknown[] = [];
    const socket = new WebSocket(`wss://localhost:${httpsPort}/v1/app/FollowLogs`, { headers: { authorization: `Bearer ${key}` }, ca: authority.root, host: '127.0.0.1' } as never);
    try {
      socket.on('message', (data) => lines.push(JSON.parse(data.toString())));
      await new Promise<void>((resolve, reject) => {
        socket.once('open', () => socket.send(JSON.stringify({ name: 'web', lines: 5 }), (error) => (error ? reject(error) : resolve())));
        socket.once('error', reject);
      });
      await waitForAsync(async () => lines.length > 0, 'a log line over the websocket', 15_000);
      assert.ok(lines.some((line) => typeof (line as { line?: unknown }).line === 'string'), JSON.stringify(lines));
    } finally {
      socket.close();
    }
  });

  test("a client that sends no server name (as Node's does for an address) is served the certificate", async () => {
    const unnamed = await servedCertificate(httpsPort, undefined);
    assert.equal(unnamed.serialNumber, new (await import('node:crypto')).X509Certificate(files.certificate).serialNumber);
  });

  test('new certificate files are served without a restart', async () => {
    const before = await servedCertificate(httpsPort, 'localhost');
    assert.equal(before.serialNumber, new (await import('node:crypto')).X509Certificate(files.certificate).serialNumber);
    const renewed = authority.issue(['localhost', `*.shop.${APPS_DOMAIN}`], 'served');
    const expected = new (await import('node:crypto')).X509Certificate(renewed.certificate).serialNumber;
    await waitForAsync(async () => (await servedCertificate(httpsPort, 'localhost')).serialNumber === expected, 'the new certificate served', 15_000);
    assert.equal((await servedCertificate(httpsPort, undefined)).serialNumber, expected, 'the new certificate served to a client that names none too');
    const page = await http2Request({ port: httpsPort, host: APP_HOST, path: '/', ca: authority.root });
    assert.equal(page.status, 200);
    // Files that do not load (a key that is not one) leave the last good certificate served.
    const failedReloads = () => alto.stdout().split('tls certificate files changed but do not load').length - 1;
    const failedBefore = failedReloads();
    writeFileSync(renewed.keyPath, 'not a key\n');
    await waitForAsync(async () => failedReloads() > failedBefore, 'the failed reload logged', 15_000);
    assert.equal((await servedCertificate(httpsPort, 'localhost')).serialNumber, expected);
    assert.equal((await http2Request({ port: httpsPort, host: 'localhost', path: '/livez', ca: authority.root })).status, 200);
  });
});

describe('https flags', () => {
  test('a port without a certificate, or a certificate without its key, is refused with the reason', async () => {
    const noCertificate = await runCli(['up', '--port', '0', '--host', '127.0.0.1', '--data', temporaryDataDir(), '--https-port', '0']);
    assert.notEqual(noCertificate.code, 0);
    assert.match(noCertificate.stderr, /--https-port needs a certificate/);
    const noKey = await runCli(['up', '--port', '0', '--host', '127.0.0.1', '--data', temporaryDataDir(), '--https-port', '0', '--tls-cert', '/nonexistent.pem']);
    assert.notEqual(noKey.code, 0);
    assert.match(noKey.stderr, /--tls-cert and --tls-key go together/);
  });
});
