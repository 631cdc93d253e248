/**
 * @module compute/sandbox/port
 * The sandbox port: one interface every driver implements (`microvm.ts`: a QEMU microVM per
 * instance; `process.ts`: Linux namespaces and cgroups) so the scheduler above never knows which
 * one runs an app. A driver takes an already unpacked root filesystem plus a typed spec and gives
 * back an `Instance`: ready once the app listens on its port, reachable at a host address, and
 * able to stop, suspend, resume, snapshot and restore where the driver can (see `capabilities`;
 * an unsupported operation throws, it never silently does nothing).
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

/** Everything a driver needs to run one instance of an image. */
export interface SandboxSpec {
  /** Directory holding the image's unpacked root filesystem. Read only: drivers never modify it. */
  rootfs: string;
  /** The image's ENTRYPOINT; may be empty when `cmd` alone says what to run. */
  entrypoint: string[];
  /** The image's CMD, appended to the entrypoint (or run alone without one). */
  cmd: string[];
  /**
   * The environment exactly as the app sees it (`PATH` included), plus `ALTO_URL` when
   * `platform` is given and `<NAME>_SERVICE_HOST/PORT` per link (the driver's values win: only
   * it knows the addresses).
   */
  env: Record<string, string>;
  /** Working directory inside the root filesystem; '' or undefined means '/'. */
  workdir?: string;
  /** OCI `User`: '', 'name', 'uid', 'name:group' or 'uid:gid', resolved in the image's /etc/passwd. */
  user?: string;
  /** TCP port the app listens on inside the sandbox; ready means something listens there. */
  port: number;
  /** Memory limit in MiB (the guest's RAM for microvm, the cgroup's limit for process). */
  memoryMiB: number;
  /** CPUs: virtual CPUs for microvm, a CPU-time quota (cores' worth) for process. */
  cpus: number;
  /** Whether the app may open connections to the internet. Never the host's own services. */
  allowOutbound?: boolean;
  /**
   * The platform's edge, for apps that call Alto's API: the instance may reach exactly this one
   * TCP port of the host (nothing else there) at an address the driver chooses, and finds it in
   * `ALTO_URL` (`http://<address>:<port>`). process and microvm with outbound on: the instance's
   * gateway (see platform-access.ts); microvm with outbound off: `http://10.0.2.100`.
   */
  platform?: { port: number };
  /** A name for logs and host-side resources (letters, digits, dashes). */
  name?: string;
  /** The signal a stop sends the app (the image's STOPSIGNAL or the app's `stop_signal`: `SIGINT`, `QUIT`, `2`...); default SIGTERM. */
  stopSignal?: string;
  /**
   * A command that says whether the app is up (its exit status, Docker's HEALTHCHECK): the
   * instance is ready only once it succeeds, after the port listens (supervisor.sh).
   */
  health?: HealthCheck;
  /** The entrypoint and cmd are the app's own (not the image's): `$(NAME)` in them is expanded too (env-references.ts). */
  expandArgs?: boolean;
  /**
   * Who the instance runs for (a project's id). process: instances of one tenant share a range
   * of host uids and gids, other tenants' are others (id-ranges.ts); none means the shared range 0.
   */
  tenant?: string;
  /** process: processes and threads the instance may have at once (cgroup pids.max); default the driver's. */
  pidsMax?: number;
  /**
   * Folders that keep their files from one instance to the next. One running instance per
   * volume: a second start with the same `dir` is refused with 409.
   */
  volumes?: SandboxVolume[];
  /**
   * Other apps the instance may reach (links.ts): each by `<NAME>_SERVICE_HOST` and
   * `<NAME>_SERVICE_PORT` in its env, every connection there relayed on the host to the target
   * `connect()` gives. Nothing else of the host opens. At most 16.
   */
  links?: SandboxLink[];
  /**
   * Files at /run/secrets/<target> (compose `secrets`), in a tmpfs the driver mounts there only
   * for them: never on a disk of the sandbox, never in its env. At most 32, each at most 64 KiB.
   */
  secretFiles?: SecretFile[];
}

/** One file of /run/secrets (supervisor.ts writes them in; the value reaches no env, no log, no argv). */
export interface SecretFile {
  /** The file's name under /run/secrets: letters, digits and `._-`, not `.` or `..`. */
  target: string;
  /** Permission bits (0444 unless given), never world-writable. */
  mode: number;
  /** Its owner in the sandbox; the app's user unless given. */
  uid?: number;
  gid?: number;
  value: string;
}

/** One link of an instance (links.ts). */
export interface SandboxLink {
  /** The linked app's name: the instance finds it in `<NAME>_SERVICE_HOST` / `_PORT` (upper-cased, `-` as `_`). */
  name: string;
  /**
   * The port the instance connects to where the driver lets it be chosen (microvm: the guest's
   * 10.0.2.(101+i):port); the linked app's own port reads best. The process driver gives its relay's port instead.
   */
  port: number;
  /** More names the instance finds the link by in /etc/hosts, besides `name` (a template's service names). */
  aliases?: string[];
  /** A target for one connection (rejecting closes the connection); its `release()` is called once the connection has ended. */
  connect(): Promise<LinkTarget>;
}

/** Where one connection over a link goes. */
export interface LinkTarget {
  host: string;
  port: number;
  /** How to open the connection, when a plain connect to host:port is not the best way. */
  connect?(): Promise<Socket>;
  release(): void;
}

/** What a restore is given besides the snapshot: links hold functions, which no snapshot can keep. */
export interface RestoreOptions {
  /** The instance's links, matched by name with those the snapshot recorded (a missing one refuses its connections). */
  links?: SandboxLink[];
  /**
   * Whether the copy gets the snapshot's memory as its own (microvm: read into a file of the copy's,
   * at the restore) rather than sharing its unchanged pages with the snapshot's other copies
   * (mapped copy-on-write). Its own costs a read of the whole memory at the restore, and a later
   * snapshot of the copy is then as small and as quick to restore as one of a booted instance; a
   * sharing copy's snapshot carries its memory in its state, which is slower to restore. For a
   * snapshot that one instance restores again and again; sharing, for one that many copies use.
   */
  ownMemory?: boolean;
}

export interface SandboxVolume {
  /** A host folder the driver owns for this volume (created if missing); one driver per folder. */
  dir: string;
  /** Absolute mount point inside the app, like `/data`. */
  path: string;
  /** microvm: size of the volume's ext4 disk, made on first use (sparse). Default 1024. */
  sizeMiB?: number;
}

export type SandboxDriverName = 'microvm' | 'process';
export type Accelerator = 'kvm' | 'tcg' | 'none';

/** What `alto status` shows: which driver and accelerator, and why. */
export interface SandboxDescription {
  driver: SandboxDriverName;
  accelerator: Accelerator;
  /** One sentence: why this driver/accelerator was chosen or what it runs on. */
  reason: string;
  capabilities: SandboxCapabilities;
}

export interface SandboxCapabilities {
  suspend: boolean;
  snapshot: boolean;
  /** Whether `allowOutbound: true` is honoured (otherwise start() refuses it). */
  outbound: boolean;
}

export interface SandboxDriver {
  readonly name: SandboxDriverName;
  /** Checks the host once (tools, accelerator); throws with a sentence when the driver cannot run here. */
  probe(): Promise<SandboxDescription>;
  /** The probe's answer (probing first when needed). */
  describe(): Promise<SandboxDescription>;
  /** Boots an instance and resolves once the app listens on `spec.port` (or rejects when it exits first). */
  start(spec: SandboxSpec): Promise<Instance>;
  /** Starts a private copy of a snapshot taken with `Instance.snapshot`; resolves when it answers. */
  restore(snapshotDir: string, options?: RestoreOptions): Promise<Instance>;
  /** Ends every instance this driver started and releases what it holds. */
  close(): Promise<void>;
}

export type InstanceState = 'starting' | 'running' | 'suspended' | 'stopping' | 'exited';

export interface LogLine {
  stream: 'stdout' | 'stderr';
  line: string;
  at: number;
}

export interface InstanceExit {
  /** The app's exit code (128+signal when a signal ended it); null when the sandbox died without one. */
  code: number | null;
  /** Why it ended, for logs: 'exited', 'stopped', 'killed after grace period', 'sandbox crashed'. */
  reason: string;
}

export interface Instance {
  readonly id: string;
  readonly driver: SandboxDriverName;
  /** The name of the node whose sandbox runs it, when that is not this node (compute/cluster/remote-instances.ts). */
  readonly node?: string;
  /** Where the host reaches the app's port (never exposed beyond the host). */
  readonly host: string;
  readonly port: number;
  /** A TCP connection from the host to the app's port, the way this driver needs it opened (connect.ts). */
  connect(): Promise<Socket>;
  /**
   * At most this many HTTP exchanges in flight on the instance at once, whatever the app's
   * concurrency says; undefined when the app's concurrency alone decides. A microVM under tcg sets
   * it: its emulated CPU and QEMU's user-mode network serve a few connections at a time best, and
   * with more they overflow the app's accept queue (MICROVM_TCG_EXCHANGES in microvm.ts).
   */
  readonly exchangeLimit?: number;
  readonly state: InstanceState;
  /** What the app's health check (SandboxSpec.health) said last once it first passed; undefined without one. */
  readonly health?: 'healthy' | 'unhealthy';
  /** Resolves once the app has ended, whatever the cause. */
  readonly exited: Promise<InstanceExit>;
  /** Emits 'log' (LogLine) and 'exit' (InstanceExit). */
  readonly events: EventEmitter;
  /** Every line so far plus those to come, as they arrive, until the instance ends. */
  logs(options?: { follow?: boolean }): AsyncIterable<LogLine>;
  /** The app's stop signal (SIGTERM unless the spec says otherwise) to the app, then SIGKILL (or the VM ended) after `graceMs`. */
  stop(graceMs?: number): Promise<InstanceExit>;
  /** Freezes the instance: no CPU, memory kept. Resolves once it is frozen. */
  suspend(): Promise<void>;
  resume(): Promise<void>;
  /** The kernel's or VMM's own answer to whether the instance is frozen right now (cgroup freezer, QEMU run state). */
  isFrozen(): Promise<boolean>;
  /** Writes a snapshot of the running app to `dir` (empty or missing); the instance stays suspended. */
  snapshot(dir: string): Promise<void>;
}

export const DEFAULT_STOP_GRACE_MS = 5_000;

/** How many of its last log lines a failed start carries. */
export const START_FAILURE_LOG_LINES = 50;

/**
 * Why `start` (or `restore`) failed once the instance had begun to run: it ended or timed out
 * before it was ready. It carries the instance's last log lines, since an app that never becomes
 * ready usually says why on stderr, and nobody else will ever read that instance's output.
 */
export class SandboxStartError extends Error {
  override readonly name = 'SandboxStartError';

  constructor(
    message: string,
    /** The instance that failed; its output is in `logTail`. */
    readonly instanceId: string,
    /** Its last log lines (at most START_FAILURE_LOG_LINES), oldest first. */
    readonly logTail: LogLine[],
    /** The app's exit, when it ended rather than timed out. */
    readonly exit?: InstanceExit,
  ) {
    super(message);
  }
}

export function isSandboxStartError(error: unknown): error is SandboxStartError {
  return error instanceof SandboxStartError;
}

/** A health check as the supervisor runs it: `test` in the app's environment and user, every `intervalSeconds` until it succeeds, each run killed after `timeoutSeconds`. */
export interface HealthCheck {
  test: string[];
  intervalSeconds: number;
  timeoutSeconds: number;
  /** Failures in this first period are not reported in the log. */
  startPeriodSeconds: number;
  /** Once ready, this many failures in a row make the instance unhealthy (default 3). */
  retries?: number;
}
