/**
 * Backups of an app's volume, with a real app on the process sandbox: while its instance serves a
 * loop of requests that each append a line to the volume, `alto backup` copies the volume with
 * its filesystem frozen (compute/sandbox/volume-snapshot); no request fails, the restored image is
 * a clean ext4 (e2fsck -n) holding every line acknowledged before the backup began, and the
 * instance restored from it serves the app with what it had written. A backup of the stopped
 * instance copies the volume while claimed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startProcess, temporaryDataDir, waitForAsync, type ServerProcess } from './harness.js';
import { buildImage, busyboxBinary, startRegistry, type LayerEntry, type TestRegistry } from './images-fixture.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';

const MASTER_KEY = randomBytes(32).toString('hex');
const ADMIN_KEY = `sk_admin_${randomBytes(12).toString('hex')}`;
const PROJECT = 'notes';

/** httpd on 8080 whose CGI appends its query to /data/notes (the volume) and answers the file. */
function notesImage() {
  const applets = ['sh', 'httpd', 'cat', 'echo', 'printf'];
  const cgi = (body: string) => `#!/bin/sh\n${body}\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n`;
  const layer: LayerEntry[] = [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...applets.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
    { type: 'dir', path: 'data/' },
    { type: 'dir', path: 'www/' },
    { type: 'file', path: 'www/index.html', content: 'notes\n' },
    { type: 'dir', path: 'www/cgi-bin/' },
    { type: 'file', path: 'www/cgi-bin/note', content: `${cgi('echo "$QUERY_STRING" >> /data/notes')}cat /data/notes\n`, mode: 0o755 },
    // One line appended, answered once written: the request loop's.
    { type: 'file', path: 'www/cgi-bin/add', content: `${cgi('echo "$QUERY_STRING" >> /data/notes || exit 1')}echo ok\n`, mode: 0o755 },
  ];
  return buildImage({
    layers: [layer],
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: ['httpd -f -v -p 8080 -h /www'], ExposedPorts: { '8080/tcp': {} } },
  });
}

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

  // Two request loops, each appending line after line: acknowledged lines, and any failure.
  const acknowledged: string[] = [];
  const failures: string[] = [];
  let writing = true;
  const loop = async (name: string) => {
    for (let index = 0; writing; index++) {
      const line = `${name}-${index}`;
      try {
        const answer = await getThroughEdge(edgePort, `notes.${PROJECT}.localhost`, `/cgi-bin/add?${line}`);
        if (answer.status === 200 && answer.body === 'ok\n') acknowledged.push(line);
        else failures.push(`${line}: ${answer.status} ${answer.body}`);
      } catch (error) {
        failures.push(`${line}: ${(error as Error).message}`);
      }
    }
  };
  const loops = [loop('a'), loop('b')];
  await waitForAsync(async () => acknowledged.length >= 50, '50 lines written before the backup', 30_000);
  const beforeBackup = [...acknowledged];
  const whileRunning = await runCli(['backup', '--data', source, '--to', backups], environment);
  const duringBackup = acknowledged.length - beforeBackup.length;
  await waitForAsync(async () => acknowledged.length >= beforeBackup.length + duringBackup + 20, '20 more lines after the backup', 30_000);
  writing = false;
  await Promise.all(loops);
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
  // A clean filesystem: e2fsck -n exits 0 (nothing to fix, no journal to replay).
  execFileSync('e2fsck', ['-n', '-f', image], { stdio: 'pipe' });
  const lines = new Set(execFileSync('debugfs', ['-R', 'cat /notes', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n'));
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
