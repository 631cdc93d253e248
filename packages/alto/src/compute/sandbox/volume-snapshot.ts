/**
 * @module compute/sandbox/volume-snapshot
 * A consistent copy of a process-sandbox volume while its instance runs (for `alto backup`).
 *
 * The volume is `<dir>/process.ext4`, loop-mounted inside the sandbox's mount namespace. Copying
 * that file as it is gives a torn image: ext4 keeps dirty data and metadata in the kernel's page
 * cache and commits metadata through its journal, so the file lags behind what the app wrote and
 * is caught mid-transaction. Stopping the app's processes (the cgroup freezer) does not help: the
 * dirty pages are the kernel's, written back whenever it likes. So the filesystem itself is
 * frozen (FIFREEZE, fsfreeze(8)) through the sandbox's view of it (`/proc/<pid>/root<mount>`):
 * the kernel writes every dirty page and the whole journal back into the image (through the loop
 * device, into the image file's page cache, which is what a read of the file sees), marks the
 * filesystem clean, and holds every new write (the writer waits in the kernel, as on a slow disk;
 * reads go on). The image is then a cleanly unmounted ext4 as of that moment: `e2fsck -n` passes
 * and no journal is replayed. It is copied (sparse, or a reflink where the host's filesystem has
 * them), and the filesystem thawed.
 *
 * The freeze lasts as long as the copy: instant with a reflink, else about the volume's used
 * bytes at the disk's write speed (holes are skipped); past `maxFreezeMs` the copy is abandoned
 * and the filesystem thawed. The thaw is done by a helper process that holds the mount open and
 * thaws when its input closes, so the filesystem is thawed even when the process copying dies.
 *
 * A microVM's volume (`<dir>/volume.ext4`, attached to its VM) is frozen in its guest and copied by
 * QEMU, asked through the instance that holds it (microvm-volume-backup.ts).
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, existsSync, fstatSync, openSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { findCommand } from './common.js';
import { MICROVM_VOLUME_DISK, requestVolumeBackup } from './microvm-volume-backup.js';

export const PROCESS_VOLUME_IMAGE = 'process.ext4';
const DEFAULT_MAX_FREEZE_MS = 60_000;

/** `how`: what the copy was, when not the image copied while frozen. */
export type VolumeSnapshot = { copied: true; image: string; frozenMs: number; how?: string } | { copied: false; reason: string };

/**
 * Copies the image of the volume in `folder`, held by a running instance, to `destination` with
 * its filesystem frozen. Says why not when no sandbox has it mounted (an instance starting or
 * stopping has none mounted).
 */
export async function snapshotVolumeInUse(folder: string, destination: string, maxFreezeMs = DEFAULT_MAX_FREEZE_MS): Promise<VolumeSnapshot> {
  const image = join(folder, PROCESS_VOLUME_IMAGE);
  if (!existsSync(image)) {
    if (existsSync(join(folder, MICROVM_VOLUME_DISK))) return requestVolumeBackup(folder, destination);
    return { copied: false, reason: 'it holds no disk image yet' };
  }
  const device = loopDeviceOf(realpathSync(image));
  if (!device) return { copied: false, reason: 'no sandbox has it mounted now (its instance is starting or stopping)' };
  const mount = openMountOf(device);
  if (mount === undefined) return { copied: false, reason: 'no sandbox process shows its mount now (its instance is starting or stopping)' };
  try {
    return await copyFrozen(mount, image, destination, maxFreezeMs);
  } finally {
    closeSync(mount);
  }
}

/** `major:minor` of the loop device backed by `file`, if one is. */
function loopDeviceOf(file: string): string | undefined {
  for (const name of readdirSync('/sys/block').filter((entry) => entry.startsWith('loop'))) {
    try {
      if (readFileSync(join('/sys/block', name, 'loop', 'backing_file'), 'utf8').trim() === file) return readFileSync(join('/sys/block', name, 'dev'), 'utf8').trim();
    } catch {
      // Not attached, or detached meanwhile.
    }
  }
  return undefined;
}

/**
 * An open descriptor on the root of the filesystem on `device` as some process mounts it (the
 * sandbox mounts it in its own namespace, which only its processes' /proc/<pid>/root reaches).
 * Its device number is checked once open, so a process gone and its pid reused is no matter.
 */
function openMountOf(device: string): number | undefined {
  const [major, minor] = device.split(':').map(Number);
  const wanted = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12);
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let mounts: string;
    try {
      mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
    } catch {
      continue;
    }
    for (const line of mounts.split('\n')) {
      const fields = line.split(' ');
      if (fields[2] !== device || fields[3] !== '/') continue;
      try {
        const descriptor = openSync(`/proc/${pid}/root${fields[4]}`, constants.O_RDONLY | constants.O_DIRECTORY);
        if (fstatSync(descriptor).dev === wanted) return descriptor;
        closeSync(descriptor);
      } catch {
        // The process ended meanwhile.
      }
    }
  }
  return undefined;
}

async function copyFrozen(mount: number, image: string, destination: string, maxFreezeMs: number): Promise<VolumeSnapshot> {
  const fsfreeze = findCommand('fsfreeze');
  if (!fsfreeze) return { copied: false, reason: 'fsfreeze (util-linux) is not installed on this host' };
  // Freezes, says so, waits for its input to close (the copy done, or the copier gone), thaws.
  const script = `"$1" -f /proc/self/fd/3 || exit 3; echo frozen; read _ignored; exec "$1" -u /proc/self/fd/3`;
  const helper = spawn('/bin/sh', ['-c', script, 'freeze', fsfreeze], { stdio: ['pipe', 'pipe', 'pipe', mount] });
  let errorText = '';
  helper.stderr!.on('data', (chunk: Buffer) => (errorText += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => helper.on('close', (code) => resolve(code)));
  const frozen = await new Promise<boolean>((resolve) => {
    helper.stdout!.once('data', () => resolve(true));
    void exited.then(() => resolve(false));
  });
  if (!frozen) return { copied: false, reason: `its filesystem could not be frozen: ${errorText.trim() || 'fsfreeze failed'}` };
  const frozenAt = performance.now();
  let copyError: string | undefined;
  try {
    copyError = await copySparse(image, destination, maxFreezeMs);
  } finally {
    helper.stdin!.end();
  }
  const frozenMs = performance.now() - frozenAt;
  const thawed = await exited;
  if (thawed !== 0) throw new Error(`thawing the filesystem of ${image} failed: ${errorText.trim()}; thaw it with "fsfreeze -u" on its mount`);
  if (copyError) return { copied: false, reason: copyError };
  return { copied: true, image, frozenMs };
}

/** cp with holes kept (and a reflink where the filesystem has them); an error's text, or undefined. */
function copySparse(from: string, to: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const copy = spawn('cp', ['--reflink=auto', '--sparse=always', from, to], { stdio: ['ignore', 'ignore', 'pipe'] });
    let errorText = '';
    copy.stderr.on('data', (chunk: Buffer) => (errorText += chunk.toString()));
    const timer = setTimeout(() => {
      errorText = `the copy took longer than ${timeoutMs} ms with its filesystem frozen, so it was stopped and the filesystem thawed`;
      copy.kill('SIGKILL');
    }, timeoutMs);
    copy.on('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? undefined : errorText.trim() || `cp ended with ${code}`);
    });
  });
}
