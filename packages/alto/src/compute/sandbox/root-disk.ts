/**
 * @module compute/sandbox/root-disk
 * The microVM's root disk: an ext4 image made from the unpacked root filesystem with
 * `mkfs.ext4 -d` (e2fsprogs), which copies owners, modes and symlinks without mounting anything.
 * One image is built per root filesystem and cached; every instance boots a private sparse copy
 * of it (its writes never reach the cache nor another instance). No journal: the disk lives and
 * dies with its instance.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './common.js';

/** Free room on top of the image's own files, for what the app writes (sparse: costs nothing until used). */
const FREE_SPACE_BYTES = 1024 * 1024 * 1024;

function treeBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += 4096 + treeBytes(path);
    else total += Math.max(lstatSync(path).size, 4096);
  }
  return total;
}

/** Images being built, by path: instances of one image started at once share one build. */
const building = new Map<string, Promise<string>>();

/**
 * Builds (or finds) the cached disk image for a root filesystem directory. The build writes a
 * temporary file of its own and renames it into place, so another Alto sharing the cache never
 * sees a half-written image; within this one, concurrent starts wait for the same build.
 */
export function ensureRootDisk(cacheDir: string, rootfs: string): Promise<string> {
  const real = realpathSync(rootfs);
  // The images helper never changes an unpacked tree in place, so its path and mtime name it.
  const key = createHash('sha256').update(`${real}\n${statSync(real).mtimeMs}`).digest('hex').slice(0, 20);
  const dir = join(cacheDir, 'disks');
  mkdirSync(dir, { recursive: true });
  const image = join(dir, `${key}.ext4`);
  if (existsSync(image)) return Promise.resolve(image);
  let build = building.get(image);
  if (!build) {
    build = buildRootDisk(real, image).finally(() => building.delete(image));
    building.set(image, build);
  }
  return build;
}

async function buildRootDisk(real: string, image: string): Promise<string> {
  const bytes = treeBytes(real);
  const sizeMiB = Math.ceil((bytes * 1.3 + FREE_SPACE_BYTES) / (1024 * 1024));
  const temporary = `${image}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    await run('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-E', 'lazy_itable_init=1,root_owner=0:0', '-L', 'alto-root', '-d', real, temporary, `${sizeMiB}M`], {
      timeoutMs: 600_000,
    });
    renameSync(temporary, image);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
  return image;
}

/** A private copy of a disk image: reflinked where the filesystem can, sparse otherwise. */
export async function copyDisk(source: string, target: string): Promise<void> {
  await run('cp', ['--reflink=auto', '--sparse=always', source, target]);
}
