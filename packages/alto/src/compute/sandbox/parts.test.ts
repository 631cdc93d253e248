/**
 * The sandbox's pure parts: OCI `User` resolution against an image's own /etc/passwd and
 * /etc/group, the control channel's parser, shell quoting (checked by a real shell), and the cpio
 * writer (checked by listing the archive with the real `cpio` tool when it is installed), and
 * the microVM guest agent, run on this host as an unprivileged user, with its signal records.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { hasCommand, parseControlLine, resolveUser, shellQuote } from './common.js';
import { buildCpio } from './cpio.js';
import { guestAgent, reseedFailures, signalMessage } from './microvm.js';
import { ensureRootDisk } from './root-disk.js';

const rootfs = mkdtempSync(join(tmpdir(), 'alto-sandbox-parts-'));
mkdirSync(join(rootfs, 'etc'));
writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\nnode:x:1000:1001::/home/node:/bin/sh\n');
writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnode:x:1001:\nstaff:x:50:\n');
after(() => rmSync(rootfs, { recursive: true, force: true }));

test('resolveUser follows the image: names, numbers, groups, defaults', () => {
  assert.deepEqual(resolveUser(rootfs, undefined), { uid: 0, gid: 0 });
  assert.deepEqual(resolveUser(rootfs, 'node'), { uid: 1000, gid: 1001 });
  assert.deepEqual(resolveUser(rootfs, '1000'), { uid: 1000, gid: 1001 });
  assert.deepEqual(resolveUser(rootfs, '4242'), { uid: 4242, gid: 0 });
  assert.deepEqual(resolveUser(rootfs, 'node:staff'), { uid: 1000, gid: 50 });
  assert.deepEqual(resolveUser(rootfs, '7:8'), { uid: 7, gid: 8 });
  for (const bad of ['ghost', 'node:nogroup', '70000']) {
    assert.throws(() => resolveUser(rootfs, bad), (error) => isAltoError(error) && error.status === 400, bad);
  }
});

test('the control channel accepts only its three exact messages', () => {
  assert.deepEqual(parseControlLine('alto:ready'), { kind: 'ready' });
  assert.deepEqual(parseControlLine('alto:started'), { kind: 'started' });
  assert.deepEqual(parseControlLine('alto:exit 137'), { kind: 'exit', code: 137 });
  for (const other of ['alto:exit', 'alto:exit -1', 'alto:exit 1234', 'ready', 'alto:exit 1; rm']) assert.equal(parseControlLine(other), undefined, other);
});

test('shellQuote survives a real shell, quotes and newlines included', () => {
  const words = ["it's", 'a "b" $HOME `x` \\ ;', 'line\nbreak', ''];
  const printed = execFileSync('sh', ['-c', `printf '%s\\0' ${words.map(shellQuote).join(' ')}`]).toString();
  assert.deepEqual(printed.split('\0').slice(0, -1), words);
});

test('buildCpio writes a newc archive the cpio tool reads back', { skip: hasCommand('cpio') ? false : 'cpio is not installed' }, () => {
  const archive = buildCpio([
    { kind: 'dir', path: 'bin' },
    { kind: 'file', path: 'init', data: '#!/bin/sh\necho hi\n', mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
  ]);
  assert.equal(archive.length % 512, 0);
  const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: archive }).toString();
  assert.match(listing, /^drwxr-xr-x .* bin$/m);
  assert.match(listing, /^-rwxr-xr-x .* 18 .* init$/m);
  assert.match(listing, /^lrwxrwxrwx .* bin\/sh -> busybox$/m);
  assert.match(listing, /^crw------- .* 5,\s+1 .* dev\/console$/m);
});

test('the guest agent reads 64-byte records: a reseed is answered on descriptor 3 with what failed, anything else is ignored, and it ends with its input', { skip: process.arch !== 'x64' || !hasCommand('setpriv') }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-guest-agent-'));
  try {
    const agent = join(dir, 'agent');
    writeFileSync(agent, guestAgent()!, { mode: 0o755 });
    const unknown = Buffer.alloc(64, 'x');
    writeFileSync(join(dir, 'input'), Buffer.concat([signalMessage(true, 'reseed'), unknown, signalMessage(true, 'reseed')]));
    // As nobody, so setting this host's clock and reseeding its generator are refused (EPERM),
    // while the agent still reads, writes the seed to /dev/urandom, and answers, saying what
    // failed: 2 (the reseed) + 4 (the clock).
    const answers = execFileSync('sh', ['-c', `setpriv --reuid=65534 --regid=65534 --clear-groups ${agent} < ${dir}/input 3>&1`], { encoding: 'utf8', timeout: 5_000 });
    assert.equal(answers, 'alto:reseeded 6\nalto:reseeded 6\n');
    assert.equal(reseedFailures(6), 'its kernel did not reseed its random generator, its clock was not set');
    assert.equal(reseedFailures(1), 'its random seed was not written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('signal messages: records of 64 bytes for the agent, with the time now; lines for the shell', () => {
  const record = signalMessage(true, 'reseed');
  assert.equal(record.length, 64);
  assert.equal(record.subarray(0, 8).toString('latin1'), 'ALTOSEED');
  assert.ok(Math.abs(Number(record.readBigInt64LE(8)) - Date.now() / 1000) < 5);
  assert.ok(record.readBigInt64LE(16) < 1_000_000_000n);
  assert.notDeepEqual(record.subarray(24, 56), signalMessage(true, 'reseed').subarray(24, 56), 'fresh random bytes each time');
  assert.equal(signalMessage(true, 'term').subarray(0, 8).toString('latin1'), 'ALTOTERM');
  assert.equal(signalMessage(true, 'kill').subarray(0, 8).toString('latin1'), 'ALTOKILL');
  assert.equal(signalMessage(false, 'term').toString(), 'term\n');
  assert.match(signalMessage(false, 'reseed').toString(), /^reseed \d+ (\\[0-7]{3})+\n$/);
});

test('root disks: starts of one image at once share one build, and the image is whole', { skip: !hasCommand('mkfs.ext4') || !hasCommand('e2fsck') }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-root-disk-'));
  try {
    const rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    writeFileSync(join(rootfs, 'bin', 'app'), 'x'.repeat(100_000));
    const cache = join(dir, 'cache');
    const images = await Promise.all(Array.from({ length: 4 }, () => ensureRootDisk(cache, rootfs)));
    assert.equal(new Set(images).size, 1);
    assert.deepEqual(readdirSync(join(cache, 'disks')), [images[0].split('/').pop()], 'one image, no temporary files left');
    execFileSync('e2fsck', ['-n', '-f', images[0]], { stdio: 'pipe' });
    assert.equal(await ensureRootDisk(cache, rootfs), images[0], 'found in the cache after');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
