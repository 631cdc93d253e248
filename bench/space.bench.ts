/**
 * space benchmark. Large objects: MB/s of one object streamed into and out of the local object
 * store on its own, then through Alto (its own process) with a presigned PUT and a presigned
 * GET, with the server's peak resident memory. Small objects: requests per second through
 * Alto with `concurrency` in flight: inline Create, Read, and GET of the public URL.
 *
 * Run: node --import tsx bench/space.bench.ts [largeMiB=1024] [smallCount=2000] [concurrency=16]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LocalObjectStore } from '../packages/alto/src/store/objects/local.js';
import { startProcess } from '../packages/alto/test/harness.js';

const largeMiB = Number(process.argv[2] ?? 1024);
const smallCount = Number(process.argv[3] ?? 2000);
const concurrency = Number(process.argv[4] ?? 16);
const MiB = 1024 * 1024;
const largeBytes = largeMiB * MiB;

/** `size` bytes made 1 MiB at a time, so the client never holds the object either. */
function generatedBody(size: number): Readable {
  const block = randomBytes(MiB);
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < size; sent += MiB) yield block.subarray(0, Math.min(MiB, size - sent));
    })(),
  );
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}

function megabytesPerSecond(bytes: number, started: number): number {
  return Math.round(bytes / 1e6 / ((performance.now() - started) / 1000));
}

async function perSecond(total: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await task(next++);
    }),
  );
  return Math.round(total / ((performance.now() - started) / 1000));
}

async function storeFigures(): Promise<Record<string, string | number>> {
  const root = mkdtempSync(join(tmpdir(), 'alto-bench-objects-'));
  try {
    const store = await LocalObjectStore.open(root);
    let started = performance.now();
    await store.put('bench/dev', 'large.bin', generatedBody(largeBytes), { contentType: 'application/octet-stream', visibility: 'private' });
    const upload = megabytesPerSecond(largeBytes, started);
    started = performance.now();
    const read = await store.get('bench/dev', 'large.bin');
    await pipeline(read!.body, discard());
    return { where: 'store (local disk)', 'upload MB/s': upload, 'download MB/s': megabytesPerSecond(largeBytes, started), 'server peak RSS MiB': '-' };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function put(url: string, body: Readable, length: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: 'PUT', headers: { 'content-length': length } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    pipeline(body, request).catch(reject);
  });
}

function getDiscarding(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (response) => {
      let bytes = 0;
      response.on('data', (chunk: Buffer) => (bytes += chunk.length));
      response.on('end', () => resolve(bytes));
      response.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

const server = await startProcess();
const rows: Record<string, string | number>[] = [];
let smallRow: Record<string, string | number> = {};
try {
  rows.push(await storeFigures());
  const key = await server.projectKey('bench', ['space']);
  const call = async (endpoint: string, body: unknown) => {
    const answer = await server.call('space', endpoint, body, key);
    if (answer.status !== 200) throw new Error(`${endpoint}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  };
  const residentBytes = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;
  let peak = residentBytes();
  const sampler = setInterval(() => (peak = Math.max(peak, residentBytes())), 50);

  let started = performance.now();
  const status = await put((await call('Upload', { name: 'large.bin' })).url, generatedBody(largeBytes), largeBytes);
  if (status !== 200) throw new Error(`PUT answered ${status}`);
  const upload = megabytesPerSecond(largeBytes, started);
  started = performance.now();
  const received = await getDiscarding((await call('Download', { name: 'large.bin' })).url);
  if (received !== largeBytes) throw new Error(`GET returned ${received} bytes`);
  const download = megabytesPerSecond(largeBytes, started);
  clearInterval(sampler);
  rows.push({ where: 'HTTP presigned PUT/GET', 'upload MB/s': upload, 'download MB/s': download, 'server peak RSS MiB': Math.round(peak / MiB) });
  await call('Delete', { name: 'large.bin' });

  const small = randomBytes(1024).toString('base64');
  const names = Array.from({ length: Math.min(smallCount, 1000) }, (_, i) => `small/${i}.bin`);
  const publicUrls: string[] = [];
  const createPerSecond = await perSecond(smallCount, async (i) => {
    const created = await call('Update', { name: names[i % names.length], object: small, visibility: 'public' });
    publicUrls[i % names.length] = created.url;
  });
  const readPerSecond = await perSecond(smallCount, (i) => call('Read', { name: names[i % names.length] }));
  const getPerSecond = await perSecond(smallCount, async (i) => {
    const bytes = await getDiscarding(publicUrls[i % publicUrls.length]);
    if (bytes !== 1024) throw new Error(`public GET returned ${bytes} bytes`);
  });
  smallRow = { 'Create (Update) 1 KiB/s': createPerSecond, 'Read/s': readPerSecond, 'public GET/s': getPerSecond };
} finally {
  await server.close();
}
console.log(`space: one ${largeMiB} MiB object; ${smallCount} small-object requests per figure, ${concurrency} in flight (Alto as its own process)`);
console.table(rows);
console.table([smallRow]);
