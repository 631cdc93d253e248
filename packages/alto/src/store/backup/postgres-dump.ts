/**
 * @module store/backup/postgres-dump
 * The PostgreSQL half of a backup (`--store postgres://...`): `pg_dump --format=custom` of the
 * database Alto keeps its state in, taken in one snapshot transaction (pg_dump's own: every table
 * as of one moment, while Alto writes on), and `pg_restore` of it into an empty database, in one
 * transaction (a restore that fails leaves the database empty). The tools are PostgreSQL's
 * client programs (Debian's postgresql-client); the password travels in PGPASSWORD, never on a
 * command line others can read.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';

const execFileAsync = promisify(execFile);

/** `pg_dump` into `destination`; the pg_dump version, for the manifest. */
export async function dumpPostgres(url: string, destination: string): Promise<string> {
  const { connection, env } = splitPassword(url);
  const version = await clientVersion('pg_dump');
  await runClient('pg_dump', ['--format=custom', '--no-password', `--file=${destination}`, `--dbname=${connection}`], env);
  return version;
}

/** Loads a dump into the database at `url`, which must hold no table yet. */
export async function restorePostgres(url: string, dump: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ count: string }>(`SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`);
    if (Number(rows[0].count) > 0)
      throw new Error(`the database given with --store holds ${rows[0].count} tables already: restore into a new, empty database (createdb), so no data of another instance is mixed in or overwritten`);
  } finally {
    await client.end();
  }
  const { connection, env } = splitPassword(url);
  // Owners and grants are the old server's: the restored tables belong to the user restoring.
  await runClient('pg_restore', ['--no-owner', '--no-acl', '--single-transaction', '--exit-on-error', '--no-password', `--dbname=${connection}`, dump], env);
}

async function clientVersion(tool: string): Promise<string> {
  return (await runClient(tool, ['--version'], {})).trim();
}

async function runClient(tool: string, args: string[], env: Record<string, string>): Promise<string> {
  try {
    const { stdout } = await execFileAsync(tool, args, { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new Error(`${tool} is not installed: install PostgreSQL's client programs (Debian: apt-get install postgresql-client), of the server's major version or newer`);
    throw new Error(`${tool} failed: ${(failure.stderr ?? failure.message).trim()}`);
  }
}

/** The URL without its password, which goes in PGPASSWORD instead. */
function splitPassword(url: string): { connection: string; env: Record<string, string> } {
  const parsed = new URL(url);
  const password = decodeURIComponent(parsed.password);
  parsed.password = '';
  return { connection: parsed.toString(), env: password ? { PGPASSWORD: password } : {} };
}
