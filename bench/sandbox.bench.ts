/**
 * sandbox benchmark: each driver (microvm, then process) running busybox httpd on the test root
 * filesystem. Boot-to-ready (start() until the app listens), suspend+resume round trip, a
 * request sent to a suspended instance (resume as the edge would, then the response), a warm
 * request, and for microvm: snapshot, and restore-to-first-response of a private copy.
 * Figures are medians (min-max in brackets) in milliseconds.
 *
 * Run (as root): node --import tsx bench/sandbox.bench.ts [boots=5] [cycles=20]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultSandboxCacheDir } from '../packages/alto/src/compute/sandbox/index.js';
import { MicrovmDriver } from '../packages/alto/src/compute/sandbox/microvm.js';
import type { Instance, SandboxDriver, SandboxSpec } from '../packages/alto/src/compute/sandbox/port.js';
import { ProcessDriver } from '../packages/alto/src/compute/sandbox/process.js';
import { TEST_PAGE, ensureBusyboxRootfs } from '../packages/alto/src/compute/sandbox/test-rootfs.js';

const boots = Number(process.argv[2] ?? 5);
const cycles = Number(process.argv[3] ?? 20);
const cacheDir = defaultSandboxCacheDir();
const stateDir = mkdtempSync(join(tmpdir(), 'alto-sandbox-bench-'));

function summary(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  return `${median.toFixed(1)} [${sorted[0].toFixed(1)}-${sorted[sorted.length - 1].toFixed(1)}]`;
}

async function get(instance: Instance): Promise<void> {
  const response = await fetch(`http://${instance.host}:${instance.port}/`);
  const text = await response.text();
  if (text !== TEST_PAGE) throw new Error(`unexpected answer: ${response.status} ${text}`);
}

async function time(task: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await task();
  return performance.now() - started;
}

async function measure(driver: SandboxDriver, spec: SandboxSpec): Promise<Record<string, string>> {
  const description = await driver.probe();
  const row: Record<string, string> = { driver: `${description.driver} (${description.accelerator})` };
  const bootTimes: number[] = [];
  let instance: Instance | undefined;
  for (let i = 0; i < boots; i++) {
    const started = performance.now();
    const booted = await driver.start(spec);
    bootTimes.push(performance.now() - started);
    if (i < boots - 1) await booted.stop(2_000);
    else instance = booted;
  }
  row['boot to ready'] = summary(bootTimes);
  const web = instance!;
  await get(web);
  const warm: number[] = [];
  for (let i = 0; i < cycles * 5; i++) warm.push(await time(() => get(web)));
  row['warm request'] = summary(warm);
  const roundTrips: number[] = [];
  for (let i = 0; i < cycles; i++) roundTrips.push(await time(async () => (await web.suspend(), await web.resume())));
  row['suspend+resume'] = summary(roundTrips);
  const wakeups: number[] = [];
  for (let i = 0; i < cycles; i++) {
    await web.suspend();
    wakeups.push(await time(() => Promise.all([get(web), web.resume()])));
  }
  row['request to suspended'] = summary(wakeups);
  if (description.capabilities.snapshot) {
    const snapshots: number[] = [];
    const restores: number[] = [];
    for (let i = 0; i < Math.min(boots, 5); i++) {
      const dir = join(stateDir, `snapshot-${i}`);
      snapshots.push(await time(() => web.snapshot(dir)));
      await web.resume();
      let copy: Instance | undefined;
      restores.push(await time(async () => (copy = await driver.restore(dir), await get(copy))));
      await copy!.stop(2_000);
      rmSync(dir, { recursive: true, force: true });
    }
    row.snapshot = summary(snapshots);
    row['restore to 1st response'] = summary(restores);
  } else {
    row.snapshot = 'n/a';
    row['restore to 1st response'] = 'n/a';
  }
  await web.stop(2_000);
  return row;
}

const rootfs = await ensureBusyboxRootfs(cacheDir);
const spec: SandboxSpec = {
  rootfs,
  entrypoint: [],
  cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'],
  env: { PATH: '/bin' },
  port: 8080,
  memoryMiB: 128,
  cpus: 1,
};
const rows: Record<string, string>[] = [];
for (const driver of [
  new MicrovmDriver({ cacheDir, stateDir: join(stateDir, 'microvm') }),
  new ProcessDriver({ cacheDir, stateDir: join(stateDir, 'process') }),
] as SandboxDriver[]) {
  try {
    rows.push(await measure(driver, spec));
  } finally {
    await driver.close();
  }
}
console.log(`sandbox drivers, busybox httpd; ms, median [min-max]; ${boots} boots, ${cycles} cycles`);
console.table(rows);
rmSync(stateDir, { recursive: true, force: true });
