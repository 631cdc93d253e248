/**
 * @module store/backup/backup-instance
 * `alto backup`: an online, consistent copy of an embedded instance's data folder into a backup
 * folder, while the instance serves (or not). In this order:
 *
 * 1. **The database**: on PostgreSQL (`postgresUrl`), a `pg_dump` of it (store/backup/postgres-dump),
 *    its checksum in the manifest; and `alto.db` (all of it, or the node-local records beside
 *    PostgreSQL) through SQLite's online backup API (better-sqlite3's
 *    `db.backup()`), in one step after the first: one read transaction, so the copy is the
 *    database as of one moment, with every write committed before it began. A running Alto keeps
 *    writing meanwhile (WAL: readers never block the writer).
 * 2. **The space objects and the functions' sources** (`objects/`), after the database, so every
 *    object its records name exists (unless deleted in between, as a function's previous source
 *    is when a new build replaces it). An object is never changed in place (each write renames a
 *    whole new file over it), so each file is read from one open handle as it was when opened.
 * 3. **The app volumes** (`apps/volumes/<project>/<app>/<volume>`): each is claimed with its lock
 *    file, the one an app instance holds while it runs (kit/pid-lock), and copied while claimed,
 *    so no instance writes it during the copy (an instance starting then fails as on a volume in
 *    use, and its slot starts it again after its back-off). A volume held by an instance (running,
 *    or suspended when idle) is copied through `snapshotVolumeInUse` (compute/sandbox/
 *    volume-snapshot: its filesystem frozen while its disk image is copied, the app serving on; a
 *    microVM's frozen in its guest while QEMU starts a point-in-time copy of its disk); one that
 *    cannot be is listed under `skipped` with the reason.
 * 4. The image blobs (`images/blobs/sha256`), after the database: its image records name them,
 *    and the node starts its apps and functions from them (it does not pull them again). Each is
 *    written whole, then renamed into place; `withoutImages` leaves them out.
 * 5. The small files that make the data folder this node's: `admin-key`, `node-id`,
 *    `space-signing-key`, `prices.json`.
 *
 * Not copied, and said so in the manifest: unpacked layers and app snapshots (made again), builds
 * and function dependencies (made again from the sources), app logs. The master key is not copied unless asked: whoever
 * holds the backup and the key can read every secret, so keep the key apart (a password
 * manager); `includeMasterKey` puts it in, in plain text, with a warning.
 *
 * Every file goes into the target's content-addressed blobs (a folder or a bucket,
 * store/backup/target): a second backup copies only content that is new, and a file whose
 * inode, size and modification time are those of the newest earlier backup is not even read.
 */
import { existsSync, lstatSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { pidLockHolder, takePidLock } from '../../kit/pid-lock.js';
import { VERSION } from '../../version.js';
import { digestFile, readAll, type Digest } from './blobs.js';
import { dumpPostgres } from './postgres-dump.js';
import { backupIdFor, type BackupFile, type BackupManifest, type BackupPart, type SkippedPart } from './manifest.js';
import type { BackupTarget } from './target.js';
import type { SqliteDatabase } from '../sqlite/database.js';

export interface BackupInstanceOptions {
  /** The embedded instance's data folder. */
  dataDir: string;
  /** Where the backup goes: a folder or a bucket (store/backup/target). */
  to: BackupTarget;
  /** `--store postgres://...`: the database is PostgreSQL's, dumped with pg_dump when its URL is given. */
  postgres?: boolean;
  /** The PostgreSQL store's URL: its database goes into the backup as a pg_dump (store/backup/postgres-dump). */
  postgresUrl?: string;
  /** `--objects s3://...`: the space objects are in the bucket, backed up with its own tools. */
  objectsInBucket?: boolean;
  /** Puts the master key in the backup (in plain text). */
  includeMasterKey?: boolean;
  /** Leaves the image blobs out: the restored node then has image records without their layers. */
  withoutImages?: boolean;
  /** ALTO_MASTER_KEY, used when the data folder has no key file and the key is included. */
  masterKeyFromEnvironment?: string;
  /** Receives one line per part. */
  report(line: string): void;
  /**
   * The database connection to copy from: a backup made inside the running Alto passes its own,
   * whose writes SQLite copies into the backup as it goes. Else one is opened on `alto.db`.
   */
  database?: SqliteDatabase;
  /**
   * Claims a volume folder for the copy; undefined while an instance holds it. By default its
   * lock file (another process's instances); inside the running Alto, the claim its instances use.
   */
  claimVolume?(folder: string): { release(): void } | undefined;
  /**
   * Copies the disk image of a volume an instance holds into `destination`, consistent as of one
   * moment (compute/sandbox/volume-snapshot); says why not when it cannot. None: such a volume is
   * left out.
   */
  snapshotVolumeInUse?(folder: string, destination: string): Promise<{ copied: true; image: string; frozenMs: number; how?: string } | { copied: false; reason: string }>;
  /** Stops the backup between two files (Alto stopping); its entry stays unfinished. */
  signal?: AbortSignal;
}

export interface BackupResult {
  manifest: BackupManifest;
  /** Blobs written by this backup, and their bytes. */
  copiedBlobs: number;
  copiedBytes: number;
  /** Files whose content the folder held already. */
  reusedFiles: number;
}

/** Files of the data folder's top level that belong to this node. */
const SETTINGS_FILES = ['admin-key', 'node-id', 'space-signing-key', 'prices.json'];
const MASTER_KEY_FILE = 'master-key';
/** The local object store's folder for writes in progress (store/objects/local). */
const OBJECTS_TEMPORARY_FOLDER = '.tmp';
const VOLUME_LOCK = 'lock';
/** Names the socket of the microVM instance holding a volume (compute/sandbox/microvm-volume-backup); left by a killed Alto. */
const VOLUME_BACKUP_POINTER = 'backup-socket';
/** The image blob store's content (compute/images/blob-store): `<hex>` files, each whole. */
const IMAGE_BLOBS = 'images/blobs/sha256';

export const NOT_BACKED_UP: SkippedPart[] = [
  { what: 'unpacked image layers, app root filesystems', reason: 'unpacked again from the image blobs' },
  { what: 'app snapshots, sandbox state', reason: 'made again when apps start' },
  { what: 'builds and function dependencies', reason: 'built again from the stored sources' },
  { what: 'app logs', reason: 'not part of the instance\'s state' },
];

/** Backs the instance up, holding the target's lock (a folder's) throughout. */
export async function backupInstance(options: BackupInstanceOptions): Promise<BackupResult> {
  const lock = options.to.lock();
  try {
    return await backupUnderLock(options);
  } finally {
    lock.release();
  }
}

async function backupUnderLock(options: BackupInstanceOptions): Promise<BackupResult> {
  const { dataDir, to, report } = options;
  if (!existsSync(dataDir)) throw new Error(`${dataDir} does not exist: give the data folder of the instance to back up (--data)`);
  if (!options.postgres && !existsSync(join(dataDir, 'alto.db'))) throw new Error(`${dataDir} holds no embedded instance (no alto.db): give its data folder (--data)`);
  const previous = await newestManifest(to);
  const startedAt = new Date();
  const id = await backupIdFor(startedAt, (candidate) => to.hasEntry(candidate));
  await to.beginEntry(id);
  const files: BackupFile[] = [];
  const skipped: SkippedPart[] = [];
  const result = { copiedBlobs: 0, copiedBytes: 0, reusedFiles: 0 };
  const add = (path: string, part: BackupPart, blob: StoredBlob, mode: number, source?: BackupFile['source']) => {
    files.push({ path, size: blob.size, sha256: blob.sha256, mode, part, ...(source ? { source } : {}) });
    if (blob.copied) {
      result.copiedBlobs++;
      result.copiedBytes += blob.size;
    } else result.reusedFiles++;
  };
  /**
   * Stores a data folder file, skipping the read when the newest backup has it unchanged. A file
   * gone since it was listed (an object deleted meanwhile, after the database was copied) is left
   * out; only the source's absence is forgiven, never a failure to write the backup.
   */
  const addFile = async (path: string, part: BackupPart) => {
    options.signal?.throwIfAborted();
    const absolute = join(dataDir, ...path.split('/'));
    const info = await stat(absolute).catch(unlessMissing);
    if (!info) return;
    const source = { inode: info.ino, modifiedMs: info.mtimeMs };
    const earlier = previous.get(path);
    if (earlier?.source && earlier.source.inode === source.inode && earlier.source.modifiedMs === source.modifiedMs && earlier.size === info.size && (await to.hasBlob(earlier))) {
      add(path, part, { sha256: earlier.sha256, size: earlier.size, copied: false }, info.mode & 0o777, source);
      return;
    }
    const blob = await storeFile(to, absolute);
    if (blob) add(path, part, blob, info.mode & 0o777, source);
  };

  let postgresDump: BackupManifest['postgresDump'];
  if (options.postgresUrl) {
    const temporary = to.temporaryFile();
    let pgDumpVersion: string;
    try {
      pgDumpVersion = await dumpPostgres(options.postgresUrl, temporary);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
    const blob = await storeTemporaryFile(to, temporary);
    if (blob.copied) {
      result.copiedBlobs++;
      result.copiedBytes += blob.size;
    } else result.reusedFiles++;
    postgresDump = { sha256: blob.sha256, size: blob.size, pgDumpVersion };
    report(`database: PostgreSQL, ${formatBytes(blob.size)} (pg_dump, custom format)`);
  } else if (options.postgres) {
    skipped.push({ what: 'database', reason: 'the store is PostgreSQL: back it up with its own tools (pg_dump, or your provider\'s backups)' });
    report('database: PostgreSQL, not copied: back it up with pg_dump or your provider\'s backups');
  }
  // With PostgreSQL, alto.db still holds the node-local records (images, cache, events).
  if (existsSync(join(dataDir, 'alto.db'))) {
    const blob = await backupDatabase(options.database ?? join(dataDir, 'alto.db'), to);
    add('alto.db', 'database', blob, 0o600);
    report(`database: alto.db, ${formatBytes(blob.size)} (SQLite online backup)`);
  }

  if (options.objectsInBucket) {
    skipped.push({ what: 'space objects and function sources', reason: 'they are in the S3 bucket given with --objects: back it up with its own tools (versioning, replication)' });
    report('objects: in the S3 bucket, not copied: back it up with its own tools');
  } else {
    const before = files.length;
    for (const path of await listFiles(dataDir, 'objects', (relative) => relative === `objects/${OBJECTS_TEMPORARY_FOLDER}`)) await addFile(path, 'object');
    report(`objects: ${files.length - before} files (space objects and function sources)`);
  }

  const claimVolume = options.claimVolume ?? claimVolumeLock;
  // After the database too: every image blob its image records name is there (a blob enters by
  // a rename once whole, and stays until its image is removed).
  if (options.withoutImages) {
    skipped.push({ what: 'images', reason: 'left out (--without-images): the restored node has their records but not their layers; push or pull them again and redeploy its apps' });
    report('images: left out (--without-images)');
  } else {
    const before = files.length;
    const blobs = await listFiles(dataDir, IMAGE_BLOBS, (relative) => !/^images\/blobs\/sha256(\/[0-9a-f]{64})?$/.test(relative));
    for (const path of blobs) await addFile(path, 'image');
    report(`images: ${files.length - before} blobs (the layers and configurations of this node's images)`);
  }

  for (const volume of listVolumes(dataDir)) {
    const folder = join(dataDir, ...volume.split('/'));
    const claim = claimVolume(folder);
    if (!claim) {
      const holder = pidLockHolder(join(folder, VOLUME_LOCK)) ?? process.pid;
      const snapshot = await snapshotHeldVolume(options, folder);
      if (snapshot.copied) {
        const info = await stat(snapshot.image);
        add(`${volume}/${basename(snapshot.image)}`, 'volume', snapshot.blob, info.mode & 0o777);
        report(`volume ${volume}: copied from its running instance, its filesystem frozen for ${Math.round(snapshot.frozenMs)} ms${snapshot.how ? ` ${snapshot.how}` : ''}`);
        continue;
      }
      skipped.push({ what: `volume ${volume}`, reason: `in use by an app instance (Alto process ${holder}) and not copied: ${snapshot.reason}; a backup of the stopped instance copies it` });
      report(`volume ${volume}: in use by a running instance, not copied (${snapshot.reason})`);
      continue;
    }
    try {
      const paths = await listFiles(dataDir, volume, (relative) => relative === `${volume}/${VOLUME_LOCK}` || relative === `${volume}/${VOLUME_BACKUP_POINTER}`);
      for (const path of paths) await addFile(path, 'volume');
      report(`volume ${volume}: ${paths.length} files, copied while claimed (no instance wrote it meanwhile)`);
    } finally {
      claim.release();
    }
  }

  for (const name of SETTINGS_FILES) if (existsSync(join(dataDir, name))) await addFile(name, 'settings');
  let masterKey: BackupManifest['masterKey'] = 'not included';
  if (options.includeMasterKey) {
    masterKey = 'included';
    if (existsSync(join(dataDir, MASTER_KEY_FILE))) await addFile(MASTER_KEY_FILE, 'settings');
    else if (options.masterKeyFromEnvironment) {
      const temporary = to.temporaryFile();
      writeFileSync(temporary, options.masterKeyFromEnvironment.trim() + '\n', { mode: 0o600 });
      add(MASTER_KEY_FILE, 'settings', await storeTemporaryFile(to, temporary), 0o600);
    } else throw new Error(`--include-master-key: ${dataDir} has no master-key file and ALTO_MASTER_KEY is not set; there is no key to include`);
  }
  skipped.push(...NOT_BACKED_UP);
  if (!options.includeMasterKey) skipped.push({ what: 'master key', reason: 'kept by you, apart from the backups: the restored instance needs it (ALTO_MASTER_KEY or <data>/master-key)' });

  const manifest: BackupManifest = {
    format: 'alto-backup/1',
    id,
    altoVersion: VERSION,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    dataDir,
    masterKey,
    files,
    skipped,
    ...(postgresDump ? { postgresDump } : {}),
  };
  await to.writeManifest(manifest);
  return { manifest, ...result };
}

/**
 * Copies the database with SQLite's online backup API into a temporary file (in the backup
 * folder's `.tmp/`, or a local one for a bucket), then into the blobs. SQLite starts a copy again
 * when a connection other than the one copying writes between two steps, so:
 * - from a connection of our own (another process's instance), every page left is asked for in
 *   the second step: one step holds one read transaction, which lets it finish while the instance
 *   writes;
 * - from the running Alto's own connection, whose writes SQLite copies into the backup as it goes,
 *   it steps 1,000 pages at a time, letting requests run between steps, until a write of another
 *   connection (the usage writer's) starts it again: then the rest goes in one step.
 */
async function backupDatabase(source: SqliteDatabase | string, to: BackupTarget): Promise<StoredBlob> {
  const database = typeof source === 'string' ? new Database(source, { fileMustExist: true }) : source;
  const temporary = to.temporaryFile();
  let fewestLeft = Infinity;
  const pagesPerStep = ({ remainingPages }: { remainingPages: number }) => {
    if (typeof source === 'string' || remainingPages > fewestLeft) return 2 ** 30;
    fewestLeft = remainingPages;
    return 1000;
  };
  try {
    if (typeof source === 'string') database.pragma('busy_timeout = 5000');
    await database.backup(temporary, { progress: pagesPerStep });
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  } finally {
    if (typeof source === 'string') database.close();
  }
  return storeTemporaryFile(to, temporary);
}

/** A held volume's image copied into a temporary file of the target, then into its blobs. */
async function snapshotHeldVolume(
  options: BackupInstanceOptions,
  folder: string,
): Promise<{ copied: true; image: string; frozenMs: number; how?: string; blob: StoredBlob } | { copied: false; reason: string }> {
  if (!options.snapshotVolumeInUse) return { copied: false, reason: 'this backup cannot freeze a running instance\'s volume' };
  const temporary = options.to.temporaryFile();
  let snapshot;
  try {
    snapshot = await options.snapshotVolumeInUse(folder, temporary);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  if (!snapshot.copied) {
    await rm(temporary, { force: true });
    return snapshot;
  }
  return { ...snapshot, blob: await storeTemporaryFile(options.to, temporary) };
}

/** Another process's instances claim a volume with its lock file; so does the copy. */
function claimVolumeLock(folder: string): { release(): void } | undefined {
  const lock = join(folder, VOLUME_LOCK);
  if (!takePidLock(lock)) return undefined;
  return { release: () => rmSync(lock, { force: true }) };
}

interface StoredBlob extends Digest {
  /** False when the target held the content already and nothing was copied. */
  copied: boolean;
}

/**
 * Puts a data folder file's content in the target. The file is opened once and read from that
 * handle: a file replaced by a rename meanwhile (as space objects are) is read as it was when
 * opened. It is hashed first and copied only when the target has no blob of that digest.
 * Undefined when the file is gone.
 */
async function storeFile(to: BackupTarget, path: string): Promise<StoredBlob | undefined> {
  const handle = await open(path, 'r').catch(unlessMissing);
  if (!handle) return undefined;
  try {
    const digest = await readAll(handle);
    if (await to.hasBlob(digest)) return { ...digest, copied: false };
    await to.putBlob(digest, handle, path);
    return { ...digest, copied: true };
  } finally {
    await handle.close();
  }
}

/** For a source file: undefined when it is gone, the error otherwise. */
function unlessMissing(error: NodeJS.ErrnoException): undefined {
  if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
  throw error;
}

async function storeTemporaryFile(to: BackupTarget, temporary: string): Promise<StoredBlob> {
  const digest = await digestFile(temporary);
  return { ...digest, copied: await to.putTemporaryFile(temporary, digest) };
}

/** The files of the newest finished backup, by path, for the unchanged-file shortcut. */
async function newestManifest(to: BackupTarget): Promise<Map<string, BackupFile>> {
  const ids = await to.finishedBackups();
  if (ids.length === 0) return new Map();
  return new Map((await to.readManifest(ids[ids.length - 1])).files.map((file) => [file.path, file]));
}

/** Every regular file under `folder` (relative to the data folder, `/`-separated), sorted. */
async function listFiles(dataDir: string, folder: string, skip: (relative: string) => boolean): Promise<string[]> {
  const found: string[] = [];
  const walk = async (relative: string) => {
    let entries;
    try {
      entries = await readdir(join(dataDir, ...relative.split('/')), { withFileTypes: true });
    } catch (error) {
      // A folder removed meanwhile (an object's last file deleted) has nothing to copy.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const path = `${relative}/${entry.name}`;
      if (skip(path)) continue;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) found.push(path);
    }
  };
  await walk(folder);
  return found.sort();
}

/**
 * `apps/volumes/<project>/<app>/<volume>` for each volume folder of the data folder (the layout
 * of compute/apps/spec: an app's volumes are folders of its own folder), each claimed by the
 * instance that uses it through the `lock` file inside it.
 */
function listVolumes(dataDir: string): string[] {
  const root = join(dataDir, 'apps', 'volumes');
  const folders = (relative: string[]) => {
    const path = join(root, ...relative);
    return readdirSync(path).filter((name) => lstatSync(join(path, name)).isDirectory()).sort();
  };
  if (!existsSync(root)) return [];
  const volumes: string[] = [];
  for (const project of folders([])) {
    for (const app of folders([project])) {
      for (const volume of folders([project, app])) volumes.push(`apps/volumes/${project}/${app}/${volume}`);
    }
  }
  return volumes;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
