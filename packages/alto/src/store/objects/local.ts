/**
 * @module store/objects/local
 * The embedded object adapter: one file per object under `<root>/<projectId>/<environment>/`,
 * its name's folders as real folders. Each file is a fixed 4 KiB header (magic, then the
 * metadata as JSON) followed by the content, so content and metadata change together in one
 * rename and no second file can disagree with the first.
 *
 * A write streams into `<root>/.tmp/<pid>-<random>` (same file system), writes the header,
 * fsyncs, then renames over the object (or hard-links, for create-only writes, so an existing
 * object is never replaced) and fsyncs the folder. A crash or a failed body at any point leaves
 * the old object or none, never a torn one; the temporary file is swept at the next start.
 *
 * Names map to paths part by part: `%`, `~` and `\` are percent-escaped, and object files end
 * in `~` (which no escaped part does), so `a` (an object) and `a/b` (under folder `a`) live side
 * by side as S3 allows. `checkObjectName` refuses empty, `.` and `..` parts, and every path is
 * checked to stay inside its namespace folder before it is used.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, type Dirent, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { link, mkdir, open, readdir, rename, rm, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errors } from '../../kit/errors.js';
import {
  checkObjectName,
  compareNames,
  objectExistsDetail,
  resolveRange,
  tooLargeDetail,
  type ListOptions,
  type ObjectInfo,
  type ObjectPage,
  type ObjectRead,
  type ObjectStore,
  type PutOptions,
  type RangeRequest,
  type Visibility,
} from './port.js';

/** Bytes before the content: the magic, the metadata's length, the metadata. */
export const HEADER_BYTES = 4096;
const MAGIC = Buffer.from('ALTOOBJ1');
const OBJECT_SUFFIX = '~';
export const TEMPORARY_FOLDER = '.tmp';
/** Longest file name most file systems allow (ext4, xfs, btrfs). */
const MAX_FILE_NAME_BYTES = 255;
/** A project id or an environment name: never `.`, `..` or a path. */
const NAMESPACE_PART = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const MAX_CONTENT_TYPE_BYTES = 255;
/** Headers read at once while listing. */
const LIST_READ_CONCURRENCY = 32;

interface Header {
  v: 1;
  name: string;
  size: number;
  contentType: string;
  visibility: Visibility;
  createdAt: number;
  modifiedAt: number;
  sha256: string;
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function encodePart(part: string): string {
  return part.replace(/[%~\\]/g, (character) => `%${character.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

function decodePart(encoded: string): string {
  return decodeURIComponent(encoded);
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function syncFolder(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class LocalObjectStore implements ObjectStore {
  readonly backend = 'local';
  private readonly temporaryFolder: string;

  private constructor(
    readonly root: string,
    private readonly now: () => number,
  ) {
    this.temporaryFolder = join(root, TEMPORARY_FOLDER);
  }

  /** Opens (creating) the store at `root` and sweeps what crashed writers left behind. */
  static async open(root: string, now: () => number = Date.now): Promise<LocalObjectStore> {
    const store = new LocalObjectStore(root, now);
    await mkdir(store.temporaryFolder, { recursive: true, mode: 0o700 });
    await store.sweepTemporaryFiles();
    return store;
  }

  /**
   * Removes temporary files and deleted projects of processes that are no longer running. Those
   * of live processes stay: another Alto may share this data folder and be writing right now.
   */
  async sweepTemporaryFiles(): Promise<number> {
    let removed = 0;
    for (const entry of await readdir(this.temporaryFolder)) {
      const pid = Number(entry.split('-')[0]);
      if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || isProcessAlive(pid))) continue;
      await rm(join(this.temporaryFolder, entry), { recursive: true, force: true });
      removed++;
    }
    return removed;
  }

  private namespaceFolder(namespace: string): string {
    const parts = namespace.split('/');
    if (parts.length !== 2 || !parts.every((part) => NAMESPACE_PART.test(part))) {
      throw errors.internal(`"${namespace}" is not a namespace of the form <project>/<environment>`);
    }
    return join(this.root, ...parts);
  }

  /** The file of an object: validated, escaped, and checked to lie inside the namespace folder. */
  private objectPath(namespace: string, name: string): string {
    checkObjectName(name);
    const folder = this.namespaceFolder(namespace);
    const parts = name.split('/').map(encodePart);
    parts[parts.length - 1] += OBJECT_SUFFIX;
    for (const part of parts) {
      if (Buffer.byteLength(part) > MAX_FILE_NAME_BYTES) {
        throw errors.badRequest(
          `name: the part "${decodePart(part).slice(0, 40)}…" is too long once "%", "~" and "\\" are escaped (3 bytes each); shorten it`,
        );
      }
    }
    const path = join(folder, ...parts);
    if (!path.startsWith(folder + sep)) throw errors.badRequest(`name: "${name}" does not name an object inside this space`);
    return path;
  }

  async put(namespace: string, name: string, body: Readable, options: PutOptions): Promise<ObjectInfo> {
    const { maxBytes, expectedBytes } = options;
    const temporary = join(this.temporaryFolder, `${process.pid}-${randomBytes(8).toString('hex')}`);
    let target: string;
    try {
      target = this.objectPath(namespace, name);
      if (Buffer.byteLength(options.contentType) > MAX_CONTENT_TYPE_BYTES) {
        throw errors.badRequest(`contentType: longer than ${MAX_CONTENT_TYPE_BYTES} bytes`);
      }
      if (maxBytes !== undefined && expectedBytes !== undefined && expectedBytes > maxBytes) {
        throw errors.payloadTooLarge(tooLargeDetail(maxBytes));
      }
      // Saves receiving a body only to refuse it; the link in `commit` is what makes it safe.
      if (options.ifAbsent && (await this.readInfo(target))) throw errors.conflict(objectExistsDetail(name));
    } catch (error) {
      body.destroy(); // nobody will read it now
      throw error;
    }
    let handle: FileHandle | undefined;
    let file: WriteStream | undefined;
    try {
      const hash = createHash('sha256');
      let size = 0;
      await pipeline(
        body,
        async function* count(source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            size += chunk.length;
            if (maxBytes !== undefined && size > maxBytes) throw errors.payloadTooLarge(tooLargeDetail(maxBytes));
            if (expectedBytes !== undefined && size > expectedBytes) {
              throw errors.badRequest(`the body is longer than the ${expectedBytes} bytes announced`);
            }
            hash.update(chunk);
            yield chunk;
          }
        },
        // The stream opens (creating) and closes the file; the header and fsync come after.
        (file = createWriteStream(temporary, { flags: 'wx', mode: 0o600, start: HEADER_BYTES })),
      );
      if (expectedBytes !== undefined && size !== expectedBytes) {
        throw errors.badRequest(`the body ended after ${size} of the ${expectedBytes} bytes announced`);
      }
      const now = this.now();
      const previous = options.ifAbsent ? undefined : await this.readInfo(target);
      const sha256 = hash.digest('hex');
      const info: ObjectInfo = {
        name,
        size,
        contentType: options.contentType,
        visibility: options.visibility,
        createdAt: previous?.createdAt ?? now,
        modifiedAt: now,
        sha256,
        etag: sha256,
      };
      handle = await open(temporary, 'r+');
      await handle.write(encodeHeader(info), 0, HEADER_BYTES, 0);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await this.commit(temporary, target, name, options.ifAbsent ?? false);
      return info;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw errors.unavailable(`the server's disk is full, so "${name}" was not stored; any previous version is unchanged`);
      }
      throw error;
    } finally {
      await handle?.close().catch(() => undefined);
      // A body that failed early can end the pipeline before the stream has even created the
      // file: wait until the stream is closed, or the unlink below would come before the file.
      if (file && !file.closed) await once(file, 'close').catch(() => undefined);
      // After a rename it is gone already; after a link or a failure this removes it.
      await unlink(temporary).catch(() => undefined);
    }
  }

  /** Moves a finished temporary file into place and makes the new folder entries durable. */
  private async commit(temporary: string, target: string, name: string, ifAbsent: boolean): Promise<void> {
    const folder = dirname(target);
    for (let attempt = 0; ; attempt++) {
      const created = await mkdir(folder, { recursive: true, mode: 0o700 });
      try {
        if (ifAbsent) await link(temporary, target);
        else await rename(temporary, target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' && ifAbsent) throw errors.conflict(objectExistsDetail(name));
        // A delete may have removed the folder, empty for a moment, between mkdir and rename.
        if (code === 'ENOENT' && attempt < 5) continue;
        throw error;
      }
      const toSync = [folder];
      if (created !== undefined) {
        // New folders are entries in their parents: sync each, up to the parent of the first.
        let current = folder;
        while (current !== created && current.length > this.root.length) {
          current = dirname(current);
          toSync.push(current);
        }
        toSync.push(dirname(created));
      }
      for (const path of toSync) await syncFolder(path);
      return;
    }
  }

  private async readHeader(handle: FileHandle, path: string): Promise<ObjectInfo> {
    const buffer = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, HEADER_BYTES, 0);
    const length = bytesRead === HEADER_BYTES && buffer.subarray(0, MAGIC.length).equals(MAGIC) ? buffer.readUInt32BE(8) : 0;
    let header: Header | undefined;
    try {
      if (length > 0 && 12 + length <= HEADER_BYTES) header = JSON.parse(buffer.subarray(12, 12 + length).toString('utf8')) as Header;
    } catch {
      header = undefined;
    }
    const { size } = await handle.stat();
    if (!header || header.v !== 1 || size !== HEADER_BYTES + header.size) {
      // Only something outside Alto can do this: writes are whole or absent.
      throw errors.internal(`the object file ${path} is damaged (not written by Alto, or changed since)`);
    }
    return {
      name: header.name,
      size: header.size,
      contentType: header.contentType,
      visibility: header.visibility,
      createdAt: header.createdAt,
      modifiedAt: header.modifiedAt,
      sha256: header.sha256,
      etag: header.sha256,
    };
  }

  private async readInfo(path: string): Promise<ObjectInfo | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    try {
      return await this.readHeader(handle, path);
    } finally {
      await handle.close();
    }
  }

  async get(namespace: string, name: string, range?: RangeRequest): Promise<ObjectRead | undefined> {
    const path = this.objectPath(namespace, name);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    try {
      // Header and content come from the same open file, so a concurrent overwrite (a rename
      // onto this name) cannot mix two versions: this read finishes on the old one.
      const info = await this.readHeader(handle, path);
      const resolved = range ? resolveRange(range, info.size) : undefined;
      if (info.size === 0) {
        await handle.close();
        return { info, body: Readable.from([]), range: resolved };
      }
      const first = resolved?.first ?? 0;
      const last = resolved?.last ?? info.size - 1;
      const body = handle.createReadStream({ start: HEADER_BYTES + first, end: HEADER_BYTES + last });
      return { info, body, range: resolved };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async head(namespace: string, name: string): Promise<ObjectInfo | undefined> {
    return this.readInfo(this.objectPath(namespace, name));
  }

  async list(namespace: string, options: ListOptions): Promise<ObjectPage> {
    const folder = this.namespaceFolder(namespace);
    const prefix = options.prefix ?? '';
    const found: { name: string; path: string }[] = [];
    for await (const entry of this.walk(folder, '', prefix, options.startAfter || undefined)) {
      found.push(entry);
      if (found.length > options.limit) break;
    }
    const page = found.slice(0, options.limit);
    const objects: ObjectInfo[] = [];
    for (let i = 0; i < page.length; i += LIST_READ_CONCURRENCY) {
      // An object deleted since the walk saw it is left out.
      const infos = await Promise.all(page.slice(i, i + LIST_READ_CONCURRENCY).map((entry) => this.readInfo(entry.path)));
      for (const info of infos) if (info) objects.push(info);
    }
    return { objects, nextStartAfter: found.length > options.limit ? page[page.length - 1].name : undefined };
  }

  /**
   * Yields the objects under `path` in UTF-8 byte order of their names. Sorting each folder's
   * entries by name, with folders as `name/`, gives that order overall, because every name in a
   * folder starts with the folder's `name/`. Folders that cannot hold a match are skipped whole.
   */
  private async *walk(
    path: string,
    namePrefix: string,
    prefix: string,
    startAfter: string | undefined,
  ): AsyncGenerator<{ name: string; path: string }> {
    let entries: Dirent[];
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw error;
    }
    const items: { key: string; entry: string; folder: boolean }[] = [];
    for (const entry of entries) {
      if (entry.isDirectory() && !entry.name.endsWith(OBJECT_SUFFIX)) {
        items.push({ key: `${namePrefix}${decodePart(entry.name)}/`, entry: entry.name, folder: true });
      } else if (entry.isFile() && entry.name.endsWith(OBJECT_SUFFIX)) {
        items.push({ key: namePrefix + decodePart(entry.name.slice(0, -OBJECT_SUFFIX.length)), entry: entry.name, folder: false });
      }
    }
    const keys = new Map(items.map((item) => [item, Buffer.from(item.key)]));
    items.sort((a, b) => Buffer.compare(keys.get(a)!, keys.get(b)!));
    for (const item of items) {
      if (item.folder) {
        if (!item.key.startsWith(prefix) && !prefix.startsWith(item.key)) continue;
        // Every name in this folder sorts before `startAfter` unless it lies inside the folder.
        if (startAfter !== undefined && compareNames(item.key, startAfter) < 0 && !startAfter.startsWith(item.key)) continue;
        yield* this.walk(join(path, item.entry), item.key, prefix, startAfter);
      } else {
        if (!item.key.startsWith(prefix)) continue;
        if (startAfter !== undefined && compareNames(item.key, startAfter) <= 0) continue;
        yield { name: item.key, path: join(path, item.entry) };
      }
    }
  }

  async delete(namespace: string, name: string): Promise<boolean> {
    const path = this.objectPath(namespace, name);
    try {
      await unlink(path);
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
    await syncFolder(dirname(path)).catch(() => undefined);
    await this.removeEmptyFolders(dirname(path), this.namespaceFolder(namespace));
    return true;
  }

  /** Removes `folder` and its parents while they are empty, up to (not including) `stopAt`. */
  private async removeEmptyFolders(folder: string, stopAt: string): Promise<void> {
    let current = folder;
    while (current.startsWith(stopAt + sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (or already gone): its parents are not empty either
      }
      current = dirname(current);
    }
  }

  async deleteProject(projectId: string): Promise<void> {
    if (!NAMESPACE_PART.test(projectId)) throw errors.internal(`"${projectId}" is not a project id`);
    // Renamed away first, so the project's objects vanish at once; then removed at leisure
    // (a crash half way leaves a folder the next start sweeps).
    const trash = join(this.temporaryFolder, `${process.pid}-deleted-${randomBytes(8).toString('hex')}`);
    try {
      await rename(join(this.root, projectId), trash);
    } catch (error) {
      if (isMissing(error)) return;
      throw error;
    }
    await rm(trash, { recursive: true, force: true });
  }

  /**
   * Walks the project's folders and adds up the object files' sizes less their headers: the
   * cost grows with the number of objects, paid only by writes under a space_bytes cap.
   */
  async projectBytes(projectId: string): Promise<number> {
    if (!NAMESPACE_PART.test(projectId)) throw errors.internal(`"${projectId}" is not a project id`);
    let total = 0;
    const folders = [join(this.root, projectId)];
    while (folders.length > 0) {
      const folder = folders.pop()!;
      let entries: Dirent[];
      try {
        entries = await readdir(folder, { withFileTypes: true });
      } catch (error) {
        if (isMissing(error)) continue;
        throw error;
      }
      const files = entries.filter((entry) => entry.isFile() && entry.name.endsWith(OBJECT_SUFFIX));
      for (const entry of entries) if (entry.isDirectory()) folders.push(join(folder, entry.name));
      for (let start = 0; start < files.length; start += LIST_READ_CONCURRENCY) {
        const sizes = await Promise.all(
          files.slice(start, start + LIST_READ_CONCURRENCY).map((entry) =>
            stat(join(folder, entry.name)).then(
              (info) => Math.max(0, info.size - HEADER_BYTES),
              (error) => (isMissing(error) ? 0 : Promise.reject(error)),
            ),
          ),
        );
        for (const size of sizes) total += size;
      }
    }
    return total;
  }

  async close(): Promise<void> {
    // Nothing stays open between calls.
  }
}

function encodeHeader(info: ObjectInfo): Buffer {
  const header: Header = {
    v: 1,
    name: info.name,
    size: info.size,
    contentType: info.contentType,
    visibility: info.visibility,
    createdAt: info.createdAt,
    modifiedAt: info.modifiedAt,
    sha256: info.sha256,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  // Cannot happen within the name (1 KiB) and content type (255 bytes) limits; checked anyway.
  if (12 + json.length > HEADER_BYTES) throw errors.badRequest('the object name and content type are too long to store together');
  const buffer = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(buffer, 0);
  buffer.writeUInt32BE(json.length, 8);
  json.copy(buffer, 12);
  return buffer;
}
