/**
 * Apps benchmark, both sandbox drivers in one run (process, then microvm; microvm runs under
 * kvm where a guest boots with it, else tcg, and the table says which): a real `alto up
 * --sandbox <driver>` on a temporary data folder runs the Node.js app image (test/app-images.ts,
 * the host's own node) pulled from a docker-registry this bench starts, and measures
 * - boot-to-ready: app/Run from call to answer (median of 3, Delete between). The image is pulled,
 *   unpacked and turned into a root disk once first by the app the warm figures use, which keeps
 *   running, so these runs only boot;
 * - warm requests: requests/s and p50/p99 latency through the edge (Host `<app>.<project>.localhost`)
 *   against the same instance reached directly at the backend address app/Resolve gives, with the
 *   same load (wrk, one thread) in the same run, and their ratio: with keep-alive connections, and
 *   with a new connection per request (`Connection: close`).
 *
 * Run (as root): node --import tsx bench/apps.bench.ts [seconds=8] [connections=50] [drivers=process,microvm]
 */
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { nodeAppImage } from '../packages/alto/test/app-images.js';
import { privateSandboxCache } from '../packages/alto/test/apps-fixture.js';
import { startProcess, temporaryDataDir } from '../packages/alto/test/harness.js';
import { startRegistry, type TestRegistry } from '../packages/alto/test/images-fixture.js';
import { median, parseWrkOutput, type WrkFigures } from './wrk.js';

const seconds = Number(process.argv[2] ?? 8);
const connections = Number(process.argv[3] ?? 50);
const BOOTS = 3;
const PROJECT = 'bench';
const ALL_DRIVERS = ['process', 'microvm'] as const;
type DriverName = (typeof ALL_DRIVERS)[number];
const DRIVERS = (process.argv[4] ?? ALL_DRIVERS.join(',')).split(',').filter((name): name is DriverName => (ALL_DRIVERS as readonly string[]).includes(name));

if (spawnSync('wrk', ['--version']).error) {
  console.error('wrk is not installed: apt-get install -y wrk');
  process.exit(1);
}

type LoadResult = WrkFigures;

interface DriverFigures {
  driver: DriverName;
  accelerator: string;
  boots: number[];
  edge: LoadResult;
  direct: LoadResult;
  /** A new connection per request. */
  edgeFresh: LoadResult;
  directFresh: LoadResult;
}

/**
 * wrk against `url` with this Host, keep-alive or a new connection per request (`Connection:
 * close`); waited on asynchronously, so this process's own connections to Alto stay serviced.
 */
function runLoad(url: string, host: string, duration: number, fresh = false): Promise<LoadResult> {
  const headers = ['-H', `Host: ${host}`, ...(fresh ? ['-H', 'Connection: close'] : [])];
  const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', ...headers, url]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  return new Promise((resolve, reject) =>
    child.once('close', (code) => (code === 0 ? resolve(parseWrkOutput(output)) : reject(new Error(`wrk exited with ${code}`)))),
  );
}

async function measureDriver(driver: DriverName, registry: TestRegistry, image: string): Promise<DriverFigures> {
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const alto = await startProcess({ dataDir, args: ['--sandbox', driver], env: { ALTO_SANDBOX_CACHE: cache.dir } });
  try {
    const key = await alto.projectKey(PROJECT, ['app']);
    const call = async (endpoint: string, body: unknown) => {
      const result = await alto.call('app', endpoint, body, key);
      if (result.status !== 200) throw new Error(`app/${endpoint} answered ${result.status}: ${JSON.stringify(result.body)}`);
      return result.body;
    };
    // Always on: the warm figures reach the instance directly, which a suspended one would not answer.
    const settings = { image: `${registry.host}/${image}`, memory: 256, min_instances: 1 };
    // Pull, unpack and root disk, once: this app stays up and serves the warm figures.
    await call('Run', { name: 'web', ...settings });
    const status = await (await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).json();
    const accelerator = String(status.sandbox?.accelerator ?? 'unknown');

    const boots: number[] = [];
    for (let i = 0; i < BOOTS; i++) {
      const started = performance.now();
      await call('Run', { name: 'boot', ...settings });
      boots.push(performance.now() - started);
      await call('Delete', { name: 'boot' });
    }

    const edgeUrl = `${alto.url}/`;
    const edgeHost = `web.${PROJECT}.localhost:${new URL(alto.url).port}`;
    const backend = new URL((await call('Resolve', { name: 'web' })).url as string);
    const directUrl = `${backend.origin}/`;
    const warmUp = Math.max(1, Math.round(seconds / 5));
    await runLoad(directUrl, backend.host, warmUp);
    await runLoad(edgeUrl, edgeHost, warmUp);
    const edge = await runLoad(edgeUrl, edgeHost, seconds);
    const direct = await runLoad(directUrl, backend.host, seconds);
    const edgeFresh = await runLoad(edgeUrl, edgeHost, seconds, true);
    const directFresh = await runLoad(directUrl, backend.host, seconds, true);
    await call('Delete', { name: 'web' });
    return { driver, accelerator, boots, edge, direct, edgeFresh, directFresh };
  } finally {
    await alto.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const registry = await startRegistry();
const figures: DriverFigures[] = [];
try {
  await registry.push('bench/node', 'v1', await nodeAppImage());
  for (const driver of DRIVERS) {
    process.stderr.write(`measuring ${driver}...\n`);
    figures.push(await measureDriver(driver, registry, 'bench/node:v1'));
  }
} finally {
  await registry.stop();
}

const ms = (value: number) => value.toFixed(value < 10 ? 2 : 0);
console.log(`\nNode.js app image (node ${process.version} and its libraries), 256 MiB; GET /, ${seconds} s per path, ${connections} connections (wrk, one thread)\n`);
console.log('| driver | accelerator | boot-to-ready, median of 3 (ms) | all 3 (ms) |');
console.log('|---|---|---:|---|');
for (const figure of figures)
  console.log(`| ${figure.driver} | ${figure.accelerator} | ${ms(median(figure.boots))} | ${figure.boots.map(ms).join(', ')} |`);
console.log('\n| driver | path | req/s | p50 ms | p99 ms | errors |');
console.log('|---|---|---:|---:|---:|---:|');
for (const figure of figures) {
  for (const [path, result] of [
    ['through the edge, keep-alive', figure.edge],
    ['backend directly, keep-alive', figure.direct],
    ['through the edge, new connection per request', figure.edgeFresh],
    ['backend directly, new connection per request', figure.directFresh],
  ] as const)
    console.log(`| ${figure.driver} | ${path} | ${result.requestsPerSecond.toFixed(0)} | ${ms(result.p50)} | ${ms(result.p99)} | ${result.errors} |`);
}
console.log('\n| driver | connections | edge/direct req/s | edge/direct p50 |');
console.log('|---|---|---:|---:|');
for (const figure of figures) {
  console.log(`| ${figure.driver} | keep-alive | ${(figure.edge.requestsPerSecond / figure.direct.requestsPerSecond).toFixed(2)} | ${(figure.edge.p50 / figure.direct.p50).toFixed(2)} |`);
  console.log(`| ${figure.driver} | new per request | ${(figure.edgeFresh.requestsPerSecond / figure.directFresh.requestsPerSecond).toFixed(2)} | ${(figure.edgeFresh.p50 / figure.directFresh.p50).toFixed(2)} |`);
}
console.log('(target: keep-alive edge/direct at least 0.7 on the process driver)');
