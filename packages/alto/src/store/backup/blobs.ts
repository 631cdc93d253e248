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
import { join } from 'node:path';

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
async function readAll(handle: FileHandle, onChunk?: (chunk: Buffer, position: number) => Promise<void>): Promise<Digest> {
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
      if (chunk.length === CHUNK_BYTES ? chunk.equals(ZEROS) : chunk.equals(ZEROS.subarray(0, chunk.length))) return;
      await output.write(chunk, 0, chunk.length, position);
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

export interface StoredBlob extends Digest {
  /** False when the backup folder held the content already and nothing was copied. */
  copied: boolean;
}

/**
 * Puts a file's content in the backup folder's blobs. The file is opened once and read from that
 * handle: a file replaced by a rename meanwhile (as space objects are) is read as it was when
 * opened. It is hashed first and copied only when no blob has that digest; the copy is hashed
 * again and refused if the content changed between the two reads.
 */
export async function storeFileAsBlob(root: string, path: string): Promise<StoredBlob> {
  const handle = await open(path, 'r');
  try {
    const digest = await readAll(handle);
    if (await blobExists(root, digest)) return { ...digest, copied: false };
    const temporary = temporaryPath(root);
    try {
      const copied = await copySparse(handle, temporary, 0o600);
      if (copied.sha256 !== digest.sha256) throw new Error(`${path} changed while it was copied: it is written in place by something that does not hold its lock`);
      await rename(temporary, blobPath(root, digest.sha256));
    } finally {
      await rm(temporary, { force: true });
    }
    return { ...digest, copied: true };
  } finally {
    await handle.close();
  }
}

/** Moves a file made inside the backup folder's `.tmp/` (the database copy) into the blobs. */
export async function moveFileIntoBlobs(root: string, temporary: string): Promise<StoredBlob> {
  const digest = await digestFile(temporary);
  if (await blobExists(root, digest)) {
    await rm(temporary, { force: true });
    return { ...digest, copied: false };
  }
  await rename(temporary, blobPath(root, digest.sha256));
  return { ...digest, copied: true };
}

/** Writes a blob's content to `target` (sparse, mode `mode`), checking it against its digest. */
export async function writeBlobTo(root: string, digest: Digest, target: string, mode: number): Promise<void> {
  const handle = await open(blobPath(root, digest.sha256), 'r');
  try {
    await mkdir(join(target, '..'), { recursive: true, mode: 0o700 });
    const written = await copySparse(handle, target, mode);
    if (written.sha256 !== digest.sha256 || written.size !== digest.size) throw new Error(`blob ${digest.sha256} changed while it was restored`);
  } finally {
    await handle.close();
  }
}

/** Makes the folders a backup folder needs (owner only: it holds every project's data). */
export function prepareBackupFolder(root: string): void {
  for (const folder of [root, join(root, BLOB_FOLDER), join(root, TEMPORARY_FOLDER)]) mkdirSync(folder, { recursive: true, mode: 0o700 });
}
