/**
 * @module compute/functions/source-archive
 * A function's source, kept as one object in the objects port (on disk by default, in the S3
 * bucket with `--objects`), so another process of the same cloud, which shares the function's
 * record but not this node's image store, can build it again. The object is a gzipped tar of the
 * folder the build read (the inline file, the uploaded folder, or the clone without `.git`),
 * written after a build that succeeded and named afresh each time, so the record points to the
 * source of the version that serves.
 *
 * The objects live in the namespace `_functions/<projectId>`: a tenant's space is
 * `<projectId>/<environment>`, and neither a project id (a UUID) nor an environment name (lower
 * case letters, digits and dashes) is `_functions`, so no key, presigned URL or public read of
 * the space block reaches them. They are private and are not counted in the project's space.
 *
 * An archive holds at most MAX_UPLOAD_FILES files and MAX_UPLOAD_BYTES of content, the bounds of
 * an uploaded folder; a larger clone is not kept (the build log says so). Both ways it streams:
 * packing reads one file at a time, unpacking writes each entry as it arrives and stops at the
 * same bounds, so neither holds more than a chunk in memory. Unpacking trusts nothing in the
 * archive: names must stay inside the target, links other than symlinks are refused, and
 * symlinks are made last, so no entry is written through one.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink, symlink } from 'node:fs/promises';
import { dirname, join, posix, sep } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { extract as tarExtract, pack, type Header } from 'tar-stream';
import { errors } from '../../kit/errors.js';
import type { ObjectStore } from '../../store/objects/port.js';
import { isInside } from './confine.js';
import { MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES } from './source.js';

/** The first part of the functions' namespaces: no project id or environment name can be it. */
export const SOURCE_NAMESPACE_ROOT = '_functions';
const ARCHIVE_CONTENT_TYPE = 'application/gzip';
const TAR_BLOCK = 512;
/** A fixed time, so the same folder makes the same archive. */
const MTIME = new Date(0);
const LIST_PAGE = 1000;

type ArchiveEntry =
  | { type: 'directory'; path: string; mode: number }
  | { type: 'file'; path: string; mode: number; size: number; from: string }
  | { type: 'symlink'; path: string; target: string };

/** What `keep` did: the object's name, or why the source was not kept. */
export type KeptSource = { kept: true; name: string; files: number; bytes: number } | { kept: false; reason: string };

export function sourceNamespace(projectId: string): string {
  return `${SOURCE_NAMESPACE_ROOT}/${projectId}`;
}

export class SourceArchives {
  constructor(private readonly objects: ObjectStore) {}

  /**
   * Packs `folder` (leaving out the top-level names in `leaveOut`) into a new object under the
   * function's id; `{ kept: false }` when it is larger than an upload may be.
   */
  async keep(projectId: string, functionId: string, folder: string, leaveOut: string[] = []): Promise<KeptSource> {
    const listed = await listFolder(folder, leaveOut);
    if ('tooLarge' in listed) return { kept: false, reason: listed.tooLarge };
    const name = `${functionId}/${Date.now().toString(36)}-${randomBytes(6).toString('hex')}.tar.gz`;
    const entries = listed.entries;
    const tarBytes = entries.reduce((total, entry) => total + TAR_BLOCK + (entry.type === 'file' ? Math.ceil(entry.size / TAR_BLOCK) * TAR_BLOCK : 0), 2 * TAR_BLOCK);
    // gzip grows incompressible input by a few bytes per 16 KiB block: this bound is never reached by a sound archive.
    const maxBytes = tarBytes + Math.ceil(tarBytes / 1000) + 1024;
    const body = new PassThrough();
    const archive = pack();
    const abort = new AbortController();
    const failed = (error: unknown) => {
      if (!abort.signal.aborted) abort.abort(error);
      throw error;
    };
    // A failure anywhere stops every part: the object is written whole or not at all.
    const settled = await Promise.allSettled([
      writeEntries(archive, entries, abort.signal).catch(failed),
      pipeline(archive, createGzip(), body, { signal: abort.signal }).catch(failed),
      this.objects.put(sourceNamespace(projectId), name, body, { contentType: ARCHIVE_CONTENT_TYPE, visibility: 'private', maxBytes }).catch(failed),
    ]);
    const failure = settled.find((result) => result.status === 'rejected');
    if (failure) throw abort.signal.reason ?? (failure as PromiseRejectedResult).reason;
    return { kept: true, name, files: entries.filter((entry) => entry.type === 'file').length, bytes: entries.reduce((total, entry) => total + (entry.type === 'file' ? entry.size : 0), 0) };
  }

  /** Unpacks the archive `name` into `folder` (which exists and is empty); 503 when the object is gone. */
  async restore(projectId: string, name: string, folder: string): Promise<void> {
    const read = await this.objects.get(sourceNamespace(projectId), name);
    if (!read) throw errors.unavailable(`the stored source of this function (${name}) is missing from the objects store; deploy it again with function/Update`);
    await unpack(read.body, folder);
  }

  /** Removes one archive (a missing one is not an error). */
  async remove(projectId: string, name: string): Promise<void> {
    if (name) await this.objects.delete(sourceNamespace(projectId), name);
  }

  /** Removes every archive of a function, also those a crash left behind. */
  async removeFunction(projectId: string, functionId: string): Promise<void> {
    await this.removeNames(projectId, `${functionId}/`);
  }

  /** Removes every archive of a project's functions. */
  async removeProject(projectId: string): Promise<void> {
    await this.removeNames(projectId);
  }

  private async removeNames(projectId: string, prefix?: string): Promise<void> {
    const namespace = sourceNamespace(projectId);
    // Deleting as it goes: each page starts after the last name seen.
    let startAfter: string | undefined;
    do {
      const page = await this.objects.list(namespace, { prefix, startAfter, limit: LIST_PAGE });
      for (const info of page.objects) await this.objects.delete(namespace, info.name);
      startAfter = page.nextStartAfter;
    } while (startAfter);
  }
}

/** The folder's entries (folders before what they hold, names in order), or why it is too large. */
async function listFolder(root: string, leaveOut: string[]): Promise<{ entries: ArchiveEntry[] } | { tooLarge: string }> {
  const entries: ArchiveEntry[] = [];
  let files = 0;
  let bytes = 0;
  const walk = async (folder: string, relative: string): Promise<string | undefined> => {
    const names = (await readdir(folder)).sort();
    for (const name of names) {
      if (relative === '' && leaveOut.includes(name)) continue;
      const path = join(folder, name);
      const entryPath = relative ? `${relative}/${name}` : name;
      const stats = await lstat(path);
      if (stats.isSymbolicLink()) entries.push({ type: 'symlink', path: entryPath, target: await readlink(path) });
      else if (stats.isDirectory()) {
        entries.push({ type: 'directory', path: `${entryPath}/`, mode: stats.mode & 0o755 });
        const refusal = await walk(path, entryPath);
        if (refusal) return refusal;
      } else if (stats.isFile()) {
        files += 1;
        bytes += stats.size;
        if (files > MAX_UPLOAD_FILES) return `it holds more than ${MAX_UPLOAD_FILES} files`;
        if (bytes > MAX_UPLOAD_BYTES) return `its files add up to more than ${MAX_UPLOAD_BYTES} bytes`;
        entries.push({ type: 'file', path: entryPath, mode: stats.mode & 0o755, size: stats.size, from: path });
      }
      // Sockets, FIFOs and devices are not source.
    }
    return undefined;
  };
  const refusal = await walk(root, '');
  return refusal ? { tooLarge: refusal } : { entries };
}

async function writeEntries(archive: ReturnType<typeof pack>, entries: ArchiveEntry[], signal: AbortSignal): Promise<void> {
  // An archive destroyed half way may never call an entry back: stop waiting then.
  const aborted = new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
  aborted.catch(() => undefined);
  for (const entry of entries) {
    signal.throwIfAborted();
    if (entry.type === 'directory') archive.entry({ name: entry.path, type: 'directory', mode: entry.mode, mtime: MTIME });
    else if (entry.type === 'symlink') archive.entry({ name: entry.path, type: 'symlink', linkname: entry.target, mtime: MTIME });
    else {
      let sink!: ReturnType<typeof archive.entry>;
      // Called once the entry is whole in the archive, or with the reason it is not.
      const written = new Promise<void>((resolve, reject) => {
        sink = archive.entry({ name: entry.path, type: 'file', mode: entry.mode, size: entry.size, mtime: MTIME }, (error) => (error ? reject(error) : resolve()));
      });
      // A file that changed size since it was listed fails its entry, and so the archive.
      for await (const chunk of createReadStream(entry.from, { signal })) {
        if (!sink.write(chunk)) await once(sink as unknown as NodeJS.EventEmitter, 'drain', { signal });
      }
      sink.end(null);
      written.catch(() => undefined);
      await Promise.race([written, aborted]);
    }
  }
  archive.finalize();
}

/** Where an entry goes, or a 400 when its name leaves the folder. */
function targetOf(folder: string, name: string): string {
  const normalized = posix.normalize(name).replace(/\/+$/, '');
  if (!normalized || normalized === '.' || normalized.startsWith('/') || normalized === '..' || normalized.startsWith('../') || name.includes('\0'))
    throw errors.badRequest(`the stored source holds "${name.slice(0, 200)}", a path outside its folder`);
  const target = join(folder, ...normalized.split('/'));
  if (!isInside(target, folder) || target === folder) throw errors.badRequest(`the stored source holds "${name.slice(0, 200)}", a path outside its folder`);
  return target;
}

async function unpack(body: Readable, folder: string): Promise<void> {
  const extract = tarExtract();
  const feeding = pipeline(body, createGunzip(), extract as unknown as NodeJS.WritableStream);
  const symlinks: Array<{ target: string; link: string }> = [];
  let files = 0;
  let bytes = 0;
  try {
    for await (const raw of extract) {
      const entry = raw as unknown as Readable & { header: Header };
      const { header } = entry;
      const target = targetOf(folder, header.name);
      if (header.type === 'directory') {
        await mkdir(target, { recursive: true, mode: 0o755 });
        entry.resume();
      } else if (header.type === 'file' || header.type === 'contiguous-file') {
        files += 1;
        bytes += header.size ?? 0;
        if (files > MAX_UPLOAD_FILES || bytes > MAX_UPLOAD_BYTES) throw errors.badRequest(`the stored source is larger than an upload may be (${MAX_UPLOAD_FILES} files, ${MAX_UPLOAD_BYTES} bytes)`);
        await mkdir(dirname(target), { recursive: true });
        await pipeline(entry, createWriteStream(target, { mode: (header.mode ?? 0o644) & 0o755, flags: 'wx' }));
      } else if (header.type === 'symlink' && header.linkname) {
        symlinks.push({ target: header.linkname, link: target });
        entry.resume();
      } else {
        throw errors.badRequest(`the stored source holds "${header.name.slice(0, 200)}" of type ${header.type}; only files, folders and symlinks are kept`);
      }
    }
    await feeding;
  } catch (error) {
    body.destroy();
    await feeding.catch(() => undefined);
    throw error;
  }
  // Last, so no entry above was written through a link; the build's confinement checks where they lead.
  for (const { target, link } of symlinks) {
    await mkdir(dirname(link), { recursive: true });
    await symlink(target.split('/').join(sep), link);
  }
}
