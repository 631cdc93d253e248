/**
 * Backup benchmark: an instance with `records` db records (about 200 bytes each, in 4 tables)
 * and `mib` MiB of space objects (1 MiB each, random) is backed up with `alto backup` while it
 * serves, backed up a second time after a few more records and objects (incremental: only new
 * content is copied, unchanged objects are not even read), and restored into a new folder with
 * `alto restore` (every file checked against its sha256, then written). It prints the time and
 * throughput of each step and the backup folder's size.
 *
 * Run: node --import tsx bench/backup.bench.ts [records=1000000] [mib=1024]
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProcess } from '../packages/alto/test/harness.js';
import { runCli } from '../packages/alto/test/apps-fixture.js';

const records = Number(process.argv[2] ?? 1_000_000);
const mib = Number(process.argv[3] ?? 1024);
const MiB = 1024 * 1024;
const TABLES = 4;
const BATCH = 1000;

const seconds = (started: number) => (performance.now() - started) / 1000;
const diskBytes = (path: string) => Number(execFileSync('du', ['-sb', path], { encoding: 'utf8' }).split('\t')[0]);

const folder = mkdtempSync(join(tmpdir(), 'alto-bench-backup-'));
const dataDir = join(folder, 'data');
const backups = join(folder, 'backups');
const environment = { ALTO_MASTER_KEY: randomBytes(32).toString('hex') };
const server = await startProcess({ dataDir, env: environment });
try {
  // A project holds at most 1,000,000 records: the records are split between two.
  const keys = [await server.projectKey('bench', ['db', 'space']), await server.projectKey('bench2', ['db'])];
  const call = async (service: string, endpoint: string, body: unknown, key = keys[0]) => {
    const answer = await server.call(service, endpoint, body, key);
    if (answer.status !== 200) throw new Error(`${service}/${endpoint}: ${answer.status} ${JSON.stringify(answer.body)}`);
  };
  const filler = 'lorem ipsum dolor sit amet '.repeat(5);
  const addRecords = async (from: number, count: number) => {
    // Batches of 1,000 records per call (db Create takes a list), a few calls at a time.
    const batches: number[] = [];
    for (let first = from; first < from + count; first += BATCH) batches.push(first);
    const worker = async () => {
      for (let first = batches.shift(); first !== undefined; first = batches.shift()) {
        const batch = Array.from({ length: Math.min(BATCH, from + count - first) }, (_, offset) => ({ id: `r${first + offset}`, n: first + offset, text: filler }));
        await call('db', 'Create', { table: `table${(first / BATCH) % TABLES}`, record: batch }, keys[first < records / 2 || first >= records ? 0 : 1]);
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
  };
  const addObjects = async (from: number, count: number) => {
    const names = Array.from({ length: count }, (_, index) => from + index);
    const worker = async () => {
      for (let index = names.shift(); index !== undefined; index = names.shift()) await call('space', 'Create', { name: `objects/${index}.bin`, object: randomBytes(MiB).toString('base64') });
    };
    await Promise.all(Array.from({ length: 4 }, worker));
  };
  let started = performance.now();
  await addRecords(0, records);
  await addObjects(0, mib);
  const filled = seconds(started);
  const dataBytes = diskBytes(dataDir);

  const backup = async () => {
    const begun = performance.now();
    const result = await runCli(['backup', '--data', dataDir, '--to', backups], environment);
    if (result.code !== 0) throw new Error(`backup: ${result.stderr}${result.stdout}`);
    const summary = /backup (\S+): (\d+) files, (\d+) new blobs copied \(([^)]+)\)/.exec(result.stdout)!;
    return { seconds: seconds(begun), id: summary[1], files: Number(summary[2]), newBlobs: Number(summary[3]), copied: summary[4] };
  };
  // The CLI's own start (node + tsx, loading Alto), included in each step's time.
  const begun = performance.now();
  await runCli(['--version'], environment);
  const cliStart = seconds(begun);
  const gigabytes = dataBytes / 1e9;
  console.log(`instance: ${records} db records in ${TABLES} tables of 2 projects, ${mib} MiB of space objects, ${(dataBytes / MiB).toFixed(0)} MiB on disk (filled in ${filled.toFixed(1)} s); each step's time includes the CLI's start, ${cliStart.toFixed(1)} s here\n`);
  console.log('| step | seconds | MB/s | files | new blobs (bytes copied) | backup folder grew by |');
  console.log('|---|---|---|---|---|---|');
  const first = await backup();
  const firstSize = diskBytes(backups);
  console.log(`| first backup (running instance) | ${first.seconds.toFixed(1)} | ${Math.round((gigabytes * 1000) / first.seconds)} | ${first.files} | ${first.newBlobs} (${first.copied}) | ${(firstSize / MiB).toFixed(0)} MiB |`);
  await addRecords(records, 1000);
  await addObjects(mib, 8);
  const second = await backup();
  const secondSize = diskBytes(backups) - firstSize;
  console.log(`| second backup (+1,000 records, +8 MiB objects) | ${second.seconds.toFixed(1)} | - | ${second.files} | ${second.newBlobs} (${second.copied}) | ${(secondSize / MiB).toFixed(0)} MiB |`);
  await server.close();

  started = performance.now();
  const restored = await runCli(['restore', backups, '--data', join(folder, 'restored')], environment);
  if (restored.code !== 0) throw new Error(`restore: ${restored.stderr}${restored.stdout}`);
  const restoreSeconds = seconds(started);

  console.log(`| restore (check every sha256, then write) | ${restoreSeconds.toFixed(1)} | ${Math.round((gigabytes * 1000) / restoreSeconds)} | - | - | - |`);
} finally {
  await server.close();
  rmSync(folder, { recursive: true, force: true });
}
