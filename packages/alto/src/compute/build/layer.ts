/**
 * @module compute/build/layer
 * The layers a build writes: uncompressed tars (the image store's
 * `application/vnd.oci.image.layer.v1.tar`, so the blob digest is also the diff id) streamed
 * with tar-stream, every entry's time set to the epoch so the same changes always make the same
 * layer, deletions as OCI whiteouts (`.wh.<name>`).
 *
 * `snapshotChanges` reads what one RUN step changed: the step's writable layer (the ext4 disk the
 * process sandbox kept, whose `upper/` is overlayfs's record of every change) is mounted
 * read-only on the host, and overlaid read-only on the root the step started from, so the
 * kernel itself says what the step's root looks like now. Every path in `upper/` changed; a
 * path of the old root missing from the new view was deleted (an overlayfs whiteout, or a folder
 * replaced whole); the content is read from the new view. Owners are moved back from the
 * tenant's host id range to the ids inside the image.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, lstatSync, mkdirSync, readdirSync, readlinkSync, rmSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { pack, type Pack } from 'tar-stream';
import { run } from '../sandbox/common.js';
import { ID_COUNT } from '../sandbox/id-ranges.js';

export const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar';

/** The time every entry of a built layer carries (SOURCE_DATE_EPOCH = 0). */
export const LAYER_TIME = new Date(0);

/** One entry of a layer: paths relative to the image root, no leading `/`. */
export type LayerEntry =
  | { type: 'directory'; path: string; mode: number; uid: number; gid: number }
  | { type: 'file'; path: string; mode: number; uid: number; gid: number; content: Buffer | { file: string; size: number } }
  | { type: 'symlink'; path: string; target: string; uid: number; gid: number }
  | { type: 'whiteout'; path: string };

export interface WrittenLayer {
  /** The tar on disk. */
  path: string;
  digest: string;
  size: number;
}

/** Top-level folders of the sandbox itself, never part of a layer. */
const SANDBOX_PATHS = new Set(['.alto', 'dev', 'proc', 'sys']);

/** Streams entries as a tar to `path`, hashing it on the way. */
export async function writeLayer(path: string, entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>): Promise<WrittenLayer> {
  const archive = pack();
  const output = createWriteStream(path);
  const hash = createHash('sha256');
  let size = 0;
  archive.on('data', (chunk: unknown) => {
    if (!Buffer.isBuffer(chunk)) return;
    hash.update(chunk);
    size += chunk.length;
  });
  const written = new Promise<void>((resolve, reject) => {
    output.on('finish', resolve);
    output.on('error', reject);
    archive.on('error', reject);
  });
  archive.pipe(output);
  try {
    for await (const entry of entries) await addEntry(archive, entry);
    archive.finalize();
    await written;
  } catch (error) {
    archive.destroy();
    output.destroy();
    rmSync(path, { force: true });
    throw error;
  }
  return { path, digest: `sha256:${hash.digest('hex')}`, size };
}

async function addEntry(archive: Pack, entry: LayerEntry): Promise<void> {
  const mtime = LAYER_TIME;
  if (entry.type === 'whiteout') {
    const slash = entry.path.lastIndexOf('/');
    const name = `${entry.path.slice(0, slash + 1)}.wh.${entry.path.slice(slash + 1)}`;
    await entryDone(archive, { name, type: 'file', mode: 0o644, size: 0, mtime, uid: 0, gid: 0 }, Buffer.alloc(0));
    return;
  }
  if (entry.type === 'directory') {
    await entryDone(archive, { name: `${entry.path}/`, type: 'directory', mode: entry.mode, mtime, uid: entry.uid, gid: entry.gid });
    return;
  }
  if (entry.type === 'symlink') {
    await entryDone(archive, { name: entry.path, type: 'symlink', linkname: entry.target, mode: 0o777, mtime, uid: entry.uid, gid: entry.gid });
    return;
  }
  const content = entry.content;
  if (Buffer.isBuffer(content)) {
    await entryDone(archive, { name: entry.path, type: 'file', mode: entry.mode, size: content.length, mtime, uid: entry.uid, gid: entry.gid }, content);
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const sink = archive.entry({ name: entry.path, type: 'file', mode: entry.mode, size: content.size, mtime, uid: entry.uid, gid: entry.gid }, (error) => (error ? reject(error) : resolve()));
    const source = createReadStream(content.file);
    source.on('error', reject);
    source.pipe(sink as unknown as NodeJS.WritableStream);
  });
}

function entryDone(archive: Pack, header: Parameters<Pack['entry']>[0], content?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const callback = (error?: Error | null) => (error ? reject(error) : resolve());
    if (content) archive.entry(header, content, callback);
    else archive.entry(header, callback);
  });
}

/** Entries for what is at `path` (in a host folder) and, for a folder, everything below it. */
export function* entriesOf(hostPath: string, layerPath: string, owner: (stats: Stats) => { uid: number; gid: number }): Generator<LayerEntry> {
  const stats = lstatSync(hostPath);
  const { uid, gid } = owner(stats);
  const mode = stats.mode & 0o7777;
  if (stats.isDirectory()) {
    yield { type: 'directory', path: layerPath, mode, uid, gid };
    for (const name of readdirSync(hostPath).sort()) yield* entriesOf(join(hostPath, name), `${layerPath}/${name}`, owner);
  } else if (stats.isSymbolicLink()) yield { type: 'symlink', path: layerPath, target: readlinkSync(hostPath), uid, gid };
  else if (stats.isFile()) yield { type: 'file', path: layerPath, mode, uid, gid, content: { file: hostPath, size: stats.size } };
  // Devices, FIFOs and sockets are not kept (a sandbox brings its own /dev).
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function isWhiteout(stats: Stats): boolean {
  return stats.isCharacterDevice() && stats.rdev === 0;
}

/**
 * Writes the changes a RUN step made as a layer at `layerPath`. `disk` is the step's kept ext4
 * writable layer, `before` the root folder it started from; `workDir` an empty folder for the
 * two read-only mounts, which are gone when this returns.
 */
export async function snapshotChanges(disk: string, before: string, workDir: string, layerPath: string): Promise<WrittenLayer> {
  const diskMount = join(workDir, 'disk');
  const merged = join(workDir, 'merged');
  mkdirSync(diskMount, { recursive: true });
  mkdirSync(merged, { recursive: true });
  await mountWithRetries(['-t', 'ext4', '-o', 'loop,ro,noload,nosuid,nodev,noexec', disk, diskMount]);
  try {
    const upper = join(diskMount, 'upper');
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${upper}:${before}`, merged]);
    try {
      // stage 1 gives the upper folder to root of the tenant's range: the first id of it.
      const base = lstatSync(upper).uid;
      const owner = (stats: Stats) => ({ uid: unshift(stats.uid, base), gid: unshift(stats.gid, base) });
      return await writeLayer(layerPath, changedEntries(upper, merged, before, '', owner));
    } finally {
      await run('umount', [merged]).catch(() => run('umount', ['-l', merged]));
    }
  } finally {
    await run('umount', [diskMount]).catch(() => run('umount', ['-l', diskMount]));
  }
}

function unshift(id: number, base: number): number {
  return id >= base && id < base + ID_COUNT ? id - base : id;
}

function* changedEntries(upper: string, merged: string, before: string, relative: string, owner: (stats: Stats) => { uid: number; gid: number }): Generator<LayerEntry> {
  const upperFolder = join(upper, relative);
  for (const name of readdirSync(upperFolder).sort()) {
    if (!relative && SANDBOX_PATHS.has(name)) continue;
    const path = relative ? `${relative}/${name}` : name;
    const changed = lstatSync(join(upperFolder, name));
    const old = lstatOrUndefined(join(before, path));
    if (isWhiteout(changed)) {
      if (old) yield { type: 'whiteout', path };
      continue;
    }
    const now = lstatOrUndefined(join(merged, path));
    if (!now) continue;
    if (!now.isDirectory()) {
      yield* entriesOf(join(merged, path), path, owner);
      continue;
    }
    if (!old?.isDirectory()) {
      // A new folder (or one that replaced a file): all of it, as the new view shows it.
      yield* entriesOf(join(merged, path), path, owner);
      continue;
    }
    const { uid, gid } = owner(now);
    yield { type: 'directory', path, mode: now.mode & 0o7777, uid, gid };
    // Children of the old folder the new view lacks were deleted: one whiteout each, whether
    // overlayfs recorded a whiteout or replaced the folder whole (an opaque folder).
    for (const child of readdirSync(join(before, path)).sort()) {
      if (lstatOrUndefined(join(merged, path, child))) continue;
      if (lstatOrUndefined(join(upperFolder, name, child))) continue; // its own whiteout, met below
      yield { type: 'whiteout', path: `${path}/${child}` };
    }
    yield* changedEntries(upper, merged, before, path, owner);
  }
}

/** Attaching a loop device can fail for a moment while sandboxes attach or release theirs. */
async function mountWithRetries(args: string[]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await run('mount', args);
      return;
    } catch (error) {
      if (attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, attempt * 25));
    }
  }
}

/** A fresh name beside `path` for a temporary file or folder. */
export function temporaryName(path: string): string {
  return `${path}.${randomBytes(4).toString('hex')}.tmp`;
}
