/**
 * @module compute/images/blob-store
 * Content-addressed blobs on disk (`<data>/images/blobs/sha256/<hex>`), one copy however many
 * images, apps and projects use them. A blob enters only through a temporary file whose digest
 * and size were checked while it streamed in, then renamed into place, so a file under `blobs/`
 * is always whole and correct. Downloads resume from where a dropped connection left them; two
 * pulls of one blob in this process share one download, and a lock file makes a second process
 * on the same data folder wait instead of downloading it again.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { open, readFile, rename, rm, stat, truncate, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { NetworkError } from './http.js';
import type { OpenedBlob } from './registry-client.js';
import { upstreamError } from './registry-client.js';

export type BlobState = 'waiting' | 'downloading' | 'resuming' | 'done' | 'cached';

export interface BlobProgress {
  digest: string;
  state: BlobState;
  /** Bytes on disk so far. */
  current: number;
  total: number;
}

export type ProgressListener = (progress: BlobProgress) => void;

/** Where a blob comes from: opened again from an offset after a dropped connection. */
export interface BlobSource {
  open(offset: number): Promise<OpenedBlob>;
  /** Names the origin in errors: `localhost:5000/app`. */
  origin: string;
}

export interface BlobDescriptor {
  digest: string;
  size: number;
}

export interface BlobStoreOptions {
  log: Logger;
  /** Attempts after a dropped connection before a download fails (each resumes). */
  maxAttempts?: number;
  /** First pause between attempts; doubles each time. */
  retryDelayMs?: number;
}

/** Progress events are sent at most this often per blob (plus the last one). */
const PROGRESS_INTERVAL_MS = 200;
/** A download in progress refreshes its lock file this often... */
const LOCK_REFRESH_MS = 5_000;
/** ...so a lock not refreshed for this long belongs to a process that died. */
const LOCK_STALE_MS = 60_000;
const LOCK_POLL_MS = 100;

class DownloadJob {
  readonly listeners = new Set<ProgressListener>();
  last?: BlobProgress;
  promise!: Promise<void>;
  private lastSent = 0;

  emit(progress: BlobProgress, force = false): void {
    this.last = progress;
    const now = Date.now();
    if (!force && now - this.lastSent < PROGRESS_INTERVAL_MS) return;
    this.lastSent = now;
    for (const listener of this.listeners) listener(progress);
  }
}

interface HeldLock {
  refresh(): Promise<void>;
  release(): void;
}

export class BlobStore {
  private readonly jobs = new Map<string, DownloadJob>();
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;

  constructor(
    readonly root: string,
    private readonly options: BlobStoreOptions,
  ) {
    this.maxAttempts = options.maxAttempts ?? 6;
    this.retryDelayMs = options.retryDelayMs ?? 250;
    for (const folder of ['blobs/sha256', 'blobs/sha512', 'ingest', 'locks']) mkdirSync(join(root, folder), { recursive: true, mode: 0o755 });
  }

  pathOf(digest: string): string {
    const [algorithm, hex] = splitDigest(digest);
    return join(this.root, 'blobs', algorithm, hex);
  }

  has(digest: string): boolean {
    return existsSync(this.pathOf(digest));
  }

  sizeOf(digest: string): number | undefined {
    try {
      return statSync(this.pathOf(digest)).size;
    } catch {
      return undefined;
    }
  }

  openRead(digest: string): Readable {
    return createReadStream(this.pathOf(digest), { highWaterMark: 1 << 20 });
  }

  read(digest: string): Promise<Buffer> {
    return readFile(this.pathOf(digest));
  }

  /** Every blob on disk. */
  list(): string[] {
    const digests: string[] = [];
    for (const algorithm of ['sha256', 'sha512']) {
      for (const hex of readdirSync(join(this.root, 'blobs', algorithm))) digests.push(`${algorithm}:${hex}`);
    }
    return digests;
  }

  /** Deletes a blob; returns the bytes freed. */
  remove(digest: string): number {
    const path = this.pathOf(digest);
    try {
      const size = statSync(path).size;
      unlinkSync(path);
      return size;
    } catch {
      return 0;
    }
  }

  /**
   * Makes sure a blob is in the store, downloading it from `source` if not. Concurrent calls for
   * one digest share a single download and all receive its progress.
   * Returns whether this call found the blob already stored.
   */
  async fetch(descriptor: BlobDescriptor, source: BlobSource, onProgress?: ProgressListener): Promise<{ cached: boolean }> {
    if (this.has(descriptor.digest)) {
      onProgress?.({ digest: descriptor.digest, state: 'cached', current: descriptor.size, total: descriptor.size });
      return { cached: true };
    }
    let job = this.jobs.get(descriptor.digest);
    if (!job) {
      const created = new DownloadJob();
      created.promise = this.download(descriptor, source, created).finally(() => this.jobs.delete(descriptor.digest));
      this.jobs.set(descriptor.digest, created);
      job = created;
    }
    if (onProgress) {
      job.listeners.add(onProgress);
      if (job.last) onProgress(job.last);
    }
    try {
      await job.promise;
      return { cached: false };
    } finally {
      if (onProgress) job.listeners.delete(onProgress);
    }
  }

  private async download(descriptor: BlobDescriptor, source: BlobSource, job: DownloadJob): Promise<void> {
    const { digest, size } = descriptor;
    const [algorithm, hex] = splitDigest(digest);
    job.emit({ digest, state: 'waiting', current: 0, total: size }, true);
    const lock = await this.acquireLock(hex, () => this.has(digest));
    if (!lock) {
      // Another process downloaded it while we waited.
      job.emit({ digest, state: 'cached', current: size, total: size }, true);
      return;
    }
    const partial = join(this.root, 'ingest', `${hex}.partial`);
    let file: FileHandle | undefined;
    try {
      if (this.has(digest)) {
        job.emit({ digest, state: 'cached', current: size, total: size }, true);
        return;
      }
      // A partial file left by an earlier attempt (even one that crashed) is resumed: its bytes
      // are hashed again rather than trusted.
      let hash = createHash(algorithm);
      let written = 0;
      if (existsSync(partial)) {
        const existing = statSync(partial).size;
        if (existing > size) await truncate(partial, 0);
        else written = await hashFile(partial, hash);
      }
      file = await open(partial, 'a', 0o644);
      let lastRefresh = Date.now();
      for (let attempt = 1; ; attempt++) {
        try {
          const opened = await source.open(written);
          if (opened.offset !== written) {
            if (opened.offset !== 0) {
              opened.stream.destroy();
              throw new NetworkError(`${source.origin} answered bytes from ${opened.offset}, not ${written}`);
            }
            // The server ignored Range and sends the whole blob: start over (the file is in
            // append mode, so writes follow the truncation).
            await file.truncate(0);
            hash = createHash(algorithm);
            written = 0;
          }
          job.emit({ digest, state: attempt > 1 ? 'resuming' : 'downloading', current: written, total: size }, true);
          let received = 0;
          try {
            for await (const chunk of opened.stream) {
              const buffer = chunk as Buffer;
              if (written + buffer.length > size) {
                opened.stream.destroy();
                throw new SizeMismatch(`more than the ${size} bytes the manifest declares`);
              }
              await file.write(buffer);
              hash.update(buffer);
              written += buffer.length;
              received += buffer.length;
              job.emit({ digest, state: 'downloading', current: written, total: size });
              if (Date.now() - lastRefresh > LOCK_REFRESH_MS) {
                lastRefresh = Date.now();
                await lock.refresh();
              }
            }
          } catch (error) {
            if (error instanceof SizeMismatch || error instanceof AltoError) throw error;
            throw error instanceof NetworkError ? error : new NetworkError(`${source.origin}: ${(error as Error).message}`, error);
          }
          if (written < size) {
            // A response that delivered all it announced but less than the manifest says is a
            // wrong blob, not a dropped connection.
            if (opened.length !== undefined && received >= opened.length) {
              throw new SizeMismatch(`${written} bytes where the manifest declares ${size}`);
            }
            throw new NetworkError(`${source.origin} ended the transfer of ${digest} at byte ${written} of ${size}`);
          }
          break;
        } catch (error) {
          if (!(error instanceof NetworkError)) throw error;
          if (attempt >= this.maxAttempts) {
            throw upstreamError(
              `the download of ${digest} from ${source.origin} failed ${attempt} times (${error.message}); ${written} of ${size} bytes are kept and the next pull resumes from there`,
            );
          }
          this.options.log.warn({ digest, written, size, attempt, err: error.message }, 'blob download interrupted; resuming');
          job.emit({ digest, state: 'resuming', current: written, total: size }, true);
          await new Promise((resolve) => setTimeout(resolve, this.retryDelayMs * 2 ** (attempt - 1)));
        }
      }
      await file.sync();
      await file.close();
      file = undefined;
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (actual !== digest) {
        await unlink(partial).catch(() => {});
        throw upstreamError(
          `the blob ${source.origin} sent as ${digest} has the digest ${actual}: it is corrupt or was tampered with; the download was deleted and nothing was stored`,
        );
      }
      await rename(partial, this.pathOf(digest));
      job.emit({ digest, state: 'done', current: size, total: size }, true);
    } catch (error) {
      if (error instanceof SizeMismatch) {
        await file?.close().catch(() => {});
        file = undefined;
        await unlink(partial).catch(() => {});
        throw upstreamError(
          `the blob ${digest} from ${source.origin} has ${error.message}: it is corrupt or was tampered with; the download was deleted and nothing was stored`,
        );
      }
      throw error;
    } finally {
      await file?.close().catch(() => {});
      lock.release();
    }
  }

  /**
   * Stores a stream, hashing it on the way in. With `expected`, a digest or size mismatch
   * deletes the temporary file and fails; without, the digest is whatever the bytes hash to.
   * Returns the digest, the size and the stream's first bytes (to tell gzip from tar).
   */
  async putStream(stream: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer>, expected?: BlobDescriptor, origin = 'the archive'): Promise<{ digest: string; size: number; head: Buffer }> {
    const algorithm = expected ? splitDigest(expected.digest)[0] : 'sha256';
    const temporary = join(this.root, 'ingest', `import-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
    const hash = createHash(algorithm);
    let size = 0;
    let head = Buffer.alloc(0);
    const file = await open(temporary, 'w', 0o644);
    try {
      for await (const chunk of stream) {
        const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        if (head.length < 8) head = Buffer.concat([head, buffer.subarray(0, 8 - head.length)]);
        size += buffer.length;
        if (expected && size > expected.size) {
          throw upstreamError(`${expected.digest} in ${origin} is larger than the ${expected.size} bytes declared for it; nothing was stored`);
        }
        await file.write(buffer);
        hash.update(buffer);
      }
      await file.sync();
      await file.close();
      const digest = `${algorithm}:${hash.digest('hex')}`;
      if (expected && (digest !== expected.digest || size !== expected.size)) {
        throw upstreamError(
          `the blob in ${origin} named ${expected.digest} (${expected.size} bytes) hashes to ${digest} (${size} bytes): it is corrupt or was tampered with; nothing was stored`,
        );
      }
      if (this.has(digest)) await unlink(temporary);
      else await rename(temporary, this.pathOf(digest));
      return { digest, size, head };
    } catch (error) {
      await file.close().catch(() => {});
      await unlink(temporary).catch(() => {});
      throw error;
    }
  }

  async putBuffer(bytes: Buffer, expected?: BlobDescriptor, origin?: string): Promise<string> {
    return (await this.putStream([bytes], expected, origin)).digest;
  }

  /**
   * Starts a blob written in pieces (a registry upload): each piece is appended to a temporary
   * file and hashed on the way in, and `commit` stores it under its digest once it matches.
   */
  async startUpload(): Promise<BlobUpload> {
    const path = join(this.root, 'ingest', `import-${process.pid}-${randomBytes(8).toString('hex')}.upload`);
    const file = await open(path, 'w', 0o644);
    return new BlobUpload(this, path, file);
  }

  /** Moves a whole, checked file into the store under its digest (BlobUpload.commit). */
  async adopt(path: string, digest: string): Promise<void> {
    if (this.has(digest)) await unlink(path);
    else await rename(path, this.pathOf(digest));
  }

  /**
   * Removes temporary files no download or import holds: partial downloads older than
   * `olderThanMs` whose lock is free, and import leftovers of processes that are gone.
   */
  async removeStaleIngests(olderThanMs: number): Promise<{ files: number; bytes: number }> {
    let files = 0;
    let bytes = 0;
    const now = Date.now();
    for (const name of readdirSync(join(this.root, 'ingest'))) {
      const path = join(this.root, 'ingest', name);
      const info = await stat(path).catch(() => undefined);
      if (!info || now - info.mtimeMs < olderThanMs) continue;
      if (name.endsWith('.partial') && existsSync(join(this.root, 'locks', `${name.slice(0, -'.partial'.length)}.lock`))) continue;
      const importer = /^import-(\d+)-/.exec(name);
      if (importer && isProcessAlive(Number(importer[1]))) continue;
      await rm(path, { force: true });
      files++;
      bytes += info.size;
    }
    return { files, bytes };
  }

  /**
   * Takes the lock file of one blob. While another live process holds it, waits, and returns
   * undefined as soon as `done()` says that process stored the blob.
   */
  private async acquireLock(hex: string, done: () => boolean): Promise<HeldLock | undefined> {
    const path = join(this.root, 'locks', `${hex}.lock`);
    const owner = `${process.pid}\n${hostname()}\n`;
    for (;;) {
      try {
        writeFileSync(path, owner, { flag: 'wx', mode: 0o644 });
        return {
          refresh: async () => {
            const now = new Date();
            await utimes(path, now, now).catch(() => {});
          },
          release: () => {
            try {
              unlinkSync(path);
            } catch {
              // Already gone: a waiter judged it stale; nothing to release.
            }
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      if (done()) return undefined;
      if (isStaleLock(path)) {
        try {
          unlinkSync(path);
        } catch {
          // Another waiter removed it first.
        }
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
    }
  }
}

const WRITE_BATCH_BYTES = 1 << 20;

/**
 * A blob being written in pieces. A piece that fails (the client left, the cap was passed)
 * leaves the upload as it was before that piece: its bytes are cut off and the hash restored.
 * One piece at a time: `busy` is set while one is appended.
 */
export class BlobUpload {
  size = 0;
  busy = false;
  private hash: Hash = createHash('sha256');
  private done = false;

  constructor(
    private readonly store: BlobStore,
    private readonly path: string,
    private readonly file: FileHandle,
  ) {}

  /**
   * Appends a stream; refuses (before writing past it) to let the upload grow over `maxBytes`,
   * with the error `tooLarge` makes. Returns the bytes appended.
   */
  async append(stream: AsyncIterable<Buffer | Uint8Array>, maxBytes: number, tooLarge: () => Error): Promise<number> {
    if (this.done) throw new Error('the upload is finished');
    const startSize = this.size;
    const startHash = this.hash.copy();
    this.busy = true;
    // Chunks are written a mebibyte at a time: one system call, not one per network read.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const written = pending;
      pending = [];
      await this.file.writev(written, this.size);
      this.size += pendingBytes;
      pendingBytes = 0;
    };
    try {
      for await (const chunk of stream) {
        const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        if (this.size + pendingBytes + buffer.length > maxBytes) throw tooLarge();
        this.hash.update(buffer);
        pending.push(buffer);
        pendingBytes += buffer.length;
        if (pendingBytes >= WRITE_BATCH_BYTES) await flush();
      }
      await flush();
      return this.size - startSize;
    } catch (error) {
      this.size = startSize;
      this.hash = startHash;
      await this.file.truncate(startSize).catch(() => {});
      throw error;
    } finally {
      this.busy = false;
    }
  }

  /** The digest of what was appended so far. */
  digest(): string {
    return `sha256:${this.hash.copy().digest('hex')}`;
  }

  /** Stores the blob if its digest is `expected` (returns true); else leaves the upload as it is and returns false. */
  async commit(expected: string): Promise<boolean> {
    if (this.digest() !== expected) return false;
    this.done = true;
    await this.file.sync();
    await this.file.close();
    await this.store.adopt(this.path, expected);
    return true;
  }

  /** Deletes what was written. */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.file.close().catch(() => {});
    await unlink(this.path).catch(() => {});
  }
}

class SizeMismatch extends Error {}

export function splitDigest(digest: string): [string, string] {
  const match = /^(sha256|sha512):([a-f0-9]+)$/.exec(digest);
  if (!match) throw new Error(`"${digest}" is not a digest`);
  return [match[1], match[2]];
}

async function hashFile(path: string, hash: Hash): Promise<number> {
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return size;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isStaleLock(path: string): boolean {
  try {
    const info = statSync(path);
    const [pid, host] = String(readFileSyncSafe(path)).split('\n');
    if (host === hostname() && pid && !isProcessAlive(Number(pid))) return true;
    return Date.now() - info.mtimeMs > LOCK_STALE_MS;
  } catch {
    return false; // Gone already: the next attempt takes it.
  }
}

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
