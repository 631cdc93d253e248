/**
 * Cluster benchmark (issue 23): real `alto up --sandbox process` nodes sharing one PostgreSQL
 * (the test server of scripts/test-services.sh), in one run:
 * - the hop: a request to an app another node runs is relayed to that node's edge. Client side,
 *   from sending a GET / (new connection) to the first response byte, for a suspended app
 *   (min_instances 0, idle_timeout 1: each sample waits until Status says suspended, so the owning
 *   node wakes it) and for a running one (min_instances 1), through the node that runs the app
 *   and through another node, alternating; p50/p99 of each and the difference;
 * - an instance on another node: every node holds at most two instances (ALTO_MAX_INSTANCES=2),
 *   so a third app deployed through the first node, which runs two already, gets its instance on
 *   another node (compute/cluster/remote-instances.ts): first byte through its own node (which
 *   reaches the instance through an instance tunnel on the host's edge) against the running app
 *   whose instance is local, and keep-alive requests/s of each (wrk, 50 connections);
 * - id/Generate requests/s (wrk, 50 connections, an admin key) against one node, then against
 *   three nodes at once (one wrk per node, summed). All nodes share this machine's cores, so
 *   this shows what spreading costs here, not what three machines give.
 *
 * Run (as root, with the test services): . scripts/test-services.sh && node --import tsx bench/cluster.bench.ts [samples=20] [seconds=5]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privateSandboxCache } from '../packages/alto/test/apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from '../packages/alto/test/harness.js';
import { startRegistry } from '../packages/alto/test/images-fixture.js';
import { sleepyImage, slotsOf } from '../packages/alto/test/serverless-fixture.js';
import { createTestDatabase } from '../packages/alto/src/store/postgres/test-database.js';
import { parseWrkOutput, writePostScript, type WrkFigures } from './wrk.js';

const samples = Number(process.argv[2] ?? 20);
const seconds = Number(process.argv[3] ?? 5);
const PROJECT = 'bench';

function firstByte(edgePort: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const request = httpRequest({ host: '127.0.0.1', port: edgePort, path: '/', headers: { host }, agent: false }, (response) => {
      const ms = performance.now() - started;
      response.resume();
      response.on('end', () => (response.statusCode === 200 ? resolve(ms) : reject(new Error(`${host} answered ${response.statusCode}`))));
    });
    request.setTimeout(60_000, () => request.destroy(new Error('request timed out')));
    request.on('error', reject);
    request.end();
  });
}

async function waitForState(alto: ServerProcess, key: string, app: string, state: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await slotsOf(alto, key, app))[0]?.state !== state) {
    if (Date.now() > deadline) throw new Error(`${app} not ${state} within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function wrk(url: string, script: string | undefined, host?: string): Promise<WrkFigures> {
  const child = spawn('wrk', ['-t1', '-c50', `-d${seconds}s`, '--latency', ...(script ? ['-s', script] : []), ...(host ? ['-H', `Host: ${host}`] : []), url]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  return new Promise((resolve, reject) => child.once('close', (code) => (code === 0 ? resolve(parseWrkOutput(output)) : reject(new Error(`wrk exited with ${code}`)))));
}

const percentile = (values: number[], fraction: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.ceil(fraction * values.length) - 1)];
const row = (name: string, values: number[]) => `| ${name} | ${percentile(values, 0.5).toFixed(2)} | ${percentile(values, 0.99).toFixed(2)} |`;

const database = await createTestDatabase('cluster_bench');
const registry = await startRegistry();
const cache = privateSandboxCache();
const folders = [temporaryDataDir(), temporaryDataDir(), temporaryDataDir()];
const env = { ALTO_MASTER_KEY: randomBytes(32).toString('hex'), ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`, ALTO_SANDBOX_CACHE: cache.dir, ALTO_MAX_INSTANCES: '2' };
const nodes: ServerProcess[] = [];
try {
  await registry.push('bench/sleepy', 'v1', await sleepyImage());
  for (const [index, dataDir] of folders.entries())
    nodes.push(await startProcess({ dataDir, args: ['--store', database.url, '--sandbox', 'process', '--node', `bench-${index + 1}`], env }));
  const [owner, other] = nodes;
  const key = await owner.projectKey(PROJECT, ['app']);
  const run = async (body: unknown) => {
    const result = await owner.call('app', 'Run', body, key);
    if (result.status !== 200) throw new Error(`app/Run answered ${result.status}: ${JSON.stringify(result.body)}`);
  };
  const image = `${registry.host}/bench/sleepy:v1`;
  await run({ name: 'sleepy', image, memory: 64, min_instances: 0, idle_timeout: 1 });
  await run({ name: 'running', image, memory: 64, min_instances: 1, concurrency: 100 });
  // The first node holds two instances now: this one's runs on another node.
  await run({ name: 'spilled', image, memory: 64, min_instances: 1, concurrency: 100 });
  const spilledOn = (await slotsOf(owner, key, 'spilled'))[0] as { node?: string } | undefined;
  if (!spilledOn?.node) throw new Error(`the third app's instance should run on another node: ${JSON.stringify(spilledOn)}`);
  const port = (node: ServerProcess) => Number(new URL(node.url).port);
  const host = (app: string) => `${app}.${PROJECT}.localhost`;

  const figures = { suspendedOwner: [] as number[], suspendedOther: [] as number[], runningOwner: [] as number[], runningOther: [] as number[], spilled: [] as number[] };
  // Warm both paths once (the other node's first read of the app's owner, its first connection).
  await waitForState(owner, key, 'sleepy', 'suspended');
  await firstByte(port(other), host('sleepy'));
  await firstByte(port(other), host('running'));
  await firstByte(port(owner), host('spilled'));
  for (let i = 0; i < samples; i++) {
    for (const [via, into] of [[owner, figures.suspendedOwner], [other, figures.suspendedOther]] as const) {
      await waitForState(owner, key, 'sleepy', 'suspended');
      into.push(await firstByte(port(via), host('sleepy')));
    }
    figures.runningOwner.push(await firstByte(port(owner), host('running')));
    figures.runningOther.push(await firstByte(port(other), host('running')));
    figures.spilled.push(await firstByte(port(owner), host('spilled')));
  }
  const keptLocal = await wrk(`${owner.url}/`, undefined, host('running'));
  const keptRemote = await wrk(`${owner.url}/`, undefined, host('spilled'));

  const script = writePostScript(join(mkdtempSync(join(tmpdir(), 'alto-bench-')), 'post.lua'), '{"type":"uuid"}', owner.adminKey);
  const one = await wrk(`${owner.url}/v1/id/Generate`, script);
  const three = await Promise.all(nodes.map((node) => wrk(`${node.url}/v1/id/Generate`, script)));

  console.log(`\nThree process-driver nodes on one PostgreSQL, one 2-core machine; ${samples} samples, GET / on a new connection, ms to the first byte`);
  console.log('| path | p50 ms | p99 ms |');
  console.log('|---|---:|---:|');
  console.log(row('suspended app, through the node that runs it', figures.suspendedOwner));
  console.log(row('suspended app, through another node (relayed)', figures.suspendedOther));
  console.log(row('running app, through the node that runs it', figures.runningOwner));
  console.log(row('running app, through another node (relayed)', figures.runningOther));
  console.log(row(`running app whose instance runs on another node (${spilledOn.node}), through its own node`, figures.spilled));
  console.log(`the hop: +${(percentile(figures.suspendedOther, 0.5) - percentile(figures.suspendedOwner, 0.5)).toFixed(2)} ms p50 from suspended, +${(percentile(figures.runningOther, 0.5) - percentile(figures.runningOwner, 0.5)).toFixed(2)} ms p50 running`);
  console.log(
    `instance on another node: +${(percentile(figures.spilled, 0.5) - percentile(figures.runningOwner, 0.5)).toFixed(2)} ms p50 on a new connection; ` +
      `keep-alive through the app's node (wrk, 50 connections, ${seconds} s): local instance ${keptLocal.requestsPerSecond.toFixed(0)} req/s, instance on another node ${keptRemote.requestsPerSecond.toFixed(0)} req/s ` +
      `(${(keptRemote.requestsPerSecond / keptLocal.requestsPerSecond).toFixed(2)}×)`,
  );
  console.log(`\nid/Generate (admin key, wrk 50 connections, ${seconds} s): one node ${one.requestsPerSecond.toFixed(0)} req/s; three nodes at once ${three.reduce((sum, figures) => sum + figures.requestsPerSecond, 0).toFixed(0)} req/s (${three.map((figures) => figures.requestsPerSecond.toFixed(0)).join(' + ')}), all on this machine's 2 cores`);
} finally {
  for (const node of nodes) await node.close();
  await registry.stop();
  await database.drop();
  cache.remove();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
}
