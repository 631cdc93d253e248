/**
 * images benchmark: pull + unpack of a ~100 MB multi-layer image from a local docker-registry
 * (loopback), by Alto's image manager and by `skopeo copy` + `umoci unpack` (Debian's
 * packages), alternating, each from an empty store; prints seconds, MB/s and the ratio.
 *
 * Run: node --import tsx bench/images.bench.ts [runs=3] [megabytes=100]
 * (needs docker-registry, busybox-static, skopeo and umoci: apt-get install skopeo umoci)
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageManager } from '../packages/alto/src/compute/images/manager.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';
import { SqliteImageRecordStore } from '../packages/alto/src/store/images/sqlite.js';
import { openSqlite } from '../packages/alto/src/store/sqlite/database.js';
import { buildImage, busyboxBaseLayer, startRegistry, type LayerEntry } from '../packages/alto/test/images-fixture.js';

const runs = Number(process.argv[2] ?? 3);
const megabytes = Number(process.argv[3] ?? 100);

function which(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A layer of a few big incompressible files and many small text files (metadata work). */
function dataLayer(index: number, bytes: number): LayerEntry[] {
  const entries: LayerEntry[] = [{ type: 'dir', path: `data${index}/` }];
  const bigFiles = 4;
  for (let file = 0; file < bigFiles; file++) {
    entries.push({ type: 'file', path: `data${index}/blob-${file}.bin`, content: randomBytes(Math.floor((bytes * 0.9) / bigFiles)) });
  }
  for (let file = 0; file < 1000; file++) {
    entries.push({ type: 'file', path: `data${index}/small/${String(file).padStart(4, '0')}.txt`, content: `file ${file} of layer ${index}\n`.repeat(40) });
  }
  entries.push({ type: 'symlink', path: `data${index}/latest`, target: 'blob-0.bin' });
  return entries;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const haveSkopeo = which('skopeo') && which('umoci');
  const registry = await startRegistry();
  const workspace = mkdtempSync(join(tmpdir(), 'alto-images-bench-'));
  try {
    const layersOfData = 4;
    const image = await buildImage({
      layers: [busyboxBaseLayer(), ...Array.from({ length: layersOfData }, (_, index) => dataLayer(index, (megabytes * 1024 * 1024) / layersOfData))],
    });
    await registry.push('bench/big', 'v1', image);
    const compressed = image.layers.reduce((sum, layer) => sum + layer.size, 0);
    const uncompressed = image.layers.reduce((sum, layer) => sum + layer.tar.length, 0);
    const reference = `${registry.host}/bench/big:v1`;
    console.log(`image: ${image.layers.length} layers, ${(compressed / 1e6).toFixed(1)} MB compressed, ${(uncompressed / 1e6).toFixed(1)} MB unpacked; ${runs} runs each`);

    const altoTimes: number[] = [];
    const toolTimes: number[] = [];
    for (let run = 0; run < runs; run++) {
      {
        const dataDir = mkdtempSync(join(workspace, 'alto-'));
        const db = openSqlite(join(dataDir, 'alto.db'));
        const images = new ImageManager({ root: join(dataDir, 'images'), records: new SqliteImageRecordStore(db), log: silentLogger() });
        const started = performance.now();
        await images.pull(reference);
        await images.unpack(reference, join(dataDir, 'rootfs'));
        altoTimes.push((performance.now() - started) / 1000);
        db.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
      if (haveSkopeo) {
        const dir = mkdtempSync(join(workspace, 'skopeo-'));
        const started = performance.now();
        execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reference}`, `oci:${join(dir, 'layout')}:v1`], { stdio: 'inherit' });
        execFileSync('umoci', ['unpack', ...(process.getuid?.() === 0 ? [] : ['--rootless']), '--image', `${join(dir, 'layout')}:v1`, join(dir, 'bundle')], { stdio: 'ignore' });
        toolTimes.push((performance.now() - started) / 1000);
        rmSync(dir, { recursive: true, force: true });
      }
    }
    const rows: Record<string, string | number>[] = [];
    const alto = median(altoTimes);
    rows.push({ tool: 'alto pull + unpack', 'median s': alto.toFixed(2), 'MB/s (compressed)': (compressed / 1e6 / alto).toFixed(1), runs: altoTimes.map((time) => time.toFixed(2)).join(' ') });
    if (haveSkopeo) {
      const tools = median(toolTimes);
      rows.push({ tool: 'skopeo copy + umoci unpack', 'median s': tools.toFixed(2), 'MB/s (compressed)': (compressed / 1e6 / tools).toFixed(1), runs: toolTimes.map((time) => time.toFixed(2)).join(' ') });
      console.table(rows);
      console.log(`ratio: alto takes ${(alto / tools).toFixed(2)}x the time of skopeo + umoci (below 1 is faster)`);
    } else {
      console.table(rows);
      console.log('skopeo or umoci is missing (apt-get install skopeo umoci): no comparison');
    }
  } finally {
    await registry.stop();
    rmSync(workspace, { recursive: true, force: true });
  }
}

await main();
