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
 *   with a new connection per request (`Connection: close`);
 * - peers: the same instance behind HAProxy and nginx (`apt-get install -y haproxy nginx-light`;
 *   a peer not installed is left out), each
 *   with one thread or worker as the edge has one event loop, keep-alive to the instance, in the
 *   same run: what a proxy written in C keeps on this machine, next to the edge's figure;
 *   bench/node-pipe.mjs, a Node.js process copying bytes between a client connection and its own
 *   backend connection with no HTTP work at all: the floor of what Node's sockets cost; and
 *   bench/node-pipeline.mjs, a Node.js proxy that pipelines the requests of every client on 8
 *   backend connections: what that technique would buy a Node.js proxy here (fewer writes to the
 *   instance, and fewer reads and writes for the instance itself);
 * - the proxy's CPU per request in each keep-alive round (from /proc: Alto's process with all its
 *   threads, not its sandboxes; each peer's processes), which a neighbour's load moves less than
 *   requests/s: where the edge stands against a bare Node.js pipe and a proxy written in C.
 *
 * Alto runs from its compiled build (the bench runs `npm run build` first), as users run it. The
 * app has one instance, with a concurrency above the connection count, so both paths load that
 * one instance and the edge neither queues nor scales out.
 *
 * The keep-alive figures are medians of `rounds` rounds, each running the edge then direct, so a
 * neighbour's load or the VM's speed, which swing from one minute to the next on a shared
 * machine, hit both alike; then as many rounds of the peers, each beside a direct run (the
 * edge's figures came out lower in rounds after a peer had run against the same instance).
 *
 * Run (as root): node --import tsx bench/apps.bench.ts [seconds=8] [connections=50] [drivers=process,microvm] [rounds=3]
 * (BENCH_PEERS=haproxy,nginx,node-pipe,node-pipeline by default; empty for none)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeAppImage } from '../packages/alto/test/app-images.js';
import { privateSandboxCache } from '../packages/alto/test/apps-fixture.js';
import { startProcess, temporaryDataDir } from '../packages/alto/test/harness.js';
import { startRegistry, type TestRegistry } from '../packages/alto/test/images-fixture.js';
import { cpuMicros, median, parseWrkOutput, type WrkFigures } from './wrk.js';

const seconds = Number(process.argv[2] ?? 8);
const connections = Number(process.argv[3] ?? 50);
const BOOTS = 3;
const ROUNDS = Number(process.argv[5] ?? 3);
const PROJECT = 'bench';
const ALL_DRIVERS = ['process', 'microvm'] as const;
type DriverName = (typeof ALL_DRIVERS)[number];
const DRIVERS = (process.argv[4] ?? ALL_DRIVERS.join(',')).split(',').filter((name): name is DriverName => (ALL_DRIVERS as readonly string[]).includes(name));

// The edge as users run it: the compiled build (bin/alto.js), not the sources through tsx, whose
// transform wraps every function made per request to keep its name.
const built = spawnSync('npm', ['run', 'build', '-w', 'packages/alto'], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'ignore', 'inherit'] });
if (built.status !== 0) {
  console.error('npm run build -w packages/alto failed');
  process.exit(1);
}

if (spawnSync('wrk', ['--version']).error) {
  console.error('wrk is not installed: apt-get install -y wrk');
  process.exit(1);
}

/** wrk's figures, with the proxy's CPU per request (µs, from /proc) where a proxy was measured. */
type LoadResult = WrkFigures & { cpuPerRequest?: number };

interface DriverFigures {
  driver: DriverName;
  accelerator: string;
  boots: number[];
  edge: LoadResult;
  direct: LoadResult;
  /** A new connection per request. */
  edgeFresh: LoadResult;
  directFresh: LoadResult;
  /** The same instance behind a peer proxy, keep-alive; absent when the peer is not installed. */
  peers: { name: string; result: LoadResult }[];
  edgeRounds: LoadResult[];
  directRounds: LoadResult[];
}

/** The round with the median requests/s (its latencies with it). */
function medianRound(rounds: LoadResult[]): LoadResult {
  const sorted = [...rounds].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** The CPU time (µs) of a process and every process under it. */
function treeCpuMicros(pid: number): number {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parents.set(Number(entry), Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1]));
    } catch {
      // Gone since the listing.
    }
  }
  let total = 0;
  const pending = [pid];
  while (pending.length > 0) {
    const current = pending.pop()!;
    total += cpuMicros(current) || 0;
    for (const [child, parent] of parents) if (parent === current) pending.push(child);
  }
  return total;
}

/** A free port on loopback, for a peer proxy to listen on. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Peer {
  url: string;
  /** The CPU time its processes used so far (µs). */
  cpu(): number;
  stop(): Promise<void>;
}

const PEER_NAMES = ['haproxy', 'nginx', 'node-pipe', 'node-pipeline'] as const;
type PeerName = (typeof PEER_NAMES)[number];
const PEER_LABELS: Record<PeerName, string> = {
  haproxy: 'haproxy (one thread)',
  nginx: 'nginx (one thread)',
  'node-pipe': 'a bare Node.js socket pipe (node-pipe.mjs)',
  'node-pipeline': 'a Node.js proxy pipelining on 8 connections (node-pipeline.mjs)',
};

/**
 * A Node.js peer from bench/: node-pipe.mjs (a connection to the backend per client connection,
 * bytes copied as they come) or node-pipeline.mjs (requests pipelined on a few backend connections).
 */
async function startNodePeer(name: 'node-pipe' | 'node-pipeline', backend: string): Promise<Peer> {
  const child = spawn(process.execPath, [fileURLToPath(new URL(`${name}.mjs`, import.meta.url)), backend], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve((JSON.parse(chunk.toString().split('\n')[0]) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/`,
    cpu: () => treeCpuMicros(child.pid!),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** HAProxy or nginx in front of `backend` (host:port), one thread or worker, reusing connections to it. */
async function startPeer(name: PeerName, backend: string): Promise<Peer | undefined> {
  if (name === 'node-pipe' || name === 'node-pipeline') return startNodePeer(name, backend);
  const binary = name === 'haproxy' ? '/usr/sbin/haproxy' : '/usr/sbin/nginx';
  if (spawnSync(binary, ['-v']).error) return undefined;
  const dir = mkdtempSync(join(tmpdir(), `alto-bench-${name}-`));
  const port = await freePort();
  let child: ChildProcess;
  if (name === 'haproxy') {
    writeFileSync(join(dir, 'haproxy.cfg'), [
      'global', '  nbthread 1', '  maxconn 4096',
      'defaults', '  mode http', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s', '  option http-keep-alive', '  http-reuse always',
      'frontend bench', `  bind 127.0.0.1:${port}`, '  default_backend app',
      'backend app', `  server instance ${backend}`, '',
    ].join('\n'));
    child = spawn(binary, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  } else {
    writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  upstream app { server ${backend}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
}
`);
    child = spawn(binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' });
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}/`;
  // Ready when it answers.
  for (let attempt = 0; ; attempt++) {
    try {
      await fetch(url);
      break;
    } catch (error) {
      if (attempt > 100 || child.exitCode !== null) {
        child.kill();
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`${name} did not start: ${(error as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    url,
    // nginx's master and its one worker.
    cpu: () => treeCpuMicros(child.pid!),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * wrk against `url` with this Host, keep-alive or a new connection per request (`Connection:
 * close`); waited on asynchronously, so this process's own connections to Alto stay serviced.
 */
function runLoad(url: string, host: string, duration: number, fresh = false, proxyCpu?: () => number): Promise<LoadResult> {
  const headers = ['-H', `Host: ${host}`, ...(fresh ? ['-H', 'Connection: close'] : [])];
  const cpuBefore = proxyCpu?.();
  const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', ...headers, url]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  return new Promise((resolve, reject) =>
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with ${code}`));
      const figures: LoadResult = parseWrkOutput(output);
      if (proxyCpu && cpuBefore !== undefined) figures.cpuPerRequest = (proxyCpu() - cpuBefore) / (figures.requestsPerSecond * duration);
      resolve(figures);
    }),
  );
}

async function measureDriver(driver: DriverName, registry: TestRegistry, image: string): Promise<DriverFigures> {
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const alto = await startProcess({ dataDir, args: ['--sandbox', driver], env: { ALTO_SANDBOX_CACHE: cache.dir }, built: true });
  try {
    const key = await alto.projectKey(PROJECT, ['app']);
    const call = async (endpoint: string, body: unknown) => {
      const result = await alto.call('app', endpoint, body, key);
      if (result.status !== 200) throw new Error(`app/${endpoint} answered ${result.status}: ${JSON.stringify(result.body)}`);
      return result.body;
    };
    // Always on: the warm figures reach the instance directly, which a suspended one would not answer.
    // One instance, taking more requests at once than there are connections: both paths load the
    // same instance, and the edge never queues a request or starts a second one, which the direct
    // path could not do.
    const settings = { image: `${registry.host}/${image}`, memory: 256, min_instances: 1, max_instances: 1, concurrency: Math.max(100, connections * 2) };
    // Pull, unpack and root disk, once: this app stays up and serves the warm figures.
    await call('Run', { name: 'web', ...settings });
    const status = await (await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).json();
    const accelerator = String(status.sandbox?.accelerator ?? 'unknown');

    const edgeUrl = `${alto.url}/`;
    // Alto's own process (every thread), not its sandboxes.
    const edgeCpu = () => cpuMicros(alto.child.pid!);
    const edgeHost = `web.${PROJECT}.localhost:${new URL(alto.url).port}`;
    const backend = new URL((await call('Resolve', { name: 'web' })).url as string);
    const directUrl = `${backend.origin}/`;
    const warmUp = Math.max(2, Math.round(seconds / 3));
    await runLoad(directUrl, backend.host, warmUp);
    await runLoad(edgeUrl, edgeHost, warmUp);
    const edgeRounds: LoadResult[] = [];
    const directRounds: LoadResult[] = [];
    const peerRounds = new Map<string, LoadResult[]>();
    const peerNames = (process.env.BENCH_PEERS ?? PEER_NAMES.join(',')).split(',').filter((name): name is PeerName => (PEER_NAMES as readonly string[]).includes(name));
    for (let round = 0; round < ROUNDS; round++) {
      edgeRounds.push(await runLoad(edgeUrl, edgeHost, seconds, false, edgeCpu));
      directRounds.push(await runLoad(directUrl, backend.host, seconds));
    }
    // The peers after the edge's rounds, each with a direct run beside it: the edge's own figures
    // came out lower in rounds after a peer had run against the same instance.
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of peerNames) {
        const peer = await startPeer(name, backend.host);
        if (!peer) continue;
        try {
          await runLoad(peer.url, edgeHost, warmUp);
          peerRounds.set(name, [...(peerRounds.get(name) ?? []), await runLoad(peer.url, edgeHost, seconds, false, () => peer.cpu())]);
        } finally {
          await peer.stop();
        }
      }
      directRounds.push(await runLoad(directUrl, backend.host, seconds));
    }
    const edge = medianRound(edgeRounds);
    const direct = medianRound(directRounds);
    const edgeFresh = await runLoad(edgeUrl, edgeHost, seconds, true);
    const directFresh = await runLoad(directUrl, backend.host, seconds, true);
    // Boots last: a deleted instance's teardown would still be running during the first rounds.
    const boots: number[] = [];
    for (let i = 0; i < BOOTS; i++) {
      const started = performance.now();
      await call('Run', { name: 'boot', ...settings });
      boots.push(performance.now() - started);
      await call('Delete', { name: 'boot' });
    }
    await call('Delete', { name: 'web' });
    const peerFigures = [...peerRounds].map(([name, rounds]) => ({ name, result: medianRound(rounds) }));
    return { driver, accelerator, boots, edge, direct, edgeFresh, directFresh, peers: peerFigures, edgeRounds, directRounds };
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
console.log(`\nNode.js app image (node ${process.version} and its libraries), 256 MiB; GET /, ${seconds} s per path, ${connections} connections (wrk, one thread); keep-alive rows are medians of ${ROUNDS} rounds\n`);
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
    ...figure.peers.map(({ name, result }) => [`through ${PEER_LABELS[name as PeerName]}, keep-alive`, result] as const),
  ] as const)
    console.log(`| ${figure.driver} | ${path} | ${result.requestsPerSecond.toFixed(0)} | ${ms(result.p50)} | ${ms(result.p99)} | ${result.errors} |`);
}
console.log(`\nkeep-alive rounds (req/s), edge / direct: ${figures.map((f) => `${f.driver}: ${f.edgeRounds.map((e, i) => `${e.requestsPerSecond.toFixed(0)}/${f.directRounds[i].requestsPerSecond.toFixed(0)}`).join(', ')}`).join('; ')}`);
const cpu = (result: LoadResult) => (result.cpuPerRequest === undefined ? '' : result.cpuPerRequest.toFixed(1));
console.log('\n| driver | connections | edge/direct req/s | edge/direct p50 | proxy CPU µs/request |');
console.log('|---|---|---:|---:|---:|');
for (const figure of figures) {
  console.log(`| ${figure.driver} | keep-alive | ${(figure.edge.requestsPerSecond / figure.direct.requestsPerSecond).toFixed(2)} | ${(figure.edge.p50 / figure.direct.p50).toFixed(2)} | ${cpu(figure.edge)} |`);
  console.log(`| ${figure.driver} | new per request | ${(figure.edgeFresh.requestsPerSecond / figure.directFresh.requestsPerSecond).toFixed(2)} | ${(figure.edgeFresh.p50 / figure.directFresh.p50).toFixed(2)} | |`);
  for (const { name, result } of figure.peers)
    console.log(`| ${figure.driver} | keep-alive, ${name} instead of the edge | ${(result.requestsPerSecond / figure.direct.requestsPerSecond).toFixed(2)} | ${(result.p50 / figure.direct.p50).toFixed(2)} | ${cpu(result)} |`);
}
console.log('(target: keep-alive edge/direct at least 0.7 on the process driver)');
