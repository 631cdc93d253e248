/**
 * @module cli/transfer
 * Moving projects between Alto instances, over the project archive routes
 * (platform/transfer/route): `alto projects export NAME [-o FILE]`, `alto projects import FILE
 * [--as NAME]`, `alto push NAME --to PROFILE` and `alto pull NAME --from PROFILE` (profiles
 * saved by `alto login`). Archives stream: export writes as the server sends, import and push
 * send as they read, with a progress line on stderr. `--only data|code` carries the project's
 * data (db, files, space, secrets, users, cron, url, search, events) or its code (apps,
 * functions); `--env dev:staging` (repeatable) brings an environment of the source in under
 * another name (the others keep theirs); `--dry-run` shows what a push or pull would create
 * without creating it, and the environments' mapping.
 *
 * Downloads resume: an export is spooled on the server, and when the link breaks the CLI asks
 * for the bytes past those it holds (`GET /admin/projects/exports/<id>`, `Range: bytes=N-`) a few
 * times, for a file, stdout or the import a push or pull feeds alike; at the end it checks the
 * whole archive's sha256 against the server's. `alto projects export -o FILE` keeps the export's
 * id beside the file (`FILE.alto-export`) until it is complete, so `--resume` goes on from the
 * file's bytes in a later run.
 */
import { createReadStream, createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { ArchiveReader, type ArchiveManifest } from '../platform/transfer/archive.js';
import { PASSPHRASE_HEADER } from '../platform/transfer/route.js';
import { environmentMapping, parseEnvironmentPairs } from '../platform/transfer/transfer.js';
import { formatBytes } from '../store/backup/backup-instance.js';
import { bold, dim, green, yellow } from './output.js';
import { resolveConnection, type Connection, type ConnectionFlags } from './profile.js';

type Action = <Args extends unknown[]>(run: (...args: Args) => Promise<void>) => (...args: Args) => Promise<void>;
type Remote = (command: Command) => Command;
type Flags = ConnectionFlags & { json?: boolean };

interface TransferFlags extends Flags {
  only?: string;
  passphraseFile?: string;
  /** `--env SOURCE:TARGET`, repeated. */
  env?: string[];
}

const collect = (value: string, previous: string[] = []) => [...previous, value];
const ENV_HELP = 'bring the source\'s environment SOURCE in as TARGET (repeatable, e.g. --env dev:staging); the others keep their names';

/** What the import route answers. */
export interface ImportAnswer {
  project: { id: string; name: string };
  key: string;
  from: { project: string; alto_version: string; created: string };
  sections: Record<string, number>;
  /** Each environment of the archive and the one it arrived in. */
  environments?: Record<string, string>;
  warnings: string[];
}

export function addTransferCommands(program: Command, projects: Command, { remote, action }: { remote: Remote; action: Action }): void {
  remote(
    projects
      .command('export <name>')
      .description('write a project (data, apps, functions; never keys) as an archive to a file or stdout')
      .option('-o, --output <file>', 'the archive file (default: stdout)')
      .option('--only <part>', 'data (db, files, space, secrets, users, cron, url, search, events) or code (apps, functions)')
      .option('--passphrase-file <file>', 'seal the secrets in the archive with the passphrase in this file (else they are in it in clear)')
      .option('--resume', 'go on with the export that an earlier run left part way in the -o file'),
  ).action(
    action(async (name: string, flags: TransferFlags & { output?: string; resume?: boolean }) => {
      const source = connectionOf(flags);
      const passphrase = passphraseOf(flags);
      if (!flags.output && process.stdout.isTTY) throw new Error('the archive is binary: give -o FILE, or redirect stdout (alto projects export shop > shop.tgz)');
      if (flags.resume && !flags.output) throw new Error('--resume goes on from an -o FILE an earlier run left part way');
      const sidecar = flags.output ? `${flags.output}.alto-export` : undefined;
      let resume: ResumePoint | undefined;
      if (flags.resume) {
        if (!existsSync(sidecar!) || !existsSync(flags.output!)) throw new Error(`${flags.output}: no export left part way there (no ${sidecar}); export without --resume`);
        const kept = JSON.parse(readFileSync(sidecar!, 'utf8')) as { url: string; project: string; id: string };
        if (kept.project !== name) throw new Error(`${flags.output} is part of the export of ${kept.project} (from ${kept.url}), not of ${name}`);
        resume = { id: kept.id, offset: statSync(flags.output!).size, prefix: flags.output };
      }
      const download = new ExportDownload(source, name, onlyOf(flags), passphrase, resume);
      download.onStarted = (id) => {
        if (sidecar) writeFileSync(sidecar, JSON.stringify({ url: source.url, project: name, id }) + '\n', { mode: 0o600 });
      };
      const progress = new Progress(resume ? `exporting ${name} (from byte ${resume.offset})` : `exporting ${name}`);
      progress.skip(resume?.offset ?? 0);
      const bytes = await download.start();
      if (passphrase === undefined && !resume) warnClearSecrets();
      const sink = flags.output ? createWriteStream(flags.output, { mode: 0o600, flags: resume ? 'a' : 'w' }) : (process.stdout as Writable);
      await pipeline(bytes, progress.counter(), sink);
      progress.done();
      await download.finish();
      if (flags.output) {
        const manifest = await new ArchiveReader(flags.output).verify();
        rmSync(sidecar!, { force: true });
        process.stderr.write(`${green('exported')} ${name} to ${flags.output}: ${sectionSummary(manifest)}\n`);
      }
    }),
  );
  remote(
    projects
      .command('import <file>')
      .description('create a project from an archive (alto projects export); prints the new project\'s key')
      .option('--as <name>', 'the new project\'s name (default: the exported project\'s)')
      .option('--env <source:target>', ENV_HELP, collect)
      .option('--passphrase-file <file>', 'the passphrase the archive\'s secrets were sealed with'),
  ).action(
    action(async (file: string, flags: TransferFlags & { as?: string }) => {
      const target = connectionOf(flags);
      const passphrase = passphraseOf(flags);
      const environments = environmentsOf(flags);
      const upload = await uploadFile(target, file);
      const answer = await importUpload(target, upload, flags.as, passphrase, environments);
      printImported(answer, flags);
    }),
  );

  for (const direction of ['push', 'pull'] as const) {
    const command = program
      .command(`${direction} <name>`)
      .description(
        direction === 'push'
          ? 'copy a project from this instance to another (a profile saved by alto login), as export and import do'
          : 'copy a project from another instance (a profile saved by alto login) to this one, as export and import do',
      )
      .option(direction === 'push' ? '--to <profile>' : '--from <profile>', direction === 'push' ? 'the instance to copy to' : 'the instance to copy from')
      .option('--as <name>', 'the project\'s name where it arrives (default: the same)')
      .option('--only <part>', 'data (db, files, space, secrets, users, cron, url, search, events) or code (apps, functions)')
      .option('--env <source:target>', ENV_HELP, collect)
      .option('--dry-run', 'list what would be created, create nothing')
      .option('--passphrase-file <file>', 'seal the secrets on the way with this passphrase');
    remote(command).action(
      action(async (name: string, flags: TransferFlags & { to?: string; from?: string; as?: string; dryRun?: boolean }) => {
        const other = direction === 'push' ? flags.to : flags.from;
        if (!other) throw new Error(`${direction}: give the other instance's profile (${direction === 'push' ? '--to' : '--from'} PROFILE; alto login --profile PROFILE saves one)`);
        const here = connectionOf(flags);
        const there = connectionOf({ profile: other });
        const [source, target] = direction === 'push' ? [here, there] : [there, here];
        const passphrase = passphraseOf(flags);
        const only = onlyOf(flags);
        const environments = environmentsOf(flags);
        const arriving = flags.as ?? name;
        process.stderr.write(`${bold(direction)} ${name}: ${source.url} → ${target.url}${arriving !== name ? ` as ${arriving}` : ''}${only !== 'all' ? ` (${only} only)` : ''}\n`);
        if (flags.dryRun) return dryRun(source, target, name, arriving, only, passphrase, environments, flags);
        const download = new ExportDownload(source, name, only, passphrase);
        const progress = new Progress(`copying ${name}`);
        const answer = await importStream(target, (await download.start()).pipe(progress.counter()), flags.as, passphrase, environments);
        progress.done();
        await download.finish();
        printImported(answer, flags);
      }),
    );
  }
}

function connectionOf(flags: ConnectionFlags): Connection & { key: string } {
  const connection = resolveConnection(flags);
  if (!connection.key) throw new Error(`no API key for ${connection.url}: pass --key, set ALTO_KEY, or run "alto login"`);
  return { ...connection, key: connection.key };
}

function onlyOf(flags: TransferFlags): 'data' | 'code' | 'all' {
  const only = flags.only ?? 'all';
  if (only !== 'data' && only !== 'code' && only !== 'all') throw new Error(`--only: data or code, not "${only}"`);
  return only;
}

/** `--env` pairs, checked before anything is sent. */
function environmentsOf(flags: TransferFlags): Map<string, string> {
  try {
    return parseEnvironmentPairs(flags.env ?? []);
  } catch (error) {
    throw new Error(`--${(error as Error).message}`);
  }
}

function environmentQuery(environments: Map<string, string>): string {
  return [...environments].map(([from, to]) => `&env=${encodeURIComponent(`${from}:${to}`)}`).join('');
}

function passphraseOf(flags: TransferFlags): string | undefined {
  if (!flags.passphraseFile) return undefined;
  const passphrase = readFileSync(flags.passphraseFile, 'utf8').replace(/\r?\n$/, '');
  if (passphrase.length < 8) throw new Error(`${flags.passphraseFile}: the passphrase is shorter than 8 characters`);
  return passphrase;
}

function warnClearSecrets(): void {
  process.stderr.write(yellow('warning: the archive holds the project\'s secrets in clear (and its users\' password hashes): keep it where only you can read it, or give --passphrase-file\n'));
}

function headersOf(connection: Connection & { key: string }, passphrase: string | undefined): Record<string, string> {
  return { authorization: `Bearer ${connection.key}`, ...(passphrase !== undefined ? { [PASSPHRASE_HEADER]: Buffer.from(passphrase).toString('base64') } : {}) };
}

async function refusal(response: Response, what: string): Promise<Error> {
  const body = (await response.json().catch(() => ({}))) as { detail?: string; id?: string };
  return new Error(`${what}: ${body.detail ?? `HTTP ${response.status}`}${body.id ? ` (${body.id}, ${response.status})` : ''}`);
}

/** Where a download goes on from: the export's id, the bytes held, and the file holding them (hashed again for the final check). */
interface ResumePoint {
  id: string;
  offset: number;
  prefix?: string;
}

/** How often a broken download is taken up again (the wait doubles from EXPORT_RETRY_MS; ALTO_TRANSFER_RETRY_MS sets it). */
const DOWNLOAD_ATTEMPTS = 5;
const EXPORT_RETRY_MS = 1000;

/**
 * One export downloaded as a stream of bytes that goes on after a broken link: the first
 * request starts the export, and each break asks for the bytes from those received
 * (`GET /admin/projects/exports/<id>`, `Range: bytes=N-`). `finish()` then checks the whole
 * archive's size and sha256 against the server's and lets the server drop its spool.
 */
class ExportDownload {
  private received = 0;
  private readonly hash = createHash('sha256');
  private id: string | undefined;
  onStarted: (id: string) => void = () => undefined;

  constructor(
    private readonly source: Connection & { key: string },
    private readonly name: string,
    private readonly only: string,
    private readonly passphrase: string | undefined,
    private readonly resume?: ResumePoint,
  ) {}

  private first: Response | undefined;

  /** Sends the first request (a refusal, such as an unknown project, is thrown here), and answers the bytes as they come. */
  async start(): Promise<Readable> {
    if (this.resume) {
      this.id = this.resume.id;
      this.received = this.resume.offset;
      if (this.resume.prefix && this.resume.offset > 0) {
        for await (const chunk of createReadStream(this.resume.prefix, { end: this.resume.offset - 1 }) as AsyncIterable<Buffer>) this.hash.update(chunk);
      }
    }
    this.first = await this.request();
    return Readable.from(this.chunks());
  }

  private async *chunks(): AsyncGenerator<Buffer> {
    const retryMs = Number(process.env.ALTO_TRANSFER_RETRY_MS ?? EXPORT_RETRY_MS);
    for (let attempt = 1; ; attempt++) {
      const response = attempt === 1 && this.first ? this.first : await this.request();
      try {
        for await (const chunk of Readable.fromWeb(response.body as never) as AsyncIterable<Buffer>) {
          this.received += chunk.length;
          this.hash.update(chunk);
          yield chunk;
        }
        return;
      } catch (error) {
        if (!this.id || attempt >= DOWNLOAD_ATTEMPTS) {
          throw new Error(
            `the download of ${this.name} from ${this.source.url} broke off at byte ${this.received}: ${(error as Error).message}${this.id ? '; run the same export with --resume (and -o FILE) to go on' : ''}`,
          );
        }
        process.stderr.write(`${yellow('the download broke off')} at byte ${this.received}; going on from there (try ${attempt + 1} of ${DOWNLOAD_ATTEMPTS})\n`);
        await new Promise((resolveWait) => setTimeout(resolveWait, retryMs * 2 ** (attempt - 1)));
      }
    }
  }

  /** The first request starts the export; the next ones ask for the bytes from those received. */
  private async request(): Promise<Response> {
    const headers = headersOf(this.source, this.passphrase);
    const url = this.id
      ? `${this.source.url}/admin/projects/exports/${this.id}`
      : `${this.source.url}/admin/projects/export?name=${encodeURIComponent(this.name)}&only=${this.only}`;
    const response = await fetch(url, { headers: this.id ? { ...headers, range: `bytes=${this.received}-` } : headers }).catch((error: Error) => {
      throw new Error(`Alto is not reachable at ${this.source.url}: ${error.message}${this.id ? `; run the same export with --resume (and -o FILE) to go on from byte ${this.received}` : ''}`);
    });
    if (!response.ok || !response.body) throw await refusal(response, `exporting ${this.name} from ${this.source.url}`);
    if (this.id) {
      const offset = Number(response.headers.get('x-alto-offset'));
      if (offset !== this.received) throw new Error(`exporting ${this.name}: the server sent the export from byte ${offset}, not ${this.received}`);
    } else {
      this.id = response.headers.get('x-alto-export') ?? undefined;
      if (this.id) this.onStarted(this.id);
    }
    return response;
  }

  /** Checks the bytes received are the server's whole archive, and lets it drop its copy. */
  async finish(): Promise<void> {
    if (!this.id) return;
    const url = `${this.source.url}/admin/projects/exports/${this.id}`;
    const info = await fetch(`${url}?info`, { headers: headersOf(this.source, undefined) });
    if (!info.ok) throw await refusal(info, `checking the export of ${this.name}`);
    const spool = (await info.json()) as { state: string; size: number; sha256?: string };
    const sha256 = this.hash.digest('hex');
    if (spool.state !== 'complete' || spool.size !== this.received || spool.sha256 !== sha256) {
      throw new Error(`the export of ${this.name} arrived as ${this.received} bytes (sha256 ${sha256.slice(0, 12)}…), but the server wrote ${spool.size} (${spool.state}, sha256 ${spool.sha256?.slice(0, 12) ?? '-'}…): export again`);
    }
    await fetch(url, { method: 'DELETE', headers: headersOf(this.source, undefined) }).catch(() => undefined);
  }
}

async function importStream(
  target: Connection & { key: string },
  body: Readable,
  as: string | undefined,
  passphrase: string | undefined,
  environments: Map<string, string>,
  size?: number,
): Promise<ImportAnswer> {
  const url = `${target.url}/admin/projects/import?${as ? `as=${encodeURIComponent(as)}` : ''}${environmentQuery(environments)}`;
  const response = await fetch(url, {
    method: 'POST',
    headers: { ...headersOf(target, passphrase), 'content-type': 'application/gzip', ...(size !== undefined ? { 'content-length': String(size) } : {}) },
    body: Readable.toWeb(body) as never,
    duplex: 'half',
  } as RequestInit).catch((error: Error) => {
    throw new Error(`importing into ${target.url} failed: ${error.message}${(error as Error & { cause?: Error }).cause ? ` (${(error as Error & { cause: Error }).cause.message})` : ''}`);
  });
  if (!response.ok) throw await refusal(response, `importing into ${target.url}`);
  return (await response.json()) as ImportAnswer;
}

/** How often a broken upload is taken up again, and how long to wait first. */
const UPLOAD_ATTEMPTS = 5;
const UPLOAD_RETRY_MS = 1000;

/**
 * Sends an archive file as a resumable upload: its id follows from the file (path, size, time),
 * so an upload cut off (a broken link, Ctrl-C) goes on from the bytes the server holds, in this
 * run (a few tries) or the next one.
 */
async function uploadFile(target: Connection & { key: string }, file: string): Promise<string> {
  const info = statSync(file);
  const id = uploadIdOf(file);
  const url = `${target.url}/admin/projects/uploads/${id}`;
  const progress = new Progress(`uploading ${file}`, info.size);
  for (let attempt = 1; ; attempt++) {
    try {
      const held = await fetch(url, { headers: headersOf(target, undefined) });
      if (!held.ok) throw await refusal(held, `uploading to ${target.url}`);
      const received = ((await held.json()) as { received: number }).received;
      if (received > info.size) throw new Error(`the server holds more of upload ${id} than ${file} has: the file changed; touch it and import again`);
      progress.skip(received);
      if (received < info.size) {
        const sent = await fetch(url, {
          method: 'PUT',
          headers: { ...headersOf(target, undefined), 'x-alto-offset': String(received), 'content-length': String(info.size - received), 'content-type': 'application/gzip' },
          body: Readable.toWeb(createReadStream(file, { start: received }).pipe(progress.counter())) as never,
          duplex: 'half',
        } as RequestInit);
        if (!sent.ok) throw await refusal(sent, `uploading to ${target.url}`);
      }
      progress.done();
      return id;
    } catch (error) {
      const broken = error instanceof TypeError; // fetch's network failures; refusals are Errors
      if (!broken || attempt >= UPLOAD_ATTEMPTS) throw broken ? new Error(`uploading to ${target.url} failed: ${(error as Error).message}; run the same import again to go on from where it stopped`) : error;
      process.stderr.write(`${yellow('the upload broke off')}; going on from where it stopped (try ${attempt + 1} of ${UPLOAD_ATTEMPTS})\n`);
      await new Promise((resolveWait) => setTimeout(resolveWait, UPLOAD_RETRY_MS * attempt));
    }
  }
}

/** The id of a file's upload: the same while the file is the same (its path, size and time). */
export function uploadIdOf(file: string): string {
  const info = statSync(file);
  return createHash('sha256').update(`${resolve(file)}\0${info.size}\0${info.mtimeMs}`).digest('hex').slice(0, 32);
}

async function importUpload(target: Connection & { key: string }, upload: string, as: string | undefined, passphrase: string | undefined, environments: Map<string, string>): Promise<ImportAnswer> {
  const query = new URLSearchParams({ upload, ...(as ? { as } : {}) });
  process.stderr.write(`importing into ${target.url}…\n`);
  const response = await fetch(`${target.url}/admin/projects/import?${query}${environmentQuery(environments)}`, { method: 'POST', headers: headersOf(target, passphrase) }).catch((error: Error) => {
    throw new Error(`importing into ${target.url} failed: ${error.message}`);
  });
  if (!response.ok) throw await refusal(response, `importing into ${target.url}`);
  return (await response.json()) as ImportAnswer;
}

function printImported(answer: ImportAnswer, flags: Flags): void {
  if (flags.json || !process.stdout.isTTY) {
    process.stdout.write(JSON.stringify(answer, null, 2) + '\n');
  } else {
    process.stdout.write(`${green('imported')} ${answer.from.project} as project ${bold(answer.project.name)} (${answer.project.id})\n`);
    for (const [section, count] of Object.entries(answer.sections)) process.stdout.write(`  ${section.padEnd(9)} ${count}\n`);
    const environments = Object.entries(answer.environments ?? {});
    if (environments.length > 0) process.stdout.write(`environments: ${environments.map(([from, to]) => (from === to ? from : `${from} → ${to}`)).join(', ')}\n`);
    process.stdout.write(`key: ${answer.key}\n${dim('a new key of the project (keys are never exported); store it now, it is not shown again')}\n`);
  }
  for (const warning of answer.warnings) process.stderr.write(`${yellow('note')}: ${warning}\n`);
}

function sectionSummary(manifest: ArchiveManifest): string {
  return Object.entries(manifest.sections)
    .filter(([, section]) => section.count > 0)
    .map(([name, section]) => `${name} ${section.count}`)
    .join(', ');
}

/** Reads the source's archive (into a temporary file, checked as an import would) and says what the target would get. */
async function dryRun(
  source: Connection & { key: string },
  target: Connection & { key: string },
  name: string,
  arriving: string,
  only: string,
  passphrase: string | undefined,
  environments: Map<string, string>,
  flags: Flags,
): Promise<void> {
  const folder = mkdtempSync(join(tmpdir(), 'alto-dry-run-'));
  try {
    const file = join(folder, 'archive.tgz');
    const download = new ExportDownload(source, name, only, passphrase);
    const progress = new Progress(`reading ${name}`);
    await pipeline(await download.start(), progress.counter(), createWriteStream(file, { mode: 0o600 }));
    progress.done();
    await download.finish();
    const manifest = await new ArchiveReader(file).verify();
    // The import would refuse a mapping that names an environment the archive lacks, or merges two.
    try {
      environmentMapping(manifest, environments);
    } catch (error) {
      throw new Error(`--${(error as Error).message}`);
    }
    const mapping = Object.fromEntries((manifest.environments ?? ['dev']).map((environment) => [environment, environments.get(environment) ?? environment]));
    const listed = await fetch(`${target.url}/v1/projects/List`, { method: 'POST', headers: { ...headersOf(target, undefined), 'content-type': 'application/json' }, body: '{}' });
    if (!listed.ok) throw await refusal(listed, `listing the projects of ${target.url}`);
    const exists = ((await listed.json()) as { projects: Array<{ name: string }> }).projects.some((project) => project.name === arriving);
    const plan = {
      project: arriving,
      target: target.url,
      action: exists ? 'refused: the project exists there (imports never merge); give --as NAME or delete it there first' : 'create',
      sections: Object.fromEntries(Object.entries(manifest.sections).map(([section, entry]) => [section, entry.count])),
      environments: mapping,
      bytes: statSync(file).size,
    };
    if (flags.json || !process.stdout.isTTY) return void process.stdout.write(JSON.stringify(plan, null, 2) + '\n');
    process.stdout.write(`${bold('dry run')}: nothing was created\n`);
    process.stdout.write(exists ? `${yellow('would be refused')}: project ${arriving} exists on ${target.url} (imports never merge; give --as NAME)\n` : `would create project ${bold(arriving)} on ${target.url} with:\n`);
    for (const [section, count] of Object.entries(plan.sections)) process.stdout.write(`  ${section.padEnd(9)} ${count}\n`);
    process.stdout.write(`environments: ${Object.entries(mapping).map(([from, to]) => (from === to ? from : `${from} → ${to}`)).join(', ')}\n`);
    process.stdout.write(`${dim(`archive: ${formatBytes(plan.bytes)}; a new key would be made for it`)}\n`);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

/** One line on stderr, redrawn at most every 200 ms on a terminal, printed once at the end otherwise. */
class Progress {
  private bytes = 0;
  private lastDrawn = 0;
  private readonly started = Date.now();
  private readonly terminal = process.stderr.isTTY === true;

  constructor(
    private readonly what: string,
    private readonly total?: number,
  ) {}

  /** Bytes sent in an earlier try, counted as done. */
  skip(bytes: number): void {
    this.bytes = bytes;
  }

  counter(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        this.bytes += chunk.length;
        this.draw(false);
        callback(null, chunk);
      },
    });
  }

  done(): void {
    this.draw(true);
  }

  private draw(last: boolean): void {
    const now = Date.now();
    if (!last && (!this.terminal || now - this.lastDrawn < 200)) return;
    this.lastDrawn = now;
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    const share = this.total ? ` ${Math.min(100, Math.floor((this.bytes / this.total) * 100))}%` : '';
    const bar = this.total ? ` [${'#'.repeat(Math.round((this.bytes / this.total) * 20)).padEnd(20)}]` : '';
    const line = `${this.what}${bar}${share} ${formatBytes(this.bytes)} ${dim(`(${formatBytes(Math.round(this.bytes / seconds))}/s)`)}`;
    process.stderr.write(this.terminal ? `\r\x1b[2K${line}${last ? '\n' : ''}` : last ? `${line}\n` : '');
  }
}
