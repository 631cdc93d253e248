/**
 * build benchmark: a three-step Dockerfile (RUN, COPY, RUN over a busybox base pulled from a
 * local docker-registry) built by Alto's image builder with no Docker, cold (a project with
 * nothing cached: every RUN in a process sandbox, its changes snapshotted as a layer) and cached
 * (the same build again: every step from the layer cache); prints seconds per build.
 *
 * Run as root (the process sandbox): node --import tsx bench/build.bench.ts [runs=3]
 * (needs docker-registry and busybox-static: scripts/test-services.sh installs them)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageBuilder } from '../packages/alto/src/compute/build/builder.js';
import { ImageManager } from '../packages/alto/src/compute/images/manager.js';
import { defaultSandboxCacheDir } from '../packages/alto/src/compute/sandbox/index.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';
import { SqliteImageRecordStore } from '../packages/alto/src/store/images/sqlite.js';
import { openSqlite } from '../packages/alto/src/store/sqlite/database.js';
import { buildImage, busyboxBinary, startRegistry, type LayerEntry } from '../packages/alto/test/images-fixture.js';

const runs = Number(process.argv[2] ?? 3);

function baseLayer(): LayerEntry[] {
  return [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...['sh', 'echo', 'ls', 'mkdir', 'cat'].map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
  ];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: RUN steps need the process sandbox');
  const registry = await startRegistry();
  const workspace = mkdtempSync(join(tmpdir(), 'alto-build-bench-'));
  const dataDir = join(workspace, 'data');
  const db = openSqlite(join(dataDir, 'alto.db'));
  try {
    await registry.push('bench/busybox', 'v1', await buildImage({ layers: [baseLayer()], config: { Env: ['PATH=/bin'] } }));
    const context = join(workspace, 'context');
    mkdirSync(context);
    writeFileSync(join(context, 'page.html'), '<h1>built</h1>\n'.repeat(100));
    writeFileSync(
      join(context, 'Dockerfile'),
      `FROM ${registry.host}/bench/busybox:v1\nRUN mkdir -p /site && echo "step one" > /site/one.txt\nCOPY page.html /site/index.html\nRUN ls -l /site > /site/listing.txt\n`,
    );
    const images = new ImageManager({ root: join(dataDir, 'images'), records: new SqliteImageRecordStore(db), log: silentLogger(), trustedRegistries: ['127.0.0.1'] });
    const builder = new ImageBuilder({
      dataDir,
      images,
      log: silentLogger(),
      sandboxCacheDir: defaultSandboxCacheDir(),
      sandboxStateDir: join(dataDir, 'apps', 'sandbox', 'process'),
    });
    const build = async (project: string, run: number) => {
      const started = performance.now();
      const result = await builder.build({
        owner: { projectId: project, projectName: project, admin: true },
        app: 'web',
        buildId: `bench${run}${project}`.slice(0, 32),
        context,
        dockerfile: 'Dockerfile',
        buildArgs: {},
        network: false,
        onLog: () => {},
      });
      return { seconds: (performance.now() - started) / 1000, cached: result.cached };
    };
    // The base image pulled once, so the cold builds measure building, not the pull.
    await images.pull(`${registry.host}/bench/busybox:v1`);
    const cold: number[] = [];
    const cached: number[] = [];
    for (let run = 0; run < runs; run++) {
      const project = `cold${run}${Date.now().toString(36)}`;
      const first = await build(project, run);
      if (first.cached !== 0) throw new Error(`a cold build found ${first.cached} steps cached`);
      cold.push(first.seconds);
      const again = await build(project, run + 100);
      if (again.cached !== 3) throw new Error(`the second build found ${again.cached} of 3 steps cached`);
      cached.push(again.seconds);
    }
    console.table([
      { build: 'cold (2 RUN in sandboxes + COPY)', 'median s': median(cold).toFixed(2), runs: cold.map((time) => time.toFixed(2)).join(' ') },
      { build: 'cached (every step from the cache)', 'median s': median(cached).toFixed(2), runs: cached.map((time) => time.toFixed(2)).join(' ') },
    ]);
  } finally {
    db.close();
    await registry.stop();
    rmSync(workspace, { recursive: true, force: true });
  }
}

await main();
