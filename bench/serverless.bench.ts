/**
 * Serverless benchmark (issue 8), both sandbox drivers in one run: a real `alto up --sandbox
 * <driver>` runs a busybox httpd image (test/serverless-fixture.ts) pushed to a docker-registry
 * this bench starts, and measures, client side through the edge (Host `<app>.<project>.localhost`),
 * from sending a GET / to the app's first response byte:
 * - from a suspended app (min_instances 0, idle_timeout 1; each sample waits until Status says
 *   suspended), and, on microvm, from a snapshotted one (ALTO_SNAPSHOT_AFTER_MS short; each sample
 *   waits until Status says snapshotted);
 * - the peers, in the same run: the same app kept running (min_instances 1; one request at a
 *   time, a new connection each), and the same app started fresh per request (app/Run, the
 *   request, app/Delete: from the Run call to the first byte);
 * - idle → suspended: from the end of a request's answer to the moment Status says the instance
 *   was suspended (its `since`), against idle_timeout + 1 s.
 *
 * Run (as root): node --import tsx bench/serverless.bench.ts [samples=20]
 */
import { request as httpRequest } from 'node:http';
import { rmSync } from 'node:fs';
import { privateSandboxCache } from '../packages/alto/test/apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from '../packages/alto/test/harness.js';
import { startRegistry } from '../packages/alto/test/images-fixture.js';
import { sleepyImage, slotsOf } from '../packages/alto/test/serverless-fixture.js';

const samples = Number(process.argv[2] ?? 20);
const FRESH_SAMPLES = 3;
const PROJECT = 'bench';
const IDLE_TIMEOUT_S = 1;
const SNAPSHOT_AFTER_MS = 1_000;
const DRIVERS = ['process', 'microvm'] as const;
type DriverName = (typeof DRIVERS)[number];

interface DriverFigures {
  driver: DriverName;
  accelerator: string;
  fromSuspended: number[];
  fromSnapshotted: number[];
  alwaysRunning: number[];
  freshPerRequest: number[];
  idleToSuspended: number[];
}

/** GET / through the edge on a new connection: ms to the first response byte, and when the answer ended. */
function timedGet(edgePort: number, host: string): Promise<{ firstByteMs: number; endedAt: number; status: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const request = httpRequest({ host: '127.0.0.1', port: edgePort, path: '/', headers: { host }, agent: false }, (response) => {
      const firstByteMs = performance.now() - started;
      response.resume();
      response.on('end', () => resolve({ firstByteMs, endedAt: Date.now(), status: response.statusCode ?? 0 }));
    });
    request.setTimeout(60_000, () => request.destroy(new Error('request timed out')));
    request.on('error', reject);
    request.end();
  });
}

async function waitForState(alto: ServerProcess, key: string, app: string, state: string, timeoutMs = 60_000): Promise<{ since: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const slot = (await slotsOf(alto, key, app))[0];
    if (slot?.state === state) return { since: Date.parse(slot.since) };
    if (Date.now() > deadline) throw new Error(`${app} not ${state} within ${timeoutMs} ms (it is ${slot?.state})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)] ?? NaN;
}

async function measureDriver(driver: DriverName, image: string): Promise<DriverFigures> {
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const alto = await startProcess({ dataDir, args: ['--sandbox', driver], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_SNAPSHOT_AFTER_MS: String(SNAPSHOT_AFTER_MS) } });
  const figures: DriverFigures = { driver, accelerator: '', fromSuspended: [], fromSnapshotted: [], alwaysRunning: [], freshPerRequest: [], idleToSuspended: [] };
  try {
    const key = await alto.projectKey(PROJECT, ['app']);
    const edgePort = Number(new URL(alto.url).port);
    const call = async (endpoint: string, body: unknown) => {
      const result = await alto.call('app', endpoint, body, key);
      if (result.status !== 200) throw new Error(`app/${endpoint} answered ${result.status}: ${JSON.stringify(result.body)}`);
      return result.body;
    };
    const get = async (app: string) => {
      const answer = await timedGet(edgePort, `${app}.${PROJECT}.localhost`);
      if (answer.status !== 200) throw new Error(`${app} answered ${answer.status}`);
      return answer;
    };
    const settings = { image, memory: 128 };
    await call('Run', { name: 'sleepy', ...settings, min_instances: 0, idle_timeout: IDLE_TIMEOUT_S });
    const status = await (await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).json();
    figures.accelerator = String(status.sandbox?.accelerator ?? 'unknown');
    const snapshots = status.sandbox?.snapshot === true;

    // Suspended → first byte; then idle → suspended after that answer.
    for (let i = 0; i < samples; i++) {
      await waitForState(alto, key, 'sleepy', 'suspended');
      const answer = await get('sleepy');
      figures.fromSuspended.push(answer.firstByteMs);
      const suspended = await waitForState(alto, key, 'sleepy', 'suspended');
      figures.idleToSuspended.push(suspended.since - answer.endedAt);
    }
    // Snapshotted → first byte (restore), where the driver snapshots.
    if (snapshots) {
      for (let i = 0; i < Math.min(samples, 10); i++) {
        await waitForState(alto, key, 'sleepy', 'snapshotted');
        figures.fromSnapshotted.push((await get('sleepy')).firstByteMs);
      }
    }
    await call('Delete', { name: 'sleepy' });

    // Peer: the same app kept running.
    await call('Run', { name: 'running', ...settings });
    await get('running');
    for (let i = 0; i < samples; i++) figures.alwaysRunning.push((await get('running')).firstByteMs);
    await call('Delete', { name: 'running' });

    // Peer: started fresh per request.
    for (let i = 0; i < FRESH_SAMPLES; i++) {
      const started = performance.now();
      await call('Run', { name: 'fresh', ...settings });
      await get('fresh');
      figures.freshPerRequest.push(performance.now() - started);
      await call('Delete', { name: 'fresh' });
    }
    return figures;
  } finally {
    await alto.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const registry = await startRegistry();
const results: DriverFigures[] = [];
try {
  await registry.push('bench/sleepy', 'v1', await sleepyImage());
  for (const driver of DRIVERS) {
    process.stderr.write(`measuring ${driver}...\n`);
    results.push(await measureDriver(driver, `${registry.host}/bench/sleepy:v1`));
  }
} finally {
  await registry.stop();
}

const ms = (value: number) => (Number.isNaN(value) ? '-' : value.toFixed(value < 10 ? 2 : 0));
const p = (values: number[]) => `${ms(percentile(values, 0.5))} / ${ms(percentile(values, 0.99))}`;
console.log(`\nbusybox httpd image, 128 MiB, GET / on a new connection through the edge; ${samples} samples each (snapshotted: at most 10, fresh: ${FRESH_SAMPLES})\n`);
console.log('| driver | accel | what | p50 / p99 ms | target |');
console.log('|---|---|---|---:|---|');
for (const figure of results) {
  const row = (what: string, values: number[], target: string) => console.log(`| ${figure.driver} | ${figure.accelerator} | ${what} | ${values.length > 0 ? p(values) : 'n/a'} | ${target} |`);
  row('suspended → first byte', figure.fromSuspended, '< 10 / < 25');
  row('snapshotted → first byte', figure.fromSnapshotted, figure.driver === 'microvm' ? `< 150 p50 under tcg${figure.accelerator === 'kvm' ? ' (kvm figure)' : ''}` : 'no snapshots: stays suspended');
  row('peer: kept running → first byte', figure.alwaysRunning, 'peer');
  row('peer: started fresh per request (Run → first byte)', figure.freshPerRequest, 'peer');
  row('idle → suspended, after idle_timeout 1 s', figure.idleToSuspended, `<= ${IDLE_TIMEOUT_S * 1000 + 1000} (idle_timeout + 1 s)`);
}
