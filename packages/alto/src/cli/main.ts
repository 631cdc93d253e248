/**
 * @module cli/main
 * The `alto` command: start the platform (`up`), look at it (`status`), remember where it is
 * (`login`), manage projects and keys, see usage and cost (`usage`), call any endpoint (`call`),
 * see and drain the nodes of a cloud (`nodes`), copy an embedded instance into PostgreSQL and
 * S3 (`migrate`), and back it up and restore it (`backup`, `restore`).
 */
import { Command } from 'commander';
import { Alto } from '@alto/sdk';
import { VERSION } from '../version.js';
import { buildRequest, describeOperation } from './call.js';
import { bold, dim, green, printJson, printTable, reportError, wantsJson } from './output.js';
import { resolveConnection, saveProfile, type ConnectionFlags } from './profile.js';
import { runUp } from './up.js';
import { addUsageCommands } from './usage.js';
import { addImageCommands } from './images.js';
import { addAppCommands } from './apps.js';
import { addEnvironmentCommands } from './envs.js';
import { addRequestCommands } from './requests.js';
import { addFunctionCommands } from './functions.js';
import { addNodeCommands } from './nodes.js';
import { addDomainCommands, httpsLines, type HttpsInfo } from './domains.js';
import { addTemplateCommands } from './templates.js';
import { addInitCommand } from './init.js';
import { addMigrateCommand } from './migrate.js';
import { addBackupCommands, backupLines, type BackupStatus } from './backup.js';
import { addTransferCommands } from './transfer.js';

interface SandboxInfo {
  choice: string;
  probed: boolean;
  driver?: string;
  accelerator?: string;
  reason: string;
}

/** The sandbox line of `alto status`: the driver and accelerator apps run on, and why. */
function sandboxLine(sandbox: SandboxInfo | undefined): string {
  if (!sandbox) return '';
  if (!sandbox.probed) return `  sandbox:  ${sandbox.choice} ${dim(`(${sandbox.reason})`)}\n`;
  return `  sandbox:  ${sandbox.driver}${sandbox.accelerator && sandbox.accelerator !== 'none' ? ` (${sandbox.accelerator})` : ''} ${dim(`— ${sandbox.reason}`)}\n`;
}

type Flags = ConnectionFlags & { json?: boolean; envName?: string };

function client(flags: Flags): Alto {
  const connection = resolveConnection(flags);
  if (!connection.key) {
    throw new Error(`no API key: pass --key, set ALTO_KEY, run "alto login", or start Alto here with "alto up"`);
  }
  return new Alto({ url: connection.url, key: connection.key, ...(flags.envName ? { environment: flags.envName } : {}) });
}

/** Adds the connection options every remote command takes. */
function remote(command: Command): Command {
  return command
    .option('--url <url>', 'Alto address (default: profile, ALTO_URL, or http://localhost:4000)')
    .option('--key <key>', 'API key (default: profile, ALTO_KEY, or ./.alto/admin-key)')
    .option('--profile <name>', 'use a saved profile')
    .option('--env-name <name>', "the environment of the key's project to act in (an admin or owner key; default: the key's own)")
    .option('--json', 'print JSON (the default when piped)');
}

/** Runs an action and turns failures into a message and an exit code. */
function action<Args extends unknown[]>(run: (...args: Args) => Promise<void>): (...args: Args) => Promise<void> {
  return async (...args: Args) => {
    try {
      await run(...args);
    } catch (error) {
      process.exitCode = reportError(error);
    }
  };
}

export function buildProgram(): Command {
  const program = new Command('alto')
    .description('Alto: building blocks and serverless compute behind one API key')
    .version(VERSION)
    .showHelpAfterError();

  program
    .command('up')
    .description('start Alto in the foreground (Ctrl-C stops it)')
    .option('-p, --port <port>', 'port to listen on (ALTO_PORT)', undefined)
    .option('--host <host>', 'address to bind (ALTO_HOST, default 0.0.0.0)')
    .option('-d, --data <dir>', 'data folder (ALTO_DATA, default ./.alto)')
    .option('--open-signup', 'let anyone create an account (accounts/Signup)')
    .option('--max-body <bytes>', 'largest request body accepted (ALTO_MAX_BODY_BYTES)')
    .option('--store <url>', 'postgres://... to keep the control plane, usage, quotas and block data on PostgreSQL (ALTO_STORE; default embedded SQLite)')
    .option('--cache <url>', 'redis://... to keep the cache on Redis (ALTO_CACHE; default embedded)')
    .option('--events <url>', 'nats://... to keep events and mq on NATS JetStream (ALTO_EVENTS; default embedded)')
    .option(
      '--objects <url>',
      's3://BUCKET?endpoint=URL&region=R&path_style=1 to keep space objects in an S3-compatible bucket, with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (ALTO_OBJECTS; default the data folder)',
    )
    .option('--smtp <url>', 'smtp://user:pass@host:port (or smtps://) to deliver email (ALTO_SMTP_URL; default: outbox only)')
    .option('--sandbox <driver>', 'how apps run: auto, microvm or process (ALTO_SANDBOX; default auto)')
    .option('--apps-domain <domain>', 'apps answer at <app>.<project>.<domain> (ALTO_APPS_DOMAIN; default localhost)')
    .option('--node <name>', "this node's name in the cloud its --store names; refused while a live node of another data folder holds it (ALTO_NODE; default the host name, with the node id added when another live node has it)")
    .option('--advertise <url>', 'the URL other nodes reach this one at, e.g. http://10.0.0.5:4000 (ALTO_ADVERTISE; default the URL this node listens at)')
    .option('--max-instances <count>', "instances this node's sandboxes hold at once, those it runs for other nodes included; past it, its apps' new instances run on other nodes with room (ALTO_MAX_INSTANCES; default 0: no cap)")
    .option('--https-port <port>', 'serve HTTPS (HTTP/2 and HTTP/1.1) on this port too, e.g. 443 (ALTO_HTTPS_PORT)')
    .option('--tls-cert <file>', 'a PEM certificate (a wildcard included) to serve over HTTPS, read again when it changes (ALTO_TLS_CERT)')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert (ALTO_TLS_KEY)')
    .option('--domain <domain>', "the console's and API's own name, e.g. alto.example.com; with --acme-email its certificate is obtained (ALTO_DOMAIN)")
    .option('--acme-email <email>', "obtain certificates from an ACME directory for the hosts Alto serves; the account's contact (ALTO_ACME_EMAIL)")
    .option('--acme-directory <url>', "the ACME directory (ALTO_ACME_DIRECTORY; default Let's Encrypt production)")
    .option('--backup-to <folder | s3://...>', 'back this data folder up on a schedule into this folder or bucket, as "alto backup --to" does (ALTO_BACKUP_TO)')
    .option('--backup-every <period>', 'how often: 30m, 6h, 1d... (ALTO_BACKUP_EVERY; default 24h)')
    .option('--backup-keep <count>', 'how many backups to keep; older ones and the content only they held are removed (ALTO_BACKUP_KEEP; default 14)')
    .action(action(runUp));

  remote(program.command('status').description('show whether Alto is up and what it runs')).action(
    action(async (flags: Flags) => {
      const connection = resolveConnection(flags);
      const response = await fetch(`${connection.url}/v1/status`, {
        headers: connection.key ? { authorization: `Bearer ${connection.key}` } : {},
      }).catch((error: Error) => {
        throw new Error(`Alto is not reachable at ${connection.url}: ${error.message}`);
      });
      const body = (await response.json()) as Record<string, unknown>;
      if (!response.ok) throw new Error(`${connection.url} answered ${response.status}: ${String(body.detail ?? '')}`);
      if (wantsJson(flags)) return printJson({ url: connection.url, ...body }, flags);
      process.stdout.write(
        `${bold('Alto')} ${body.version} at ${green(connection.url)} — ${body.ready ? green('ready') : 'starting'}\n` +
          `  store:    ${body.store}\n  services: ${(body.services as string[]).join(', ')}\n` +
          `  uptime:   ${body.uptime_seconds}s\n  key:      ${JSON.stringify(body.key)} ${dim(`(${connection.source})`)}\n` +
          sandboxLine(body.sandbox as SandboxInfo | undefined) +
          httpsLines(body.https as HttpsInfo | undefined) +
          backupLines(body.backups as BackupStatus | undefined),
      );
    }),
  );

  program
    .command('login')
    .description('save an Alto address and key as a profile')
    .requiredOption('--url <url>', 'Alto address, e.g. http://localhost:4000')
    .requiredOption('--key <key>', 'API key')
    .option('--profile <name>', 'profile name', 'default')
    .action(
      action(async (flags: { url: string; key: string; profile: string }) => {
        const response = await fetch(`${flags.url.replace(/\/+$/, '')}/v1/status`, {
          headers: { authorization: `Bearer ${flags.key}` },
        }).catch((error: Error) => {
          throw new Error(`Alto is not reachable at ${flags.url}: ${error.message}`);
        });
        if (!response.ok) {
          const body = (await response.json().catch(() => ({}))) as { detail?: string };
          throw new Error(`the key was refused: ${body.detail ?? response.status}`);
        }
        const path = saveProfile(flags.profile, { url: flags.url.replace(/\/+$/, ''), key: flags.key });
        process.stdout.write(`logged in to ${flags.url}; profile "${flags.profile}" saved in ${path}\n`);
      }),
    );

  const projects = program.command('projects').description('create, list and delete projects');
  remote(projects.command('create <name>').description('create a project')).action(
    action(async (name: string, flags: Flags) => printJson(await client(flags).projects.create({ name }), flags)),
  );
  remote(projects.command('list').description('list projects')).action(
    action(async (flags: Flags) => {
      const result = await client(flags).projects.list();
      printTable(result.projects, ['name', 'id', 'created'], flags, result);
    }),
  );
  remote(projects.command('delete <name>').description('delete a project and revoke its keys')).action(
    action(async (name: string, flags: Flags) => {
      await client(flags).projects.delete({ name });
      process.stdout.write(wantsJson(flags) ? '{}\n' : `deleted project ${name}\n`);
    }),
  );

  addTransferCommands(program, projects, { remote, action });

  const keys = program.command('keys').description('generate, list, revoke, block and unblock API keys');
  remote(
    keys
      .command('generate')
      .description('generate a key (shown once)')
      .requiredOption('--project <name>', 'project the key belongs to')
      .option('--scopes <services>', 'comma-separated service names, or * for all', '*')
      .option('--description <text>', 'what the key is for', '')
      .option('--environment <name>', 'environment', 'dev'),
  ).action(
    action(async (flags: Flags & { project: string; scopes: string; description: string; environment: string }) => {
      const result = await client(flags).keys.generate({
        project: flags.project,
        scopes: flags.scopes.split(',').map((scope) => scope.trim()).filter(Boolean),
        description: flags.description,
        environment: flags.environment,
      });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(`${result.key}\n${dim(`id ${result.info.id}; store the key now, it is not shown again`)}\n`);
    }),
  );
  remote(keys.command('list').description("list a project's keys").requiredOption('--project <name>', 'project')).action(
    action(async (flags: Flags & { project: string }) => {
      const result = await client(flags).keys.list({ project: flags.project });
      printTable(result.keys, ['id', 'prefix', 'environment', 'scopes', 'status', 'role', 'description'], flags, result);
    }),
  );
  for (const [verb, done, description] of [
    ['revoke', 'revoked', 'revoke a key for good'],
    ['block', 'blocked', 'block a key'],
    ['unblock', 'unblocked', 'unblock a key'],
  ] as const) {
    remote(keys.command(`${verb} <id>`).description(description)).action(
      action(async (id: string, flags: Flags) => {
        await client(flags).keys[verb]({ id });
        process.stdout.write(wantsJson(flags) ? '{}\n' : `${done} key ${id}\n`);
      }),
    );
  }

  addUsageCommands(program, { remote, action, client });
  addImageCommands(program, { remote, action, client });
  addAppCommands(program, { remote, action, client });
  addEnvironmentCommands(program, { remote, action, client });
  addRequestCommands(program, { remote, action, client });
  addFunctionCommands(program, { remote, action, client });
  addNodeCommands(program, { remote, action, client });
  addDomainCommands(program, { remote, action, client });
  addTemplateCommands(program, { remote, action, client });
  addInitCommand(program, action);
  addMigrateCommand(program, action);
  addBackupCommands(program, action);

  remote(
    program
      .command('call <service> <endpoint> [request...]')
      .description("call any endpoint: alto call id Generate --type ulid, or alto call db Create '{\"record\":{...}}'")
      .allowUnknownOption()
      .helpOption(false),
  ).action(
    action(async (service: string, endpoint: string, request: string[], flags: Flags) => {
      const alto = client(flags);
      const operation = await describeOperation(alto.transport, service, endpoint);
      const body = buildRequest(request, operation.fields);
      if (operation.stream) {
        for await (const item of alto.transport.stream(service, endpoint, body)) printJson(item, { json: true });
        return;
      }
      printJson(await alto.transport.call(service, endpoint, body), flags);
    }),
  );

  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
