/**
 * Backups of an app's volume on the microVM sandbox (QEMU; tcg on these machines, so one app and
 * no restart of the restored instance, which backup-volumes.e2e.test.ts covers): while its
 * instance serves a loop of requests that each append a line to the volume, `alto backup` has
 * the guest freeze the volume's filesystem while QEMU starts a point-in-time copy of its disk
 * (compute/sandbox/microvm-volume-backup); no request fails, and the restored disk is a clean ext4
 * (no journal to replay, nothing for e2fsck -n to fix) holding every line acknowledged before the
 * backup began. A backup of the instance
 * suspended when idle lets it run for the freeze only: it is paused again after, and that backup
 * holds every line acknowledged.
 */
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';
import { slotsOf } from './serverless-fixture.js';
import { linesOfCleanDisk, notesImage, startWriteLoops } from './volume-backup-fixture.js';

const PROJECT = 'notes';
const HOST = `notes.${PROJECT}.localhost`;

const cache = privateSandboxCache();
const folders: string[] = [];
let alto: ServerProcess | undefined;
let registry: TestRegistry | undefined;
after(async () => {
  await alto?.close();
  await registry?.stop();
  cache.remove();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

test("a microVM app's volume: copied while its instance serves writes, and while it is suspended, restored clean with every acknowledged write", async (t) => {
  registry = await startRegistry();
  await registry.push('backup/notes', 'v1', await notesImage());
  const source = temporaryDataDir();
  const backups = temporaryDataDir();
  const restoredParent = temporaryDataDir();
  folders.push(source, backups, restoredParent);
  const environment = { ALTO_SANDBOX_CACHE: cache.dir };
  alto = await startProcess({ dataDir: source, args: ['--sandbox', 'microvm'], env: environment });
  const running = alto;
  const key = await running.projectKey(PROJECT, ['app']);
  const run = await running.call('app', 'Run', { name: 'notes', image: `${registry.host}/backup/notes:v1`, memory: 128, idle_timeout: 1, volumes: [{ name: 'data', path: '/data' }] }, key);
  assert.equal(run.status, 200, JSON.stringify(run.body));
  const edgePort = Number(new URL(running.url).port);
  const add = (line: string) => getThroughEdge(edgePort, HOST, `/cgi-bin/add?${line}`);
  assert.equal((await add('first')).body, 'ok\n');

  // Two request loops, each appending line after line: acknowledged lines, and any failure.
  const writes = startWriteLoops(add);
  const { acknowledged, failures } = writes;
  await writes.waitForLines(30, '30 lines written before the backup', 60_000);
  const beforeBackup = [...acknowledged];
  const whileRunning = await runCli(['backup', '--data', source, '--to', backups], environment);
  const duringBackup = acknowledged.length - beforeBackup.length;
  await writes.waitForLines(beforeBackup.length + duringBackup + 10, '10 more lines after the backup', 60_000);
  await writes.stop();
  assert.deepEqual(failures, [], 'no request failed during the backup');
  assert.equal(whileRunning.code, 0, whileRunning.stderr + whileRunning.stdout);
  const copiedLine = /volume apps\/volumes\/[^/]+\/notes\/data: copied from its running instance, its filesystem frozen for \d+ ms in its microVM; QEMU copied the disk as of the freeze in \d+ ms/;
  assert.match(whileRunning.stdout, copiedLine);
  const runningId = /backup (\S+): \d+ files/.exec(whileRunning.stdout)![1];
  t.diagnostic(`${copiedLine.exec(whileRunning.stdout)![0].replace(/^.*: copied/, 'copied')}; ${beforeBackup.length} lines before the backup, ${duringBackup} during it`);

  // Idle for its second: suspended (QEMU paused). The backup lets it run for the freeze only.
  const slot = async () => (await slotsOf(running, key, 'notes'))[0];
  const suspended = async () => {
    const current = await slot();
    return current?.state === 'suspended' && current.frozen === true;
  };
  await eventually(suspended, 'the instance suspended', 60_000);
  const whileSuspended = await runCli(['backup', '--data', source, '--to', backups], environment);
  assert.equal(whileSuspended.code, 0, whileSuspended.stderr + whileSuspended.stdout);
  assert.match(whileSuspended.stdout, copiedLine);
  const suspendedId = /backup (\S+): \d+ files/.exec(whileSuspended.stdout)![1];
  assert.ok(await suspended(), `paused again after the backup: ${JSON.stringify(await slot())}`);

  // Each backup restored: a clean ext4 (nothing to fix, no journal to replay) with the lines.
  const linesOf = async (id: string) => {
    const restored = join(restoredParent, id);
    const restore = await runCli(['restore', backups, '--at', id, '--data', restored], environment);
    assert.equal(restore.code, 0, restore.stderr + restore.stdout);
    const projects = readdirSync(join(restored, 'apps', 'volumes'));
    assert.equal(projects.length, 1);
    const disk = join(restored, 'apps', 'volumes', projects[0], 'notes', 'data', 'volume.ext4');
    return linesOfCleanDisk(disk);
  };
  const ofRunning = await linesOf(runningId);
  assert.ok(ofRunning.has('first'));
  const missing = beforeBackup.filter((line) => !ofRunning.has(line));
  assert.deepEqual(missing, [], `every line acknowledged before the backup began is in the restored volume (${beforeBackup.length} of them, ${duringBackup} more written during the backup)`);
  const ofSuspended = await linesOf(suspendedId);
  assert.deepEqual(
    acknowledged.filter((line) => !ofSuspended.has(line)),
    [],
    `every line acknowledged is in the backup of the suspended instance (${acknowledged.length})`,
  );
});
