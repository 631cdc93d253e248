/**
 * Backups of an app's volume, with a real app on the process sandbox: while its instance serves a
 * loop of requests that each append a line to the volume, `alto backup` copies the volume with
 * its filesystem frozen (compute/sandbox/volume-snapshot); no request fails, the restored image is
 * a cleanly frozen ext4 (e2fsck -n, state clean, no journal to replay) holding every line acknowledged before the backup began, and the
 * instance restored from it serves the app with what it had written. A backup of the stopped
 * instance copies the volume while claimed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';
import { linesOfCleanDisk, notesImage, startWriteLoops } from './volume-backup-fixture.js';

const MASTER_KEY = randomBytes(32).toString('hex');
const ADMIN_KEY = `sk_admin_${randomBytes(12).toString('hex')}`;
const PROJECT = 'notes';

const cache = privateSandboxCache();
const folders: string[] = [];
const servers: ServerProcess[] = [];
let registry: TestRegistry | undefined;
after(async () => {
  for (const server of servers) await server.close();
  await registry?.stop();
  cache.remove();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

test("an app's volume: copied while its instance serves writes, restored clean with every acknowledged write, and served again", async (t) => {
  registry = await startRegistry();
  await registry.push('backup/notes', 'v1', await notesImage());
  const source = temporaryDataDir();
  const backups = temporaryDataDir();
  const restoredParent = temporaryDataDir();
  folders.push(source, backups, restoredParent);
  const environment = { ALTO_MASTER_KEY: MASTER_KEY, ALTO_ADMIN_KEY: ADMIN_KEY, ALTO_SANDBOX_CACHE: cache.dir };
  const up = (dataDir: string) => startProcess({ dataDir, args: ['--sandbox', 'process'], env: environment });

  const running = await up(source);
  servers.push(running);
  const key = await running.projectKey(PROJECT, ['app']);
  const run = await running.call('app', 'Run', { name: 'notes', image: `${registry.host}/backup/notes:v1`, volumes: [{ name: 'data', path: '/data' }], min_instances: 1 }, key);
  assert.equal(run.status, 200, JSON.stringify(run.body));
  const edgePort = Number(new URL(running.url).port);
  const note = async (server: ServerProcess, text: string) => {
    const answer = await getThroughEdge(Number(new URL(server.url).port), `notes.${PROJECT}.localhost`, `/cgi-bin/note?${text}`);
    assert.equal(answer.status, 200, answer.body);
    return answer.body;
  };
  assert.equal(await note(running, 'first'), 'first\n');

  const add = (line: string) => getThroughEdge(edgePort, `notes.${PROJECT}.localhost`, `/cgi-bin/add?${line}`);
  // Two request loops, each appending line after line: acknowledged lines, and any failure.
  const writes = startWriteLoops(add);
  const { acknowledged, failures } = writes;
  await writes.waitForLines(50, '50 lines written before the backup', 30_000);
  const beforeBackup = [...acknowledged];
  const whileRunning = await runCli(['backup', '--data', source, '--to', backups], environment);
  const duringBackup = acknowledged.length - beforeBackup.length;
  await writes.waitForLines(beforeBackup.length + duringBackup + 20, '20 more lines after the backup', 30_000);
  await writes.stop();
  assert.deepEqual(failures, [], 'no request failed during the backup');
  assert.equal(whileRunning.code, 0, whileRunning.stderr + whileRunning.stdout);
  assert.match(whileRunning.stdout, /volume apps\/volumes\/[^/]+\/notes\/data: copied from its running instance, its filesystem frozen for \d+ ms/);
  const id = /backup (\S+): \d+ files/.exec(whileRunning.stdout)![1];
  t.diagnostic(`${/filesystem frozen for \d+ ms/.exec(whileRunning.stdout)![0]}; ${beforeBackup.length} lines before the backup, ${duringBackup} during it`);
  await running.close();

  const stopped = await runCli(['backup', '--data', source, '--to', backups], environment);
  assert.equal(stopped.code, 0, stopped.stderr + stopped.stdout);
  assert.match(stopped.stdout, /volume apps\/volumes\/[^/]+\/notes\/data: 1 files, copied while claimed/);

  const restored = join(restoredParent, 'restored');
  const restore = await runCli(['restore', backups, '--at', id, '--data', restored], environment);
  assert.equal(restore.code, 0, restore.stderr + restore.stdout);
  const projects = readdirSync(join(restored, 'apps', 'volumes'));
  assert.equal(projects.length, 1);
  const image = join(restored, 'apps', 'volumes', projects[0], 'notes', 'data', 'process.ext4');
  // A cleanly frozen filesystem (nothing to fix, no journal to replay) with the lines.
  const lines = linesOfCleanDisk(image);
  const missing = beforeBackup.filter((line) => !lines.has(line));
  assert.deepEqual(missing, [], `every line acknowledged before the backup began is in the restored volume (${beforeBackup.length} of them, ${duringBackup} more written during the backup)`);
  assert.ok(lines.has('first'));

  const again = await up(restored);
  servers.push(again);
  // The image is not in the backup: the restored node pulls it again, then starts the app on its volume.
  let last = '';
  const answer = await eventually(async () => {
    const result = await getThroughEdge(Number(new URL(again.url).port), `notes.${PROJECT}.localhost`, '/cgi-bin/note?second');
    last = `${result.status} ${result.body}`;
    return result.status === 200 ? result.body : undefined;
  }, 'the app on the restored instance', 90_000).catch(async (error: Error) => {
    const status = await again.call('app', 'Status', { name: 'notes' }, key);
    throw new Error(`${error.message}; the edge said ${last}; the app: ${JSON.stringify(status.body)}\n${again.stdout().split('\n').filter((line) => /app|image|pull|volume/i.test(line)).slice(-30).join('\n')}`);
  });
  assert.ok(answer.startsWith('first\n'), answer.slice(0, 200));
  assert.ok(answer.endsWith('\nsecond\n'), answer.slice(-200));
  for (const line of beforeBackup) assert.ok(answer.includes(`\n${line}\n`), line);
});
