/**
 * @module store/backup/restore-instance
 * `alto restore`: rebuilds a data folder from a finished backup (the newest, or the one asked
 * for) in a folder or a bucket. Every file's blob is read and checked against the manifest's size
 * and sha256 before anything is written (from a bucket that reads each blob twice: once to check,
 * once to write); one that fails stops the restore with the list of them, and the target is
 * untouched. A backup of a PostgreSQL instance holds a pg_dump too, checked the same way and loaded
 * with `--store` into an empty database before the data folder appears. The files are written into a folder beside the target, checked again as they are
 * written, then renamed onto it: a restore cut short leaves no half data folder where Alto would
 * start.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { digestStream, writeStreamSparse } from './blobs.js';
import { restorePostgres } from './postgres-dump.js';
import type { BackupManifest } from './manifest.js';
import type { BackupTarget } from './target.js';

export interface RestoreInstanceOptions {
  /** The backups (`alto backup --to`): a folder or a bucket. */
  from: BackupTarget;
  /** The backup's id; the newest finished one when not given. */
  at?: string;
  /** The data folder to make: missing or empty. */
  dataDir: string;
  /** `--store postgres://...`: an empty database the backup's pg_dump is loaded into (store/backup/postgres-dump). */
  postgresUrl?: string;
  report(line: string): void;
}

export async function restoreInstance(options: RestoreInstanceOptions): Promise<BackupManifest> {
  const { from, report } = options;
  const target = resolve(options.dataDir);
  if (existsSync(target) && readdirSync(target).length > 0)
    throw new Error(`${options.dataDir} is not empty: restore into a new (or empty) folder, so no data of another instance is mixed in or overwritten`);
  const ids = await from.finishedBackups();
  if (ids.length === 0) throw new Error(`${from.name} holds no finished backup (no <id>/manifest.json): give the folder or bucket "alto backup --to" wrote into`);
  const id = options.at ?? ids[ids.length - 1];
  const manifest = await from.readManifest(id);
  report(`backup ${id}: ${manifest.files.length} files, made by Alto ${manifest.altoVersion} at ${manifest.finishedAt}`);

  if (options.postgresUrl && !manifest.postgresDump) throw new Error(`backup ${id} holds no PostgreSQL dump (it was made without --store postgres://...): restore it without --store`);
  const dump = manifest.postgresDump ? { path: 'PostgreSQL dump', ...manifest.postgresDump } : undefined;
  const damaged: string[] = [];
  for (const file of [...manifest.files, ...(dump ? [dump] : [])]) {
    const content = await from.readBlob(file.sha256);
    if (!content) {
      damaged.push(`${file.path}: its blob ${file.sha256} is missing`);
      continue;
    }
    const digest = await digestStream(content);
    if (digest.size !== file.size) damaged.push(`${file.path}: ${digest.size} bytes, the manifest says ${file.size}`);
    else if (digest.sha256 !== file.sha256) damaged.push(`${file.path}: its content's sha256 is ${digest.sha256}, the manifest says ${file.sha256}`);
  }
  if (damaged.length > 0) {
    const shown = damaged.slice(0, 10).map((line) => `  ${line}`);
    if (damaged.length > 10) shown.push(`  and ${damaged.length - 10} more`);
    const earlier = ids.slice(0, ids.indexOf(id));
    throw new Error(
      `backup ${id} is damaged, ${damaged.length} of its files fail their checksum; nothing was written:\n${shown.join('\n')}\n` +
        (earlier.length > 0 ? `restore an earlier backup with --at (${earlier.slice(-3).join(', ')})` : 'no earlier backup is there'),
    );
  }
  report('checked: every file matches its sha256');

  const staging = join(dirname(target), `.${basename(target)}.restoring-${randomBytes(4).toString('hex')}`);
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    for (const file of manifest.files) {
      const content = await from.readBlob(file.sha256);
      if (!content) throw new Error(`${file.path}: its blob ${file.sha256} went missing during the restore`);
      const written = await writeStreamSparse(content, join(staging, ...file.path.split('/')), file.mode & 0o777);
      if (written.sha256 !== file.sha256) throw new Error(`${file.path}: its blob ${file.sha256} changed during the restore`);
    }
    if (dump && options.postgresUrl) {
      // Loaded before the data folder appears: a dump that fails to load leaves neither.
      const file = join(staging, '.postgres.dump');
      const content = await from.readBlob(dump.sha256);
      if (!content) throw new Error(`the PostgreSQL dump's blob ${dump.sha256} went missing during the restore`);
      const written = await writeStreamSparse(content, file, 0o600);
      if (written.sha256 !== dump.sha256) throw new Error(`the PostgreSQL dump's blob ${dump.sha256} changed during the restore`);
      await restorePostgres(options.postgresUrl, file);
      await rm(file);
      report(`database: the PostgreSQL dump loaded (pg_restore, ${dump.pgDumpVersion})`);
    } else if (dump) {
      report(`database: the PostgreSQL dump (blob ${dump.sha256}) is not loaded: restore with --store postgres://... naming an empty database to load it, or pg_restore that blob yourself`);
    }
    // rename() puts a folder onto an empty one, never onto one with files.
    if (existsSync(target)) rmdirSync(target);
    renameSync(staging, target);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
  report(`restored into ${options.dataDir}`);
  return manifest;
}

export interface BackupListing {
  id: string;
  finishedAt: string;
  altoVersion: string;
  files: number;
  /** Bytes of every file the backup holds (content shared with other backups counted in each). */
  bytes: number;
  masterKey: BackupManifest['masterKey'];
  skipped: string[];
}

/** The finished backups of a folder or bucket, oldest first, for `alto restore --list`. */
export async function listBackups(from: BackupTarget): Promise<BackupListing[]> {
  const listings: BackupListing[] = [];
  for (const id of await from.finishedBackups()) {
    const manifest = await from.readManifest(id);
    listings.push({
      id,
      finishedAt: manifest.finishedAt,
      altoVersion: manifest.altoVersion,
      files: manifest.files.length,
      bytes: manifest.files.reduce((sum, file) => sum + file.size, 0),
      masterKey: manifest.masterKey,
      skipped: manifest.skipped.filter((part) => part.what.startsWith('volume ') || part.what === 'images' || part.what === 'database').map((part) => part.what),
    });
  }
  return listings;
}
