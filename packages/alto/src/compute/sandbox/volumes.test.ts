/**
 * Volumes' disk images as each driver makes them on first use: empty at the top, as a Docker
 * volume is (no lost+found an app's user could not take over), and, for the process driver,
 * owned at the top by the app's user. Read with debugfs, so no mount (and no root) is needed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { hasCommand } from './common.js';
import { ensureProcessVolumeImage, ensureVolumeDisk } from './volumes.js';

const dir = mkdtempSync(join(tmpdir(), 'alto-volumes-'));
for (const driver of ['process', 'microvm']) mkdirSync(join(dir, driver));
after(() => rmSync(dir, { recursive: true, force: true }));
const tools = !hasCommand('mkfs.ext4') || !hasCommand('debugfs');

/** The top of an ext4 image: its entries other than . and .., and the owner of / itself. */
function topOf(image: string): { names: string[]; owner: string } {
  const listing = execFileSync('debugfs', ['-R', 'ls -l /', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const rows = listing.trim().split('\n').map((line) => line.trim().split(/\s+/));
  const self = rows.find((row) => row.at(-1) === '.')!;
  return { names: rows.map((row) => row.at(-1)!).filter((name) => name !== '.' && name !== '..'), owner: `${self[3]}:${self[4]}` };
}

test('a new process volume is empty at the top and owned by the app\'s user', { skip: tools }, async () => {
  const image = await ensureProcessVolumeImage({ dir: join(dir, 'process'), path: '/data', sizeMiB: 16 }, { uid: 100_999, gid: 100_999 }, { from: 100_000, to: 100_000, count: 65_536 });
  assert.deepEqual(topOf(image), { names: [], owner: '100999:100999' });
});

test('a new microVM volume is empty at the top', { skip: tools }, async () => {
  const disk = await ensureVolumeDisk({ dir: join(dir, 'microvm'), path: '/data', sizeMiB: 16 });
  assert.deepEqual(topOf(disk).names, []);
});
