/**
 * Functions benchmark, one run on the process sandbox: a real `alto up --sandbox process` on a
 * temporary data folder (Node from the npm registry by default; pass `host` to use this
 * machine's node, with nothing downloaded) and measures
 * - deploy, source to callable: function/Deploy of an inline TypeScript handler until the first
 *   function/Call answers; the first one includes assembling the Node.js runtime layer (and its
 *   download), the next ones reuse it (median of 3 other functions);
 * - update: function/Update with new source until Call answers with the new version;
 * - call latency, warm: function/Call (through the API) and GET through the edge
 *   (`<fn>.<project>.localhost`), p50 and p99 of sequential calls;
 * - call latency from suspended: the function's instance suspended when idle (min_instances 0,
 *   idle_timeout 1 s), then one Call; median of 5.
 *
 * Run (as root): node --import tsx bench/functions.bench.ts [npm|host] [calls=200]
 */
import { request as httpRequest } from 'node:http';
import { rmSync } from 'node:fs';
import { privateSandboxCache } from '../packages/alto/test/apps-fixture.js';
import { startProcess, temporaryDataDir } from '../packages/alto/test/harness.js';

const nodeSource = process.argv[2] === 'host' ? 'host' : 'npm:22';
const calls = Number(process.argv[3] ?? 200);
const PROJECT = 'bench';

const handler = (version: number) => `
export default async function (request: Request): Promise<Response> {
  const body = request.method === 'POST' ? await request.json() : {};
  return Response.json({ version: ${version}, echo: body });
}
`;

function percentile(samples: number[], fraction: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))];
}

function edgeGet(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port, path: '/', method: 'GET', headers: { host } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    request.end();
  });
}

const format = (ms: number) => `${ms.toFixed(1)} ms`;

const cache = privateSandboxCache();
const dataDir = temporaryDataDir();
const alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: nodeSource } });
try {
  const key = await alto.projectKey(PROJECT, ['function', 'app']);
  const edgePort = Number(new URL(alto.url).port);
  const fn = async (endpoint: string, body: unknown) => {
    const result = await alto.call('function', endpoint, body, key);
    if (result.status !== 200) throw new Error(`function/${endpoint} answered ${result.status}: ${JSON.stringify(result.body)}`);
    return result.body;
  };
  const deployUntilCallable = async (name: string): Promise<number> => {
    const started = performance.now();
    await fn('Deploy', { name, source: handler(1) });
    await fn('Call', { name, request: {} });
    return performance.now() - started;
  };

  const first = await deployUntilCallable('first');
  const again: number[] = [];
  for (const name of ['second', 'third', 'fourth']) again.push(await deployUntilCallable(name));

  const updateStarted = performance.now();
  await fn('Update', { name: 'first', source: handler(2) });
  const updated = await fn('Call', { name: 'first', request: {} });
  if (updated.response.version !== 2) throw new Error('the update did not take');
  const update = performance.now() - updateStarted;

  const viaApi: number[] = [];
  const viaEdge: number[] = [];
  for (let i = 0; i < calls; i++) {
    let started = performance.now();
    await fn('Call', { name: 'first', request: { i } });
    viaApi.push(performance.now() - started);
    started = performance.now();
    if ((await edgeGet(edgePort, `first.${PROJECT}.localhost`)) !== 200) throw new Error('the edge did not answer 200');
    viaEdge.push(performance.now() - started);
  }

  // From suspended: idle_timeout 1 s, wait until the instance is suspended, then call once.
  const app = async (endpoint: string, body: unknown) => {
    const result = await alto.call('app', endpoint, body, key);
    if (result.status !== 200) throw new Error(`app/${endpoint} answered ${result.status}: ${JSON.stringify(result.body)}`);
    return result.body;
  };
  await app('Update', { name: 'second', idle_timeout: 1 });
  const fromSuspended: number[] = [];
  let suspendedSeen = true;
  for (let i = 0; i < 5; i++) {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const status = await app('Status', { name: 'second' });
      const slots: { state: string }[] = status.service.slots ?? [];
      if (slots.length > 0 && slots.every((slot) => slot.state === 'suspended' || slot.state === 'snapshotted')) break;
      if (Date.now() > deadline) {
        suspendedSeen = false;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const started = performance.now();
    await fn('Call', { name: 'second', request: { i } });
    fromSuspended.push(performance.now() - started);
  }

  const runtimeLog = (await fn('Logs', { name: 'first', logs_type: 'build' })).logs as string;
  const node = /on node (v[\d.]+) \(([^)]+)\)/.exec(runtimeLog);
  console.log(`functions on the process sandbox, node ${node?.[1] ?? '?'} (${node?.[2] ?? nodeSource})`);
  console.log(`deploy, source -> callable, first (runtime assembled):  ${format(first)}`);
  console.log(`deploy, source -> callable, runtime cached (median of 3): ${format(percentile(again, 0.5))}  [${again.map(format).join(', ')}]`);
  console.log(`update, source -> new version answering:                ${format(update)}`);
  console.log(`call, warm, function/Call (${calls}):  p50 ${format(percentile(viaApi, 0.5))}  p99 ${format(percentile(viaApi, 0.99))}`);
  console.log(`call, warm, GET through the edge (${calls}): p50 ${format(percentile(viaEdge, 0.5))}  p99 ${format(percentile(viaEdge, 0.99))}`);
  console.log(
    `call from suspended, function/Call (median of 5): ${format(percentile(fromSuspended, 0.5))}  [${fromSuspended.map(format).join(', ')}]${suspendedSeen ? '' : '  (an instance was not seen suspended within 15 s: these may be warm calls)'}`,
  );
} finally {
  await alto.close();
  cache.remove();
  rmSync(dataDir, { recursive: true, force: true });
}
