/**
 * App log benchmark: an app on the process sandbox floods stdout (a shell loop echoing 100-byte
 * lines as fast as it can) while Alto keeps its output (compute/apps/log-store: lines throttled
 * per app, batched appends to JSON-lines segments). For each setting it prints the rate the app
 * offered, the rate kept on disk (lines and bytes of text; the rest dropped and counted by the
 * throttle), and the Alto process's CPU (its utime + stime from /proc/<pid>/stat over the window,
 * as a share of one core) and resident memory (VmRSS, mean and peak).
 *
 * Run: node --import tsx bench/logs.bench.ts [seconds=20]
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, temporaryDataDir, waitForAsync } from '../packages/alto/test/harness.js';
import { buildImage, busyboxBinary, startRegistry, type LayerEntry } from '../packages/alto/test/images-fixture.js';
import { getThroughEdge, privateSandboxCache } from '../packages/alto/test/apps-fixture.js';

const windowSeconds = Number(process.argv[2] ?? 20);
const LINE = 'x'.repeat(99);
const TICKS_PER_SECOND = 100;

const registry = await startRegistry();
const cache = privateSandboxCache();
const applets = ['sh', 'httpd'];
const layer: LayerEntry[] = [
  { type: 'dir', path: 'bin/' },
  { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
  ...applets.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
  { type: 'dir', path: 'www/' },
  { type: 'file', path: 'www/index.html', content: 'flood\n' },
];
// httpd answers on 8080 (so the instance is ready) from the background; the shell floods stdout.
await registry.push('bench/flood', 'v1', await buildImage({
  layers: [layer],
  config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: [`httpd -p 8080 -h /www; while :; do echo ${LINE}; done`], ExposedPorts: { '8080/tcp': {} } },
}));

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
}
const residentMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

interface Figures {
  setting: string;
  offeredLinesPerSecond: number;
  keptLinesPerSecond: number;
  keptBytesPerSecond: number;
  cpuPercent: number;
  meanRssMiB: number;
  peakRssMiB: number;
}

async function measure(setting: string, env: Record<string, string>): Promise<Figures> {
  const dataDir = temporaryDataDir();
  const server = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ...env } });
  try {
    const key = await server.projectKey('bench', ['app']);
    const run = await server.call('app', 'Run', { name: 'flood', image: `${registry.host}/bench/flood:v1`, min_instances: 1 }, key);
    if (run.status !== 200) throw new Error(`Run: ${run.status} ${JSON.stringify(run.body)}`);
    const edgePort = Number(new URL(server.url).port);
    await waitForAsync(async () => (await getThroughEdge(edgePort, 'flood.bench.localhost', '/').catch(() => ({ status: 0 }))).status === 200, 'the app answering', 120_000);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const pid = server.child.pid!;
    const from = Date.now();
    const ticksBefore = cpuTicks(pid);
    const samples: number[] = [];
    const sampler = setInterval(() => samples.push(residentMiB(pid)), 250);
    await new Promise((resolve) => setTimeout(resolve, windowSeconds * 1000));
    clearInterval(sampler);
    const ticks = cpuTicks(pid) - ticksBefore;
    const until = Date.now();
    // Lines appended within the window (written up to FLUSH_MS later): read from the app's segments.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    let kept = 0;
    let keptBytes = 0;
    let dropped = 0;
    const root = join(dataDir, 'logs', 'apps');
    for (const app of readdirSync(root)) {
      for (const segment of readdirSync(join(root, app))) {
        for (const text of readFileSync(join(root, app, segment), 'utf8').split('\n')) {
          if (!text) continue;
          const line = JSON.parse(text) as { time: string; stream: string; text: string };
          const at = Date.parse(line.time);
          if (at < from || at >= until) continue;
          // The throttle's count of dropped lines is a system line of Alto's.
          const marker = /^\[… (\d+) lines? dropped\]$/.exec(line.text);
          if (marker) dropped += Number(marker[1]);
          else if (line.stream === 'stdout') {
            kept++;
            keptBytes += line.text.length + 1;
          }
        }
      }
    }
    const seconds = (until - from) / 1000;
    return {
      setting,
      offeredLinesPerSecond: Math.round((kept + dropped) / seconds),
      keptLinesPerSecond: Math.round(kept / seconds),
      keptBytesPerSecond: Math.round(keptBytes / seconds),
      cpuPercent: (100 * ticks) / TICKS_PER_SECOND / seconds,
      meanRssMiB: samples.reduce((sum, value) => sum + value, 0) / samples.length,
      peakRssMiB: Math.max(...samples),
    };
  } finally {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

try {
  const results = [
    await measure('defaults (1,000 lines/s, 1 MiB/s per app)', {}),
    await measure('ALTO_LOG_LINES_PER_SECOND=1000000 (1 MiB/s per app)', { ALTO_LOG_LINES_PER_SECOND: '1000000', ALTO_LOG_MAX_BYTES_PER_APP: String(1024 ** 3) }),
  ];
  console.log(`an app flooding stdout with 100-byte lines on the process sandbox, ${windowSeconds} s window\n`);
  console.log('| setting | offered lines/s | kept lines/s | kept KiB/s | Alto CPU (% of a core) | Alto RSS mean / peak MiB |');
  console.log('|---|---|---|---|---|---|');
  for (const row of results)
    console.log(`| ${row.setting} | ${row.offeredLinesPerSecond} | ${row.keptLinesPerSecond} | ${(row.keptBytesPerSecond / 1024).toFixed(0)} | ${row.cpuPercent.toFixed(1)} | ${row.meanRssMiB.toFixed(0)} / ${row.peakRssMiB.toFixed(0)} |`);
} finally {
  await registry.stop();
  cache.remove();
}
