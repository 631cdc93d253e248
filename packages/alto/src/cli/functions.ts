/**
 * @module cli/functions
 * `alto fn deploy ./hello --name hello [--entrypoint x] [--env K=V] [--secret NAME]` (function/Deploy, or
 * function/Update when the function exists; the folder is sent as `files`, path -> base64,
 * without node_modules, .git and other dot-folders), `alto fn deploy --repo <git url> [--branch b]
 * [--subfolder f]`, `alto fn call hello '{json}'`, `alto fn list`, `alto fn logs hello [--build |
 * --runtime]`, `alto fn delete hello`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import type { Command } from 'commander';
import { AltoError } from '@alto/sdk';
import { bold, dim, green, printJson, printTable, red, wantsJson } from './output.js';
import type { CommandHelpers } from './usage.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

interface FuncView {
  id: string;
  name: string;
  status: string;
  url: string;
  entrypoint: string;
  repo: string;
  version: number;
  updated: string;
}

/** Folders never uploaded: dependencies are installed from package.json, output is rebuilt. */
const SKIPPED = new Set(['node_modules', '.git', '.alto']);
const MAX_FOLDER_BYTES = 8 * 1024 * 1024;

const collect = (value: string, previous: string[] = []) => [...previous, value];

function envVars(pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs?.length) return undefined;
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new Error(`--env takes NAME=value, not "${pair}"`);
    env[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return env;
}

/** Whether a deploy argument is a local folder (`./my-app`, `/src/app`) rather than an image reference. */
export function isSourceFolder(argument: string): boolean {
  return (argument.startsWith('.') || argument.startsWith('/')) && Boolean(statSync(argument, { throwIfNoEntry: false })?.isDirectory());
}

/** The folder's files as path -> base64, for function/Deploy's and app/Run's `files`. */
export function readFolder(folder: string): Record<string, string> {
  const root = resolve(folder);
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`${folder} is not a folder`);
  const files: Record<string, string> = {};
  let total = 0;
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (SKIPPED.has(entry.name) || (entry.isDirectory() && entry.name.startsWith('.'))) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) {
        const bytes = readFileSync(path);
        total += bytes.length;
        if (total > MAX_FOLDER_BYTES) throw new Error(`${folder} holds more than ${MAX_FOLDER_BYTES / 1024 / 1024} MB of code; leave build output out or deploy from a git repository (--repo)`);
        files[relative(root, path).split(sep).join('/')] = bytes.toString('base64');
      }
    }
  };
  walk(root);
  if (Object.keys(files).length === 0) throw new Error(`${folder} is empty`);
  return files;
}

function statusOf(status: string): string {
  return status === 'ACTIVE' ? green(status) : status === 'ERROR' ? red(status) : status;
}

export function addFunctionCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const fn = program.command('fn').alias('functions').description('functions: JavaScript or TypeScript handlers built and run for you');

  remote(
    fn
      .command('deploy [folder]')
      .description('build and run a function from a folder (or --repo), or update the function of that name')
      .option('-n, --name <name>', 'function name (default: the folder\'s name)')
      .option('--entrypoint <export>', 'the export called with the JSON body (default: the default export takes a Request)')
      .option('-e, --env <NAME=value>', 'environment variable (repeat for more)', collect)
      .option('-s, --secret <name>', 'a secret of the project the function gets as an env var (stripe-key -> STRIPE_KEY; repeat for more; the key needs the "secret" scope)', collect)
      .option('--repo <url>', 'build from a git repository instead of a folder')
      .option('--branch <branch>', 'branch of --repo')
      .option('--subfolder <path>', 'folder inside --repo'),
  ).action(
    action(async (folder: string | undefined, flags: Flags & { name?: string; entrypoint?: string; env?: string[]; secret?: string[]; repo?: string; branch?: string; subfolder?: string }) => {
      if (!folder && !flags.repo) throw new Error('give a folder (alto fn deploy ./hello) or --repo <git url>');
      if (folder && flags.repo) throw new Error('give a folder or --repo, not both');
      const name = flags.name ?? (folder ? basename(resolve(folder)) : undefined);
      if (!name) throw new Error('--name is needed with --repo');
      const body: Record<string, unknown> = { name };
      if (folder) body.files = readFolder(folder);
      else Object.assign(body, { repo: flags.repo, ...(flags.branch ? { branch: flags.branch } : {}), ...(flags.subfolder ? { subfolder: flags.subfolder } : {}) });
      if (flags.entrypoint) body.entrypoint = flags.entrypoint;
      const env = envVars(flags.env);
      if (env) body.env_vars = env;
      if (flags.secret?.length) body.secrets = flags.secret;
      const transport = client(flags).transport;
      let verb = 'deployed';
      let result: { function: FuncView };
      try {
        result = await transport.call<{ function: FuncView }>('function', 'Deploy', body);
      } catch (error) {
        if (!(error instanceof AltoError) || error.status !== 409 || !/already exists/.test(error.detail) || !/function/.test(error.detail)) throw error;
        verb = 'updated';
        result = await transport.call<{ function: FuncView }>('function', 'Update', body);
      }
      if (wantsJson(flags)) return printJson(result.function, flags);
      process.stdout.write(`${green(verb)} ${bold(result.function.name)} ${dim(`version ${result.function.version}`)}\n  ${result.function.url}\n`);
    }),
  );

  remote(fn.command('call <name> [json]').description('POST JSON to a function and print its answer')).action(
    action(async (name: string, json: string | undefined, flags: Flags) => {
      let request: unknown = {};
      if (json !== undefined) {
        try {
          request = JSON.parse(json);
        } catch (error) {
          throw new Error(`the request is not JSON: ${(error as Error).message}`);
        }
      }
      const result = await client(flags).transport.call<{ response: unknown }>('function', 'Call', { name, request });
      printJson(result.response, { ...flags, json: true });
    }),
  );

  remote(fn.command('list').description("the project's functions: status, address")).action(
    action(async (flags: Flags) => {
      const result = await client(flags).transport.call<{ functions: FuncView[] }>('function', 'List', {});
      const rows = result.functions.map((entry) => ({
        name: entry.name,
        status: statusOf(entry.status),
        version: entry.version,
        entrypoint: entry.entrypoint || 'default',
        url: entry.url,
        updated: entry.updated,
      }));
      printTable(rows, ['name', 'status', 'version', 'entrypoint', 'url', 'updated'], flags, result);
    }),
  );

  remote(
    fn
      .command('logs <name>')
      .description("a function's last build log and its runtime output")
      .option('--build', 'only the build log')
      .option('--runtime', 'only the runtime output')
      .option('-n, --lines <count>', 'how many runtime lines', '200'),
  ).action(
    action(async (name: string, flags: Flags & { build?: boolean; runtime?: boolean; lines: string }) => {
      const logs_type = flags.build ? 'build' : flags.runtime ? 'runtime' : '';
      const lines = Number(flags.lines);
      if (!Number.isInteger(lines) || lines < 1) throw new Error(`--lines must be a whole number, not "${flags.lines}"`);
      const result = await client(flags).transport.call<{ logs: string }>('function', 'Logs', { name, logs_type, lines });
      if (flags.json) return printJson(result, flags);
      process.stdout.write(result.logs.endsWith('\n') ? result.logs : `${result.logs}\n`);
    }),
  );

  remote(fn.command('delete <name>').description('stop a function and delete it')).action(
    action(async (name: string, flags: Flags) => {
      await client(flags).transport.call('function', 'Delete', { name });
      process.stdout.write(wantsJson(flags) ? '{}\n' : `deleted ${name}\n`);
    }),
  );
}
