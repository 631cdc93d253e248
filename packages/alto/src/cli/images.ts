/**
 * @module cli/images
 * `alto images pull|list|inspect|rm|prune|import|share|unpack` and `alto registry login|logout|list`.
 * They call the `images` and `registry` services by name through the SDK's transport (so they
 * work before the SDK is regenerated) with the admin key. `pull` shows progress on stderr: one
 * updating line in a terminal, one line per finished blob otherwise; with --json it prints every
 * progress message as a JSON line instead. Like every command, results are JSON when piped.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { bold, dim, green, printJson, printTable, wantsJson } from './output.js';
import type { CommandHelpers } from './usage.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

interface PullMessage {
  status: string;
  digest?: string;
  role?: string;
  current?: number;
  total?: number;
  layers?: number;
  image?: { digest: string; references: string[]; size: number; layers: number };
}

interface ImageSummary {
  digest: string;
  references: string[];
  size: number;
  layers: number;
  created?: string;
  pulled_at: string;
  users: string[];
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const short = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

/** Shows pull progress: totals on one line in a terminal, a line per finished blob otherwise. */
class PullProgress {
  private readonly layers = new Map<string, { current: number; total: number; state: string }>();
  private layerCount = 0;
  private totalBytes = 0;
  private readonly live = Boolean(process.stderr.isTTY);
  private lineShown = false;

  constructor(private readonly reference: string) {}

  update(message: PullMessage): void {
    if (message.status === 'resolved') {
      this.layerCount = message.layers ?? 0;
      this.totalBytes = message.total ?? 0;
      this.write(`${bold(this.reference)}: ${message.layers} layers, ${formatBytes(message.total ?? 0)} ${dim(`(${message.digest})`)}`);
      return;
    }
    if (!message.digest || message.status === 'pulled') return;
    const finished = message.status === 'done' || message.status === 'cached';
    if (!this.live) {
      const previous = message.role === 'layer' ? this.layers.get(message.digest)?.state : undefined;
      if ((finished || message.status === 'resuming') && previous !== message.status) {
        this.write(
          `${message.role ?? 'blob'} ${short(message.digest)}: ${
            message.status === 'cached'
              ? 'already stored'
              : message.status === 'resuming'
                ? `connection dropped at ${formatBytes(message.current ?? 0)}, resuming`
                : `${formatBytes(message.total ?? 0)} downloaded`
          }`,
        );
      }
    }
    if (message.role !== 'layer') return;
    this.layers.set(message.digest, { current: message.current ?? 0, total: message.total ?? 0, state: message.status });
    if (!this.live) return;
    let current = 0;
    let done = 0;
    for (const layer of this.layers.values()) {
      current += layer.current;
      if (layer.state === 'done' || layer.state === 'cached') done++;
    }
    const percent = this.totalBytes > 0 ? Math.floor((current / this.totalBytes) * 100) : 100;
    process.stderr.write(
      `\r\x1b[2K${done}/${this.layerCount} layers  ${formatBytes(current)} of ${formatBytes(this.totalBytes)}  ${percent}%${message.status === 'resuming' ? '  (resuming)' : ''}`,
    );
    this.lineShown = true;
  }

  private write(line: string): void {
    if (this.lineShown) process.stderr.write('\r\x1b[2K');
    this.lineShown = false;
    process.stderr.write(line + '\n');
  }

  end(): void {
    if (this.lineShown) process.stderr.write('\n');
    this.lineShown = false;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function addImageCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const images = program
    .command('images')
    .description("pull, list, inspect, remove, prune, import and unpack OCI images (admin key); with a project key, list, remove and prune the tags it pushed to Alto's registry");

  remote(
    images
      .command('pull <reference>')
      .description('pull an image from its registry: redis:7, ghcr.io/org/app@sha256:..., localhost:5000/app:v2')
      .option('--insecure', 'allow plain HTTP for this registry (loopback registries always may)'),
  ).action(
    action(async (reference: string, flags: Flags & { insecure?: boolean }) => {
      const transport = client(flags).transport;
      const progress = new PullProgress(reference);
      let pulled: PullMessage['image'];
      try {
        for await (const message of transport.stream<PullMessage>('images', 'Pull', { reference, insecure: Boolean(flags.insecure) })) {
          if (flags.json) process.stdout.write(JSON.stringify(message) + '\n');
          else progress.update(message);
          if (message.status === 'pulled') pulled = message.image;
        }
      } finally {
        progress.end();
      }
      if (!pulled) throw new Error('the pull stream ended without the image');
      if (flags.json) return;
      if (wantsJson(flags)) printJson(pulled, flags);
      else process.stdout.write(`${green('pulled')} ${pulled.references[0] ?? reference} ${dim(pulled.digest)}\n`);
    }),
  );

  remote(images.command('list').alias('ls').description('list the images stored on the server')).action(
    action(async (flags: Flags) => {
      const result = await client(flags).transport.call<{ images: ImageSummary[] }>('images', 'List', {});
      const rows = result.images.map((image) => ({
        reference: image.references.join(', ') || dim('<none>'),
        digest: short(image.digest),
        size: formatBytes(image.size),
        layers: image.layers,
        pulled: image.pulled_at.slice(0, 19).replace('T', ' '),
        used_by: image.users.join(', '),
      }));
      printTable(rows, ['reference', 'digest', 'size', 'layers', 'pulled', 'used_by'], flags, result);
    }),
  );

  remote(images.command('inspect <image>').description("show an image's references, blobs and run spec (entrypoint, cmd, env, ports...)")).action(
    action(async (image: string, flags: Flags) => {
      const result = await client(flags).transport.call<{ image: unknown }>('images', 'Inspect', { image });
      printJson(result.image, flags);
    }),
  );

  remote(images.command('rm <images...>').alias('remove').description('remove references; an image goes with its last one, its blobs with the last image using them')).action(
    action(async (names: string[], flags: Flags) => {
      const transport = client(flags).transport;
      for (const image of names) {
        const result = await transport.call<{ untagged: string[]; deleted: string[]; freed_bytes: number }>('images', 'Delete', { image });
        if (wantsJson(flags)) {
          printJson(result, flags);
          continue;
        }
        for (const reference of result.untagged) process.stdout.write(`untagged ${reference}\n`);
        for (const digest of result.deleted) process.stdout.write(`deleted ${digest}\n`);
        if (result.freed_bytes > 0) process.stdout.write(dim(`freed ${formatBytes(result.freed_bytes)}\n`));
      }
    }),
  );

  remote(images.command('prune').description('remove untagged images, unused blobs and abandoned downloads').option('-a, --all', 'also remove tagged images no app uses')).action(
    action(async (flags: Flags & { all?: boolean }) => {
      const result = await client(flags).transport.call<{ deleted: string[]; blobs_deleted: number; freed_bytes: number }>('images', 'Prune', { all: Boolean(flags.all) });
      if (wantsJson(flags)) return printJson(result, flags);
      for (const digest of result.deleted) process.stdout.write(`deleted ${digest}\n`);
      process.stdout.write(`removed ${result.deleted.length} images and ${result.blobs_deleted} blobs; freed ${formatBytes(result.freed_bytes)}\n`);
    }),
  );

  remote(
    images
      .command('import <path>')
      .description("import a docker save tarball, OCI archive or OCI layout folder (read by the server, on the server's machine)")
      .option('--reference <name>', 'name the image when the archive does not (or rename its only image)'),
  ).action(
    action(async (path: string, flags: Flags & { reference?: string }) => {
      const result = await client(flags).transport.call<{ images: ImageSummary[] }>('images', 'Import', {
        path: resolve(path),
        ...(flags.reference ? { reference: flags.reference } : {}),
      });
      if (wantsJson(flags)) return printJson(result, flags);
      for (const image of result.images) process.stdout.write(`imported ${image.references.join(', ')} ${dim(image.digest)}\n`);
    }),
  );

  remote(
    images
      .command('share <image> <project>')
      .description('let a project ("*": every project) run an image the server holds, such as one pulled with your registry login')
      .option('--revoke', 'take the share back'),
  ).action(
    action(async (image: string, project: string, flags: Flags & { revoke?: boolean }) => {
      const result = await client(flags).transport.call<{ digest: string; project: string; shared: boolean }>('images', 'Share', { image, project, revoke: Boolean(flags.revoke) });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(`${result.shared ? 'shared' : 'no longer shared'} ${short(result.digest)} with ${project}\n`);
    }),
  );

  remote(images.command('unpack <image> <folder>').description("unpack an image's root filesystem into a new folder (on the server's machine)")).action(
    action(async (image: string, folder: string, flags: Flags) => {
      const result = await client(flags).transport.call<{ digest: string; files: number; directories: number; symlinks: number; bytes: number; skipped: unknown[] }>('images', 'Unpack', {
        image,
        path: resolve(folder),
      });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(
        `unpacked ${short(result.digest)} into ${resolve(folder)}: ${result.files} files, ${result.directories} directories, ${result.symlinks} symlinks, ${formatBytes(result.bytes)}` +
          (result.skipped.length ? dim(` (${result.skipped.length} device nodes or FIFOs skipped)`) : '') +
          '\n',
      );
    }),
  );

  const registry = program.command('registry').description('credentials for private image registries, kept by the server');
  remote(
    registry
      .command('login <registry>')
      .description('check and save credentials for a registry (docker.io, ghcr.io, localhost:5000)')
      .requiredOption('-u, --username <name>', 'user name')
      .option('-p, --password <password>', 'password or token (prefer --password-stdin: arguments are visible to other users)')
      .option('--password-stdin', 'read the password from standard input')
      .option('--insecure', 'allow plain HTTP for this registry'),
  ).action(
    action(async (name: string, flags: Flags & { username: string; password?: string; passwordStdin?: boolean; insecure?: boolean }) => {
      const password = flags.passwordStdin ? await readStdin() : flags.password;
      if (!password) throw new Error('give the password with --password-stdin (or --password)');
      const result = await client(flags).transport.call<{ registry: string; username: string }>('registry', 'Login', {
        registry: name,
        username: flags.username,
        password,
        insecure: Boolean(flags.insecure),
      });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(`logged in to ${result.registry} as ${result.username}; the server keeps the credentials\n`);
    }),
  );
  remote(registry.command('logout <registry>').description('forget the saved credentials of a registry')).action(
    action(async (name: string, flags: Flags) => {
      const result = await client(flags).transport.call<{ registry: string; removed: boolean }>('registry', 'Logout', { registry: name });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(result.removed ? `logged out of ${result.registry}\n` : `no credentials were saved for ${result.registry}\n`);
    }),
  );
  remote(registry.command('list').description('list registries with saved credentials')).action(
    action(async (flags: Flags) => {
      const result = await client(flags).transport.call<{ registries: Record<string, unknown>[] }>('registry', 'List', {});
      printTable(result.registries, ['registry', 'username', 'saved_at'], flags, result);
    }),
  );
}
