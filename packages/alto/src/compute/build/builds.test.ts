/**
 * Build logs on disk, on a real temporary folder with a stand-in image builder: a build's log
 * is read back by a new DockerfileBuilds over the same data folder (Alto restarted), by its id
 * and as the app's last build, ending with how it ended; a build cut short by a stop of Alto
 * ends with a line saying so; a build id is taken once, by one of two requests at once; a
 * build's file keeps its first lines, the count of those left out and its last lines; an app's
 * builds stay within its size cap; a source build (another builder) is recorded the same way;
 * deleting the app's build logs forgets them; a sweep deletes builds past the retention.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { BuildLogStore, type BuildLogLine } from './build-log-store.js';
import type { BuildRequest, BuildResult } from './builder.js';
import { DockerfileBuilds } from './builds.js';

const log = pino({ level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'alto-builds-'));
after(() => rmSync(root, { recursive: true, force: true }));
const owner = { projectId: 'p1', projectName: 'demo', admin: false };

let folders = 0;
/** A node's builds over `dataDir`, whose builder logs `lines` and fails when told to. */
function builds(dataDir: string, options: { lines?: string[]; fail?: string; maxBytesPerApp?: number } = {}): DockerfileBuilds {
  const builder = {
    async build(request: BuildRequest): Promise<BuildResult> {
      for (const line of options.lines ?? ['Step 1/2 : FROM busybox', 'Step 2/2 : RUN echo hi', '  | hi']) request.onLog(line);
      if (options.fail) throw new Error(options.fail);
      return { reference: `builds.alto.internal/demo/${request.app}@sha256:abc`, digest: 'sha256:abc', tag: request.buildId, steps: 2, cached: 0 };
    },
  };
  const store = new BuildLogStore({ dir: join(dataDir, 'logs', 'builds'), maxBytesPerApp: options.maxBytesPerApp ?? 1024 ** 2, retentionMs: 86_400_000, log });
  return new DockerfileBuilds(builder, dataDir, log, store);
}

function dataDir(): string {
  const dir = join(root, `data-${folders++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const files = { Dockerfile: 'FROM busybox\nRUN echo hi\n' };

async function collect(lines: AsyncIterable<BuildLogLine>): Promise<BuildLogLine[]> {
  const all: BuildLogLine[] = [];
  for await (const line of lines) all.push(line);
  return all;
}

test("a build's log is read back after a restart, by build id and as the app's last build", async () => {
  const dir = dataDir();
  const image = await builds(dir).buildForApp(owner, { name: 'web', files, build_id: 'buildone1' });
  assert.equal(image, 'builds.alto.internal/demo/web@sha256:abc');

  const restarted = builds(dir);
  const lines = await collect(restarted.follow('p1', 'buildone1'));
  assert.deepEqual(lines.map((line) => line.line), ['Step 1/2 : FROM busybox', 'Step 2/2 : RUN echo hi', '  | hi', `built ${image}`]);
  assert.equal(lines.at(-1)!.done, 'succeeded');
  assert.equal(lines.at(-1)!.image, image);
  assert.ok(lines.every((line) => Number.isFinite(Date.parse(line.at))));
  assert.equal(await restarted.lastBuildOf('p1', 'web'), 'buildone1');
  // Another project does not see it.
  await assert.rejects(collect(restarted.follow('p2', 'buildone1', AbortSignal.abort())), /no build buildone1/);
  assert.equal(await restarted.lastBuildOf('p2', 'web'), undefined);
});

test('a failed build ends with its failure; the last build of the app is the newest', async () => {
  const dir = dataDir();
  await builds(dir).buildForApp(owner, { name: 'web', files, build_id: 'buildgood1' });
  await assert.rejects(builds(dir, { fail: 'RUN exited with 1' }).buildForApp(owner, { name: 'web', files, build_id: 'buildbad01' }), /exited with 1/);
  const restarted = builds(dir);
  assert.equal(await restarted.lastBuildOf('p1', 'web'), 'buildbad01');
  const last = (await collect(restarted.follow('p1', 'buildbad01'))).at(-1)!;
  assert.equal(last.done, 'failed');
  assert.match(last.line, /build failed: RUN exited with 1/);
  // A build id is used once, across restarts too, and by one of two requests at once.
  await assert.rejects(restarted.buildForApp(owner, { name: 'web', files, build_id: 'buildgood1' }), /exists already/);
  const both = await Promise.allSettled([restarted.buildForApp(owner, { name: 'web', files, build_id: 'buildtwice' }), restarted.buildForApp(owner, { name: 'api', files, build_id: 'buildtwice' })]);
  assert.deepEqual(both.map((result) => result.status).sort(), ['fulfilled', 'rejected']);
  assert.match(String((both.find((result) => result.status === 'rejected') as PromiseRejectedResult).reason), /exists already/);
});

test('a build cut short by a stop of Alto ends with a line saying so', async () => {
  const dir = dataDir();
  const folder = join(dir, 'logs', 'builds', 'p1', 'web');
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, `${Date.now()}-buildcut01.jsonl`), `${JSON.stringify({ time: new Date().toISOString(), text: 'Step 1/2 : FROM busybox' })}\n`);
  const lines = await collect(builds(dir).follow('p1', 'buildcut01'));
  assert.deepEqual(lines.map((line) => line.line), ['Step 1/2 : FROM busybox', 'the build did not finish: Alto stopped while it ran']);
  assert.equal(lines.at(-1)!.done, 'failed');
});

test("a long build keeps its first and last lines; an app's builds stay within its size cap", async () => {
  const dir = dataDir();
  const maxBytesPerApp = 256 * 1024;
  const lines = Array.from({ length: 5_000 }, (_, index) => `  | output line ${index} ${'x'.repeat(60)}`);
  for (let round = 0; round < 6; round++) {
    await builds(dir, { lines, maxBytesPerApp }).buildForApp(owner, { name: 'web', files, build_id: `buildbig${round}` });
    const folder = join(dir, 'logs', 'builds', 'p1', 'web');
    const bytes = readdirSync(folder).reduce((sum, name) => sum + statSync(join(folder, name)).size, 0);
    assert.ok(bytes <= maxBytesPerApp, `the app's builds take ${bytes} bytes, over the cap of ${maxBytesPerApp}`);
  }
  const read = await collect(builds(dir).follow('p1', 'buildbig5'));
  assert.equal(read[0]!.line, lines[0]);
  assert.ok(read.some((line) => /^\[… \d+ lines dropped\]$/.test(line.line)), 'the lines left out are counted');
  assert.equal(read.at(-2)!.line, lines.at(-1));
  assert.equal(read.at(-1)!.done, 'succeeded');
  // The oldest builds gave way.
  await assert.rejects(collect(builds(dir).follow('p1', 'buildbig0', AbortSignal.abort())), /no build/);
});

test("a source build is recorded the same way, and deleting the app's build logs forgets them", async () => {
  const dir = dataDir();
  const image = await builds(dir).record(owner, 'api', 'sourceone1', async (onLog) => {
    onLog('dependencies: installed (express)');
    return 'builds.alto.internal/demo/api@sha256:def';
  });
  const restarted = builds(dir);
  const lines = await collect(restarted.follow('p1', (await restarted.lastBuildOf('p1', 'api'))!));
  assert.deepEqual(lines.map((line) => line.line), ['dependencies: installed (express)', `built ${image}`]);
  await restarted.forget('p1', 'api');
  assert.equal(await restarted.lastBuildOf('p1', 'api'), undefined);
});

test('a sweep deletes the builds past the retention of every app and the folders left empty', async () => {
  const dir = dataDir();
  const day = 86_400_000;
  const store = new BuildLogStore({ dir: join(dir, 'logs', 'builds'), maxBytesPerApp: 1024 ** 2, retentionMs: day, log });
  const now = Date.now();
  const write = async (app: string, buildId: string, startedAt: number) => {
    const file = await store.begin('p1', app, buildId, startedAt);
    file.append({ at: new Date(startedAt).toISOString(), line: 'Step 1/1 : FROM busybox' });
    file.append({ at: new Date(startedAt).toISOString(), line: 'built', done: 'succeeded' });
    await file.flush();
  };
  await write('gone', 'buildold01', now - 3 * day);
  await write('kept', 'buildnew01', now - 1000);
  // An app's newest build is judged by its file's time (when its last line was written).
  const old = (now - 3 * day) / 1000;
  const goneDir = join(dir, 'logs', 'builds', 'p1', 'gone');
  for (const name of readdirSync(goneDir)) await utimes(join(goneDir, name), old, old);
  await store.sweep(now);
  assert.equal(existsSync(goneDir), false, "the deleted app's folder went");
  assert.equal(await store.find('p1', 'buildold01'), undefined);
  assert.equal((await store.last('p1', 'kept'))?.buildId, 'buildnew01');
});
