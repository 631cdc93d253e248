/**
 * Metering and limits benchmark: requests/s and p50/p99 latency of `id/Generate` through the
 * edge with metering and limits on (a project key whose project and key both have a rate limit,
 * a monthly quota and a spend cap, set high enough never to refuse, so every check runs), with
 * metering on and no limits set, and with `ALTO_METERING=off`, in one run. Rounds rotate through
 * the three (every other round in reverse order) so a neighbour's load on a shared machine hits
 * all alike; the medians are compared, and so is the median of each round's own cost (its three
 * servers measured within the same quarter of a minute), the steadier figure when the machine's
 * speed drifts between rounds. Many short rounds (`1 50 15`) average a drifting machine better
 * than a few long ones.
 *
 * Each variant runs in several server processes (two by default), used in turn from round to
 * round: two processes of the same build and settings can differ by 10 % in throughput for
 * their whole life (what V8 chose to inline, where the heap landed), and with one process per
 * variant that luck read as the cost of metering.
 *
 * Both servers run from the TypeScript sources through tsx (no build needed), with the same log
 * level, on loopback, measured with wrk (Debian's `wrk`), one at a time. On a machine shared
 * with other work, requests/s swing with the neighbours' load; the server's own CPU time per
 * request (from /proc, Linux) is the steadier figure, so both are printed.
 *
 * Run: node --import tsx bench/metering.bench.ts [seconds=5] [connections=50] [rounds=3] [processes=2]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuMicros, median, parseWrkOutput, writePostScript } from './wrk.js';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 50);
const rounds = Number(process.argv[4] ?? 3);
const processes = Math.max(1, Number(process.argv[5] ?? 2));
const root = fileURLToPath(new URL('..', import.meta.url));
const entry = join(root, 'packages/alto/src/cli/run.ts');

if (spawnSync('wrk', ['--version']).error) {
  console.error('wrk is not installed: apt-get install -y wrk');
  process.exit(1);
}

interface Server {
  child: ChildProcess;
  url: string;
  dataDir: string;
  key: string;
  call(service: string, endpoint: string, body: unknown, key?: string): Promise<any>;
}

async function startServer(metering: 'on' | 'off', withLimits: boolean): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), `alto-bench-metering-${metering}-`));
  const child = spawn(process.execPath, ['--import', 'tsx', entry, 'up', '--port', '0', '--host', '127.0.0.1', '--data', dataDir], {
    env: { ...process.env, ALTO_LOG_FORMAT: 'json', ALTO_LOG_LEVEL: 'info', ALTO_METERING: metering },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    let found = 0;
    // Keep reading stdout for the whole run (request logs), or the server would block on it.
    child.stdout!.on('data', (chunk: Buffer) => {
      if (found) return;
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const entry = line.startsWith('{') ? (JSON.parse(line) as { msg?: string; port?: number }) : {};
        if (entry.msg === 'listening' && entry.port) resolve((found = entry.port));
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  const admin = readFileSync(join(dataDir, 'admin-key'), 'utf8').trim();
  const call = async (service: string, endpoint: string, body: unknown, key = admin) => {
    const response = await fetch(`${url}/v1/${service}/${endpoint}`, {
      method: 'POST',
      // A fresh connection: a pooled one may have been closed as idle during a long wrk run.
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify(body),
    });
    const json = (await response.json()) as any;
    if (!response.ok) throw new Error(`${service}/${endpoint}: ${JSON.stringify(json)}`);
    return json;
  };
  // Limits that never refuse in this run, so every check is made and none turns a call away.
  const high = withLimits ? { rate_limit: 1_000_000, monthly_quota: 1_000_000_000_000 } : {};
  await call('projects', 'Create', { name: 'bench', ...high, ...(withLimits ? { monthly_spend_cap_micros: 1_000_000_000_000 } : {}) });
  const generated = await call('keys', 'Generate', { project: 'bench', scopes: ['id', 'usage'], ...high });
  return { child, url, dataDir, key: generated.key, call };
}

interface Result {
  requestsPerSecond: number;
  /** Server CPU time (user + system) per request served, in microseconds. */
  cpuMicrosPerRequest: number;
  requests: number;
  p50: number;
  p99: number;
  errors: number;
}

function runWrk(server: Server, duration: number): Result {
  const cpuBefore = cpuMicros(server.child.pid!);
  const script = writePostScript(join(server.dataDir, 'post.lua'), '{"type":"uuid"}', server.key);
  const output = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', '-s', script, `${server.url}/v1/id/Generate`], {
    encoding: 'utf8',
  }).stdout;
  const figures = parseWrkOutput(output);
  return { ...figures, cpuMicrosPerRequest: (cpuMicros(server.child.pid!) - cpuBefore) / figures.requests };
}

const servers = (metering: 'on' | 'off', withLimits: boolean) =>
  Promise.all(Array.from({ length: processes }, () => startServer(metering, withLimits)));
const variants = [
  { name: 'off (ALTO_METERING=off)', servers: await servers('off', false) },
  { name: 'metering on, no limits set', servers: await servers('on', false) },
  { name: 'metering and limits on', servers: await servers('on', true) },
];
try {
  const warm = Math.max(1, Math.round(seconds / 3));
  for (const variant of variants) for (const server of variant.servers) runWrk(server, warm);
  const results: Result[][] = variants.map(() => []);
  const processOf = (round: number) => Math.floor(round / 2) % processes;
  for (let round = 0; round < rounds; round++) {
    // Every other round in reverse order: a machine speeding up or slowing down within a round
    // then favours each server as often as it hurts it.
    const order = round % 2 === 0 ? [0, 1, 2] : [2, 1, 0];
    // Each process in two rounds running, one in each order.
    for (const i of order) results[i][round] = runWrk(variants[i].servers[processOf(round)], seconds);
  }

  const row = (name: string, r: Result) =>
    `${name.padEnd(40)} ${r.requestsPerSecond.toFixed(0).padStart(9)} ${r.cpuMicrosPerRequest.toFixed(1).padStart(11)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${String(r.errors).padStart(7)}`;
  console.log(
    `\nid/Generate through the edge, ${rounds} rounds of ${seconds}s each, ${connections} connections, wrk 1 thread, ${processes} server processes per variant used in turn`,
  );
  console.log(
    `${'server'.padEnd(40)} ${'req/s'.padStart(9)} ${'CPU µs/req'.padStart(11)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'errors'.padStart(7)}`,
  );
  for (let round = 0; round < rounds; round++) {
    variants.forEach((variant, i) => console.log(row(`round ${round + 1}: ${variant.name} #${processOf(round) + 1}`, results[i][round])));
  }
  const rate = results.map((rows) => median(rows.map((r) => r.requestsPerSecond)));
  const cpu = results.map((rows) => median(rows.map((r) => r.cpuMicrosPerRequest)));
  console.log('\nmedians               req/s   CPU µs/req   throughput cost   CPU cost');
  variants.forEach((variant, i) =>
    console.log(
      `${variant.name.padEnd(28)} ${rate[i].toFixed(0).padStart(6)} ${cpu[i].toFixed(1).padStart(12)} ${`${((1 - rate[i] / rate[0]) * 100).toFixed(1)}%`.padStart(17)} ${`${((cpu[i] / cpu[0] - 1) * 100).toFixed(1)}%`.padStart(10)}`,
    ),
  );
  // Each round's own cost (its servers measured back to back, in the same minute of the
  // machine's speed), then their median: steadier than a ratio of medians taken minutes apart.
  const paired = (i: number, of: (r: Result) => number, cost: (mine: number, off: number) => number) =>
    median(results[i].map((r, round) => cost(of(r), of(results[0][round]))));
  console.log('\nmedian of each round\'s own cost     throughput cost   CPU cost');
  variants.forEach((variant, i) => {
    if (i === 0) return;
    const throughput = paired(i, (r) => r.requestsPerSecond, (mine, off) => 1 - mine / off);
    const cpuCost = paired(i, (r) => r.cpuMicrosPerRequest, (mine, off) => mine / off - 1);
    console.log(`${variant.name.padEnd(36)} ${`${(throughput * 100).toFixed(1)}%`.padStart(15)} ${`${(cpuCost * 100).toFixed(1)}%`.padStart(10)}`);
  });
  console.log('(target: metering and limits on cost under 10% of throughput)');

  // The metered servers wrote a record per call: usage/Summary (which flushes first) counts them.
  let recorded = 0;
  for (const server of variants[2].servers) recorded += ((await server.call('usage', 'Summary', {}, server.key)) as { calls: number }).calls;
  const served = results[2].reduce((sum, r) => sum + r.requests, 0);
  console.log(`usage records written by the limited servers: ${recorded} (wrk counted ${served} in the measured rounds, plus the warm-up)`);
} finally {
  for (const server of variants.flatMap((variant) => variant.servers)) {
    server.child.kill('SIGTERM');
    await new Promise((resolve) => server.child.once('exit', resolve));
    rmSync(server.dataDir, { recursive: true, force: true });
  }
}
