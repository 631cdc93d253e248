/**
 * What the backup tests of running apps' volumes share, on either sandbox driver: the notes app
 * (busybox httpd whose CGI appends a line to the volume and answers once it is written), request
 * loops that append line after line while a backup runs, and the checks of a restored volume's
 * disk: a cleanly frozen ext4 and the lines it holds.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { waitForAsync } from './harness.js';
import { buildImage, busyboxBinary, type LayerEntry } from './images-fixture.js';

/**
 * httpd on 8080 over a volume at /data: /cgi-bin/add?LINE appends LINE to /data/notes and answers
 * "ok" once written; /cgi-bin/note?LINE appends it and answers the whole file.
 */
export function notesImage() {
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
    // One line appended, answered once written: the request loops'.
    { type: 'file', path: 'www/cgi-bin/add', content: `${cgi('echo "$QUERY_STRING" >> /data/notes || exit 1')}echo ok\n`, mode: 0o755 },
  ];
  return buildImage({
    layers: [layer],
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: ['httpd -f -v -p 8080 -h /www'], ExposedPorts: { '8080/tcp': {} } },
  });
}

export interface WriteLoops {
  /** Lines the app answered "ok" for, in the order the answers came. */
  readonly acknowledged: string[];
  /** Requests that failed, each with why. */
  readonly failures: string[];
  /** Waits until `count` lines were acknowledged in all. */
  waitForLines(count: number, what: string, timeoutMs: number): Promise<void>;
  /** Ends the loops once their requests in flight are answered. */
  stop(): Promise<void>;
}

/** Two request loops, each appending line after line through `add` (`a-0`, `a-1`... and `b-0`...). */
export function startWriteLoops(add: (line: string) => Promise<{ status: number; body: string }>): WriteLoops {
  const acknowledged: string[] = [];
  const failures: string[] = [];
  let writing = true;
  const loop = async (name: string) => {
    for (let index = 0; writing; index++) {
      const line = `${name}-${index}`;
      try {
        const answer = await add(line);
        if (answer.status === 200 && answer.body === 'ok\n') acknowledged.push(line);
        else failures.push(`${line}: ${answer.status} ${answer.body}`);
      } catch (error) {
        failures.push(`${line}: ${(error as Error).message}`);
      }
    }
  };
  const loops = [loop('a'), loop('b')];
  return {
    acknowledged,
    failures,
    waitForLines: (count, what, timeoutMs) => waitForAsync(async () => acknowledged.length >= count, what, timeoutMs),
    async stop() {
      writing = false;
      await Promise.all(loops);
    },
  };
}

/**
 * The lines of /notes on a restored volume's ext4 disk, once it is shown to be a cleanly frozen
 * filesystem. `e2fsck -n` alone passes a copy caught mid-write too (it skips the journal and
 * reports stale counts without failing), so the header must also say clean, with no journal to
 * replay.
 */
export function linesOfCleanDisk(disk: string): Set<string> {
  const check = spawnSync('e2fsck', ['-n', '-f', disk], { encoding: 'utf8' });
  const said = `${check.stdout}${check.stderr}`;
  assert.equal(check.status, 0, said);
  assert.doesNotMatch(said, /journal recovery|Fix\?/, said);
  const header = execFileSync('dumpe2fs', ['-h', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  assert.match(header, /^Filesystem state:\s+clean$/m);
  assert.doesNotMatch(/^Filesystem features:.*$/m.exec(header)![0], /needs_recovery/);
  return new Set(execFileSync('debugfs', ['-R', 'cat /notes', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n'));
}
