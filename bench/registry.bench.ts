/**
 * registry benchmark: `skopeo copy` of a ~100 MB five-layer image from an OCI layout to Alto's
 * own registry (`/v2/` on the edge, with an Alto key through the token flow), to the same with
 * `--objects` on an S3-compatible server (s3rver on loopback: every blob is written to the
 * bucket before the push is acknowledged), and to Debian's docker-registry (the CNCF
 * distribution server), all on loopback, in turn, each run to a fresh registry (so no blob is
 * already there or mountable); prints seconds, MB/s and the ratios.
 *
 * Run: node --import tsx bench/registry.bench.ts [runs=3] [megabytes=100]
 * (needs skopeo, docker-registry and busybox-static: scripts/test-services.sh installs them)
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startAlto } from '../packages/alto/src/edge/server.js';
import { createLogger } from '../packages/alto/src/kit/logger.js';
import { buildImage, busyboxBaseLayer, startRegistry, writeOciLayout, type LayerEntry } from '../packages/alto/test/images-fixture.js';
import { startS3Server, TEST_S3_CREDENTIALS } from '../packages/alto/test/s3-server.js';

const execFileAsync = promisify(execFile);
const runs = Number(process.argv[2] ?? 3);
const megabytes = Number(process.argv[3] ?? 100);

/** A layer of a few big incompressible files and many small text files. */
function dataLayer(index: number, bytes: number): LayerEntry[] {
  const entries: LayerEntry[] = [{ type: 'dir', path: `data${index}/` }];
  for (let file = 0; file < 4; file++) entries.push({ type: 'file', path: `data${index}/blob-${file}.bin`, content: randomBytes(Math.floor((bytes * 0.9) / 4)) });
  for (let file = 0; file < 200; file++) entries.push({ type: 'file', path: `data${index}/small/${file}.txt`, content: `file ${file} of layer ${index}\n`.repeat(40) });
  return entries;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** A key of a new project `bench` with the app scope, made with the admin key. */
async function projectKey(url: string, adminKey: string): Promise<string> {
  const call = async (path: string, body: unknown) => {
    const response = await fetch(`${url}/v1/${path}`, { method: 'POST', headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as { key?: string };
  };
  await call('projects/Create', { name: 'bench' });
  return (await call('keys/Generate', { project: 'bench', scopes: ['app'] })).key!;
}

/** One skopeo push, timed; skopeo's blob cache lives in a fresh HOME so it never suggests a mount. */
async function push(source: string, destination: string, credentials: string[], home: string): Promise<number> {
  const started = performance.now();
  await execFileAsync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...credentials, source, destination], { env: { ...process.env, HOME: home } });
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const workspace = mkdtempSync(join(tmpdir(), 'alto-registry-bench-'));
  try {
    const image = await buildImage({
      layers: [busyboxBaseLayer(), ...Array.from({ length: 4 }, (_, index) => dataLayer(index, (megabytes * 1024 * 1024) / 4))],
    });
    const layout = join(workspace, 'layout');
    writeOciLayout(layout, [{ image, refName: 'v1' }]);
    const source = `oci:${layout}:v1`;
    const compressed = image.layers.reduce((sum, layer) => sum + layer.size, 0);
    console.log(`image: ${image.layers.length} layers, ${(compressed / 1e6).toFixed(1)} MB compressed; ${runs} runs each`);

    const altoTimes: number[] = [];
    const objectsTimes: number[] = [];
    const registryTimes: number[] = [];
    // The S3 adapter reads its credentials as every S3 tool does.
    process.env.AWS_ACCESS_KEY_ID = TEST_S3_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_S3_CREDENTIALS.secretAccessKey;
    for (let run = 0; run < runs; run++) {
      for (const withObjects of [false, true]) {
        const s3 = withObjects ? await startS3Server(`alto-registry-bench-${run}`) : undefined;
        const dataDir = mkdtempSync(join(workspace, 'alto-'));
        const alto = await startAlto({ port: 0, host: '127.0.0.1', dataDir, objectsUrl: s3?.objectsUrl, logger: createLogger({ level: 'warn' }) });
        try {
          const key = await projectKey(alto.url, readFileSync(alto.adminKeyPath, 'utf8').trim());
          const host = new URL(alto.url).host;
          const time = await push(source, `docker://${host}/bench/big:v1`, ['--dest-creds', `x:${key}`], mkdtempSync(join(workspace, 'home-')));
          (withObjects ? objectsTimes : altoTimes).push(time);
        } finally {
          await alto.close();
          await s3?.close();
        }
      }
      {
        const registry = await startRegistry();
        try {
          registryTimes.push(await push(source, `docker://${registry.host}/bench/big:v1`, [], mkdtempSync(join(workspace, 'home-'))));
        } finally {
          await registry.stop();
        }
      }
    }
    const alto = median(altoTimes);
    const objects = median(objectsTimes);
    const registry = median(registryTimes);
    console.table([
      { target: "Alto's registry (/v2/ on the edge)", 'median s': alto.toFixed(2), 'MB/s': (compressed / 1e6 / alto).toFixed(1), runs: altoTimes.map((time) => time.toFixed(2)).join(' ') },
      { target: 'the same with --objects (s3rver)', 'median s': objects.toFixed(2), 'MB/s': (compressed / 1e6 / objects).toFixed(1), runs: objectsTimes.map((time) => time.toFixed(2)).join(' ') },
      { target: 'docker-registry (distribution)', 'median s': registry.toFixed(2), 'MB/s': (compressed / 1e6 / registry).toFixed(1), runs: registryTimes.map((time) => time.toFixed(2)).join(' ') },
    ]);
    console.log(`ratio: a push to Alto takes ${(alto / registry).toFixed(2)}x the time of a push to docker-registry (below 1 is faster)`);
    console.log(`ratio: with --objects a push to Alto takes ${(objects / alto).toFixed(2)}x the time of one to its disk alone`);
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
}

await main();
