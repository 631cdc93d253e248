/**
 * HTTPS benchmark: a real `alto up --sandbox process` runs the Node.js app image
 * (test/app-images.ts) and serves it on its plain port and on its HTTPS port (`--https-port`,
 * `--tls-cert` from a test authority made here), and measures in the same run
 * - requests/s and p50/p99 to the app over HTTPS (HTTP/1.1 over TLS: wrk speaks no HTTP/2)
 *   against plain HTTP, with keep-alive connections and with a new connection per request
 *   (`Connection: close`, so each HTTPS request pays a full TLS handshake);
 * - the time from `domains/Add` to the domain's certificate served (verified against the
 *   issuing root), with Debian's pebble as the ACME directory (HTTP-01, no validation sleep):
 *   median of a few domains, each a new issuance.
 *
 * Run (as root): node --import tsx bench/https.bench.ts [seconds=5] [connections=20] [domains=3]
 */
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { nodeAppImage } from '../packages/alto/test/app-images.js';
import { privateSandboxCache } from '../packages/alto/test/apps-fixture.js';
import { startProcess, temporaryDataDir, waitForAsync } from '../packages/alto/test/harness.js';
import { startRegistry } from '../packages/alto/test/images-fixture.js';
import { freePort, startPebble } from '../packages/alto/test/acme-fixture.js';
import { http2Request, testAuthority } from '../packages/alto/test/tls-fixture.js';
import { median, parseWrkOutput, type WrkFigures } from './wrk.js';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 20);
const domainCount = Number(process.argv[4] ?? 3);
const APPS_DOMAIN = 'apps.test';
const APP_HOST = `web.bench.${APPS_DOMAIN}`;

for (const tool of ['wrk', 'pebble']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
    console.error(`${tool} is not installed: apt-get install -y ${tool}`);
    process.exit(1);
  }
}

/** wrk against `url` with this Host, keep-alive or a new connection per request. */
function runLoad(url: string, host: string, duration: number, fresh = false): Promise<WrkFigures> {
  const headers = ['-H', `Host: ${host}`, ...(fresh ? ['-H', 'Connection: close'] : [])];
  const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', ...headers, url]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  return new Promise((resolve, reject) => child.once('close', (code) => (code === 0 ? resolve(parseWrkOutput(output)) : reject(new Error(`wrk exited with ${code}`)))));
}

const authority = testAuthority();
const registry = await startRegistry();
const cache = privateSandboxCache();
const dataDir = temporaryDataDir();
const port = await freePort();
const httpsPort = await freePort();
const pebble = await startPebble({ authority, httpPort: port, tlsPort: httpsPort });
// The operator's certificate names only localhost: wrk sends no SNI to 127.0.0.1 and gets it, and
// the app's host has no certificate, so plain HTTP to it is served rather than redirected.
const brought = authority.issue(['localhost'], 'bench');
const alto = await startProcess({
  dataDir,
  args: ['--port', String(port), '--https-port', String(httpsPort), '--tls-cert', brought.certificatePath, '--tls-key', brought.keyPath, '--sandbox', 'process', '--apps-domain', APPS_DOMAIN, '--acme-email', 'ops@bench.test', '--acme-directory', pebble.directoryUrl],
  env: { NODE_EXTRA_CA_CERTS: authority.rootPath, ALTO_SANDBOX_CACHE: cache.dir, ALTO_DNS_SERVER: pebble.dnsServer, ALTO_ACME_CHALLENGES: 'http-01', ALTO_ACME_CHECK_MS: '500', ALTO_DOMAIN_CHECK_MS: '200' },
});

const loads: [string, WrkFigures][] = [];
const issuance: number[] = [];
try {
  await registry.push('bench/node', 'v1', await nodeAppImage());
  const key = await alto.projectKey('bench', ['app', 'domains']);
  const run = await alto.call('app', 'Run', { name: 'web', image: `${registry.host}/bench/node:v1`, memory: 256, min_instances: 1 }, key);
  if (run.status !== 200) throw new Error(`app/Run: ${JSON.stringify(run.body)}`);

  const plainUrl = `http://127.0.0.1:${port}/`;
  const httpsUrl = `https://127.0.0.1:${httpsPort}/`;
  const warmUp = Math.max(1, Math.round(seconds / 5));
  await runLoad(plainUrl, APP_HOST, warmUp);
  await runLoad(httpsUrl, APP_HOST, warmUp);
  for (const fresh of [false, true]) {
    const kind = fresh ? 'new connection per request' : 'keep-alive';
    loads.push([`plain HTTP, ${kind}`, await runLoad(plainUrl, APP_HOST, seconds, fresh)]);
    loads.push([`HTTPS (HTTP/1.1 over TLS), ${kind}`, await runLoad(httpsUrl, APP_HOST, seconds, fresh)]);
  }

  const root = await pebble.root();
  for (let index = 0; index < domainCount; index++) {
    const domain = `www${index}.bench-shop.test`;
    const started = performance.now();
    const added = await alto.call('domains', 'Add', { domain, app: 'web' }, key);
    if (added.status !== 200) throw new Error(`domains/Add: ${JSON.stringify(added.body)}`);
    await waitForAsync(async () => (await http2Request({ port: httpsPort, host: domain, path: '/', ca: root }).catch(() => undefined))?.status === 200, `${domain} served over HTTPS`, 60_000);
    issuance.push(performance.now() - started);
  }
} finally {
  await alto.close();
  await pebble.stop();
  await registry.stop();
  authority.remove();
  cache.remove();
  rmSync(dataDir, { recursive: true, force: true });
}

const ms = (value: number) => value.toFixed(value < 10 ? 2 : 0);
console.log(`\nNode.js app image, GET / through the edge, ${seconds} s per row, ${connections} connections (wrk, one thread); TLS 1.3, ECDSA P-256\n`);
console.log('| path | req/s | p50 ms | p99 ms | errors |');
console.log('|---|---:|---:|---:|---:|');
for (const [path, result] of loads) console.log(`| ${path} | ${result.requestsPerSecond.toFixed(0)} | ${ms(result.p50)} | ${ms(result.p99)} | ${result.errors} |`);
console.log(`\nFrom domains/Add to the certificate served (pebble, HTTP-01, no validation sleep): median ${ms(median(issuance))} ms over ${issuance.length} domains (${issuance.map(ms).join(', ')} ms)`);
