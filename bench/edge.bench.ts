/**
 * Edge benchmark: requests/s, server CPU time per request and p50/p99 latency of `id/Generate`
 * through Alto's edge (key lookup, scope check, body read, admission under the project's and
 * the key's limits, validation, metering, logging) against a bare `node:http` server that
 * returns the same JSON, measured in one run with wrk (Debian's `wrk`) and printed side by side.
 *
 * The key is a project key whose project and key both have a rate limit, a monthly quota and a
 * spend cap set high enough never to refuse, so every check runs (an admin key skips them).
 * Rounds alternate between the two servers, so a neighbour's load on a shared machine hits both
 * alike; the medians are compared. Alto runs from the build (`npm run build -w packages/alto`).
 *
 * Run: node --import tsx bench/edge.bench.ts [seconds=5] [connections=50] [rounds=3]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuMicros, median, parseWrkOutput, writePostScript, type WrkFigures } from './wrk.js';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 50);
const rounds = Number(process.argv[4] ?? 3);
const root = fileURLToPath(new URL('..', import.meta.url));

if (spawnSync('wrk', ['--version']).error) {
  console.error('wrk is not installed: apt-get install -y wrk');
  process.exit(1);
}

function startServer(command: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, command, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buffered = '';
    let port = 0;
    // Keep reading stdout for the whole run (request logs), or the server would block on it.
    child.stdout!.on('data', (chunk: Buffer) => {
      if (port) return;
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const entry = line.startsWith('{') ? (JSON.parse(line) as { msg?: string; port?: number }) : {};
        if (entry.msg === 'listening' && entry.port) {
          port = entry.port;
          resolve({ child, port });
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

interface Result extends WrkFigures {
  /** Server CPU time (user + system) per request served, in microseconds. */
  cpuMicrosPerRequest: number;
}

function runWrk(url: string, key: string, pid: number, duration: number): Result {
  const script = writePostScript(join(mkdtempSync(join(tmpdir(), 'alto-bench-')), 'post.lua'), '{"type":"uuid"}', key);
  const cpuBefore = cpuMicros(pid);
  const output = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', '-s', script, url], { encoding: 'utf8' }).stdout;
  const figures = parseWrkOutput(output);
  return { ...figures, cpuMicrosPerRequest: (cpuMicros(pid) - cpuBefore) / figures.requests };
}

const dataDir = mkdtempSync(join(tmpdir(), 'alto-bench-data-'));
const alto = await startServer([join(root, 'packages/alto/bin/alto.js'), 'up', '--port', '0', '--host', '127.0.0.1', '--data', dataDir], {
  ALTO_LOG_FORMAT: 'json',
  ALTO_LOG_LEVEL: 'info', // the harness waits for the info-level "listening" line; every call is logged
});
const bare = await startServer([join(root, 'bench/bare-server.mjs')]);
const adminKey = readFileSync(join(dataDir, 'admin-key'), 'utf8').trim();
const altoUrl = `http://127.0.0.1:${alto.port}`;

async function call(service: string, endpoint: string, body: unknown): Promise<any> {
  const response = await fetch(`${altoUrl}/v1/${service}/${endpoint}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as any;
  if (!response.ok) throw new Error(`${service}/${endpoint}: ${JSON.stringify(json)}`);
  return json;
}

try {
  // Limits that never refuse in this run, so every check is made and none turns a call away.
  const high = { rate_limit: 1_000_000, monthly_quota: 1_000_000_000_000 };
  await call('projects', 'Create', { name: 'bench', ...high, monthly_spend_cap_micros: 1_000_000_000_000 });
  const { key } = (await call('keys', 'Generate', { project: 'bench', scopes: ['id'], ...high })) as { key: string };

  const servers = [
    { name: 'alto edge (id/Generate)', url: `${altoUrl}/v1/id/Generate`, pid: alto.child.pid! },
    { name: 'bare node:http (same JSON)', url: `http://127.0.0.1:${bare.port}/`, pid: bare.child.pid! },
  ];
  // Warm both up (JIT, connection setup) before measuring.
  for (const server of servers) runWrk(server.url, key, server.pid, Math.max(1, Math.round(seconds / 3)));
  const results: Result[][] = servers.map(() => []);
  for (let round = 0; round < rounds; round++) servers.forEach((server, i) => results[i].push(runWrk(server.url, key, server.pid, seconds)));

  const row = (name: string, r: Result) =>
    `${name.padEnd(38)} ${r.requestsPerSecond.toFixed(0).padStart(9)} ${r.cpuMicrosPerRequest.toFixed(1).padStart(11)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${String(r.errors).padStart(7)}`;
  console.log(`\nid/Generate with a limited project key, ${rounds} rounds of ${seconds}s, ${connections} connections, wrk 1 thread`);
  console.log(`${'server'.padEnd(38)} ${'req/s'.padStart(9)} ${'CPU µs/req'.padStart(11)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'errors'.padStart(7)}`);
  for (let round = 0; round < rounds; round++) servers.forEach((server, i) => console.log(row(`round ${round + 1}: ${server.name}`, results[i][round])));
  const rate = results.map((rows) => median(rows.map((r) => r.requestsPerSecond)));
  const cpu = results.map((rows) => median(rows.map((r) => r.cpuMicrosPerRequest)));
  console.log(`\nmedians: edge ${rate[0].toFixed(0)} req/s at ${cpu[0].toFixed(1)} µs CPU each; bare ${rate[1].toFixed(0)} req/s at ${cpu[1].toFixed(1)} µs`);
  console.log(`edge/bare throughput ratio: ${(rate[0] / rate[1]).toFixed(2)} (target ≥ 0.6)`);
  console.log(`edge/bare CPU per request: ${(cpu[0] / cpu[1]).toFixed(2)}×`);
} finally {
  alto.child.kill('SIGTERM');
  bare.child.kill('SIGTERM');
  rmSync(dataDir, { recursive: true, force: true });
}
