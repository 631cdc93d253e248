/**
 * @module compute/sandbox/common
 * What both drivers share: resolving the OCI `User` against the image's own /etc/passwd, shell
 * quoting for the generated init scripts, running host tools with readable failures, and
 * `InstanceBase`, which holds an instance's state, log lines and exit so each driver only adds
 * how it boots, freezes and stops.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import { connectOnce } from './connect.js';
import { BoundedLog, followLog, LineSplitter } from './log-capture.js';

export { LineSplitter } from './log-capture.js';
import { validateVolumes } from './volumes.js';
import { SandboxStartError, START_FAILURE_LOG_LINES, type Instance, type InstanceExit, type InstanceState, type LogLine, type SandboxDriverName, type SandboxSpec } from './port.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
}

/** How many log lines, and bytes of them, an instance keeps for late readers. */
const KEPT_LOG_LINES = 2_000;
const KEPT_LOG_BYTES = 4 * 1024 * 1024;

function readDatabase(rootfs: string, file: 'passwd' | 'group'): string[][] {
  const path = join(rootfs, 'etc', file);
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => line.split(':'));
}

const NUMERIC = /^\d+$/;

/**
 * Resolves an OCI `User` ('', 'name', 'uid', 'name:group', 'uid:gid') the way container runtimes
 * do: names are looked up in the image's own /etc/passwd and /etc/group (never the host's), a
 * numeric uid needs no entry, and a uid without a group takes the passwd entry's group or 0.
 */
export function resolveUser(rootfs: string, user: string | undefined): ResolvedUser {
  const text = (user ?? '').trim();
  if (!text) return { uid: 0, gid: 0 };
  const [userPart, groupPart] = text.split(':', 2) as [string, string | undefined];
  const passwd = readDatabase(rootfs, 'passwd');
  let uid: number;
  let gid: number | undefined;
  if (NUMERIC.test(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((fields) => fields[2] === userPart);
    if (entry) gid = Number(entry[3]);
  } else {
    const entry = passwd.find((fields) => fields[0] === userPart);
    if (!entry) throw errors.badRequest(`user "${userPart}" is not in the image's /etc/passwd; use a numeric uid or add the user`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (NUMERIC.test(groupPart)) gid = Number(groupPart);
    else {
      const entry = readDatabase(rootfs, 'group').find((fields) => fields[0] === groupPart);
      if (!entry) throw errors.badRequest(`group "${groupPart}" is not in the image's /etc/group; use a numeric gid or add the group`);
      gid = Number(entry[2]);
    }
  }
  if (!Number.isInteger(uid) || uid < 0 || uid > 65_535) throw errors.badRequest(`user "${text}": uid must be 0-65535`);
  gid ??= 0;
  if (!Number.isInteger(gid) || gid < 0 || gid > 65_535) throw errors.badRequest(`user "${text}": gid must be 0-65535`);
  return { uid, gid };
}

/** Quotes one word for a POSIX shell: everything inside single quotes is literal. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Checks a spec before any host resource is taken, so a bad spec is a 400 that says what to fix. */
export function validateSpec(spec: SandboxSpec): string[] {
  if (!existsSync(spec.rootfs)) throw errors.badRequest(`root filesystem ${spec.rootfs} does not exist`);
  const argv = [...spec.entrypoint, ...spec.cmd];
  if (argv.length === 0) throw errors.badRequest('the image has neither an entrypoint nor a cmd: nothing to run');
  if (spec.port !== 0 && (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65_535))
    throw errors.badRequest(`port ${spec.port} is not a TCP port (1-65535)`);
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) throw errors.badRequest(`memory ${spec.memoryMiB} MiB is below 16 MiB`);
  if (!(spec.cpus > 0) || spec.cpus > 64) throw errors.badRequest(`cpus ${spec.cpus} must be above 0 and at most 64`);
  for (const key of Object.keys(spec.env)) {
    if (!key || key.includes('=') || key.includes('\0')) throw errors.badRequest(`environment variable name "${key}" is not valid`);
  }
  if (spec.platform && (!Number.isInteger(spec.platform.port) || spec.platform.port < 1 || spec.platform.port > 65_535))
    throw errors.badRequest(`platform port ${spec.platform.port} is not a TCP port (1-65535)`);
  if (spec.workdir && !spec.workdir.startsWith('/')) throw errors.badRequest(`workdir "${spec.workdir}" must be an absolute path`);
  validateVolumes(spec.volumes ?? [], spec.rootfs);
  return argv;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs a host tool; a failure says which command failed and what it printed. */
export function run(
  command: string,
  args: string[],
  options: { timeoutMs?: number; input?: string; cwd?: string } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', cwd: options.cwd },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${command} ${args.join(' ')} failed: ${stderr.trim() || error.message}`));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** The absolute path of an executable on PATH (or the usual system folders), if any. */
export function findCommand(name: string): string | undefined {
  const path = `${process.env.PATH ?? ''}:/usr/sbin:/usr/bin:/sbin:/bin`;
  for (const dir of path.split(':')) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

/** Whether an executable is on PATH. */
export function hasCommand(name: string): boolean {
  return findCommand(name) !== undefined;
}

/** A free TCP port on 127.0.0.1 (QEMU's hostfwd needs a number up front). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The control channel's messages, one per line, written by the supervisor inside the sandbox:
 * `started`, `ready`, `health healthy|unhealthy`, `exit <code>`. Anything else is ignored: the app runs as root inside its
 * sandbox and could write here, so the host only ever learns about the app's own state from it.
 */
export type ControlMessage = { kind: 'started' } | { kind: 'ready' } | { kind: 'exit'; code: number } | { kind: 'health'; healthy: boolean };

export function parseControlLine(line: string): ControlMessage | undefined {
  const text = line.trim();
  if (text === 'alto:started') return { kind: 'started' };
  if (text === 'alto:ready') return { kind: 'ready' };
  if (text === 'alto:health healthy' || text === 'alto:health unhealthy') return { kind: 'health', healthy: text.endsWith(' healthy') };
  const exit = /^alto:exit (\d{1,3})$/.exec(text);
  if (exit) return { kind: 'exit', code: Number(exit[1]) };
  return undefined;
}

/** State, logs and exit bookkeeping shared by the drivers' instances. */
export abstract class InstanceBase implements Instance {
  abstract readonly driver: SandboxDriverName;
  readonly events = new EventEmitter();
  readonly exited: Promise<InstanceExit>;
  host = '127.0.0.1';
  port = 0;
  protected currentState: InstanceState = 'starting';
  /** What the app's health check said last (after it first passed), when it has one. */
  health: 'healthy' | 'unhealthy' | undefined;
  protected exitInfo: InstanceExit | undefined;
  /** The exit code the supervisor reported, if it got that far. */
  protected reportedExitCode: number | undefined;
  private readonly lines = new BoundedLog<LogLine>(KEPT_LOG_LINES, KEPT_LOG_BYTES);
  private resolveExit!: (exit: InstanceExit) => void;
  private readonly stdoutSplitter = new LineSplitter((line) => this.addLog('stdout', line));
  private readonly stderrSplitter = new LineSplitter((line) => this.addLog('stderr', line));

  constructor(readonly id: string) {
    this.events.setMaxListeners(0);
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  get state(): InstanceState {
    return this.currentState;
  }

  connect(): Promise<Socket> {
    return connectOnce(this.host, this.port);
  }

  protected pushOutput(stream: 'stdout' | 'stderr', chunk: Buffer | string): void {
    (stream === 'stdout' ? this.stdoutSplitter : this.stderrSplitter).push(chunk);
  }

  private addLog(stream: 'stdout' | 'stderr', line: string): void {
    const entry: LogLine = { stream, line, at: Date.now() };
    this.lines.push(entry);
    this.events.emit('log', entry);
  }

  /** Records the end exactly once; later calls are ignored. */
  protected finish(exit: InstanceExit): void {
    if (this.exitInfo) return;
    this.stdoutSplitter.flush();
    this.stderrSplitter.flush();
    this.exitInfo = exit;
    this.currentState = 'exited';
    this.events.emit('exit', exit);
    this.resolveExit(exit);
  }

  /** Log lines so far; with `follow`, then every new line until the instance ends. */
  logs(options: { follow?: boolean } = {}): AsyncIterable<LogLine> {
    return followLog(this.lines.newest(KEPT_LOG_LINES), this.events, () => this.exitInfo !== undefined, options.follow);
  }

  /** The failed start's error once the instance has ended: the cause, its exit and its last log lines. */
  protected startFailure(cause: unknown): SandboxStartError {
    const message = cause instanceof Error ? cause.message : String(cause);
    return new SandboxStartError(message, this.id, this.lines.newest(START_FAILURE_LOG_LINES), this.exitInfo);
  }

  protected assertState(allowed: InstanceState[], action: string): void {
    if (!allowed.includes(this.currentState))
      throw errors.conflict(`cannot ${action} instance ${this.id}: it is ${this.currentState}`);
  }

  abstract stop(graceMs?: number): Promise<InstanceExit>;
  abstract suspend(): Promise<void>;
  abstract resume(): Promise<void>;
  abstract isFrozen(): Promise<boolean>;
  abstract snapshot(dir: string): Promise<void>;
}
