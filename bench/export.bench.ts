/**
 * Project archive benchmark: a project with `records` db records (about 200 bytes each, in 4
 * tables) and `mib` MiB of space objects (1 MiB each, random, so gzip cannot shrink them) is
 * exported from one Alto process and imported into another, over HTTP as `alto push` does. It
 * prints the time and throughput of the export (read to the end by the client), of the import
 * (upload, verification and apply), the archive's size, and each server's peak resident memory,
 * which stays flat as the project grows: neither side holds more than a chunk of records or a
 * piece of an object.
 *
 * Run: node --import tsx bench/export.bench.ts [records=100000] [mib=256]
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { startProcess, type ServerProcess } from '../packages/alto/test/harness.js';

const records = Number(process.argv[2] ?? 100_000);
const mib = Number(process.argv[3] ?? 256);
const MiB = 1024 * 1024;
const TABLES = 4;

function peakSampler(server: ServerProcess): { stop(): number } {
  const resident = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;
  let peak = resident();
  const timer = setInterval(() => (peak = Math.max(peak, resident())), 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.round(peak / MiB);
    },
  };
}

const seconds = (started: number) => (performance.now() - started) / 1000;

const folder = mkdtempSync(join(tmpdir(), 'alto-bench-export-'));
const archive = join(folder, 'bench.tgz');
const [source, target] = await Promise.all([startProcess(), startProcess()]);
try {
  const key = await source.projectKey('bench', ['db', 'space']);
  const call = async (service: string, endpoint: string, body: unknown) => {
    const answer = await source.call(service, endpoint, body, key);
    if (answer.status !== 200) throw new Error(`${service}/${endpoint}: ${answer.status} ${JSON.stringify(answer.body)}`);
  };
  let started = performance.now();
  const filler = 'lorem ipsum dolor sit amet '.repeat(5);
  for (let first = 0; first < records; first += 1000) {
    const batch = Array.from({ length: Math.min(1000, records - first) }, (_, offset) => ({ id: `r${first + offset}`, n: first + offset, text: filler }));
    await call('db', 'Create', { table: `table${(first / 1000) % TABLES}`, record: batch });
  }
  const object = randomBytes(MiB).toString('base64');
  for (let index = 0; index < mib; index++) await call('space', 'Create', { name: `objects/${index}.bin`, object });
  const filled = seconds(started);

  const sourcePeak = peakSampler(source);
  started = performance.now();
  const exported = await fetch(`${source.url}/admin/projects/export?name=bench`, { headers: { authorization: `Bearer ${source.adminKey}` } });
  if (!exported.ok || !exported.body) throw new Error(`export: ${exported.status} ${await exported.text()}`);
  // To a file and back from it, streamed, as the CLI does: neither this process nor a server holds the archive.
  await pipeline(Readable.fromWeb(exported.body as never), createWriteStream(archive));
  const exportSeconds = seconds(started);
  const sourcePeakMiB = sourcePeak.stop();

  const targetPeak = peakSampler(target);
  started = performance.now();
  const imported = await fetch(`${target.url}/admin/projects/import`, {
    method: 'POST',
    headers: { authorization: `Bearer ${target.adminKey}`, 'content-length': String(statSync(archive).size) },
    body: Readable.toWeb(createReadStream(archive)) as never,
    duplex: 'half',
  } as RequestInit);
  if (!imported.ok) throw new Error(`import: ${imported.status} ${await imported.text()}`);
  const importSeconds = seconds(started);
  const targetPeakMiB = targetPeak.stop();
  const answer = (await imported.json()) as { sections: Record<string, number> };
  if (answer.sections.db !== records || answer.sections.space !== mib) throw new Error(`imported ${JSON.stringify(answer.sections)}`);

  const megabytes = statSync(archive).size / 1e6;
  console.log(`project: ${records} db records in ${TABLES} tables, ${mib} MiB of space objects (filled in ${filled.toFixed(1)} s)`);
  console.table([
    { step: 'export (source streams, client reads)', seconds: exportSeconds.toFixed(2), 'MB/s': Math.round(megabytes / exportSeconds), 'records/s': Math.round(records / exportSeconds), 'server peak RSS MiB': sourcePeakMiB },
    { step: 'import (upload, verify, apply)', seconds: importSeconds.toFixed(2), 'MB/s': Math.round(megabytes / importSeconds), 'records/s': Math.round(records / importSeconds), 'server peak RSS MiB': targetPeakMiB },
  ]);
  console.log(`archive: ${megabytes.toFixed(1)} MB (gzip; the objects are random, the records compress)`);
} finally {
  await Promise.all([source.close(), target.close()]);
  rmSync(folder, { recursive: true, force: true });
}
