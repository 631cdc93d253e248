/**
 * @module cli/templates
 * `alto template deploy <folder | git url | catalogue name> --name shop [--set KEY=VALUE]...`,
 * `alto template update` (the same, applied as a diff), `alto template list` and `alto template
 * destroy shop [--volumes]`, through the `template` service. The
 * template is read here: a folder as it is, a git repository cloned (shallow, `--branch`) into a
 * temporary folder with the machine's git, then `--path` inside it, or a template of the
 * catalogue shipped with Alto (`templates/` of this package) by its name. Its compose file, its
 * alto.yaml and its other files (build contexts, env files) are sent to the server.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { Command } from 'commander';
import { collect, namedValues } from './apps.js';
import { readFolder } from './functions.js';
import { bold, dim, printJson, printTable, wantsJson } from './output.js';
import type { CommandHelpers } from './usage.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

/** The catalogue: templates shipped with Alto, by folder name (from src/cli or dist/cli). */
export const CATALOGUE_DIR = fileURLToPath(new URL('../../templates/', import.meta.url));

/** The catalogue's templates with what their alto.yaml says they are. */
export function catalogue(): { name: string; description: string }[] {
  if (!existsSync(CATALOGUE_DIR)) return [];
  return readdirSync(CATALOGUE_DIR, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => {
      const alto = join(CATALOGUE_DIR, entry.name, 'alto.yaml');
      const description = existsSync(alto) ? (parseYaml(readFileSync(alto, 'utf8'))?.description as string | undefined) : undefined;
      return { name: entry.name, description: description ?? '' };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** A catalogue name (no slash, not a folder here) to its folder; undefined for anything else. */
function catalogueFolder(source: string): string | undefined {
  if (source.includes('/') || existsSync(source) || !/^[a-z0-9-]+$/.test(source)) return undefined;
  const folder = join(CATALOGUE_DIR, source);
  if (!existsSync(folder)) throw new Error(`no template "${source}" in the catalogue (${catalogue().map((entry) => entry.name).join(', ')}), and no folder of that name here`);
  return folder;
}

/** The names a compose file goes by, in the order Compose looks for them. */
const COMPOSE_FILES = ['compose.yaml', 'compose.yml', 'docker-compose.yaml', 'docker-compose.yml'];

interface StackView {
  name: string;
  services: { service: string; app: string; status: string; url?: string; tcp_port?: number }[];
}

/** A git URL rather than a folder: a scheme git speaks, `user@host:path`, or a name ending in .git that is no folder here. */
export function isGitSource(source: string): boolean {
  if (/^(https?|git|ssh|file):\/\//.test(source) || /^[\w.-]+@[\w.-]+:/.test(source)) return true;
  return source.endsWith('.git') && !existsSync(source);
}

/** The template's texts and files, read from its folder. */
export function readTemplate(folder: string): { compose: string; alto?: string; files: Record<string, string> } {
  const root = resolve(folder);
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`${folder} is not a folder`);
  const composeName = COMPOSE_FILES.find((name) => existsSync(join(root, name)));
  if (!composeName) throw new Error(`${folder} holds no compose file (${COMPOSE_FILES.join(', ')})`);
  const altoPath = join(root, 'alto.yaml');
  return {
    compose: readFileSync(join(root, composeName), 'utf8'),
    ...(existsSync(altoPath) ? { alto: readFileSync(altoPath, 'utf8') } : {}),
    files: readFolder(root),
  };
}


function where(service: StackView['services'][number]): string {
  return service.tcp_port !== undefined ? `tcp port ${service.tcp_port}` : (service.url ?? '');
}

export function addTemplateCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const template = program.command('template').alias('templates').description('stacks of apps from a compose.yaml (and alto.yaml): deploy, list, destroy');

  for (const verb of ['deploy', 'update'] as const) {
    const command = template
      .command(`${verb} <source>`)
      .description(
        verb === 'deploy'
          ? 'deploy a template (a folder, a git repository, or a name of the catalogue: alto template list) as a stack: one app per compose service, <name>-<service>'
          : "apply a changed template to a stack: only the services whose settings or build changed are updated (zero-downtime), new ones deployed, removed ones deleted (volumes kept unless --volumes)",
      )
      .requiredOption('-n, --name <name>', "the stack's name (its apps are <name>-<service>)")
      .option('--set <KEY=VALUE>', "a value for a parameter of the template's alto.yaml (repeat for more)", collect)
      .option('--branch <branch>', 'the branch of a git repository (default: its default branch)')
      .option('--path <folder>', 'the folder inside the repository (or folder) holding the compose file');
    if (verb === 'update') command.option('--volumes', 'delete the volumes of the services the template no longer has');
    remote(command).action(
      action(async (source: string, flags: Flags & { name: string; set?: string[]; branch?: string; path?: string; volumes?: boolean }) => {
        let clone: string | undefined;
        let folder = catalogueFolder(source) ?? source;
        if (isGitSource(source)) {
          clone = mkdtempSync(join(tmpdir(), 'alto-template-'));
          execFileSync('git', ['clone', '--quiet', '--depth', '1', ...(flags.branch ? ['--branch', flags.branch] : []), '--', source, clone], { stdio: ['ignore', 'ignore', 'inherit'] });
          folder = clone;
        } else if (flags.branch) throw new Error('--branch goes with a git repository, not a folder');
        try {
          const read = readTemplate(flags.path ? join(folder, flags.path) : folder);
          const values = namedValues('--set', flags.set);
          const body = { name: flags.name, ...read, ...(values ? { set: values } : {}), ...(flags.volumes ? { volumes: true } : {}) };
          const result = await client(flags).transport.call<{ stack: StackView; warnings: string[]; secrets: string[]; public?: string; changes?: { service: string; change: string }[] }>(
            'template',
            verb === 'deploy' ? 'Deploy' : 'Update',
            body,
          );
          if (wantsJson(flags)) return printJson(result, flags);
          for (const warning of result.warnings) process.stderr.write(`${dim(`warning: ${warning}`)}\n`);
          process.stdout.write(`stack ${bold(result.stack.name)} ${verb === 'deploy' ? 'deployed' : 'updated'}\n`);
          const changes = new Map((result.changes ?? []).map((change) => [change.service, change.change]));
          for (const service of result.stack.services)
            process.stdout.write(`  ${service.service.padEnd(16)} ${service.app.padEnd(24)} ${service.status.padEnd(10)} ${where(service)}${changes.has(service.service) ? dim(` (${changes.get(service.service)})`) : ''}\n`);
          for (const [service, change] of changes) if (change === 'removed') process.stdout.write(`  ${service.padEnd(16)} ${dim('removed')}\n`);
          if (result.secrets.length > 0) process.stdout.write(`  secrets: ${result.secrets.join(', ')} ${dim('(values kept in secret, never shown)')}\n`);
          if (result.public) process.stdout.write(`  public:  ${bold(result.public)}\n`);
        } finally {
          if (clone) rmSync(clone, { recursive: true, force: true });
        }
      }),
    );
  }

  remote(template.command('list', { isDefault: true }).description("list the catalogue's templates and the project's stacks with their apps (the default)")).action(
    action(async (flags: Flags) => {
      const result = await client(flags).transport.call<{ stacks: StackView[] }>('template', 'List', {});
      if (wantsJson(flags)) return printJson({ ...result, catalogue: catalogue() }, flags);
      process.stdout.write(`${bold('catalogue')} ${dim('(alto template deploy <name> --name <stack>)')}\n`);
      for (const entry of catalogue()) process.stdout.write(`  ${entry.name.padEnd(16)} ${entry.description}\n`);
      process.stdout.write(`${bold('stacks')}\n`);
      printTable(
        result.stacks.flatMap((stack) => stack.services.map((service) => ({ stack: stack.name, service: service.service, app: service.app, status: service.status, address: where(service) }))),
        ['stack', 'service', 'app', 'status', 'address'],
        flags,
        result,
      );
    }),
  );

  remote(
    template
      .command('destroy <name>')
      .description("remove a stack's apps (their volumes and the stack's secrets are kept unless --volumes)")
      .option('--volumes', "also delete the apps' volumes and the stack's secrets"),
  ).action(
    action(async (name: string, flags: Flags & { volumes?: boolean }) => {
      const result = await client(flags).transport.call<{ removed: string[] }>('template', 'Destroy', { name, ...(flags.volumes ? { volumes: true } : {}) });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(`stack ${bold(name)} removed: ${result.removed.join(', ')}${flags.volumes ? '' : dim(' (volumes and secrets kept)')}\n`);
    }),
  );
}
