/**
 * App proxy benchmark: warm requests/s, p50/p99 latency and the proxy's CPU time per request,
 * through the edge's two ways to serve an app, against the same upstream reached directly, in one
 * run (wrk, one thread, keep-alive, then a new connection per request):
 * - the connection forwarder (edge/forward.ts), which is the way the edge serves app hosts;
 * - Node's HTTP server with the AppProxy (edge/proxy.ts), which serves what the forwarder hands
 *   over (a connection that began with an API request, HTTP/1.0).
 * Host routing and a resolver that acquires and releases per request are real; the resolver maps
 * every app to the one upstream, bench/bare-server.mjs, in its own process. The proxy runs in this
 * process, as in the edge. The whole path through a real app in a sandbox is bench/apps.bench.ts.
 *
 * Run: node --import tsx bench/proxy.bench.ts [seconds=8] [connections=50]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { AppProxy, type AppResolver } from '../packages/alto/src/edge/proxy.js';
import { ConnectionForwarder } from '../packages/alto/src/edge/forward.js';
import { connectOnce } from '../packages/alto/src/compute/sandbox/connect.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';
import { parseWrkOutput, type WrkFigures } from './wrk.js';

const seconds = Number(process.argv[2] ?? 8);
const connections = Number(process.argv[3] ?? 50);

if (spawnSync('wrk', ['--version']).error) {
  console.error('wrk is not installed: apt-get install -y wrk');
  process.exit(1);
}

function startUpstream(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('bare-server.mjs', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve({ child, port: (JSON.parse(chunk.toString().split('\n')[0]) as { port: number }).port }));
    child.once('exit', (code) => reject(new Error(`upstream exited with ${code}`)));
  });
}

interface Figures extends WrkFigures {
  /** CPU time this process spent per request (the proxy's cost; 0 when reached directly). */
  cpuMicros: number;
}

/** wrk against the port with this Host, waited on asynchronously so the proxy here keeps serving. */
async function runLoad(port: number, host: string, duration: number, fresh = false): Promise<Figures> {
  const headers = ['-H', `Host: ${host}`, ...(fresh ? ['-H', 'Connection: close'] : [])];
  const cpuBefore = process.cpuUsage();
  const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', ...headers, `http://127.0.0.1:${port}/`]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  const figures = await new Promise<WrkFigures>((resolve, reject) =>
    child.once('close', (code) => (code === 0 ? resolve(parseWrkOutput(output)) : reject(new Error(`wrk exited with ${code}`)))),
  );
  const cpu = process.cpuUsage(cpuBefore);
  return { ...figures, cpuMicros: (cpu.user + cpu.system) / figures.requests };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
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
const handler = (request: Parameters<Parameters<typeof createServer>[1] & object>[0], response: Parameters<Parameters<typeof createServer>[1] & object>[1]) => {
  if (!proxy.handleRequest(request, response)) response.writeHead(404).end();
};
const viaServer = createServer(handler);
const viaForwarder = createServer(handler);
const forwarder = new ConnectionForwarder({
  addressOf: (host) => proxy.addressOf(host),
  resolver,
  log: silentLogger(),
  headersTimeoutMs: 30_000,
  keepAliveTimeoutMs: viaForwarder.keepAliveTimeout,
  idleTimeoutMs: 120_000,
});
forwarder.interpose(viaForwarder);
const serverPort = await listen(viaServer);
const forwarderPort = await listen(viaForwarder);

const rows: [string, Figures][] = [];
try {
  const warm = Math.max(1, Math.round(seconds / 5));
  await runLoad(upstream.port, 'localhost', warm);
  await runLoad(forwarderPort, 'web.demo.localhost', warm);
  await runLoad(serverPort, 'web.demo.localhost', warm);
  for (const fresh of [false, true]) {
    const kind = fresh ? 'new connection per request' : 'keep-alive';
    rows.push([`connection forwarder, ${kind}`, await runLoad(forwarderPort, 'web.demo.localhost', seconds, fresh)]);
    rows.push([`HTTP server + AppProxy, ${kind}`, await runLoad(serverPort, 'web.demo.localhost', seconds, fresh)]);
    rows.push([`upstream directly, ${kind}`, { ...(await runLoad(upstream.port, 'localhost', seconds, fresh)), cpuMicros: 0 }]);
  }
  console.log(`\nGET / (bare node:http upstream), ${seconds} s per row, ${connections} connections, wrk one thread`);
  console.log('| path | req/s | proxy CPU µs/req | p50 ms | p99 ms | errors |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [name, r] of rows)
    console.log(`| ${name} | ${r.requestsPerSecond.toFixed(0)} | ${r.cpuMicros ? r.cpuMicros.toFixed(1) : '–'} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} |`);
  const ratio = (index: number, direct: number) => (rows[index][1].requestsPerSecond / rows[direct][1].requestsPerSecond).toFixed(2);
  console.log(`\nkeep-alive: forwarder/direct ${ratio(0, 2)}, HTTP server + AppProxy/direct ${ratio(1, 2)}`);
  console.log(`new connection per request: forwarder/direct ${ratio(3, 5)}, HTTP server + AppProxy/direct ${ratio(4, 5)}`);
  console.log(`targets still acquired after the runs: ${inFlight}`);
} finally {
  forwarder.close();
  await proxy.close();
  for (const server of [viaServer, viaForwarder]) {
    server.closeAllConnections();
    server.close();
  }
  upstream.child.kill('SIGTERM');
}
