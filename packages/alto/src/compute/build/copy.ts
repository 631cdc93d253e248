/**
 * @module compute/build/copy
 * What COPY and ADD put in their layer: each source (a file or folder of the context, a path of
 * another stage's root, a here-document, a file ADD fetched) becomes entries under the
 * destination as Docker places them (a folder's content into the destination, a file into a
 * destination ending in `/` or onto it), with the `--chown` owner (root otherwise) and the
 * `--chmod` mode. ADD unpacks a local tar or tar.gz archive, its names confined to the
 * destination and its size bounded. Paths of another stage are resolved inside that stage's
 * root, symlinks followed as its own processes would see them, never out of it.
 */
import { closeSync, createReadStream, createWriteStream, lstatSync, mkdtempSync, openSync, readFileSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import type { BuildContext } from './context.js';
import { entriesOf, type LayerEntry } from './layer.js';

export interface CopyInput {
  kind: 'COPY' | 'ADD';
  items: CopyItem[];
  source: CopySource;
  /** The destination as written (expanded): a trailing `/` makes it a folder. */
  destinationWord: string;
  /** The stage's working directory, for a relative destination. */
  workdir: string;
  /** The stage's root folder (the layers so far), to see what the destination is now. */
  stageRoot: string;
  context: BuildContext;
  owner: { uid: number; gid: number };
  mode?: number;
  /** A folder for files unpacked from archives. */
  work: string;
  maxArchiveBytes: number;
  fail(detail: string): Error;
}

/** The entries of one COPY or ADD, and its destination (relative to the root). */
export async function copyEntries(input: CopyInput): Promise<{ entries: LayerEntry[]; destination: string }> {
  const { items, owner, mode, fail } = input;
  const destinationIsFolder = input.destinationWord.endsWith('/') || input.destinationWord === '.';
  const destination = posix
    .normalize(input.destinationWord.startsWith('/') ? input.destinationWord : posix.join('/', input.workdir || '/', input.destinationWord))
    .replace(/^\/+/, '')
    .replace(/\/+$/, '');
  if (items.length > 1 && !destinationIsFolder) throw fail(`with more than one source, the destination must be a folder ending in / (not ${input.destinationWord})`);
  const entries: LayerEntry[] = [];
  const add = (entry: LayerEntry) => entries.push(entry);
  const existing = lstatOrUndefined(join(input.stageRoot, destination));
  const intoFolder = destinationIsFolder || Boolean(existing?.isDirectory());
  const target = (name: string) => (intoFolder ? posix.join(destination, name) : destination);
  const contextRoot = input.context.root;
  for (const item of items) {
    if (item.content) {
      add({ type: 'file', path: target(item.name), mode: mode ?? 0o644, uid: owner.uid, gid: owner.gid, content: item.content });
      continue;
    }
    const host = item.host ?? join(contextRoot, item.contextPath!);
    const info = lstatSync(host);
    if (item.remote) {
      // As Docker: a fetched file is not unpacked, and is 0600 unless --chmod says.
      add({ type: 'file', path: target(item.name), mode: mode ?? 0o600, uid: owner.uid, gid: owner.gid, content: { file: host, size: info.size } });
      continue;
    }
    if (info.isDirectory()) {
      // A folder's content goes into the destination, which is made a folder.
      if (destination && !existing?.isDirectory() && !existing?.isSymbolicLink()) add({ type: 'directory', path: destination, mode: mode ?? 0o755, uid: owner.uid, gid: owner.gid });
      const children =
        input.source.kind === 'context'
          ? input.context.below(item.contextPath!).map((path) => ({ relative: path.slice(item.contextPath ? item.contextPath.length + 1 : 0), host: join(contextRoot, path) }))
          : walkFolder(host);
      for (const child of children) {
        const childInfo = lstatSync(child.host);
        const path = posix.join(destination, child.relative);
        if (childInfo.isDirectory()) add({ type: 'directory', path, mode: mode ?? childInfo.mode & 0o7777, uid: owner.uid, gid: owner.gid });
        else if (childInfo.isSymbolicLink()) add({ type: 'symlink', path, target: readlinkSync(child.host), uid: owner.uid, gid: owner.gid });
        else if (childInfo.isFile()) add({ type: 'file', path, mode: mode ?? childInfo.mode & 0o7777, uid: owner.uid, gid: owner.gid, content: { file: child.host, size: childInfo.size } });
      }
      continue;
    }
    if (input.kind === 'ADD' && info.isFile() && isTarArchive(host)) {
      for (const entry of await archiveEntries(host, destination, input.work, input.maxArchiveBytes, fail)) add(entry);
      continue;
    }
    if (info.isSymbolicLink()) add({ type: 'symlink', path: target(item.name), target: readlinkSync(host), uid: owner.uid, gid: owner.gid });
    else if (info.isFile()) add({ type: 'file', path: target(item.name), mode: mode ?? info.mode & 0o7777, uid: owner.uid, gid: owner.gid, content: { file: host, size: info.size } });
  }
  for (const entry of entries) if (!entry.path) throw fail(`would replace the image's root folder; copy into a folder instead`);
  return { entries, destination };
}

export function parseMode(text: string, fail: (detail: string) => Error): number {
  if (!/^[0-7]{3,4}$/.test(text)) throw fail(`--chmod=${text}: give an octal mode such as 755 or 0644`);
  return parseInt(text, 8);
}

export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * A path inside another stage's root, resolved as that root's own processes would see it:
 * symlinks followed inside the root (absolute ones from its top, `..` stopping there). The
 * last component is followed too, as `COPY --from` copies what a path names.
 */
export function resolveInRoot(root: string, path: string): string | undefined {
  const pending = path.split('/').filter((part) => part && part !== '.');
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, part);
    const info = lstatOrUndefined(candidate);
    if (!info) return undefined;
    if (info.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = readlinkSync(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((piece) => piece && piece !== '.'));
      continue;
    }
    resolved.push(part);
  }
  return join(root, ...resolved);
}

/** Every path below a host folder, relative to it, parents first. */
function walkFolder(folder: string): { relative: string; host: string }[] {
  const found: { relative: string; host: string }[] = [];
  // entriesOf yields the folder itself first (path ''), then everything below it as '/a', '/a/b'.
  for (const entry of entriesOf(folder, '', () => ({ uid: 0, gid: 0 }))) {
    if (entry.path) found.push({ relative: entry.path.replace(/^\//, ''), host: join(folder, entry.path) });
  }
  return found;
}

function isTarArchive(path: string): boolean {
  const head = Buffer.alloc(263);
  const fd = openSync(path, 'r');
  try {
    const read = readSync(fd, head, 0, head.length, 0);
    if (read >= 2 && head[0] === 0x1f && head[1] === 0x8b) return true;
    return read >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    closeSync(fd);
  }
}

/** The entries of a local tar (or tar.gz) an ADD unpacks into `destination`; names are confined to it. */
async function archiveEntries(path: string, destination: string, work: string, maxBytes: number, fail: (detail: string) => Error): Promise<LayerEntry[]> {
  const entries: LayerEntry[] = [];
  const extract = tarExtract();
  const gzipped = isGzip(path);
  const source = createReadStream(path);
  // Its outcome is taken at once (as a value), so a failure while entries are read is never unhandled.
  const feeding = (gzipped ? pipeline(source, createGunzip(), extract as unknown as NodeJS.WritableStream) : pipeline(source, extract as unknown as NodeJS.WritableStream)).then(
    () => undefined,
    (error: unknown) => error,
  );
  const folder = mkdtempSync(join(work, 'add-'));
  let count = 0;
  let total = 0;
  try {
    for await (const entry of extract as unknown as AsyncIterable<Readable & { header: Header }>) {
      const header = entry.header;
      const name = posix.normalize(header.name);
      if (name.startsWith('/') || name === '..' || name.startsWith('../')) throw fail(`the archive ${basename(path)} holds "${header.name}", which leaves its folder`);
      const target = posix.join(destination, name).replace(/\/+$/, '');
      const uid = header.uid ?? 0;
      const gid = header.gid ?? 0;
      if (header.type === 'directory') entries.push({ type: 'directory', path: target, mode: (header.mode ?? 0o755) & 0o7777, uid, gid });
      else if (header.type === 'symlink') entries.push({ type: 'symlink', path: target, target: header.linkname ?? '', uid, gid });
      else if (header.type === 'file' || header.type === 'contiguous-file') {
        total += header.size ?? 0;
        if (total > maxBytes) throw fail(`the archive ${basename(path)} unpacks to more than ${maxBytes} bytes`);
        const file = join(folder, String(count++));
        await pipeline(entry, createWriteStream(file, { mode: 0o600 }));
        entries.push({ type: 'file', path: target, mode: (header.mode ?? 0o644) & 0o7777, uid, gid, content: { file, size: header.size ?? 0 } });
        continue;
      }
      entry.resume();
    }
  } catch (error) {
    source.destroy();
    throw error;
  }
  const failure = await feeding;
  if (failure) throw fail(`the archive ${basename(path)} could not be read: ${(failure as Error).message}`);
  return entries;
}

function isGzip(path: string): boolean {
  const head = Buffer.alloc(2);
  const fd = openSync(path, 'r');
  try {
    return readSync(fd, head, 0, 2, 0) === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    closeSync(fd);
  }
}

/** A digest of what entries hold (paths, types, modes, owners and content), for the cache key. */
export function contentDigest(entries: LayerEntry[]): string {
  const digest = createHash('sha256');
  for (const entry of entries) {
    digest.update(`${entry.type}\0${entry.path}\0`);
    if (entry.type === 'whiteout') continue;
    digest.update(`${entry.uid}:${entry.gid}\0`);
    if (entry.type === 'symlink') digest.update(`${entry.target}\0`);
    else if (entry.type === 'directory') digest.update(`${entry.mode}\0`);
    else {
      digest.update(`${entry.mode}\0`);
      const content = entry.content;
      digest.update(Buffer.isBuffer(content) ? content : readFileSync(content.file));
      digest.update('\0');
    }
  }
  return digest.digest('hex');
}

/** One source of a COPY or ADD: a context path, a host path (another stage, a download), or bytes. */
export interface CopyItem {
  name: string;
  contextPath?: string;
  host?: string;
  content?: Buffer;
  /** A file ADD fetched from a URL (kept as is, not unpacked). */
  remote?: boolean;
}

export type CopySource = { kind: 'context' } | { kind: 'root'; root: string };
