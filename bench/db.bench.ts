/**
 * db benchmark: starts Alto in this process (SQLite, then PostgreSQL when ALTO_TEST_POSTGRES_URL
 * is set: a fresh database, dropped at the end) and measures through the edge over HTTP:
 * db/Create per second and db/Read by id per second with 32 requests in flight, and the time of
 * one query on a field over 100k records without and with an index on that field.
 *
 * Run: node --import tsx bench/db.bench.ts [records=100000] [concurrency=32]
 * (`. scripts/test-services.sh` first for the PostgreSQL column.)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startAlto } from '../packages/alto/src/edge/server.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';

const totalRecords = Number(process.argv[2] ?? 100_000);
const concurrency = Number(process.argv[3] ?? 32);
const CREATES = 5_000;
const READS = 20_000;

interface Figures {
  backend: string;
  /** id/Generate per second in the same setup: what the edge and this in-process client allow. */
  edgePerSecond: number;
  createsPerSecond: number;
  readsPerSecond: number;
  unindexedMs: number;
  indexedMs: number;
  matches: number;
}

async function post(url: string, key: string, endpoint: string, body: unknown): Promise<any> {
  const response = await fetch(`${url}/v1/db/${endpoint}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  const result = await response.json();
  if (response.status !== 200) throw new Error(`${endpoint}: ${response.status} ${JSON.stringify(result)}`);
  return result;
}

/** Runs `total` tasks with `concurrency` in flight; returns the seconds taken. */
async function runConcurrently(total: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await task(next++);
    }),
  );
  return (performance.now() - started) / 1000;
}

async function averageMs(times: number, run: () => Promise<unknown>): Promise<number> {
  await run(); // warm up the statement caches
  const started = performance.now();
  for (let i = 0; i < times; i++) await run();
  return (performance.now() - started) / times;
}

async function measure(backend: string, postgresUrl?: string): Promise<Figures> {
  const dataDir = mkdtempSync(join(tmpdir(), 'alto-db-bench-'));
  const alto = await startAlto({ port: 0, host: '127.0.0.1', dataDir, postgresUrl, logger: silentLogger() });
  try {
    const adminKey = readFileSync(alto.adminKeyPath, 'utf8').trim();
    const admin = async (service: string, endpoint: string, body: unknown) =>
      (
        await fetch(`${alto.url}/v1/${service}/${endpoint}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
          body: JSON.stringify(body),
        })
      ).json() as Promise<any>;
    await admin('projects', 'Create', { name: 'bench' });
    const key: string = (await admin('keys', 'Generate', { project: 'bench', scopes: ['db'] })).key;

    const edgeSeconds = await runConcurrently(READS, async () => {
      const response = await fetch(`${alto.url}/v1/id/Generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
        body: '{}',
      });
      await response.json();
    });
    const createSeconds = await runConcurrently(CREATES, (i) =>
      post(alto.url, key, 'Create', { table: 'users', record: { id: `u${i}`, name: `user ${i}`, age: i % 90, email: `u${i}@example.com` } }),
    );
    const readSeconds = await runConcurrently(READS, (i) => post(alto.url, key, 'Read', { table: 'users', id: `u${i % CREATES}` }));

    for (let i = 0; i < totalRecords; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, totalRecords - i) }, (_, j) => ({
        id: `r${i + j}`,
        group: `g${(i + j) % 10_000}`,
        n: i + j,
        payload: { text: 'lorem ipsum dolor sit amet', list: [1, 2, 3] },
      }));
      await post(alto.url, key, 'Create', { table: 'big', record: batch });
    }
    const query = { table: 'big', query: "group == 'g4242'", limit: 100 };
    const matches = (await post(alto.url, key, 'Read', query)).records.length;
    const unindexedMs = await averageMs(10, () => post(alto.url, key, 'Read', query));
    await post(alto.url, key, 'CreateIndex', { table: 'big', field: 'group' });
    const indexedMs = await averageMs(500, () => post(alto.url, key, 'Read', query));
    return {
      backend,
      edgePerSecond: READS / edgeSeconds,
      createsPerSecond: CREATES / createSeconds,
      readsPerSecond: READS / readSeconds,
      unindexedMs,
      indexedMs,
      matches,
    };
  } finally {
    await alto.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const results: Figures[] = [await measure('sqlite')];

const adminUrl = process.env.ALTO_TEST_POSTGRES_URL;
if (adminUrl) {
  const database = `alto_bench_db_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  try {
    const url = new URL(adminUrl);
    url.pathname = `/${database}`;
    results.push(await measure('postgres', url.toString()));
  } finally {
    // The pool's end() resolves before the server saw every connection close: wait for them.
    for (let i = 0; i < 500; i++) {
      const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [database]);
      if (rows[0].n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await admin.query(`DROP DATABASE IF EXISTS ${database}`);
    await admin.end();
  }
} else {
  console.error('ALTO_TEST_POSTGRES_URL is not set: PostgreSQL skipped (`. scripts/test-services.sh` starts one)');
}

const format = (value: number, digits = 0) => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
console.log(`\ndb through the edge (HTTP), ${concurrency} requests in flight; query "group == 'g4242'" over ${format(totalRecords)} records`);
console.log('| backend  | id/Generate/s (edge ceiling) | Create/s | Read by id/s | query unindexed (ms) | query indexed (ms) | matches |');
console.log('|----------|-----------------------------:|---------:|-------------:|---------------------:|-------------------:|--------:|');
for (const r of results) {
  console.log(
    `| ${r.backend.padEnd(8)} | ${format(r.edgePerSecond).padStart(28)} | ${format(r.createsPerSecond).padStart(8)} | ${format(r.readsPerSecond).padStart(12)} | ${format(r.unindexedMs, 2).padStart(20)} | ${format(r.indexedMs, 2).padStart(18)} | ${String(r.matches).padStart(7)} |`,
  );
}
