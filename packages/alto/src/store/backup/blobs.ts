/**
 * @module store/backup/blobs
 * The content-addressed half of a backup folder: every file a backup holds is one blob,
 * `blobs/sha256/<hex>`, named by the sha256 of its content, so a file that is already there (from
 * an earlier backup into the same folder, or another file with the same bytes) is never copied
 * again. A blob enters through a temporary file in `.tmp/` whose digest is checked while it is
 * written, then renamed into place: a file under `blobs/` is always whole.
 *
 * Copies are sparse: a run of zeros (most of a volume's ext4 image) is skipped with a seek, not
 * written, both into the backup and back into a restored data folder.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';

const CHUNK_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(CHUNK_BYTES);
export const BLOB_FOLDER = join('blobs', 'sha256');
export const TEMPORARY_FOLDER = '.tmp';

export interface Digest {
  sha256: string;
  size: number;
}

/** The blob's path in a backup folder. */
export function blobPath(root: string, sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`"${sha256}" is not a sha256 digest`);
  return join(root, BLOB_FOLDER, sha256);
}

export async function blobExists(root: string, digest: Digest): Promise<boolean> {
  try {
    return (await stat(blobPath(root, digest.sha256))).size === digest.size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Reads an open file from the start, handing each chunk read to `onChunk`; returns its digest. */
export async function readAll(handle: FileHandle, onChunk?: (chunk: Buffer, position: number) => Promise<void>): Promise<Digest> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  let position = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, position);
    if (bytesRead === 0) break;
    const chunk = buffer.subarray(0, bytesRead);
    hash.update(chunk);
    await onChunk?.(chunk, position);
    position += bytesRead;
  }
  return { sha256: hash.digest('hex'), size: position };
}

/** The sha256 and size of a file's content. */
export async function digestFile(path: string): Promise<Digest> {
  const handle = await open(path, 'r');
  try {
    return await readAll(handle);
  } finally {
    await handle.close();
  }
}

/**
 * Copies what `source` holds into `target` (created, mode `mode`), leaving runs of zeros as holes,
 * and returns the digest of what was copied.
 */
async function copySparse(source: FileHandle, target: string, mode: number): Promise<Digest> {
  const output = await open(target, 'wx', mode);
  try {
    const digest = await readAll(source, async (chunk, position) => {
      if (!isZeros(chunk)) await output.write(chunk, 0, chunk.length, position);
    });
    await output.truncate(digest.size);
    await output.sync();
    return digest;
  } finally {
    await output.close();
  }
}

/** A fresh name in the backup folder's `.tmp/`, on the blobs' file system so a rename moves it. */
export function temporaryPath(root: string): string {
  return join(root, TEMPORARY_FOLDER, `${process.pid}-${randomBytes(6).toString('hex')}`);
}

/**
 * Copies the content of `handle`, hashed before as `digest`, into the blobs through a temporary
 * file; the copy is hashed again and refused if the content changed between the two reads.
 */
export async function copyIntoBlobs(root: string, digest: Digest, handle: FileHandle, path: string): Promise<void> {
  const temporary = temporaryPath(root);
  try {
    const copied = await copySparse(handle, temporary, 0o600);
    if (copied.sha256 !== digest.sha256) throw new Error(`${path} changed while it was copied: it is written in place by something that does not hold its lock`);
    await rename(temporary, blobPath(root, digest.sha256));
  } finally {
    await rm(temporary, { force: true });
  }
}

/** Moves a file made in the backup folder's `.tmp/` (the database's copy) into the blobs; false when the content was there. */
export async function moveFileIntoBlobs(root: string, temporary: string, digest: Digest): Promise<{ copied: boolean }> {
  if (await blobExists(root, digest)) {
    await rm(temporary, { force: true });
    return { copied: false };
  }
  await rename(temporary, blobPath(root, digest.sha256));
  return { copied: true };
}

/** The sha256 and size of a stream's content. */
export async function digestStream(content: Readable): Promise<Digest> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of content as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Writes a stream's content into a new file (mode `mode`), leaving runs of zeros as holes; returns its digest. */
export async function writeStreamSparse(content: Readable, target: string, mode: number): Promise<Digest> {
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  const output = await open(target, 'wx', mode);
  const hash = createHash('sha256');
  let position = 0;
  try {
    for await (const chunk of content as AsyncIterable<Buffer>) {
      hash.update(chunk);
      if (!isZeros(chunk)) await output.write(chunk, 0, chunk.length, position);
      position += chunk.length;
    }
    await output.truncate(position);
    await output.sync();
  } finally {
    await output.close();
  }
  return { sha256: hash.digest('hex'), size: position };
}

function isZeros(chunk: Buffer): boolean {
  for (let offset = 0; offset < chunk.length; offset += CHUNK_BYTES) {
    const part = chunk.subarray(offset, Math.min(chunk.length, offset + CHUNK_BYTES));
    if (!part.equals(ZEROS.subarray(0, part.length))) return false;
  }
  return true;
}

/** Makes the folders a backup folder needs (owner only: it holds every project's data). */
export function prepareBackupFolder(root: string): void {
  for (const folder of [root, join(root, BLOB_FOLDER), join(root, TEMPORARY_FOLDER)]) mkdirSync(folder, { recursive: true, mode: 0o700 });
}
