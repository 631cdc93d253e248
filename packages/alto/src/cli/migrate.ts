/**
 * @module cli/migrate
 * `alto migrate --from <data folder> --store postgres://... [--objects s3://...]`: copies a
 * stopped embedded instance into PostgreSQL (and S3), printing each part's rows copied and
 * skipped. The copying itself is store/migrate-instance; this file only reads the flags.
 */
import type { Command } from 'commander';
import { NOT_MIGRATED, migrateInstance } from '../store/migrate-instance.js';
import { redactUrl } from '../store/index.js';
import { bold, dim, green } from './output.js';

interface MigrateFlags {
  from: string;
  store?: string;
  objects?: string;
}

export function addMigrateCommand(program: Command, action: <Args extends unknown[]>(run: (...args: Args) => Promise<void>) => (...args: Args) => Promise<void>): void {
  program
    .command('migrate')
    .description('copy a stopped embedded instance (its data folder) into PostgreSQL and S3; safe to run again')
    .requiredOption('--from <dir>', 'the data folder of the embedded instance (stop it first)')
    .option('--store <url>', 'postgres://... the database to copy into (ALTO_STORE)')
    .option('--objects <url>', 's3://BUCKET?endpoint=URL&region=R&path_style=1 the bucket to copy space objects into (ALTO_OBJECTS)')
    .action(
      action(async (flags: MigrateFlags) => {
        const postgresUrl = flags.store ?? process.env.ALTO_STORE;
        if (!postgresUrl?.startsWith('postgres')) throw new Error('--store postgres://... is required: the database to copy into');
        const objectsUrl = flags.objects ?? process.env.ALTO_OBJECTS;
        const write = (line: string) => process.stdout.write(`${line}\n`);
        write(`${bold('alto migrate')} ${flags.from} → ${redactUrl(postgresUrl)}${objectsUrl ? ` and ${redactUrl(objectsUrl)}` : ''}`);
        write(dim('the source must stay stopped while this runs: it is opened with an exclusive lock, so an Alto running on it is refused'));
        await migrateInstance({ dataDir: flags.from, postgresUrl, objectsUrl, masterKey: process.env.ALTO_MASTER_KEY, report: write });
        write('not migrated (stay node-local):');
        for (const line of NOT_MIGRATED) write(`  ${line}`);
        write(green('done: start Alto with --store (and --objects) and the same ALTO_MASTER_KEY'));
      }),
    );
}
