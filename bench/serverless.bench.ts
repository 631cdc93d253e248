/**
 * Serverless benchmark (issue 8), both sandbox drivers in one run: a real `alto up --sandbox
 * <driver>` runs a busybox httpd image (test/serverless-fixture.ts) pushed to a docker-registry
 * this bench starts, and measures, client side through the edge (Host `<app>.<project>.localhost`),
 * from sending a GET / to the app's first response byte:
 * - from a suspended app (min_instances 0, idle_timeout 1; each sample waits until Status says
 *   suspended; the app's first request after deploy, its first code run in the instance, is
 *   printed on a line of its own, as the kept-running peer is warmed up too), and, on microvm, from a snapshotted one (ALTO_SNAPSHOT_AFTER_MS short; each sample
 *   waits until Status says snapshotted);
 * - the peers, in the same run: the same app kept running (min_instances 1; one request at a
 *   time, a new connection each), and the same app started fresh per request (app/Run, the
 *   request, app/Delete: from the Run call to the first byte);
 * - idle → suspended: from the end of a request's answer to the moment Status says the instance
 *   was suspended (its `since`), against idle_timeout + 1 s.
 *
 * More figures, each its own run:
 * - `burst [driver=process] [clients=200] [seconds=10]`: from 0 to `clients` concurrent clients at
 *   once (bench/http-load.mjs, keep-alive, in its own process) on a scale-to-zero app
 *   (min_instances 0, max_instances 4, concurrency 50); prints errors, p50/p99 and the app's
 *   instances by state every 250 ms, until it is back to one suspended instance.
 * - `density [driver=process] [count=200 on process, 10 on microvm]`: `count` apps of busybox
 *   httpd (min_instances 0, 64 MiB; 128 on microvm) started and suspended; the host's MemAvailable before and
 *   after gives the memory each suspended instance holds, extrapolated to a 24 GiB machine. With
 *   `pool` last, one app instead, with `count` suspended spares restored from its ready snapshot
 *   (microvm: private copies sharing the snapshot's unchanged pages); the QEMU processes'
 *   proportional set size (PSS, shared pages split between their users) is printed beside it.
 * - `clients [driver] [counts=1 4 8 16 50]`: one running instance's requests/s and latency by
 *   concurrent clients; on microvm with and without the exchange limit tcg guests get.
 *
 * Run (as root): node --import tsx bench/serverless.bench.ts [samples=20] [process|microvm, default both]
 *                node --import tsx bench/serverless.bench.ts burst [process|microvm] [clients] [seconds]
 *                node --import tsx bench/serverless.bench.ts density [process|microvm] [count] [pool]
 *                node --import tsx bench/serverless.bench.ts clients [process|microvm] [counts...]
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { privateSandboxCache } from '../packages/alto/test/apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from '../packages/alto/test/harness.js';
import { startRegistry } from '../packages/alto/test/images-fixture.js';
import { sleepyImage, slotsOf } from '../packages/alto/test/serverless-fixture.js';

const mode = process.argv[2] === 'burst' || process.argv[2] === 'density' || process.argv[2] === 'clients' ? process.argv[2] : 'latency';
const samples = mode === 'latency' ? Number(process.argv[2] ?? 20) : 0;
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
  /** The app's first request ever, from suspended: also its first code run in the instance (the peers are warmed up too). */
  firstWake: number[];
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

/** A registry holding the busybox httpd image as bench/sleepy:v1 while `work` runs. */
async function withSleepyImage<T>(work: (image: string) => Promise<T>): Promise<T> {
  const registry = await startRegistry();
  try {
    await registry.push('bench/sleepy', 'v1', await sleepyImage());
    return await work(`${registry.host}/bench/sleepy:v1`);
  } finally {
    await registry.stop();
  }
}

/** `alto up --sandbox <driver>` with a data folder and sandbox cache of its own while `work` runs; then both are removed. */
async function withAlto<T>(driver: DriverName, env: Record<string, string>, work: (alto: ServerProcess) => Promise<T>): Promise<T> {
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  let alto: ServerProcess | undefined;
  try {
    alto = await startProcess({ dataDir, args: ['--sandbox', driver], env: { ALTO_SANDBOX_CACHE: cache.dir, ...env } });
    return await work(alto);
  } finally {
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** MiB an instance of the image gets: the guest kernel needs more than 64 to boot in a microVM. */
const memoryFor = (driver: DriverName) => (driver === 'microvm' ? 128 : 64);

/** A load's errors, with their kinds. */
function describeErrors(load: LoadResult): string {
  return load.errors ? `${load.errors} (${Object.entries(load.errorKinds).map(([kind, count]) => `${count} ${kind}`).join(', ')})` : '0';
}

function measureDriver(driver: DriverName, image: string): Promise<DriverFigures> {
  return withAlto(driver, { ALTO_SNAPSHOT_AFTER_MS: String(SNAPSHOT_AFTER_MS) }, async (alto) => {
    const figures: DriverFigures = { driver, accelerator: '', fromSuspended: [], firstWake: [], fromSnapshotted: [], alwaysRunning: [], freshPerRequest: [], idleToSuspended: [] };
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

    // Suspended → first byte; then idle → suspended after that answer. The first wake is the
    // app's first request ever, reported on its own line (the kept-running peer is warmed up too).
    for (let i = 0; i <= samples; i++) {
      await waitForState(alto, key, 'sleepy', 'suspended');
      const answer = await get('sleepy');
      (i === 0 ? figures.firstWake : figures.fromSuspended).push(answer.firstByteMs);
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
    await call('Run', { name: 'running', ...settings, min_instances: 1 });
    await get('running');
    for (let i = 0; i < samples; i++) figures.alwaysRunning.push((await get('running')).firstByteMs);
    await call('Delete', { name: 'running' });

    // Peer: started fresh per request.
    for (let i = 0; i < FRESH_SAMPLES; i++) {
      const started = performance.now();
      await call('Run', { name: 'fresh', ...settings, min_instances: 1 });
      await get('fresh');
      figures.freshPerRequest.push(performance.now() - started);
      await call('Delete', { name: 'fresh' });
    }
    return figures;
  });
}

async function latencyRun(): Promise<void> {
  const results: DriverFigures[] = [];
  await withSleepyImage(async (image) => {
    const only = process.argv[3] as DriverName | undefined;
    if (only !== undefined && !DRIVERS.includes(only)) throw new Error(`driver must be one of ${DRIVERS.join(', ')}, not "${only}"`);
    for (const driver of only ? [only] : DRIVERS) {
      process.stderr.write(`measuring ${driver}...\n`);
      const figures = await measureDriver(driver, image);
      const slowest = (values: number[]) => [...values].sort((a, b) => b - a).slice(0, 5).map((value) => value.toFixed(1)).join(', ');
      process.stderr.write(`${driver}: slowest from suspended ${slowest(figures.fromSuspended)}; kept running ${slowest(figures.alwaysRunning)} (ms)\n`);
      results.push(figures);
    }
  });

  const ms = (value: number) => (Number.isNaN(value) ? '-' : value.toFixed(value < 10 ? 2 : 0));
  const p = (values: number[]) => `${ms(percentile(values, 0.5))} / ${ms(percentile(values, 0.99))}`;
  console.log(`\nbusybox httpd image, 128 MiB, GET / on a new connection through the edge; ${samples} samples each (snapshotted: at most 10, fresh: ${FRESH_SAMPLES})\n`);
  console.log('| driver | accel | what | p50 / p99 ms | target |');
  console.log('|---|---|---|---:|---|');
  for (const figure of results) {
    const row = (what: string, values: number[], target: string) => console.log(`| ${figure.driver} | ${figure.accelerator} | ${what} | ${values.length > 0 ? p(values) : 'n/a'} | ${target} |`);
    row('suspended → first byte', figure.fromSuspended, '< 10 / < 25');
    console.log(`| ${figure.driver} | ${figure.accelerator} | the same, the app's first request after deploy | ${ms(figure.firstWake[0] ?? NaN)} | - |`);
    row('snapshotted → first byte', figure.fromSnapshotted, figure.driver === 'microvm' ? `< 150 p50 under tcg${figure.accelerator === 'kvm' ? ' (kvm figure)' : ''}` : 'no snapshots: stays suspended');
    row('peer: kept running → first byte', figure.alwaysRunning, 'peer');
    row('peer: started fresh per request (Run → first byte)', figure.freshPerRequest, 'peer');
    row('idle → suspended, after idle_timeout 1 s', figure.idleToSuspended, `<= ${IDLE_TIMEOUT_S * 1000 + 1000} (idle_timeout + 1 s)`);
  }
}

// ---- burst: 0 → N concurrent clients on a scale-to-zero app -------------------------------------

interface LoadResult {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
  /** Status codes and error codes of the failures, with counts. */
  errorKinds: Record<string, number>;
}

/** bench/http-load.mjs in its own process, so the clients do not share a CPU budget with this one's sampling. */
function runLoad(url: string, host: string, seconds: number, clients: number): Promise<LoadResult> {
  const script = fileURLToPath(new URL('./http-load.mjs', import.meta.url));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, url, host, String(seconds), String(clients)], { maxBuffer: 1 << 20 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult);
    });
  });
}

function countStates(slots: { state: string }[]): string {
  const counts = new Map<string, number>();
  for (const slot of slots) counts.set(slot.state, (counts.get(slot.state) ?? 0) + 1);
  return [...counts].map(([state, count]) => `${count} ${state}`).join(', ') || 'none';
}

function burstRun(driver: DriverName, clients: number, seconds: number): Promise<void> {
  return withSleepyImage((image) => withAlto(driver, {}, async (alto) => {
    const key = await alto.projectKey(PROJECT, ['app']);
    const maxInstances = 4;
    const concurrency = 50;
    const run = await alto.call('app', 'Run', { name: 'burst', image, memory: memoryFor(driver), min_instances: 0, max_instances: maxInstances, concurrency, idle_timeout: IDLE_TIMEOUT_S }, key);
    if (run.status !== 200) throw new Error(`app/Run answered ${run.status}: ${JSON.stringify(run.body)}`);
    await waitForState(alto, key, 'burst', 'suspended');
    const timeline: string[] = [];
    const began = Date.now();
    let sampling = true;
    let peak = 0;
    const sampler = (async () => {
      while (sampling) {
        const slots = await slotsOf(alto, key, 'burst');
        peak = Math.max(peak, slots.filter((slot) => slot.state === 'running').length);
        timeline.push(`${((Date.now() - began) / 1000).toFixed(2).padStart(6)} s  ${slots.length} instances: ${countStates(slots)}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    const load = await runLoad(`${alto.url}/`, `burst.${PROJECT}.localhost`, seconds, clients);
    const loadEnded = Date.now();
    // Back down: one instance position left, suspended.
    const deadline = Date.now() + 60_000;
    let downMs = NaN;
    for (;;) {
      const slots = await slotsOf(alto, key, 'burst');
      if (slots.length === 1 && slots[0].state === 'suspended') {
        downMs = Date.now() - loadEnded;
        break;
      }
      if (Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    sampling = false;
    await sampler;
    console.log(`\nburst on ${driver}: 0 → ${clients} concurrent keep-alive clients for ${seconds} s on a suspended app (min 0, max ${maxInstances}, concurrency ${concurrency}); instances over time:\n`);
    for (const line of timeline) console.log(line);
    console.log('\n| what | figure | target |');
    console.log('|---|---:|---|');
    console.log(`| errors (non-200 or failed) | ${describeErrors(load)} | 0 |`);
    console.log(`| requests/s | ${load.requestsPerSecond.toFixed(0)} | - |`);
    console.log(`| latency p50 / p99 ms | ${load.p50.toFixed(1)} / ${load.p99.toFixed(1)} | p99 printed |`);
    console.log(`| most instances running at once | ${peak} | scaled up (> 1) |`);
    console.log(`| from the load's end to 1 suspended instance | ${Number.isNaN(downMs) ? 'not within 60 s' : `${(downMs / 1000).toFixed(1)} s`} | scaled back down |`);
  }));
}

// ---- density: suspended instances one machine holds ---------------------------------------------

/** The host's MemAvailable, in KiB. */
function memAvailableKiB(): number {
  const line = readFileSync('/proc/meminfo', 'utf8').split('\n').find((entry) => entry.startsWith('MemAvailable:'));
  return Number(line?.split(/\s+/)[1] ?? NaN);
}

/** The median of five reads of MemAvailable 200 ms apart (the figure moves a little on its own). */
async function settledMemAvailable(): Promise<number> {
  const reads: number[] = [];
  for (let i = 0; i < 5; i++) {
    reads.push(memAvailableKiB());
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return reads.sort((a, b) => a - b)[2];
}

/** Proportional set size of every QEMU process of Alto's microVMs, in KiB (0 where there is none). */
function qemuPssKiB(): number {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    try {
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!command.startsWith('qemu-system') || !command.includes('alto-vm-')) continue;
      const pss = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      total += Number(pss?.[1] ?? 0);
    } catch {
      // The process ended meanwhile.
    }
  }
  return total;
}

/** One app with `spares` suspended spares (restored from its ready snapshot where the driver can). */
async function startPooled(alto: ServerProcess, key: string, image: string, memory: number, spares: number): Promise<void> {
  const run = await alto.call('app', 'Run', { name: 'pooled', image, memory, min_instances: 0, pool: spares, max_instances: spares + 1 }, key);
  if (run.status !== 200) throw new Error(`app/Run answered ${run.status}: ${JSON.stringify(run.body)}`);
  const deadline = Date.now() + 600_000;
  for (;;) {
    const slots = await slotsOf(alto, key, 'pooled');
    if (slots.length === spares + 1 && slots.every((slot) => slot.state === 'suspended')) {
      const origins = new Map<string, number>();
      for (const slot of slots) origins.set(slot.origin ?? '?', (origins.get(slot.origin ?? '?') ?? 0) + 1);
      console.log(`instances by origin: ${[...origins].map(([origin, n]) => `${n} ${origin}`).join(', ')}`);
      return;
    }
    if (Date.now() > deadline) throw new Error('the pool was not suspended within 10 minutes');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function densityRun(driver: DriverName, count: number, pooled: boolean): Promise<void> {
  return withSleepyImage((image) => withAlto(driver, {}, async (alto) => {
    const key = await alto.projectKey(PROJECT, ['app']);
    const memory = memoryFor(driver);
    // The first app pays for the pull, the unpack and the driver's probe: not counted.
    const warm = await alto.call('app', 'Run', { name: 'warm', image, memory, min_instances: 0 }, key);
    if (warm.status !== 200) throw new Error(`app/Run answered ${warm.status}: ${JSON.stringify(warm.body)}`);
    await waitForState(alto, key, 'warm', 'suspended');
    const before = await settledMemAvailable();
    const pssBefore = qemuPssKiB();
    const started = Date.now();
    const parallel = driver === 'microvm' ? 2 : 8;
    let next = pooled ? count : 0;
    if (pooled) await startPooled(alto, key, image, memory, count - 1);
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < count) {
          const index = next++;
          const run = await alto.call('app', 'Run', { name: `app${index}`, image, memory, min_instances: 0 }, key);
          if (run.status !== 200) throw new Error(`app/Run app${index} answered ${run.status}: ${JSON.stringify(run.body)}`);
          if ((index + 1) % 100 === 0) process.stderr.write(`${index + 1} apps started\n`);
        }
      }),
    );
    if (!pooled) for (let i = 0; i < count; i++) await waitForState(alto, key, `app${i}`, 'suspended');
    const tookS = (Date.now() - started) / 1000;
    const after = await settledMemAvailable();
    const pssPerInstanceKiB = (qemuPssKiB() - pssBefore) / count;
    // The larger of the two: MemAvailable counts page cache that mapped snapshot files use as free.
    const perInstanceKiB = Math.max((before - after) / count, pssPerInstanceKiB);
    // Each one still answers: wake a few.
    if (pooled) {
      const answer = await timedGet(Number(new URL(alto.url).port), `pooled.${PROJECT}.localhost`);
      if (answer.status !== 200) throw new Error(`the pooled app answered ${answer.status} after the density run`);
    } else
      for (const i of [0, Math.floor(count / 2), count - 1]) {
        const answer = await timedGet(Number(new URL(alto.url).port), `app${i}.${PROJECT}.localhost`);
        if (answer.status !== 200) throw new Error(`app${i} answered ${answer.status} after the density run`);
      }
    const machineKiB = 24 * 1024 * 1024;
    const what = pooled ? `one app of busybox httpd with ${count - 1} spares (${count} instances)` : `${count} apps of busybox httpd`;
    console.log(`\ndensity on ${driver}: ${what} (${memory} MiB each, min_instances 0), started and suspended in ${tookS.toFixed(0)} s\n`);
    console.log('| what | figure | target |');
    console.log('|---|---:|---|');
    console.log(`| host MemAvailable before / after | ${(before / 1024).toFixed(0)} / ${(after / 1024).toFixed(0)} MiB | - |`);
    if (driver === 'microvm') console.log(`| QEMU proportional set size per instance | ${(pssPerInstanceKiB / 1024).toFixed(2)} MiB | - |`);
    console.log(`| memory per suspended instance | ${(perInstanceKiB / 1024).toFixed(2)} MiB | printed |`);
    console.log(`| suspended instances a 24 GiB machine holds (extrapolated, all of its memory) | ${Math.floor(machineKiB / perInstanceKiB)} | >= 800 |`);
  }));
}

// ---- clients: one running instance's throughput by concurrent clients --------------------------

/**
 * One instance kept running (min = max = 1, concurrency 50), `counts` keep-alive clients for 8 s
 * each; on a microVM under tcg twice: with its default exchange limit and with none
 * (ALTO_MICROVM_TCG_EXCHANGES=0), which is how MICROVM_TCG_EXCHANGES was chosen.
 */
function clientsRun(driver: DriverName, counts: number[]): Promise<void> {
  return withSleepyImage(async (image) => {
    const limits = driver === 'microvm' ? ['default', '0'] : ['default'];
    console.log(`\none running ${driver} instance of busybox httpd (concurrency 50), 8 s of keep-alive GET / per row\n`);
    console.log('| exchange limit | clients | requests/s | p50 / p99 ms | errors |');
    console.log('|---|---:|---:|---:|---|');
    for (const limit of limits) {
      await withAlto(driver, limit === 'default' ? {} : { ALTO_MICROVM_TCG_EXCHANGES: limit }, async (alto) => {
        const key = await alto.projectKey(PROJECT, ['app']);
        const run = await alto.call('app', 'Run', { name: 'one', image, memory: memoryFor(driver), min_instances: 1, max_instances: 1, concurrency: 50 }, key);
        if (run.status !== 200) throw new Error(`app/Run answered ${run.status}: ${JSON.stringify(run.body)}`);
        for (const clients of counts) {
          const load = await runLoad(`${alto.url}/`, `one.${PROJECT}.localhost`, 8, clients);
          console.log(`| ${limit === '0' ? 'none' : limit} | ${clients} | ${load.requestsPerSecond.toFixed(0)} | ${load.p50.toFixed(1)} / ${load.p99.toFixed(1)} | ${describeErrors(load)} |`);
        }
      });
    }
  });
}

const driverArgument = (process.argv[3] ?? 'process') as DriverName;
if (!DRIVERS.includes(driverArgument)) throw new Error(`driver must be one of ${DRIVERS.join(', ')}, not "${driverArgument}"`);
if (mode === 'burst') await burstRun(driverArgument, Number(process.argv[4] ?? 200), Number(process.argv[5] ?? 10));
else if (mode === 'clients') await clientsRun(driverArgument, process.argv.length > 4 ? process.argv.slice(4).map(Number) : [1, 4, 8, 16, 50]);
else if (mode === 'density') await densityRun(driverArgument, Number(process.argv[4] ?? (driverArgument === 'microvm' ? 10 : 200)), process.argv[5] === 'pool');
else await latencyRun();
