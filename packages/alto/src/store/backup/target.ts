/**
 * @module store/backup/target
 * Where backups are kept: a folder on disk, or an S3-compatible bucket (`s3://BUCKET[/prefix]?
 * endpoint=URL&region=R&path_style=1`, the format of `--objects`, with the AWS_* credentials).
 * Both hold the same layout: the content-addressed blobs, `blobs/sha256/<hex>`, and one
 * `<id>/manifest.json` per finished backup (store/backup/manifest). A blob is put whole and
 * checked: in the folder through a temporary file renamed into place, in the bucket by one
 * upload whose bytes are hashed on the way and deleted again if they are not the content hashed
 * before.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { parseObjectsUrl, type S3Location } from '../objects/s3.js';
import { pidLockHolder, takePidLock } from '../../kit/pid-lock.js';
import { BLOB_FOLDER, blobExists, blobPath, copyIntoBlobs, moveFileIntoBlobs, prepareBackupFolder, temporaryPath, type Digest } from './blobs.js';
import { checkManifest, finishedBackups, MANIFEST_FILE, readManifest, sortBackupIds, writeManifest, type BackupManifest } from './manifest.js';

export interface BackupTarget {
  /** The folder or the bucket's URL, for messages. */
  readonly name: string;
  hasBlob(digest: Digest): Promise<boolean>;
  /** Puts the content of `handle`, hashed before as `digest`; throws when it changed meanwhile. */
  putBlob(digest: Digest, handle: FileHandle, path: string): Promise<void>;
  /** A file name for a copy made on the way (the database's), on the blobs' file system when there is one. */
  temporaryFile(): string;
  /** Puts a temporary file's content in the blobs and removes it; false when it was there already. */
  putTemporaryFile(path: string, digest: Digest): Promise<boolean>;
  /** The blob's content; undefined when it is missing. */
  readBlob(sha256: string): Promise<Readable | undefined>;
  /** The finished backups' ids, oldest first. */
  finishedBackups(): Promise<string[]>;
  /** Entries of backups that did not finish (cut short: no manifest), to be removed by a prune. */
  unfinishedEntries(): Promise<string[]>;
  /** Whether an entry of that id exists, finished or not. */
  hasEntry(id: string): Promise<boolean>;
  beginEntry(id: string): Promise<void>;
  readManifest(id: string): Promise<BackupManifest>;
  /** Written last: from then on the backup counts as finished. */
  writeManifest(manifest: BackupManifest): Promise<void>;
  /** Removes a backup's entry (its manifest first, so it is never half there as finished). */
  deleteEntry(id: string): Promise<void>;
  /** Every blob's digest (its name). */
  listBlobs(): Promise<string[]>;
  deleteBlob(sha256: string): Promise<void>;
  /**
   * Held while a backup or a prune writes: a folder's is a lock file, so a backup of another
   * process is refused while one runs; a bucket has none (do not run two into one bucket while
   * old backups are pruned).
   */
  lock(): { release(): void };
  close(): Promise<void>;
}

/** The target a `--to` (or restore's BACKUP) names: `s3://...` or a folder. */
export async function openBackupTarget(location: string, options: { create: boolean }): Promise<BackupTarget> {
  if (location.startsWith('s3://')) return S3BackupTarget.open(location);
  if (options.create) prepareBackupFolder(location);
  else if (!existsSync(location)) throw new Error(`${location} does not exist: give the folder "alto backup --to" wrote into`);
  return new FolderBackupTarget(location);
}

class FolderBackupTarget implements BackupTarget {
  constructor(readonly name: string) {}

  hasBlob(digest: Digest): Promise<boolean> {
    return blobExists(this.name, digest);
  }

  putBlob(digest: Digest, handle: FileHandle, path: string): Promise<void> {
    return copyIntoBlobs(this.name, digest, handle, path);
  }

  temporaryFile(): string {
    return temporaryPath(this.name);
  }

  async putTemporaryFile(path: string, digest: Digest): Promise<boolean> {
    return (await moveFileIntoBlobs(this.name, path, digest)).copied;
  }

  async readBlob(sha256: string): Promise<Readable | undefined> {
    const path = blobPath(this.name, sha256);
    return existsSync(path) ? createReadStream(path) : undefined;
  }

  async finishedBackups(): Promise<string[]> {
    return finishedBackups(this.name);
  }

  async unfinishedEntries(): Promise<string[]> {
    return sortBackupIds(readdirSync(this.name)).filter((id) => !existsSync(join(this.name, id, MANIFEST_FILE)));
  }

  async hasEntry(id: string): Promise<boolean> {
    return existsSync(join(this.name, id));
  }

  async beginEntry(id: string): Promise<void> {
    mkdirSync(join(this.name, id), { mode: 0o700 });
  }

  async readManifest(id: string): Promise<BackupManifest> {
    return readManifest(this.name, id);
  }

  async writeManifest(manifest: BackupManifest): Promise<void> {
    writeManifest(this.name, manifest);
  }

  async deleteEntry(id: string): Promise<void> {
    rmSync(join(this.name, id, MANIFEST_FILE), { force: true });
    rmSync(join(this.name, id), { recursive: true, force: true });
  }

  async listBlobs(): Promise<string[]> {
    return readdirSync(join(this.name, BLOB_FOLDER));
  }

  async deleteBlob(sha256: string): Promise<void> {
    rmSync(blobPath(this.name, sha256), { force: true });
  }

  lock(): { release(): void } {
    const path = join(this.name, 'lock');
    if (!takePidLock(path)) throw new Error(`another backup is writing into ${this.name} (process ${pidLockHolder(path) ?? 'unknown'}): wait for it to end`);
    return { release: () => rmSync(path, { force: true }) };
  }

  async close(): Promise<void> {}
}

const BLOB_PREFIX = 'blobs/sha256/';
/** Bytes of one multipart part: S3's minimum is 5 MiB. */
const PART_BYTES = 8 * 1024 * 1024;

function isMissing(error: unknown): boolean {
  const name = (error as Error).name;
  return name === 'NoSuchKey' || name === 'NotFound' || (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;
}

class S3BackupTarget implements BackupTarget {
  private readonly scratch = mkdtempSync(join(tmpdir(), 'alto-backup-'));

  private constructor(
    readonly name: string,
    private readonly client: S3Client,
    private readonly location: S3Location,
  ) {}

  static async open(url: string): Promise<S3BackupTarget> {
    let location: S3Location;
    try {
      location = parseObjectsUrl(url);
    } catch (error) {
      throw new Error((error as Error).message.replaceAll('--objects', 'the backup bucket'));
    }
    const client = new S3Client({
      region: location.region,
      endpoint: location.endpoint,
      forcePathStyle: location.forcePathStyle,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const target = new S3BackupTarget(`s3://${location.bucket}/${location.prefix}`, client, location);
    try {
      await client.send(new ListObjectsV2Command({ Bucket: location.bucket, Prefix: location.prefix, MaxKeys: 1 }));
    } catch (error) {
      await target.close();
      throw new Error(`backup bucket "${location.bucket}"${location.endpoint ? ` at ${location.endpoint}` : ''}: ${(error as Error).message || (error as Error).name}`);
    }
    return target;
  }

  private key(path: string): string {
    return this.location.prefix + path;
  }

  async hasBlob(digest: Digest): Promise<boolean> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.key(BLOB_PREFIX + digest.sha256) }));
      return head.ContentLength === digest.size;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  async putBlob(digest: Digest, handle: FileHandle, path: string): Promise<void> {
    await this.upload(digest, createReadStream('', { fd: handle, start: 0, autoClose: false }), path);
  }

  private async upload(digest: Digest, content: Readable, path: string): Promise<void> {
    const hash = createHash('sha256');
    const body = new PassThrough();
    content.on('data', (chunk: Buffer) => hash.update(chunk));
    content.on('error', (error) => body.destroy(error));
    content.pipe(body);
    const key = this.key(BLOB_PREFIX + digest.sha256);
    await new Upload({ client: this.client, params: { Bucket: this.location.bucket, Key: key, Body: body }, partSize: PART_BYTES, queueSize: 2 }).done();
    if (hash.digest('hex') !== digest.sha256) {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: key }));
      throw new Error(`${path} changed while it was copied: it is written in place by something that does not hold its lock`);
    }
  }

  temporaryFile(): string {
    return join(this.scratch, `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);
  }

  async putTemporaryFile(path: string, digest: Digest): Promise<boolean> {
    try {
      if (await this.hasBlob(digest)) return false;
      await this.upload(digest, createReadStream(path), path);
      return true;
    } finally {
      await rm(path, { force: true });
    }
  }

  async readBlob(sha256: string): Promise<Readable | undefined> {
    try {
      const object = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(BLOB_PREFIX + sha256) }));
      return object.Body as Readable;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /** Every key under the prefix's top level that ends an entry: `<id>/manifest.json`. */
  async finishedBackups(): Promise<string[]> {
    const entries: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: this.location.prefix, Delimiter: '/', ContinuationToken: token }));
      for (const prefix of page.CommonPrefixes ?? []) entries.push(prefix.Prefix!.slice(this.location.prefix.length, -1));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const finished: string[] = [];
    for (const id of sortBackupIds(entries)) if (await this.exists(`${id}/${MANIFEST_FILE}`)) finished.push(id);
    return finished;
  }

  private async exists(path: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.key(path) }));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  /** A backup in the bucket writes nothing under its id but its manifest: none is ever unfinished. */
  async unfinishedEntries(): Promise<string[]> {
    return [];
  }

  /** An entry is its manifest: a backup in the bucket writes nothing else under its id. */
  hasEntry(id: string): Promise<boolean> {
    return this.exists(`${id}/${MANIFEST_FILE}`);
  }

  async beginEntry(): Promise<void> {}

  async readManifest(id: string): Promise<BackupManifest> {
    const where = `${this.name}${id}/${MANIFEST_FILE}`;
    let text: string;
    try {
      const object = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(`${id}/${MANIFEST_FILE}`) }));
      text = await object.Body!.transformToString();
    } catch (error) {
      if (isMissing(error)) throw new Error(`${this.name} has no finished backup ${id} (no ${MANIFEST_FILE})`);
      throw error;
    }
    return checkManifest(text, where);
  }

  async writeManifest(manifest: BackupManifest): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.location.bucket,
        Key: this.key(`${manifest.id}/${MANIFEST_FILE}`),
        Body: JSON.stringify(manifest, null, 2) + '\n',
        ContentType: 'application/json',
      }),
    );
  }

  async deleteEntry(id: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.key(`${id}/${MANIFEST_FILE}`) }));
  }

  async listBlobs(): Promise<string[]> {
    const digests: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: this.key(BLOB_PREFIX), ContinuationToken: token }));
      for (const object of page.Contents ?? []) digests.push(object.Key!.slice(this.key(BLOB_PREFIX).length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return digests;
  }

  async deleteBlob(sha256: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.key(BLOB_PREFIX + sha256) }));
  }

  lock(): { release(): void } {
    return { release: () => {} };
  }

  async close(): Promise<void> {
    this.client.destroy();
    rmSync(this.scratch, { recursive: true, force: true });
  }
}
