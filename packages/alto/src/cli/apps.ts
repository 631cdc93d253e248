/**
 * @module cli/apps
 * `alto deploy <image> --name web` (app/Run, or app/Update when the app exists: the new version
 * takes over only once it is ready; `alto deploy ./dir` builds the folder on the server, with
 * its Dockerfile when it has one, printing the build's log from app/BuildLogs on stderr as it
 * goes; `--secret NAME` and `--secret-file NAME[:TARGET[:MODE]]` hand it secrets of the project
 * as env vars and as files in /run/secrets), `alto apps` (table of the project's apps), `alto
 * logs web [-f]` and `alto destroy web`. They call the `app` service by name through the SDK's
 * transport, so they work before the SDK is regenerated. Results are JSON when piped or with --json.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { AltoError } from '@alto/sdk';
import { bold, dim, green, printJson, printTable, red, wantsJson } from './output.js';
import type { CommandHelpers } from './usage.js';
import { isSourceFolder, readFolder } from './functions.js';
import { MAX_SECRET_FILES, SecretFileSetting } from '../compute/apps/schema.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

interface ServiceView {
  id: string;
  name: string;
  status: string;
  url: string;
  version: number;
  digest: string;
  image: string;
  tcp: number;
  tcp_port?: number;
  restarts: number;
  instances: { id: string; state: string; version: number }[];
  slots?: { state: string; instance: string; in_flight: number }[];
  last_exit?: { code: number | null; reason: string };
}

interface LogLine {
  at: string;
  stream: 'stdout' | 'stderr' | 'system';
  line: string;
  instance: string;
}

interface DeployFlags extends Flags {
  name?: string;
  port?: string;
  env?: string[];
  tcp?: string;
  tcpPort?: string;
  volume?: string[];
  memory?: string;
  cpus?: string;
  minInstances?: string;
  stopSignal?: string;
  stopTimeout?: string;
  outbound?: boolean;
  link?: string[];
  insecure?: boolean;
  followTag?: boolean;
  secret?: string[];
  secretFile?: string[];
  dockerfile?: string;
  buildArg?: string[];
  buildNetwork?: boolean;
}

/** A repeatable option's values, in order. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

function wholeNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) throw new Error(`${flag} must be a whole number, not "${value}"`);
  return number;
}

/** A repeatable `NAME=value` option (--env, --build-arg, --set) as a map; undefined when not given. */
export function namedValues(flag: string, pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs?.length) return undefined;
  const values: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new Error(`${flag} takes NAME=value, not "${pair}"`);
    values[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return values;
}

/** `--volume data:/data` into volumes. */
function volumes(specs: string[] | undefined): { name: string; path: string }[] | undefined {
  if (!specs?.length) return undefined;
  return specs.map((spec) => {
    const colon = spec.indexOf(':');
    if (colon <= 0 || !spec.slice(colon + 1).startsWith('/')) throw new Error(`--volume takes name:/path, such as data:/data, not "${spec}"`);
    return { name: spec.slice(0, colon), path: spec.slice(colon + 1) };
  });
}

/** One file of `--secret-file`, as app/Run and Update take it (`secret_files`); no mode leaves the server's 0444. */
export interface SecretFileSpec {
  secret: string;
  target: string;
  mode?: number;
}

/**
 * `--secret-file` specs into `secret_files`: `NAME` (the file /run/secrets/NAME holds the secret
 * NAME), `NAME:TARGET` (the file /run/secrets/TARGET), `NAME:TARGET:MODE` (MODE in octal, such as
 * 0400). Each is checked with the server's own rule (compute/apps/schema.ts), so a bad spec is
 * named before anything is uploaded, built or deployed; undefined when none is given.
 */
export function secretFiles(specs: string[] | undefined): SecretFileSpec[] | undefined {
  if (!specs?.length) return undefined;
  if (specs.length > MAX_SECRET_FILES) throw new Error(`--secret-file: at most ${MAX_SECRET_FILES} files, not ${specs.length}`);
  const byTarget = new Map<string, string>();
  return specs.map((spec) => {
    const parts = spec.split(':');
    if (parts.length > 3) throw new Error(`--secret-file takes NAME, NAME:TARGET or NAME:TARGET:MODE, such as db-password:db_password:0400, not "${spec}"`);
    const [secret, target = secret, modeText] = parts;
    // Octal as chmod reads it (400, 0400, 0o400): a decimal 256 here would be a surprise mode.
    if (modeText !== undefined && !/^(?:0o?)?[0-7]{3}$/.test(modeText)) {
      throw new Error(`--secret-file "${spec}": MODE is permission bits in octal, such as 0400 or 0440, not "${modeText}"`);
    }
    const file: SecretFileSpec = { secret, target, ...(modeText === undefined ? {} : { mode: parseInt(modeText.replace(/^0o/, ''), 8) }) };
    const checked = SecretFileSetting.safeParse(file);
    if (!checked.success) throw new Error(`--secret-file "${spec}": ${checked.error.issues[0].message}`);
    const earlier = byTarget.get(target);
    if (earlier !== undefined) throw new Error(`--secret-file "${spec}": /run/secrets/${target} is already the file of --secret-file "${earlier}"; give one of them another TARGET`);
    byTarget.set(target, spec);
    return file;
  });
}

/** The request body shared by Run and Update, from the flags given (the others are left out). */
function deployRequest(image: string, flags: DeployFlags): Record<string, unknown> {
  const body: Record<string, unknown> = { name: flags.name, image };
  const fields: Record<string, unknown> = {
    port: wholeNumber('--port', flags.port),
    env_vars: namedValues('--env', flags.env),
    tcp: wholeNumber('--tcp', flags.tcp),
    tcp_port: wholeNumber('--tcp-port', flags.tcpPort),
    volumes: volumes(flags.volume),
    memory: wholeNumber('--memory', flags.memory),
    cpus: flags.cpus === undefined ? undefined : Number(flags.cpus),
    min_instances: wholeNumber('--min-instances', flags.minInstances),
    stop_signal: flags.stopSignal,
    stop_timeout: wholeNumber('--stop-timeout', flags.stopTimeout),
    outbound: flags.outbound ? true : undefined,
    links: flags.link?.length ? flags.link : undefined,
    insecure: flags.insecure ? true : undefined,
    follow_tag: flags.followTag ? true : undefined,
    secrets: flags.secret?.length ? flags.secret : undefined,
    secret_files: secretFiles(flags.secretFile),
  };
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) body[key] = value;
  return body;
}

/** `--build-arg` pairs and `--build-network` into the request. */
function dockerBuildFields(flags: DeployFlags): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  const args = namedValues('--build-arg', flags.buildArg);
  if (args) fields.build_args = args;
  if (flags.buildNetwork) fields.build_network = true;
  return fields;
}

type Transport = CommandHelpersClient['transport'];
type CommandHelpersClient = ReturnType<CommandHelpers['client']>;

/** How far a build's log was printed: lines written, and whether its last line (how it ended) was among them. */
export interface BuildLogPrinted {
  lines: number;
  ended: boolean;
}

/**
 * Prints a Dockerfile build's log (app/BuildLogs) as the server writes it, until the build ends,
 * skipping the first `skip` lines (printed by an earlier attempt). A stream that fails or ends
 * early is not an error: the log is a courtesy, and the deploy's own answer says whether the
 * build worked.
 */
export async function printBuildLog(
  transport: Pick<Transport, 'stream'>,
  buildId: string,
  signal: AbortSignal,
  skip = 0,
  write: (text: string) => void = (text) => process.stderr.write(text),
): Promise<BuildLogPrinted> {
  const printed: BuildLogPrinted = { lines: skip, ended: false };
  let seen = 0;
  try {
    const lines = transport.stream<{ line: string; done?: string }>('app', 'BuildLogs', { build_id: buildId });
    signal.addEventListener('abort', () => void lines.return(undefined), { once: true });
    for await (const entry of lines) {
      if (signal.aborted) break;
      if (seen++ < skip) continue;
      write((entry.done === 'failed' ? red(entry.line) : entry.line.startsWith('  |') ? entry.line : dim(entry.line)) + '\n');
      printed.lines = seen;
      if (entry.done) {
        printed.ended = true;
        break;
      }
    }
  } catch {
    // Dropped or refused (a build not begun within the server's wait): the caller may ask again.
  }
  return printed;
}

function describeService(service: ServiceView, verb: string): string {
  const where = service.tcp && service.tcp_port ? `tcp port ${service.tcp_port}` : service.url;
  return `${green(verb)} ${bold(service.name)} version ${service.version} ${dim(`(${service.digest.slice(0, 19)})`)}\n  ${where}\n`;
}

export function addAppCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  remote(
    program
      .command('deploy <image>')
      .description('run an image, or build a folder (./my-app: with its Dockerfile, else as a Node.js project), as an app (or update the app of that name: the new version serves once it is ready)')
      .requiredOption('-n, --name <name>', 'app name: lower-case letters, digits and dashes (its address is <name>.<project>.<domain>)')
      .option('-p, --port <port>', 'port the app listens on for HTTP (default: the image\'s exposed port, else 8080)')
      .option('-e, --env <NAME=value>', 'environment variable (repeat for more)', collect)
      .option('--tcp <port>', 'serve TCP instead of HTTP: the app\'s port, exposed as a port on the edge')
      .option('--tcp-port <port>', 'the edge port for --tcp (default: any free port)')
      .option('-v, --volume <name:/path>', 'a volume kept across restarts and redeploys (repeat for more)', collect)
      .option('-m, --memory <MiB>', 'memory limit in MiB (default 256)')
      .option('--cpus <n>', 'CPUs (default 1)')
      .option('--min-instances <n>', 'instances kept running (default 0: the app is suspended when idle and the next request wakes it; 1 keeps it always on)')
      .option('--stop-signal <signal>', "the signal the app gets when an instance stops (default: the image's STOPSIGNAL, else SIGTERM)")
      .option('--stop-timeout <seconds>', 'seconds the app has to end after its stop signal before it is killed (default 5)')
      .option('--outbound', 'let the app open connections to the internet')
      .option('-l, --link <app>', 'reach another app of the project: <APP>_SERVICE_HOST and <APP>_SERVICE_PORT lead to it (repeat for more)', collect)
      .option('--insecure', 'allow plain HTTP for the image\'s registry')
      .option('--follow-tag', "for an image pushed to Alto (<alto host>/<project>/<name>:<tag>): update the app whenever a new image is pushed to that tag")
      .option('-s, --secret <name>', 'a secret of the project the app gets as an env var (stripe-key -> STRIPE_KEY; repeat for more; the key needs the "secret" scope; on update, the secrets given replace the app\'s, none given keeps them)', collect)
      .option(
        '--secret-file <NAME[:TARGET[:MODE]]>',
        `a secret of the project the app reads as the file /run/secrets/TARGET (default NAME), in memory and never in its env, with MODE in octal, default 0444 (such as db-password:db_password:0400; repeat for more, at most ${MAX_SECRET_FILES}; the key needs the "secret" scope; on update, the files given replace the app's, none given keeps them)`,
        collect,
      )
      .option('-f, --dockerfile <path>', 'build the folder with this Dockerfile (default: its Dockerfile, when it has one)')
      .option('--build-arg <NAME=value>', 'a value for an ARG of the Dockerfile (repeat for more)', collect)
      .option('--build-network', "let the Dockerfile's RUN steps reach the internet"),
  ).action(
    action(async (image: string, flags: DeployFlags) => {
      const transport = client(flags).transport;
      // A folder (./my-app) is built on the server: with its Dockerfile when it has one, else as
      // a Node.js project; anything else names an image.
      let body: Record<string, unknown> = deployRequest(image, flags);
      let following: Promise<BuildLogPrinted> | undefined;
      let buildId = '';
      const stopFollowing = new AbortController();
      if (isSourceFolder(image)) {
        body = { ...body, image: undefined, files: readFolder(image) };
        if (flags.dockerfile || existsSync(join(image, 'Dockerfile'))) {
          buildId = randomBytes(8).toString('hex');
          body = { ...body, build_id: buildId, ...(flags.dockerfile ? { dockerfile: flags.dockerfile } : {}), ...dockerBuildFields(flags) };
          // The build's log, printed (on stderr) as it goes while Run or Update waits for the build.
          following = printBuildLog(transport, buildId, stopFollowing.signal);
        }
      }
      let verb = 'deployed';
      let result: { service: ServiceView } | undefined;
      try {
        try {
          result = await transport.call<{ service: ServiceView }>('app', 'Run', body);
        } catch (error) {
          if (!(error instanceof AltoError) || error.status !== 409 || !/already exists/.test(error.detail)) throw error;
          verb = 'updated';
          result = await transport.call<{ service: ServiceView }>('app', 'Update', body);
        }
      } finally {
        if (following) {
          // The log ends with the build; a deploy that failed before the build began stops waiting for it.
          const printed = await Promise.race([following, new Promise<undefined>((resolve) => setTimeout(resolve, 2_000, undefined))]);
          if (!printed) stopFollowing.abort();
          // The stream dropped or gave up before the build ended (the build began late, or the
          // connection failed): the server keeps the log, so a built app's is printed from where it stopped.
          else if (!printed.ended && result) await printBuildLog(transport, buildId, AbortSignal.timeout(10_000), printed.lines);
        }
      }
      if (!result) return;
      if (wantsJson(flags)) return printJson(result.service, flags);
      process.stdout.write(describeService(result.service, verb));
    }),
  );

  remote(program.command('apps').description("list the project's apps: status, instances, address")).action(
    action(async (flags: Flags) => {
      const result = await client(flags).transport.call<{ services: ServiceView[] }>('app', 'List', {});
      const rows = result.services.map((service) => ({
        name: service.name,
        status: service.status === 'running' ? green(service.status) : service.status === 'crashing' ? red(service.status) : service.status,
        version: service.version,
        instances: instanceSummary(service),
        restarts: service.restarts,
        url: service.tcp ? `tcp port ${service.tcp_port ?? '?'}` : service.url,
        image: service.image,
      }));
      printTable(rows, ['name', 'status', 'version', 'instances', 'restarts', 'url', 'image'], flags, result);
    }),
  );

  remote(
    program
      .command('logs <name>')
      .description("an app's output and Alto's lines about it (starts, exits, restarts), kept on disk; filter with --since, --until, --grep, --instance")
      .option('-f, --follow', 'keep printing new lines until Ctrl-C')
      .option('-n, --lines <count>', 'how many of the last lines', '100')
      .option('--stream <name>', 'only stdout, stderr or system')
      .option('--since <time>', 'only lines from then on: an RFC 3339 time or a duration back from now (10m, 2h, 7d)')
      .option('--until <time>', 'only lines up to then: an RFC 3339 time or a duration back from now')
      .option('--grep <text>', 'only lines holding this text (a plain substring)')
      .option('--instance <id>', 'only the lines of this instance')
      .option('--build', "the log of the app's last build from source instead (kept on disk; followed while the build runs)"),
  ).action(
    action(async (name: string, flags: Flags & { follow?: boolean; lines: string; stream?: string; since?: string; until?: string; grep?: string; instance?: string; build?: boolean }) => {
      const transport = client(flags).transport;
      if (flags.build) {
        for await (const entry of transport.stream<{ at: string; line: string; done?: string }>('app', 'BuildLogs', { name })) {
          if (flags.json) process.stdout.write(JSON.stringify(entry) + '\n');
          else process.stdout.write((entry.done === 'failed' ? red(entry.line) : entry.line) + '\n');
          if (entry.done) break;
        }
        return;
      }
      const filters = Object.fromEntries((['stream', 'since', 'until', 'grep', 'instance'] as const).filter((key) => flags[key] !== undefined).map((key) => [key, flags[key]]));
      const request = { name, lines: wholeNumber('--lines', flags.lines), ...filters };
      const print = (line: LogLine) => {
        if (flags.json) process.stdout.write(JSON.stringify(line) + '\n');
        else if (line.stream === 'system') process.stdout.write(dim(`alto: ${line.line}`) + '\n');
        else if (line.stream === 'stderr') process.stderr.write(line.line + '\n');
        else process.stdout.write(line.line + '\n');
      };
      if (flags.follow) {
        for await (const line of transport.stream<LogLine>('app', 'FollowLogs', request)) print(line);
        return;
      }
      const result = await transport.call<{ logs: string; lines: LogLine[] }>('app', 'Logs', request);
      for (const line of result.lines) print(line);
    }),
  );

  remote(
    program
      .command('destroy <name>')
      .description('stop an app and delete it with its volumes')
      .option('--keep-volumes', "keep the app's volume folders"),
  ).action(
    action(async (name: string, flags: Flags & { keepVolumes?: boolean }) => {
      await client(flags).transport.call('app', 'Delete', { name, keep_volumes: Boolean(flags.keepVolumes) });
      process.stdout.write(wantsJson(flags) ? '{}\n' : `destroyed ${name}\n`);
    }),
  );
}

/** "1 running", or by lifecycle state: "1 suspended", "1 running, 2 snapshotted". */
function instanceSummary(service: ServiceView): string {
  const states = service.slots?.map((slot) => slot.state) ?? service.instances.filter((instance) => instance.state === 'running' && instance.version === service.version).map(() => 'running');
  const counts = new Map<string, number>();
  for (const state of states) counts.set(state, (counts.get(state) ?? 0) + 1);
  if (counts.size === 0) return '0 running';
  return [...counts].map(([state, count]) => `${count} ${state}`).join(', ');
}
