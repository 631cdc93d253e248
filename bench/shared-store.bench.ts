/**
 * Shared-store benchmark, with wrk (Debian's `wrk`), all processes on this machine in one run:
 * - API requests/s (`id/Generate`, and `db/Read` by id, with a project key) against one
 *   `alto up --store postgres://...` process, then against two such processes on the same
 *   database, the same connections split across both;
 * - db Create and db Read by id through the edge, one process on PostgreSQL against one on the
 *   embedded SQLite.
 * Each process runs from the sources (tsx), as `alto up` with its own data folder. Any non-2xx
 * answer or socket error is counted in the table's last column.
 *
 * Run: . scripts/test-services.sh && node --import tsx bench/shared-store.bench.ts [seconds=5] [connections=32]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase } from '../packages/alto/src/store/postgres/test-database.js';
import { parseWrkOutput, writePostScript } from './wrk.js';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 32);
const root = fileURLToPath(new URL('..', import.meta.url));
const cliEntry = join(root, 'packages/alto/src/cli/run.ts');

if (spawnSync('wrk', ['--version']).error) {
  console.error('wrk is not installed: apt-get install -y wrk');
  process.exit(1);
}
if (!process.env.ALTO_TEST_POSTGRES_URL) {
  console.error('ALTO_TEST_POSTGRES_URL is not set: . scripts/test-services.sh first');
  process.exit(1);
}

interface Server {
  child: ChildProcess;
  url: string;
  dataDir: string;
}

/** The same keys for every process of the cloud. */
const cloudEnvironment = {
  ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
  ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
  ALTO_LOG_FORMAT: 'json',
  ALTO_LOG_LEVEL: 'info', // the "listening" line is at info level
};

function startAlto(args: string[]): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), 'alto-shared-bench-'));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', cliEntry, 'up', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, ...args],
    { cwd: join(root, 'packages/alto'), env: { ...process.env, ...cloudEnvironment }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // The start banner goes to stderr: kept, and shown only if the process fails to start.
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    let buffered = '';
    let url = '';
    // Keep reading stdout for the whole run (request logs), or the server would block on it.
    child.stdout!.on('data', (chunk: Buffer) => {
      if (url) return;
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const entry = line.startsWith('{') ? (JSON.parse(line) as { msg?: string; port?: number }) : {};
        if (entry.msg === 'listening' && entry.port) {
          url = `http://127.0.0.1:${entry.port}`;
          resolve({ child, url, dataDir });
        }
      }
    });
    child.once('exit', (code) => {
      if (!url) reject(new Error(`alto up exited with ${code} before listening:\n${stderr}`));
    });
  });
}

async function stopAlto(server: Server): Promise<void> {
  if (server.child.exitCode === null) {
    const exited = new Promise((resolve) => server.child.once('exit', resolve));
    server.child.kill('SIGTERM');
    await exited;
  }
  rmSync(server.dataDir, { recursive: true, force: true });
}

async function call(server: Server, service: string, endpoint: string, body: unknown, key = cloudEnvironment.ALTO_ADMIN_KEY): Promise<any> {
  const response = await fetch(`${server.url}/v1/${service}/${endpoint}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (response.status !== 200) throw new Error(`${service}/${endpoint}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

async function projectKey(server: Server, project: string): Promise<string> {
  await call(server, 'projects', 'Create', { name: project });
  return (await call(server, 'keys', 'Generate', { project, scopes: ['id', 'db'] })).key as string;
}

interface Load {
  url: string;
  key: string;
  body: object;
}

interface Result {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

const scriptFolder = mkdtempSync(join(tmpdir(), 'alto-shared-bench-wrk-'));
let scripts = 0;

/** Runs wrk (one thread) on `load` for `duration` seconds, in the background. */
function wrk(load: Load, wrkConnections: number, duration = seconds): Promise<Result> {
  const script = writePostScript(join(scriptFolder, `post-${scripts++}.lua`), JSON.stringify(load.body), load.key);
  const child = spawn('wrk', ['-t1', `-c${wrkConnections}`, `-d${duration}s`, '--latency', '-s', script, load.url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with ${code}:\n${output}`));
      resolve(parseWrkOutput(output));
    });
  });
}

/** The same total connections split evenly across `loads`, run at once; throughput summed. */
async function split(loads: Load[]): Promise<Result> {
  const results = await Promise.all(loads.map((load) => wrk(load, Math.max(1, Math.round(connections / loads.length)))));
  return {
    requestsPerSecond: results.reduce((sum, result) => sum + result.requestsPerSecond, 0),
    p50: Math.max(...results.map((result) => result.p50)),
    p99: Math.max(...results.map((result) => result.p99)),
    errors: results.reduce((sum, result) => sum + result.errors, 0),
  };
}

const rows: Array<[string, Result]> = [];
const database = await createTestDatabase('shared_bench');
const servers: Server[] = [];
try {
  const postgresArgs = ['--store', database.url];
  const first = await startAlto(postgresArgs);
  servers.push(first);
  const second = await startAlto(postgresArgs);
  servers.push(second);
  const embedded = await startAlto([]);
  servers.push(embedded);

  const sharedKey = await projectKey(first, 'bench');
  const embeddedKey = await projectKey(embedded, 'bench');
  for (const [server, key] of [[first, sharedKey], [embedded, embeddedKey]] as const) {
    await call(server, 'db', 'Create', { table: 'items', record: { id: 'item-1', name: 'first item', price: 12 } }, key);
  }

  const load = (server: Server, key: string, service: string, endpoint: string, body: object): Load => ({
    url: `${server.url}/v1/${service}/${endpoint}`,
    key,
    body,
  });
  const generate = (server: Server) => load(server, sharedKey, 'id', 'Generate', { type: 'uuid' });
  const readShared = (server: Server) => load(server, sharedKey, 'db', 'Read', { table: 'items', id: 'item-1' });
  // Without an id, every Create makes a new record with a generated uuid.
  const create = (server: Server, key: string) => load(server, key, 'db', 'Create', { table: 'items', record: { name: 'an item', price: 3 } });

  // Warm up every process (JIT, key caches, statement caches) before measuring.
  const warm = Math.max(1, Math.round(seconds / 5));
  await Promise.all([wrk(generate(first), 8, warm), wrk(generate(second), 8, warm), wrk(load(embedded, embeddedKey, 'id', 'Generate', {}), 8, warm)]);
  await Promise.all([wrk(readShared(first), 8, warm), wrk(readShared(second), 8, warm), wrk(load(embedded, embeddedKey, 'db', 'Read', { table: 'items', id: 'item-1' }), 8, warm)]);

  rows.push(['id/Generate, 1 process (PG)', await split([generate(first)])]);
  rows.push(['id/Generate, 2 processes (PG)', await split([generate(first), generate(second)])]);
  rows.push(['db/Read, 1 process (PG)', await split([readShared(first)])]);
  rows.push(['db/Read, 2 processes (PG)', await split([readShared(first), readShared(second)])]);
  rows.push(['db/Create, PostgreSQL', await split([create(first, sharedKey)])]);
  rows.push(['db/Create, SQLite', await split([create(embedded, embeddedKey)])]);
  rows.push(['db/Read by id, PostgreSQL', await split([readShared(first)])]);
  rows.push(['db/Read by id, SQLite', await split([load(embedded, embeddedKey, 'db', 'Read', { table: 'items', id: 'item-1' })])]);

  const row = (name: string, r: Result) =>
    `${name.padEnd(32)} ${r.requestsPerSecond.toFixed(0).padStart(8)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${String(r.errors).padStart(7)}`;
  console.log(`\nshared store, ${seconds}s per figure, ${connections} connections in all (split across processes), wrk 1 thread each`);
  console.log(`${'measure'.padEnd(32)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}`);
  for (const [name, result] of rows) console.log(row(name, result));
  const ratio = (a: string, b: string) => (rows.find(([name]) => name === a)![1].requestsPerSecond / rows.find(([name]) => name === b)![1].requestsPerSecond).toFixed(2);
  console.log(`two/one processes: id/Generate ${ratio('id/Generate, 2 processes (PG)', 'id/Generate, 1 process (PG)')}, db/Read ${ratio('db/Read, 2 processes (PG)', 'db/Read, 1 process (PG)')}`);
  console.log(`PostgreSQL/SQLite: db/Create ${ratio('db/Create, PostgreSQL', 'db/Create, SQLite')}, db/Read ${ratio('db/Read by id, PostgreSQL', 'db/Read by id, SQLite')}`);
} finally {
  await Promise.all(servers.map(stopAlto));
  rmSync(scriptFolder, { recursive: true, force: true });
  await database.drop();
}
