/**
 * Edge benchmark: requests/s and p50/p99 latency of `id/Generate` through Alto's edge (key
 * lookup, scope check, validation, metering, logging) against a bare `node:http` server that
 * returns the same JSON, measured in one run with wrk (Debian's `wrk`) and printed side by side.
 *
 * Run: npm run build && node --import tsx bench/edge.bench.ts [seconds] [connections]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseWrkOutput, writePostScript } from './wrk.js';

const seconds = Number(process.argv[2] ?? 10);
const connections = Number(process.argv[3] ?? 50);
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

interface Result {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

function runWrk(url: string, key: string): Result {
  const script = writePostScript(join(mkdtempSync(join(tmpdir(), 'alto-bench-')), 'post.lua'), '{"type":"uuid"}', key);
  const result = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', script, url], { encoding: 'utf8' });
  return parseWrkOutput(result.stdout);
}

const dataDir = mkdtempSync(join(tmpdir(), 'alto-bench-data-'));
const alto = await startServer([join(root, 'packages/alto/bin/alto.js'), 'up', '--port', '0', '--host', '127.0.0.1', '--data', dataDir], {
  ALTO_LOG_FORMAT: 'json',
  ALTO_LOG_LEVEL: 'info', // the harness waits for the info-level "listening" line
});
const bare = await startServer([join(root, 'bench/bare-server.mjs')]);
const adminKey = readFileSync(join(dataDir, 'admin-key'), 'utf8').trim();

try {
  // Warm both up (JIT, connection setup) before measuring.
  const warm = Math.max(1, Math.round(seconds / 5));
  spawnSync('wrk', ['-t1', `-c${connections}`, `-d${warm}s`, `http://127.0.0.1:${bare.port}/`]);
  runWrkQuiet(`http://127.0.0.1:${alto.port}/v1/id/Generate`, adminKey, warm);

  const edge = runWrk(`http://127.0.0.1:${alto.port}/v1/id/Generate`, adminKey);
  const peer = runWrk(`http://127.0.0.1:${bare.port}/`, adminKey);
  const row = (name: string, r: Result) =>
    `${name.padEnd(28)} ${r.requestsPerSecond.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${String(r.errors).padStart(7)}`;
  console.log(`\nid/Generate, ${seconds}s, ${connections} connections, wrk 1 thread`);
  console.log(`${'server'.padEnd(28)} ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'errors'.padStart(7)}`);
  console.log(row('alto edge (id/Generate)', edge));
  console.log(row('bare node:http (same JSON)', peer));
  console.log(`edge/bare throughput ratio: ${(edge.requestsPerSecond / peer.requestsPerSecond).toFixed(2)}`);
} finally {
  alto.child.kill('SIGTERM');
  bare.child.kill('SIGTERM');
  rmSync(dataDir, { recursive: true, force: true });
}

function runWrkQuiet(url: string, key: string, duration: number): void {
  const script = join(mkdtempSync(join(tmpdir(), 'alto-bench-')), 'post.lua');
  writeFileSync(script, `wrk.method = "POST"\nwrk.body = '{}'\nwrk.headers["Authorization"] = "Bearer ${key}"\n`);
  spawnSync('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '-s', script, url]);
}
