/**
 * @module cli/backup
 * `alto backup --data DIR --to FOLDER|s3://...` and `alto restore FOLDER|s3://... --data NEWDIR
 * [--at ID]`: flags and output only; what is copied, and how each part is kept consistent, is
 * store/backup.
 */
import type { Command } from 'commander';
import { backupInstance, formatBytes } from '../store/backup/backup-instance.js';
import { listBackups, restoreInstance } from '../store/backup/restore-instance.js';
import { openBackupTarget } from '../store/backup/target.js';
import { snapshotVolumeInUse } from '../compute/sandbox/volume-snapshot.js';
import { redactObjectsUrl } from '../store/objects/s3.js';
import type { BackupScheduleStatus } from '../store/backup/schedule.js';
import { bold, dim, green, yellow } from './output.js';

interface BackupFlags {
  data?: string;
  to: string;
  store?: string;
  objects?: string;
  includeMasterKey?: boolean;
  withoutImages?: boolean;
}

interface RestoreFlags {
  data?: string;
  store?: string;
  at?: string;
  list?: boolean;
}

type Action = <Args extends unknown[]>(run: (...args: Args) => Promise<void>) => (...args: Args) => Promise<void>;

export function addBackupCommands(program: Command, action: Action): void {
  program
    .command('backup')
    .description('copy an embedded instance (running or not) into a backup folder: the database, space objects, function sources, image blobs, volumes; only new content is copied')
    .option('-d, --data <dir>', 'the data folder of the instance (ALTO_DATA, default ./.alto)')
    .requiredOption('--to <folder | s3://...>', 'the backup folder, or s3://BUCKET[/prefix]?endpoint=URL&region=R&path_style=1 with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; each backup is a dated entry in it, sharing one store of content')
    .option('--store <url>', 'postgres://... when the instance runs on PostgreSQL (ALTO_STORE): its database goes into the backup as a pg_dump (custom format; needs pg_dump of the server\'s major version or newer)')
    .option('--objects <url>', 's3://... when space objects are in a bucket (ALTO_OBJECTS): the bucket is backed up with its own tools')
    .option('--without-images', "leave out the image blobs (the restored node then has the images' records without their layers: push or pull them again and redeploy)")
    .option('--include-master-key', 'put the master key in the backup, in plain text: whoever reads the backup can then read every secret')
    .action(
      action(async (flags: BackupFlags) => {
        const write = (line: string) => process.stdout.write(`${line}\n`);
        const dataDir = flags.data ?? process.env.ALTO_DATA ?? '.alto';
        const store = flags.store ?? process.env.ALTO_STORE;
        const objects = flags.objects ?? process.env.ALTO_OBJECTS;
        write(`${bold('alto backup')} ${dataDir} → ${flags.to.startsWith('s3://') ? redactObjectsUrl(flags.to) : flags.to}`);
        if (flags.includeMasterKey) {
          process.stderr.write(yellow('WARNING: --include-master-key puts the master key in the backup in plain text: anyone who can read the backup folder can read every stored secret. Keep it where only you can read it.\n'));
        }
        const to = await openBackupTarget(flags.to, { create: true });
        const result = await backupInstance({
          dataDir,
          to,
          postgres: Boolean(store && store !== 'sqlite' && store !== 'embedded'),
          postgresUrl: store?.startsWith('postgres') ? store : undefined,
          objectsInBucket: Boolean(objects && objects !== 'local'),
          includeMasterKey: flags.includeMasterKey,
          withoutImages: flags.withoutImages,
          masterKeyFromEnvironment: process.env.ALTO_MASTER_KEY,
          snapshotVolumeInUse,
          report: write,
        }).finally(() => to.close());
        const { manifest } = result;
        write('not in the backup:');
        for (const part of manifest.skipped) write(`  ${part.what}: ${dim(part.reason)}`);
        write(
          green(`backup ${manifest.id}: ${manifest.files.length} files, ${result.copiedBlobs} new blobs copied (${formatBytes(result.copiedBytes)}), ${result.reusedFiles} already in the folder`),
        );
      }),
    );

  program
    .command('restore <backup>')
    .description('rebuild a data folder from a backup folder (or s3://... bucket), after checking every file against its checksum')
    .option('-d, --data <dir>', 'the data folder to make (new or empty)')
    .option('--at <id>', 'the backup to restore (default the newest finished one)')
    .option('--store <url>', 'postgres://... an empty database to load the backup\'s PostgreSQL dump into (pg_restore); then start it with "alto up --store" and that URL')
    .option('--list', 'list the finished backups there (their ids for --at) and restore nothing')
    .action(
      action(async (backup: string, flags: RestoreFlags) => {
        const write = (line: string) => process.stdout.write(`${line}\n`);
        const from = await openBackupTarget(backup, { create: false });
        if (flags.list) {
          const listings = await listBackups(from).finally(() => from.close());
          if (listings.length === 0) write(`no finished backup in ${backup}`);
          for (const listing of listings) {
            const notes = [listing.masterKey === 'included' ? 'master key included' : '', ...listing.skipped.map((what) => `without ${what}`)].filter(Boolean);
            write(`${listing.id}  ${listing.finishedAt}  Alto ${listing.altoVersion}  ${listing.files} files, ${formatBytes(listing.bytes)}${notes.length > 0 ? dim(`  (${notes.join('; ')})`) : ''}`);
          }
          return;
        }
        if (!flags.data) {
          await from.close();
          throw new Error('--data <dir> is required: the new (or empty) data folder to restore into (or --list to see the backups)');
        }
        const dataDir = flags.data;
        write(`${bold('alto restore')} ${backup.startsWith('s3://') ? redactObjectsUrl(backup) : backup} → ${dataDir}`);
        const manifest = await restoreInstance({ from, at: flags.at, dataDir, postgresUrl: flags.store, report: write }).finally(() => from.close());
        const key = manifest.masterKey === 'included' ? `the master key is in ${dataDir}/master-key` : `with the same master key (ALTO_MASTER_KEY, or put it in ${dataDir}/master-key): the backup does not hold it`;
        write(green(`done: start it with "alto up --data ${dataDir}", ${key}`));
      }),
    );
}

export type BackupStatus = BackupScheduleStatus;

/** The backups lines of `alto status` (admin key): where, how often, the last success and failure. */
export function backupLines(status: BackupStatus | undefined): string {
  if (!status) return '';
  const lines = [`  backups:  every ${formatPeriod(status.every_seconds)} into ${status.to}, keeping ${status.keep}${status.running ? ' (one running now)' : ''}`];
  const success = status.last_success;
  lines.push(
    success
      ? `            last: ${success.id}, ${success.files} files, ${formatBytes(success.copied_bytes)} new, in ${success.seconds.toFixed(1)}s`
      : '            last: none yet',
  );
  for (const skipped of success?.skipped ?? []) lines.push(yellow(`            not copied: ${skipped}`));
  if (status.last_failure && (!success || status.last_failure.at > success.finished_at)) lines.push(yellow(`            FAILING (last tried ${status.last_failure.at}, ${status.failures} failed so far): ${status.last_failure.reason}`));
  if (status.next_at) lines.push(dim(`            next: ${status.next_at}`));
  return lines.join('\n') + '\n';
}

function formatPeriod(seconds: number): string {
  for (const [unit, size] of [['d', 86_400], ['h', 3_600], ['m', 60]] as const) if (seconds % size === 0) return `${seconds / size}${unit}`;
  return `${seconds}s`;
}
