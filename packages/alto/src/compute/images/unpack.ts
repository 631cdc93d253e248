/**
 * @module compute/images/unpack
 * Applies an image's layers, in order, to a root filesystem folder, exactly as the OCI image
 * spec's changeset rules say: whiteouts (`.wh.name`) and opaque directories (`.wh..wh..opq`)
 * hide what lower layers made, later entries replace earlier ones, and files, directories,
 * symlinks and hard links keep their modes, times and (when running as root) owners.
 *
 * The layers are untrusted. Every entry path is resolved component by component inside the
 * root: a symlink met on the way is followed the way the guest will see it (absolute targets
 * from the root, `..` stopping at the root), so nothing is ever written outside the folder;
 * entry names that are absolute or contain `..` are refused outright. Device nodes and FIFOs
 * are skipped (a sandbox provides its own /dev). Layers stream through gunzip and tar-stream,
 * never whole in memory; each is checked against a size limit and against its `diff_id`.
 */
import { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  constants,
  createReadStream,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readlinkSync,
  readSync,
  realpathSync,
  symlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { chmod, chown, readdir, realpath, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { AltoError, errors } from '../../kit/errors.js';
import { layerCompression } from './manifest.js';

export interface LayerToUnpack {
  digest: string;
  mediaType: string;
  /** The layer blob on disk (compressed or not). */
  path: string;
  /** Digest of the uncompressed tar, from the image config; checked when given. */
  diffId?: string;
}

export interface UnpackOptions {
  /** Largest uncompressed size of one layer; a bigger layer is refused. */
  maxLayerBytes: number;
  /** Apply owners from the layers. Default: when running as root (otherwise chown fails). */
  preserveOwnership?: boolean;
  /** Names the image in errors. */
  imageName?: string;
}

export interface SkippedEntry {
  path: string;
  type: string;
}

export interface UnpackStats {
  layers: number;
  files: number;
  directories: number;
  symlinks: number;
  hardLinks: number;
  whiteouts: number;
  /** Uncompressed bytes read from the layers. */
  bytes: number;
  /** Entries not created (device nodes, FIFOs, unknown types); the first 100. */
  skipped: SkippedEntry[];
  skippedCount: number;
}

/** One entry as tar-stream's extractor yields it: its header, then its content. */
type TarEntry = AsyncIterable<Buffer> & { header: Header };

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
/** Symlinks followed while resolving one path, as Linux's own limit (ELOOP). */
const MAX_SYMLINK_HOPS = 40;
/**
 * Entries are created with synchronous calls (on slow disks a file costs a millisecond, and the
 * thread pool's round trips would double that), so the unpacker lets the event loop run at
 * least this often: a server unpacking an image keeps answering.
 */
const YIELD_EVERY_MS = 10;
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

interface DirectoryAttributes {
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

/** An entry the layer may not contain. */
function refused(layer: LayerToUnpack, options: UnpackOptions, detail: string): AltoError {
  return errors.badRequest(`layer ${layer.digest}${options.imageName ? ` of ${options.imageName}` : ''} is refused: ${detail}; nothing was written outside the image's root`);
}

/** Counts and hashes the uncompressed bytes, failing as soon as the limit is passed. */
class LayerMeter extends Transform {
  bytes = 0;
  readonly hash: Hash;

  constructor(
    private readonly limit: number,
    private readonly tooLarge: () => Error,
    algorithm: string,
  ) {
    super();
    this.hash = createHash(algorithm);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      callback(this.tooLarge());
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }
}

function readHead(path: string, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const read = readSync(fd, buffer, 0, length, 0);
    return buffer.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

/** Splits an entry name into components; absolute names and `..` are refused. */
function componentsOf(name: string, fail: (detail: string) => AltoError, what = 'entry'): string[] {
  if (name.includes('\0')) throw fail(`${what} "${name.replace(/\0/g, '\\0')}" contains a NUL byte`);
  if (name.startsWith('/')) throw fail(`${what} "${name}" is an absolute path`);
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw fail(`${what} "${name}" contains ".." (path traversal)`);
  return parts;
}

export class RootfsWriter {
  readonly stats: UnpackStats = {
    layers: 0,
    files: 0,
    directories: 0,
    symlinks: 0,
    hardLinks: 0,
    whiteouts: 0,
    bytes: 0,
    skipped: [],
    skippedCount: 0,
  };
  private readonly preserveOwnership: boolean;
  /** Host paths verified to be real directories (no symlink) during this unpack. */
  private readonly knownDirectories = new Set<string>();
  /** Attributes of every directory entry, applied once at the end (children change mtimes). */
  private readonly directoryAttributes = new Map<string, DirectoryAttributes>();
  /** Host paths the current layer created: its own whiteouts do not remove them. */
  private createdInLayer = new Set<string>();
  /** When the unpacker last let the event loop run (see `yieldNow`). */
  private lastYield = Date.now();

  constructor(
    readonly root: string,
    private readonly options: UnpackOptions,
  ) {
    this.preserveOwnership = options.preserveOwnership ?? process.getuid?.() === 0;
    mkdirSync(root, { recursive: true, mode: 0o755 });
    this.root = realpathSync(root);
    this.knownDirectories.add(this.root);
  }

  /** Applies one layer on top of what is there. */
  async applyLayer(layer: LayerToUnpack): Promise<void> {
    const fail = (detail: string) => refused(layer, this.options, detail);
    const declared = layerCompression(layer.mediaType);
    const head = readHead(layer.path, 4);
    if (declared === 'zstd' || head.subarray(0, 4).equals(ZSTD_MAGIC)) {
      throw errors.badRequest(`layer ${layer.digest} is zstd-compressed, which this Node.js cannot decompress; use an image with gzip layers`);
    }
    const gzipped = head.subarray(0, 2).equals(GZIP_MAGIC);
    const algorithm = layer.diffId?.startsWith('sha512:') ? 'sha512' : 'sha256';
    const meter = new LayerMeter(
      this.options.maxLayerBytes,
      () => fail(`it unpacks to more than ${this.options.maxLayerBytes} bytes (the limit; ALTO_IMAGES_MAX_LAYER_BYTES raises it)`),
      algorithm,
    );
    const extract = tarExtract();
    const source = createReadStream(layer.path, { highWaterMark: 1 << 20 });
    // tar-stream's extractor is a streamx Writable, which pipeline drives like a Node one.
    const sink = extract as unknown as NodeJS.WritableStream;
    // Its outcome is taken at once (as a value), so a failure while entries are still being
    // handled is never an unhandled rejection.
    const feeding = (gzipped ? pipeline(source, createGunzip(), meter, sink) : pipeline(source, meter, sink)).then(
      () => undefined,
      (error: unknown) => error ?? new Error('the layer stream failed'),
    );
    this.createdInLayer = new Set();
    let failure: unknown;
    try {
      for await (const entry of extract) {
        await this.applyEntry(entry as unknown as TarEntry, fail);
        if (Date.now() - this.lastYield >= YIELD_EVERY_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          this.lastYield = Date.now();
        }
      }
    } catch (error) {
      failure = error;
    }
    failure ??= await feeding;
    this.stats.bytes += meter.bytes;
    if (failure) {
      if (failure instanceof AltoError) throw failure;
      const message = (failure as Error).message;
      if ((failure as NodeJS.ErrnoException).code?.startsWith('Z_') || /header check|invalid|unexpected end|Unexpected end/i.test(message)) {
        throw fail(`it is not a valid ${gzipped ? 'gzip-compressed ' : ''}tar archive (${message})`);
      }
      throw failure;
    }
    if (layer.diffId) {
      const actual = `${algorithm}:${meter.hash.digest('hex')}`;
      if (actual !== layer.diffId) {
        throw fail(`its uncompressed content hashes to ${actual}, but the image config says ${layer.diffId}`);
      }
    }
    this.stats.layers++;
  }

  private async applyEntry(entry: TarEntry, fail: (detail: string) => AltoError): Promise<void> {
    const header = entry.header;
    const parts = componentsOf(header.name, fail);
    if (parts.length === 0) {
      // The root itself (`./`): only its attributes can change.
      if (header.type === 'directory') this.directoryAttributes.set(this.root, attributesOf(header));
      await drain(entry);
      return;
    }
    const name = parts[parts.length - 1];
    if (name.startsWith(WHITEOUT_PREFIX)) {
      await drain(entry);
      await this.applyWhiteout(parts, fail);
      return;
    }
    const type = header.type;
    if (type === 'character-device' || type === 'block-device' || type === 'fifo' || !isSupportedType(type)) {
      await drain(entry);
      this.skip(parts.join('/'), String(type));
      return;
    }
    const parent = (await this.resolveDirectory(parts.slice(0, -1), true, fail))!;
    const target = join(parent, name);
    const existing = lstatOrUndefined(target);
    switch (type) {
      case 'directory': {
        if (!existing || !existing.isDirectory()) {
          if (existing) await this.removePath(target);
          // Owner-writable until the end, so later entries can be written in as any user.
          mkdirSync(target, { mode: 0o700 });
        }
        this.knownDirectories.add(target);
        this.directoryAttributes.set(target, attributesOf(header));
        this.stats.directories++;
        await drain(entry);
        break;
      }
      case 'file':
      case 'contiguous-file': {
        if (existing) await this.removePath(target);
        await this.writeFile(target, header, entry);
        this.stats.files++;
        break;
      }
      case 'symlink': {
        await drain(entry);
        if (existing) await this.removePath(target);
        symlinkSync(header.linkname ?? '', target);
        if (this.preserveOwnership) lchownSync(target, header.uid ?? 0, header.gid ?? 0);
        lutimesSync(target, header.mtime ?? new Date(0), header.mtime ?? new Date(0));
        this.stats.symlinks++;
        break;
      }
      case 'link': {
        await drain(entry);
        const linkParts = componentsOf(header.linkname ?? '', fail, `hard link target of "${header.name}":`);
        if (linkParts.length === 0) throw fail(`hard link "${header.name}" has no target`);
        const linkParent = await this.resolveDirectory(linkParts.slice(0, -1), false, fail);
        const source = linkParent ? join(linkParent, linkParts[linkParts.length - 1]) : undefined;
        const sourceStats = source ? lstatOrUndefined(source) : undefined;
        if (!source || !sourceStats) throw fail(`hard link "${header.name}" points at "${header.linkname}", which does not exist`);
        if (sourceStats.isDirectory()) throw fail(`hard link "${header.name}" points at the directory "${header.linkname}"`);
        if (existing && existing.ino === sourceStats.ino && existing.dev === sourceStats.dev) break;
        if (existing) await this.removePath(target);
        // link(2) does not follow a symlink source: the new name shares the symlink itself.
        linkSync(source, target);
        this.stats.hardLinks++;
        break;
      }
    }
    this.createdInLayer.add(target);
  }

  private async writeFile(target: string, header: Header, content: AsyncIterable<Buffer>): Promise<void> {
    // O_EXCL|O_NOFOLLOW: never opens through a symlink that appeared at this name.
    const fd = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of content) {
        let offset = 0;
        while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset);
      }
      // chown first: it clears set-user-ID and set-group-ID bits, which chmod then sets.
      if (this.preserveOwnership) fchownSync(fd, header.uid ?? 0, header.gid ?? 0);
      fchmodSync(fd, (header.mode ?? 0o644) & 0o7777);
      const mtime = header.mtime ?? new Date(0);
      futimesSync(fd, mtime, mtime);
    } finally {
      closeSync(fd);
    }
  }

  private async applyWhiteout(parts: string[], fail: (detail: string) => AltoError): Promise<void> {
    const name = parts[parts.length - 1];
    const directory = await this.resolveDirectory(parts.slice(0, -1), false, fail);
    this.stats.whiteouts++;
    if (!directory) return; // Nothing below to hide.
    if (name === OPAQUE_MARKER) {
      for (const child of await readdir(directory)) {
        const path = join(directory, child);
        if (!this.createdInLayer.has(path)) await this.removePath(path);
      }
      return;
    }
    const hidden = name.slice(WHITEOUT_PREFIX.length);
    if (!hidden || hidden === '.' || hidden === '..') throw fail(`whiteout "${parts.join('/')}" names no file`);
    const path = join(directory, hidden);
    if (!this.createdInLayer.has(path) && lstatOrUndefined(path)) await this.removePath(path);
  }

  /**
   * Resolves directory components inside the root and returns the host path, which contains
   * no symlink. Symlinks met on the way are followed as the guest would: an absolute target
   * starts again from the root, and `..` never climbs above it. Missing directories are
   * created (mode 0755, as tar does) when `create` is set; otherwise the answer is undefined.
   */
  private async resolveDirectory(parts: string[], create: boolean, fail: (detail: string) => AltoError): Promise<string | undefined> {
    const resolved: string[] = [];
    const pending = [...parts];
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        resolved.pop();
        continue;
      }
      const candidate = join(this.root, ...resolved, part);
      if (this.knownDirectories.has(candidate)) {
        resolved.push(part);
        continue;
      }
      const info = lstatOrUndefined(candidate);
      if (!info) {
        if (!create) return undefined;
        mkdirSync(candidate, { mode: 0o755 });
        this.knownDirectories.add(candidate);
        resolved.push(part);
        continue;
      }
      if (info.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) throw fail(`resolving "${parts.join('/')}" meets more than ${MAX_SYMLINK_HOPS} symlinks`);
        const target = readlinkSync(candidate);
        if (target.startsWith('/')) resolved.length = 0;
        pending.unshift(...target.split('/'));
        continue;
      }
      if (!info.isDirectory()) {
        if (!create) return undefined;
        throw fail(`"${parts.join('/')}" needs "${[...resolved, part].join('/')}" to be a directory, but a lower entry made it a file`);
      }
      this.knownDirectories.add(candidate);
      resolved.push(part);
    }
    return join(this.root, ...resolved);
  }

  /** Removes a file, symlink or whole directory (never following symlinks) and forgets it. */
  private async removePath(path: string): Promise<void> {
    if (path === this.root) return;
    await rm(path, { recursive: true, force: true });
    const prefix = path + '/';
    for (const known of this.knownDirectories) if (known === path || known.startsWith(prefix)) this.knownDirectories.delete(known);
    for (const known of this.directoryAttributes.keys()) if (known === path || known.startsWith(prefix)) this.directoryAttributes.delete(known);
  }

  private skip(path: string, type: string): void {
    this.stats.skippedCount++;
    if (this.stats.skipped.length < 100) this.stats.skipped.push({ path, type });
  }

  /**
   * Applies directory owners, modes and times, deepest first, once every layer is in. Each
   * path is checked again to be a real directory reached without symlinks.
   */
  async finish(): Promise<UnpackStats> {
    const paths = [...this.directoryAttributes.keys()].sort((a, b) => b.length - a.length);
    for (const path of paths) {
      const attributes = this.directoryAttributes.get(path)!;
      const info = lstatOrUndefined(path);
      if (!info?.isDirectory() || (await realpath(path)) !== path) continue;
      if (this.preserveOwnership) await chown(path, attributes.uid, attributes.gid);
      await chmod(path, attributes.mode & 0o7777);
      await utimes(path, attributes.mtime, attributes.mtime);
    }
    return this.stats;
  }
}

/** Unpacks layers in order into `root` (created if missing) and returns what was done. */
export async function unpackLayers(root: string, layers: LayerToUnpack[], options: UnpackOptions): Promise<UnpackStats> {
  const writer = new RootfsWriter(root, options);
  for (const layer of layers) await writer.applyLayer(layer);
  return await writer.finish();
}

function isSupportedType(type: string | null | undefined): boolean {
  return type === 'file' || type === 'contiguous-file' || type === 'directory' || type === 'symlink' || type === 'link';
}

function attributesOf(header: Header): DirectoryAttributes {
  return { mode: header.mode ?? 0o755, uid: header.uid ?? 0, gid: header.gid ?? 0, mtime: header.mtime ?? new Date(0) };
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw error;
  }
}

async function drain(entry: TarEntry): Promise<void> {
  for await (const _chunk of entry) {
    // Skipped content still has to be read for the archive to move on.
  }
}
