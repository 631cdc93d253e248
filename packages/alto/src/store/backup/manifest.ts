/**
 * @module store/backup/manifest
 * A backup folder holds `blobs/` (store/backup/blobs) and one entry per backup, `<id>/manifest.json`,
 * the id being the UTC time it began (`2026-12-07T01-15-00Z`, sortable as text). The manifest is
 * written last, by a rename: an entry without one is a backup that did not finish and is never
 * restored. It lists every file of the data folder the backup holds (its path in the data
 * folder, size, sha256 and mode), the Alto version, the times, what was skipped and why, and
 * whether the master key is in it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../kit/files.js';

export const MANIFEST_FORMAT = 'alto-backup/1';
export const MANIFEST_FILE = 'manifest.json';
const BACKUP_ID = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z(?:-\d+)?$/;

export interface BackupFile {
  /** Path in the data folder, with `/` between parts. */
  path: string;
  size: number;
  sha256: string;
  mode: number;
  /** Which part of the instance: database, settings (the node's files), object, image, volume. */
  part: BackupPart;
  /** The source file's inode and modification time: the next backup skips reading an unchanged file. */
  source?: { inode: number; modifiedMs: number };
}

export type BackupPart = 'database' | 'settings' | 'object' | 'image' | 'volume';

export interface SkippedPart {
  what: string;
  reason: string;
}

export interface BackupManifest {
  format: typeof MANIFEST_FORMAT;
  id: string;
  altoVersion: string;
  startedAt: string;
  finishedAt: string;
  /** The data folder backed up, as given. */
  dataDir: string;
  /** `included`: the data folder's master key is a file of this backup (`master-key`). */
  masterKey: 'included' | 'not included';
  files: BackupFile[];
  skipped: SkippedPart[];
  /**
   * `--store postgres://...`: a `pg_dump --format=custom` of the database, as a blob of the
   * backup (not a file of the data folder); `alto restore --store` loads it with pg_restore.
   */
  postgresDump?: { sha256: string; size: number; pgDumpVersion: string };
}

/** The id of a backup begun at `time`; `-2`, `-3`... when that second already has one. */
export async function backupIdFor(time: Date, taken: (id: string) => Promise<boolean>): Promise<string> {
  const base = time.toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
  let id = base;
  for (let suffix = 2; await taken(id); suffix++) id = `${base}-${suffix}`;
  return id;
}

/** The ids of the finished backups in a folder, oldest first. */
export function finishedBackups(root: string): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${root} does not exist: give the folder "alto backup --to" wrote into`);
    throw error;
  }
  return sortBackupIds(names).filter((name) => readdirSync(join(root, name)).includes(MANIFEST_FILE));
}

/** The names that are backup ids, in time order. */
export function sortBackupIds(names: string[]): string[] {
  return names.filter((name) => BACKUP_ID.test(name)).sort(compareIds);
}

/** Ids in time order; `T...Z-10` after `T...Z-9`. */
function compareIds(left: string, right: string): number {
  const [leftTime, leftSuffix = '1'] = left.split('Z');
  const [rightTime, rightSuffix = '1'] = right.split('Z');
  if (leftTime !== rightTime) return leftTime < rightTime ? -1 : 1;
  return Number(leftSuffix.replace('-', '') || 1) - Number(rightSuffix.replace('-', '') || 1);
}

export function readManifest(root: string, id: string): BackupManifest {
  if (!BACKUP_ID.test(id)) throw new Error(`"${id}" is not a backup id (they look like 2026-12-07T01-15-00Z)`);
  const path = join(root, id, MANIFEST_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${root} has no finished backup ${id} (no ${MANIFEST_FILE})`);
    throw error;
  }
  return checkManifest(text, path);
}

/** Parses a manifest read from `path`, checking its format and that its paths stay in a data folder. */
export function checkManifest(text: string, path: string): BackupManifest {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(text) as BackupManifest;
  } catch (error) {
    throw new Error(`${path} cannot be read as a backup manifest: ${(error as Error).message}`);
  }
  if (manifest.format !== MANIFEST_FORMAT) throw new Error(`${path} is not an Alto backup manifest of format ${MANIFEST_FORMAT} (it says ${String(manifest.format)})`);
  for (const file of manifest.files) checkFilePath(file.path);
  return manifest;
}

/** A manifest's paths must stay inside the data folder: relative, no `.` or `..` parts. */
export function checkFilePath(path: string): void {
  const parts = path.split('/');
  if (path.startsWith('/') || parts.some((part) => part === '' || part === '.' || part === '..' || part.includes('\\')))
    throw new Error(`the manifest lists "${path}", which is not a path inside a data folder: the backup was not made by Alto or was altered`);
}

/** Writes the manifest last, whole: from then on the backup counts as finished. */
export function writeManifest(root: string, manifest: BackupManifest): void {
  writeFileAtomic(join(root, manifest.id, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', 0o600);
}
