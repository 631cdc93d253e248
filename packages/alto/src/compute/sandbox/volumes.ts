/**
 * @module compute/sandbox/volumes
 * Volumes: a host folder per volume that keeps an app's files across its instances. Each driver
 * keeps its own layout inside that folder (process: `process.ext4`, a sparse ext4 image the
 * sandbox loop-mounts in its own mount namespace; microvm: `volume.ext4`, a sparse ext4 disk
 * image attached as a virtio-blk device), so one folder belongs to one driver. Either way the
 * volume's size is a filesystem's size, which holds whatever the app writes.
 *
 * Only one running instance may use a volume at a time: two writers would corrupt an ext4 image
 * and race on files. A claim is held in this process (a set of folders) and on disk (`lock`,
 * holding the owner's pid, created exclusively), so a second Alto process on the same data
 * folder is refused too; a lock left by a process that died is taken over.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, lchownSync, chmodSync, writeSync, lstatSync } from 'node:fs';
import { join, posix } from 'node:path';
import { errors } from '../../kit/errors.js';
import { takePidLock } from '../../kit/pid-lock.js';
import { run } from './common.js';
import type { SandboxVolume } from './port.js';

export const DEFAULT_VOLUME_SIZE_MIB = 1024;
const MIN_VOLUME_SIZE_MIB = 16;
const MAX_VOLUME_SIZE_MIB = 1024 * 1024;
const VOLUME_PATH_PATTERN = /^[A-Za-z0-9._/-]+$/;
/** Mount points that belong to the sandbox itself. */
const RESERVED_TOP_LEVELS = new Set(['.alto', 'proc', 'dev', 'sys']);

/** Checks volumes before anything is taken: absolute, distinct, real folders in the image. */
export function validateVolumes(volumes: SandboxVolume[], rootfs: string): void {
  const paths = new Set<string>();
  const dirs = new Set<string>();
  for (const volume of volumes) {
    const { path, dir } = volume;
    if (typeof path !== 'string' || !path.startsWith('/') || !VOLUME_PATH_PATTERN.test(path) || posix.normalize(path) !== path || path === '/' || path.endsWith('/'))
      throw errors.badRequest(`volume path "${path}" must be an absolute, normalized path other than /, of letters, digits and ._- (like /data)`);
    if (RESERVED_TOP_LEVELS.has(path.split('/')[1])) throw errors.badRequest(`volume path "${path}" is reserved for the sandbox; mount it elsewhere`);
    if (paths.has(path)) throw errors.badRequest(`two volumes are mounted at ${path}`);
    paths.add(path);
    if (typeof dir !== 'string' || !dir.startsWith('/')) throw errors.badRequest(`volume folder "${dir}" must be an absolute host path`);
    if (dirs.has(dir)) throw errors.badRequest(`volume folder ${dir} is given twice`);
    dirs.add(dir);
    const size = volume.sizeMiB ?? DEFAULT_VOLUME_SIZE_MIB;
    if (!Number.isInteger(size) || size < MIN_VOLUME_SIZE_MIB || size > MAX_VOLUME_SIZE_MIB)
      throw errors.badRequest(`volume size ${size} MiB must be a whole number from ${MIN_VOLUME_SIZE_MIB} to ${MAX_VOLUME_SIZE_MIB}`);
    assertPlainDirectories(rootfs, path);
  }
}

/**
 * Every part of the mount point that the image already has must be a directory, never a symbolic
 * link: the host mounts onto it before the sandbox starts, and a link could point it elsewhere.
 */
function assertPlainDirectories(rootfs: string, path: string): void {
  let current = rootfs;
  for (const part of path.split('/').filter(Boolean)) {
    current = join(current, part);
    let info;
    try {
      info = lstatSync(current);
    } catch {
      return;
    }
    if (!info.isDirectory()) throw errors.badRequest(`volume path ${path}: ${current.slice(rootfs.length)} in the image is not a directory`);
  }
}

export interface VolumeClaim {
  /** Releases every volume of the claim; safe to call more than once. */
  release(): void;
}

const claimedHere = new Set<string>();

/** Creates the folders and claims them all for one instance, or throws 409 taking none. */
export function claimVolumes(volumes: SandboxVolume[]): VolumeClaim {
  const taken: { dir: string; lock: string }[] = [];
  const release = () => {
    for (const { dir, lock } of taken.splice(0)) {
      rmSync(lock, { force: true });
      claimedHere.delete(dir);
    }
  };
  try {
    for (const volume of volumes) {
      mkdirSync(volume.dir, { recursive: true, mode: 0o700 });
      const dir = realpathSync(volume.dir);
      const lock = join(dir, 'lock');
      if (claimedHere.has(dir)) throw inUse(volume);
      if (!takePidLock(lock)) throw inUse(volume);
      claimedHere.add(dir);
      taken.push({ dir, lock });
    }
  } catch (error) {
    release();
    throw error;
  }
  return { release };
}

/**
 * Claims one volume folder for a copy made in this process (a scheduled backup), as an instance
 * claims it: undefined while an instance of this or another process holds it.
 */
export function claimVolumeForCopy(dir: string): VolumeClaim | undefined {
  try {
    return claimVolumes([{ dir, path: '/backup' }]);
  } catch (error) {
    if ((error as { status?: number }).status === 409) return undefined;
    throw error;
  }
}

function inUse(volume: SandboxVolume) {
  return errors.conflict(`the volume at ${volume.dir} is in use by a running instance, or being copied by "alto backup"; stop it first, or wait for the backup (a volume has one writer at a time)`);
}

/** Moves every owner of a tree from one host id range to another (sizes: the ranges' length). */
export function shiftOwners(path: string, from: number, to: number, count: number): void {
  const stat = lstatSync(path);
  const move = (id: number) => (id >= from && id < from + count ? to + (id - from) : id);
  lchownSync(path, move(stat.uid), move(stat.gid));
  // chown clears set-uid/set-gid bits; put the mode back.
  if (!stat.isSymbolicLink()) chmodSync(path, stat.mode & 0o7777);
  if (stat.isDirectory()) for (const name of readdirSync(path)) shiftOwners(join(path, name), from, to, count);
}

/**
 * Process driver: `<dir>/process.ext4`, a sparse ext4 image of the volume's size, made on first
 * use with its top owned by `owner` (the app's user as the host sees it). A folder from before
 * (`<dir>/data`, whose size nothing held) is moved into it, its owners shifted from the range
 * they had (`legacy`) into the tenant's, and removed once copied; one larger than the volume
 * says so and stays as it is.
 */
export async function ensureProcessVolumeImage(
  volume: SandboxVolume,
  owner: { uid: number; gid: number },
  legacy: { from: number; to: number; count: number },
): Promise<string> {
  const image = join(volume.dir, 'process.ext4');
  if (existsSync(image)) return image;
  const size = volume.sizeMiB ?? DEFAULT_VOLUME_SIZE_MIB;
  const temporary = `${image}.${process.pid}.tmp`;
  rmSync(temporary, { force: true });
  const folder = join(volume.dir, 'data');
  const migrate = existsSync(folder);
  if (migrate && legacy.from !== legacy.to) shiftOwners(folder, legacy.from, legacy.to, legacy.count);
  try {
    await run(
      'mkfs.ext4',
      ['-q', '-F', '-L', 'alto-volume', '-E', `root_owner=${owner.uid}:${owner.gid}`, ...(migrate ? ['-d', folder] : []), temporary, `${size}M`],
      { timeoutMs: 600_000 },
    );
    await removeLostAndFound(temporary);
  } catch (error) {
    rmSync(temporary, { force: true });
    if (migrate) throw errors.badRequest(`the volume at ${volume.dir} holds more than its ${size} MiB (or cannot be copied into its disk image): ${(error as Error).message}`);
    throw error;
  }
  renameSync(temporary, image);
  if (migrate) rmSync(folder, { recursive: true, force: true });
  return image;
}

/**
 * A volume starts empty, as a Docker volume does: mkfs.ext4 leaves a lost+found at the top,
 * owned by root of the host (no id in the sandbox's range), which an app that takes the folder
 * over cannot chown or read (PostgreSQL's entrypoint chowns its data folder, and initdb refuses
 * a folder that is not empty). e2fsck recreates it should it ever need one.
 */
async function removeLostAndFound(image: string): Promise<void> {
  await run('debugfs', ['-w', '-R', 'rmdir lost+found', image], { timeoutMs: 60_000 });
}

/**
 * Resolves once no loop device is backed by any of `files`: a sandbox's loop mounts go with its
 * mount namespace, a moment after its last process, and a volume mounted twice at once would be
 * corrupted, so the next instance waits for that moment.
 */
export async function waitUntilDetached(files: string[], timeoutMs = 30_000): Promise<void> {
  if (files.length === 0) return;
  const wanted = new Set(files.map((file) => (existsSync(file) ? realpathSync(file) : file)));
  const attached = () => {
    let names: string[];
    try {
      names = readdirSync('/sys/block').filter((name) => name.startsWith('loop'));
    } catch {
      return false;
    }
    return names.some((name) => {
      try {
        return wanted.has(readFileSync(join('/sys/block', name, 'loop', 'backing_file'), 'utf8').trim());
      } catch {
        return false;
      }
    });
  };
  const deadline = Date.now() + timeoutMs;
  while (attached()) {
    if (Date.now() > deadline) throw new Error(`a loop device still holds ${[...wanted].join(', ')} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** microvm driver: `<dir>/volume.ext4`, made sparse with mkfs.ext4 on first use. */
export async function ensureVolumeDisk(volume: SandboxVolume): Promise<string> {
  const disk = join(volume.dir, 'volume.ext4');
  if (existsSync(disk)) return disk;
  const temporary = `${disk}.${process.pid}.tmp`;
  rmSync(temporary, { force: true });
  const size = volume.sizeMiB ?? DEFAULT_VOLUME_SIZE_MIB;
  // A journal: the disk outlives instances, and one that is killed must leave it consistent.
  await run('mkfs.ext4', ['-q', '-F', '-L', 'alto-volume', '-E', 'root_owner=0:0', temporary, `${size}M`], { timeoutMs: 120_000 });
  await removeLostAndFound(temporary);
  renameSync(temporary, disk);
  return disk;
}
