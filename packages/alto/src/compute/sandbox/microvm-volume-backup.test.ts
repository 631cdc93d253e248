/**
 * The guest's half of a microVM volume's backup, run on this host: the guest agent (guest/agent,
 * a static Linux program) given `volumeSignal`'s records freezes and thaws a real ext4 filesystem
 * (loop-mounted here, as root) and answers each as the host expects; the supervisor shell's lines.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hasCommand } from './common.js';
import { GUEST_FILES_DIR } from './guest-files.js';
import { volumeSignal } from './microvm-volume-backup.js';

test('the records and lines that ask for a freeze and a thaw', () => {
  const record = volumeSignal(true, 'freeze', 3);
  assert.equal(record.length, 64);
  assert.equal(record.subarray(0, 8).toString('latin1'), 'ALTOFRZE');
  assert.equal(record.subarray(8, record.indexOf(0, 8)).toString('latin1'), '/.alto/volume.3');
  assert.equal(volumeSignal(true, 'thaw', 0).subarray(0, 8).toString('latin1'), 'ALTOTHAW');
  assert.equal(volumeSignal(false, 'thaw', 12).toString(), 'thaw /.alto/volume.12\n');
});

const canMount = process.getuid?.() === 0 && process.arch === 'x64' && hasCommand('mkfs.ext4') && hasCommand('fsfreeze');

test('the guest agent freezes and thaws the filesystem mounted at the directory a record names', { skip: canMount ? false : 'needs root, x86-64, mkfs.ext4 and fsfreeze' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-freeze-'));
  const mount = join(dir, 'mnt');
  let mounted = false;
  try {
    execFileSync('truncate', ['-s', '32M', join(dir, 'disk')]);
    execFileSync('mkfs.ext4', ['-q', join(dir, 'disk')]);
    mkdirSync(mount);
    execFileSync('mount', ['-o', 'loop', join(dir, 'disk'), mount]);
    mounted = true;
    // As the prelude names the volume: a link to its mount point. The records are volumeSignal's,
    // with this host's path in place of /.alto/volume.<i>.
    symlinkSync(mount, join(dir, 'volume.0'));
    const recordFor = (kind: 'freeze' | 'thaw', path: string) => {
      const record = volumeSignal(true, kind, 0);
      record.fill(0, 8);
      record.write(path, 8, 'latin1');
      return record;
    };
    const link = join(dir, 'volume.0');
    // Frozen, then refused (already frozen: the kernel says EBUSY), thawed, refused (not frozen),
    // and a directory that is not there.
    const records = [recordFor('freeze', link), recordFor('freeze', link), recordFor('thaw', link), recordFor('thaw', link), recordFor('thaw', join(dir, 'none'))];
    writeFileSync(join(dir, 'records'), Buffer.concat(records));
    const answers = await new Promise<string>((resolve, reject) => {
      const agent = spawn('/bin/sh', ['-c', `exec "$1" <"$2" 3>&1`, 'agent', join(GUEST_FILES_DIR, 'agent'), join(dir, 'records')], { stdio: ['ignore', 'pipe', 'inherit'] });
      let output = '';
      agent.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      agent.on('error', reject);
      agent.on('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`the agent ended with ${code}`))));
    });
    assert.equal(answers, 'alto:frozen 0\nalto:frozen 2\nalto:thawed 0\nalto:thawed 2\nalto:thawed 1\n');
    // Thawed: a write goes through.
    writeFileSync(join(mount, 'after'), 'written\n');
  } finally {
    if (mounted) {
      // Should a step above have failed with the filesystem frozen, the unmount would wait forever.
      spawnSync('fsfreeze', ['-u', mount], { stdio: 'ignore' });
      spawnSync('umount', [mount], { stdio: 'ignore' });
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
