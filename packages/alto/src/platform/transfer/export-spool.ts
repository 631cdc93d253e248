/**
 * @module platform/transfer/export-spool
 * Resumable exports. An export is written to a spool file in the data folder (`transfer/`) at the
 * pace the project is read, and every download of it (the first, and any resumed one) reads
 * that file, following it while it grows. A client whose link breaks asks again for the bytes
 * past those it holds (`GET /admin/projects/exports/<id>` with `Range: bytes=N-`) and gets the
 * same archive, byte for byte, not a new export of a project that changed meanwhile.
 *
 * Bounded on disk and in time:
 * - a spool is written only while the disk keeps SPOOL_FREE_FLOOR_BYTES free (checked as it
 *   grows); below that, or past the largest archive an import takes, the export fails and its
 *   downloads are cut (a reader refuses an archive without its manifest);
 * - an account has at most MAX_WRITING_PER_ACCOUNT exports being written at once (429 past that);
 * - a finished spool is removed when the client says it holds the archive (DELETE), when it was
 *   not read for SPOOL_IDLE_MS, and oldest first when the finished spools held exceed
 *   SPOOL_KEEP_BYTES; spools a previous process left are removed at the first sweep.
 *
 * The spool lives on the node that wrote it (one process per data folder), and the export's id
 * says which: `<node id>.<32 random hex digits>` (newExportId). A resumed download that reaches
 * another node of the cloud is relayed to the writer (export-relay.ts), so a cluster behind a
 * balancer needs no sticky routing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, rm, stat, statfs, type FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { errors } from '../../kit/errors.js';
import { isNodeId } from '../../kit/node-id.js';
import { DEFAULT_ARCHIVE_LIMITS } from './archive.js';

/** Free bytes a spool leaves on the data folder's disk. */
export const SPOOL_FREE_FLOOR_BYTES = 512 * 1024 * 1024;
/** How long a finished spool waits for a (resumed) download after the last one. */
export const SPOOL_IDLE_MS = 3600 * 1000;
/** The most finished spools kept at once, in bytes. */
export const SPOOL_KEEP_BYTES = 20 * 1024 ** 3;
export const MAX_WRITING_PER_ACCOUNT = 3;
/** How often (in bytes written) the free space is checked again. */
const FREE_CHECK_BYTES = 64 * 1024 * 1024;
const READ_CHUNK = 256 * 1024;
/** The random part of an export id: 128 bits, so an id is not guessed. */
const EXPORT_SECRET = /^[0-9a-f]{32}$/;

/** A new export's id: the writing node's id, a dot, then 32 random hex digits. */
export function newExportId(node: string): string {
  return `${node}.${randomBytes(16).toString('hex')}`;
}

/** The id of the node that wrote export `id`, or undefined when `id` is not an export id. */
export function writerOfExport(id: string): string | undefined {
  // A node id may hold dots itself: the random part is what follows the last one.
  const dot = id.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const node = id.slice(0, dot);
  return isNodeId(node) && EXPORT_SECRET.test(id.slice(dot + 1)) ? node : undefined;
}

/** The answer for an export id no spool of this cloud holds. */
export function noSuchExport(id: string): Error {
  return errors.notFound(`no export "${id.slice(0, 100)}": it finished more than an hour ago, or the server restarted; export again`);
}

export interface ExportSpool {
  id: string;
  accountId: string;
  project: string;
  file: string;
  /** Bytes in the file so far: what a download may read. */
  size: number;
  state: 'writing' | 'complete' | 'failed';
  /** The whole archive's sha256, once complete. */
  sha256?: string;
  failure?: string;
  /** Downloads reading it now. */
  readers: number;
  lastUsed: number;
}

/** What a download is told of a spool (`GET /admin/projects/exports/<id>?info`). */
export function spoolView(spool: ExportSpool): Record<string, unknown> {
  return { id: spool.id, project: spool.project, state: spool.state, size: spool.size, ...(spool.sha256 ? { sha256: spool.sha256 } : {}), ...(spool.failure ? { failure: spool.failure } : {}) };
}

export class ExportSpools {
  private readonly spools = new Map<string, ExportSpool>();
  /** Called when a spool grows or ends. */
  private readonly waiters = new Map<string, Set<() => void>>();
  private swept = false;

  constructor(
    /** This node's id (kit/node-id.ts): the first part of the id of every export written here. */
    readonly node: string,
    private readonly folder: () => Promise<string>,
    private readonly onFailure: (spool: ExportSpool, error: Error) => void,
    private readonly limits = { freeFloorBytes: SPOOL_FREE_FLOOR_BYTES, maxBytes: DEFAULT_ARCHIVE_LIMITS.maxTotalBytes, idleMs: SPOOL_IDLE_MS, keepBytes: SPOOL_KEEP_BYTES },
  ) {}

  /** Checks the account may start one more export (before the export reads anything). */
  admit(accountId: string): void {
    const writing = [...this.spools.values()].filter((spool) => spool.accountId === accountId && spool.state === 'writing').length;
    if (writing >= MAX_WRITING_PER_ACCOUNT) {
      throw errors.tooManyRequests(`this account has ${writing} exports being written; wait for one to finish (each is at most a few minutes per GiB)`).withHeaders({ 'retry-after': '30' });
    }
  }

  /**
   * Spools `output` (an archive as the writer streams it) to a new file: answers the spool at
   * once, the writing going on by itself. `stop` ends the export that feeds `output`.
   */
  async start(accountId: string, project: string, output: Readable, stop: (error: Error) => void): Promise<ExportSpool> {
    await this.sweep();
    const id = newExportId(this.node);
    const file = join(await this.folder(), `export-${createHash('sha256').update(`${accountId}/${id}`).digest('hex').slice(0, 40)}.tgz`);
    const handle = await open(file, 'w', 0o600);
    const spool: ExportSpool = { id, accountId, project, file, size: 0, state: 'writing', readers: 0, lastUsed: Date.now() };
    this.spools.set(id, spool);
    void this.write(spool, handle, output).then(
      (sha256) => {
        spool.sha256 = sha256;
        spool.state = 'complete';
        spool.lastUsed = Date.now();
        this.notify(spool);
      },
      async (error: Error) => {
        stop(error);
        output.destroy();
        spool.state = 'failed';
        spool.failure = error.message;
        this.notify(spool);
        this.onFailure(spool, error);
        // Nobody can resume a failed export: its bytes go at once.
        await rm(spool.file, { force: true });
      },
    );
    return spool;
  }

  private async write(spool: ExportSpool, handle: FileHandle, output: Readable): Promise<string> {
    const hash = createHash('sha256');
    let checked = 0;
    try {
      for await (const chunk of output as AsyncIterable<Buffer>) {
        if (spool.size + chunk.length > this.limits.maxBytes) throw errors.payloadTooLarge(`the archive is larger than the ${this.limits.maxBytes} bytes an import takes`);
        if (spool.size + chunk.length - checked >= FREE_CHECK_BYTES || checked === 0) {
          checked = spool.size + chunk.length;
          const disk = await statfs(spool.file);
          if (disk.bavail * disk.bsize - chunk.length < this.limits.freeFloorBytes) {
            throw errors.unavailable(`the data folder's disk has less than ${this.limits.freeFloorBytes} bytes free: the export stopped rather than fill it`);
          }
        }
        await handle.write(chunk, 0, chunk.length, spool.size);
        hash.update(chunk);
        spool.size += chunk.length;
        this.notify(spool);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    return hash.digest('hex');
  }

  /** The caller's spool `id` (another account's is not found). */
  find(accountId: string, id: string): ExportSpool {
    const spool = writerOfExport(id) === this.node ? this.spools.get(id) : undefined;
    if (!spool || spool.accountId !== accountId) throw noSuchExport(id);
    return spool;
  }

  /**
   * Sends the spool's bytes from `offset` into `response` (headers already written), following
   * the file while the export writes it; cuts the response if the export fails.
   */
  async send(spool: ExportSpool, offset: number, response: ServerResponse): Promise<void> {
    spool.readers++;
    spool.lastUsed = Date.now();
    // The download gone (its socket closed) ends the loop: a closed response neither drains nor closes again.
    let closed = response.destroyed;
    const onClose = () => (closed = true);
    response.once('close', onClose);
    let handle: FileHandle | undefined;
    try {
      handle = await open(spool.file, 'r');
      const buffer = Buffer.alloc(READ_CHUNK);
      let position = offset;
      while (!closed) {
        if (position < spool.size) {
          const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_CHUNK, spool.size - position), position);
          if (bytesRead === 0) throw new Error(`the spool of export ${spool.id} is shorter than written`);
          position += bytesRead;
          // A copy: the buffer is read into again while the socket may still hold this chunk.
          if (!response.write(Buffer.from(buffer.subarray(0, bytesRead))) && !closed) await drained(response);
          continue;
        }
        if (spool.state === 'complete') {
          response.end();
          return;
        }
        if (spool.state === 'failed') {
          response.destroy();
          return;
        }
        await this.changed(spool, response);
      }
    } catch (error) {
      response.destroy(error as Error);
    } finally {
      response.off('close', onClose);
      await handle?.close();
      spool.readers--;
      spool.lastUsed = Date.now();
    }
  }

  /** The client holds the archive: its spool goes (after the downloads reading it end). */
  async release(spool: ExportSpool): Promise<void> {
    if (spool.state === 'writing') throw errors.conflict(`export ${spool.id} is still being written; remove it once it is complete`);
    this.spools.delete(spool.id);
    await rm(spool.file, { force: true });
  }

  /** Removes finished spools idle too long, the oldest when they hold too much, and files no spool knows. */
  async sweep(): Promise<void> {
    const now = Date.now();
    const finished = [...this.spools.values()].filter((spool) => spool.state !== 'writing' && spool.readers === 0).sort((left, right) => left.lastUsed - right.lastUsed);
    let kept = finished.reduce((sum, spool) => sum + spool.size, 0);
    for (const spool of finished) {
      if (now - spool.lastUsed > this.limits.idleMs || kept > this.limits.keepBytes) {
        kept -= spool.size;
        this.spools.delete(spool.id);
        await rm(spool.file, { force: true });
      }
    }
    if (this.swept) return;
    // Spools of an earlier process of this data folder: nobody can resume them (their ids were in its memory).
    this.swept = true;
    const folder = await this.folder();
    const known = new Set([...this.spools.values()].map((spool) => spool.file));
    for (const name of await readdir(folder)) {
      const path = join(folder, name);
      if (name.startsWith('export-') && !known.has(path) && (await stat(path).catch(() => undefined))) await rm(path, { force: true });
    }
  }

  private notify(spool: ExportSpool): void {
    const waiting = this.waiters.get(spool.id);
    if (!waiting) return;
    this.waiters.delete(spool.id);
    for (const wake of waiting) wake();
  }

  /** Waits for the spool to grow or end, or the download to go away. */
  private changed(spool: ExportSpool, response: ServerResponse): Promise<void> {
    return new Promise((resolve) => {
      const waiting = this.waiters.get(spool.id) ?? new Set<() => void>();
      this.waiters.set(spool.id, waiting);
      const wake = () => {
        response.off('close', wake);
        waiting.delete(wake);
        resolve();
      };
      waiting.add(wake);
      response.once('close', wake);
    });
  }
}

function drained(response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.once('drain', done);
    response.once('close', done);
  });
}

/** Parses `Range: bytes=N-` (the only form a resumed download sends); 0 without one. */
export function rangeStart(header: string | undefined): number {
  if (header === undefined) return 0;
  const match = /^bytes=(\d{1,15})-$/.exec(header.trim());
  if (!match) throw errors.badRequest('Range: only "bytes=N-" (the bytes from N on) is served for an export');
  return Number(match[1]);
}
