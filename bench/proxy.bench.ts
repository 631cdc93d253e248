/**
 * App proxy benchmark: warm requests/s and p50/p99 latency through the edge's AppProxy (Host
 * routing, resolver acquire/release, header rewriting, keep-alive pool to the upstream) against
 * the same upstream reached directly, in one run. The upstream is bench/bare-server.mjs and the
 * load generator bench/http-load.mjs (keep-alive connections), each in its own process; the
 * proxy runs in this one, as in the edge.
 *
 * Run: node --import tsx bench/proxy.bench.ts [seconds=10] [connections=50]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { AppProxy, type AppResolver } from '../packages/alto/src/edge/proxy.js';
import { connectOnce } from '../packages/alto/src/compute/sandbox/connect.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';

const seconds = Number(process.argv[2] ?? 10);
const connections = Number(process.argv[3] ?? 50);

function startUpstream(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('bare-server.mjs', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve({ child, port: (JSON.parse(chunk.toString().split('\n')[0]) as { port: number }).port }));
    child.once('exit', (code) => reject(new Error(`upstream exited with ${code}`)));
  });
}

interface Result {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

/** The load generator in its own process, waited on asynchronously: the proxy here keeps running. */
function runLoad(port: number, host: string, duration: number): Promise<Result> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('http-load.mjs', import.meta.url)), `http://127.0.0.1:${port}/`, host, String(duration), String(connections)]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  return new Promise((resolve, reject) =>
    child.once('close', (code) => (code === 0 ? resolve(JSON.parse(output) as Result) : reject(new Error(`the load generator exited with ${code}`)))),
  );
}

const upstream = await startUpstream();
let inFlight = 0;
const resolver: AppResolver = {
  async acquire() {
    inFlight += 1;
    return { host: '127.0.0.1', port: upstream.port, connect: () => connectOnce('127.0.0.1', upstream.port), release: () => void (inFlight -= 1) };
  },
};
const proxy = new AppProxy({ domain: 'localhost', resolver, log: silentLogger() });
const edge = createServer((request, response) => {
  if (!proxy.handleRequest(request, response)) response.writeHead(404).end();
});
await new Promise<void>((resolve) => edge.listen(0, '127.0.0.1', resolve));
const edgePort = (edge.address() as AddressInfo).port;

try {
  const warm = Math.max(1, Math.round(seconds / 5));
  await runLoad(upstream.port, 'localhost', warm);
  await runLoad(edgePort, 'web.demo.localhost', warm);
  const proxied = await runLoad(edgePort, 'web.demo.localhost', seconds);
  const direct = await runLoad(upstream.port, 'localhost', seconds);
  const row = (name: string, r: Result) =>
    `${name.padEnd(28)} ${r.requestsPerSecond.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${String(r.errors).padStart(7)}`;
  console.log(`\nGET /, ${seconds}s, ${connections} keep-alive connections`);
  console.log(`${'path'.padEnd(28)} ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'errors'.padStart(7)}`);
  console.log(row('through the app proxy', proxied));
  console.log(row('upstream directly', direct));
  console.log(`proxy/direct throughput ratio: ${(proxied.requestsPerSecond / direct.requestsPerSecond).toFixed(2)}`);
  console.log(`targets still acquired after the runs: ${inFlight}`);
} finally {
  await proxy.close();
  edge.closeAllConnections();
  edge.close();
  upstream.child.kill('SIGTERM');
}
