/**
 * @module bench/search
 * Search block storage: indexing rate and query latency over 100k documents (BENCH_DOCS to
 * change), SQLite FTS5 against PostgreSQL full-text search (needs ALTO_TEST_POSTGRES_URL;
 * run `. scripts/test-services.sh`). Run: node --import tsx bench/search.bench.ts
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseQuery } from '../packages/alto/src/blocks/search/query.js';
import { flattenText } from '../packages/alto/src/blocks/search/search-indexes.js';
import { openSqlite } from '../packages/alto/src/store/sqlite/database.js';
import type { SearchStore } from '../packages/alto/src/store/search/port.js';
import { PostgresSearchStore } from '../packages/alto/src/store/search/postgres.js';
import { SqliteSearchStore } from '../packages/alto/src/store/search/sqlite.js';

const DOCUMENTS = Number(process.env.BENCH_DOCS ?? 100_000);
const NS = 'bench/production';
const WORDS = 'coffee tea espresso latte garden book river mountain city forest ocean music paint travel bread cheese wine bicycle rain snow'.split(' ');
const CITIES = ['London', 'Paris', 'Oslo', 'Berlin', 'Rome'];
const QUERIES = ['coffee', "'river mountain'", 'espres*', "city == 'Paris' AND age >= 60", "name == 'User 12*'", "coffee AND city == 'Oslo'", "age >= 30 AND age <= 31 OR city == 'Rome' AND age == 5"];

function documentAt(i: number) {
  const notes = Array.from({ length: 12 }, (_, j) => WORDS[(i * 7 + j * 13 + (i % (j + 3))) % WORDS.length]).join(' ');
  const data = { name: `User ${i}`, age: i % 90, city: CITIES[i % CITIES.length], notes };
  return { id: `doc-${i}`, data, text: flattenText(data) };
}

async function run(label: string, store: SearchStore, concurrency: number): Promise<void> {
  await store.createIndex(NS, 'bench');
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < DOCUMENTS) await store.upsert(NS, 'bench', documentAt(next++));
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  console.log(`${label}: indexed ${DOCUMENTS} documents in ${seconds.toFixed(1)} s (${Math.round(DOCUMENTS / seconds)}/s, ${concurrency} at a time)`);
  for (const query of QUERIES) {
    const parsed = parseQuery(query);
    const timings: number[] = [];
    let count = 0;
    for (let round = 0; round < 20; round++) {
      const t0 = performance.now();
      count = (await store.search(NS, 'bench', parsed, { limit: 20, offset: 0 }))!.length;
      timings.push(performance.now() - t0);
    }
    timings.sort((a, b) => a - b);
    console.log(`${label}:   ${query.padEnd(58)} p50 ${timings[10].toFixed(2)} ms  p95 ${timings[18].toFixed(2)} ms  (${count} hits)`);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'alto-search-bench-'));
const db = openSqlite(join(dir, 'alto.db'));
await run('sqlite', new SqliteSearchStore(db), 1);
db.close();
rmSync(dir, { recursive: true, force: true });

const adminUrl = process.env.ALTO_TEST_POSTGRES_URL;
if (!adminUrl) {
  console.log('postgres: skipped, ALTO_TEST_POSTGRES_URL is not set (run `. scripts/test-services.sh`)');
} else {
  const database = `alto_bench_search_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 8 });
  try {
    await run('postgres', await PostgresSearchStore.open(pool), 8);
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database}`);
    await admin.end();
  }
}
