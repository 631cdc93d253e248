/**
 * @module compute/sandbox/process
 * The process driver, for hosts without a usable VMM: the app runs on the host kernel in its own
 * user, PID, mount, network, IPC, UTS and cgroup namespaces, inside cgroup limits, with the
 * image's root filesystem as its root (pivot_root, so the host's tree is gone, not just hidden by
 * chroot). It needs root on the host (it creates network namespaces, cgroups and loop mounts).
 *
 * - User namespace: ids 0-65535 inside map to a range of host ids of the tenant's own
 *   (id-ranges.ts: `100000 + n * 65536`), so root in the sandbox owns nothing on the host and
 *   the kernel's per-user limits (inotify...) count each tenant apart. The image's files are
 *   copied once per image and range with their owners shifted into it (cached). The user
 *   namespace owns no other namespace: root inside can act on its own files but cannot mount,
 *   unmount, change the network or the hostname.
 * - Launcher (launcher.ts, alto-enter.c): the first process Node starts leaves the operator's
 *   terminal (a session of its own) and closes every descriptor but the four pipes, whatever
 *   Alto inherited; the supervisor starts under no-new-privileges and the default seccomp
 *   filter (no mounts, new namespaces, bpf, io_uring, keyrings, ptrace...).
 * - Ending with Alto: the launcher gives unshare a parent-death SIGKILL and the supervisor gets one
 *   when unshare ends, so a sandbox ends with its Alto however Alto ends (SIGKILL included); what
 *   it held on the host (cgroups, network, folders) is named in its record first and given back
 *   by the next run on the data folder (reap.ts).
 * - Devices: only null, zero, full, random and urandom (no tty: nothing reaches a terminal).
 * - Disk: the writable layer of the root filesystem is a sparse ext4 image of its own
 *   (`rootDiskMiB`) and each volume one of the volume's size (volumes.ts), loop-mounted inside
 *   the sandbox's mount namespace (gone with it), so what the app writes is bounded by a
 *   filesystem's size. The mount table the app sees names no host path: layers are mounted by
 *   neutral relative names and the supervisor lives in the root's read-only /.alto.
 * - Network: network.ts (veth pair in a host-owned namespace, nftables); with `spec.platform`,
 *   the one port of the gateway that leads to the edge (platform-access.ts), as `ALTO_URL`; with
 *   `spec.links`, one more gateway port per linked app (links.ts), as `<NAME>_SERVICE_HOST/PORT`.
 * - Limits: cgroups.ts (memory, CPU quota, pids); suspend is the cgroup freezer.
 * - Snapshots: not supported (capability `snapshot: false`; the calls throw).
 *
 * Start-up chain, each step exec'ing the next, so PID 1 stays one process from mount to app:
 *   alto-enter --session (closes descriptors from 4) -> sh: join the cgroups -> nsenter --net
 *   -> unshare --mount --uts --ipc --cgroup --pid --fork
 *   -> guest/process-stage1.sh as PID 1 (host root): loop-mount the writable layer and the
 *      volumes, mount the overlay root (image + the tools layer with /.alto), /dev, /proc,
 *      pivot_root into it and detach the host's tree (pivot_root rather than chroot, so there is
 *      nothing left to escape to)
 *   -> setpriv to the range's first uid -> busybox unshare --user; the host writes the id maps
 *      (/proc/<pid>/uid_map) while the shell waits on stdin, and the next exec turns the
 *      process into root of its user namespace -> alto-enter --sandbox -> the supervisor
 *      (guest/supervisor.sh, with the instance's settings.sh beside it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import { renameIntoPlace } from '../../kit/files.js';
import { SandboxCgroup, detectCgroups } from './cgroups.js';
import { InstanceBase, LineSplitter, findCommand, hasCommand, parseControlLine, resolveUser, run, shellQuote, validateSpec } from './common.js';
import { ID_COUNT, IdRanges } from './id-ranges.js';
import { LAUNCHER_NAME, ensureLauncher } from './launcher.js';
import { createSandboxNetwork, destroySandboxNetwork, ensureFirewall, sandboxNetworkNames, type SandboxNetwork } from './network.js';
import { InstanceRecordFile } from './reap.js';
import { linkNames, openSandboxResolverIfPossible, resolvConf, type Resolver } from './dns.js';
import { linkHostLines, linkVariables, openLinkRelays, validateLinks, type LinkRelays } from './links.js';
import { expandArgReferences, expandEnvReferences } from './env-references.js';
import { openPlatformAccess, PLATFORM_URL_VARIABLE, type PlatformAccess } from './platform-access.js';
import { DEFAULT_STOP_GRACE_MS, type InstanceExit, type SandboxDescription, type SandboxDriver, type SandboxSpec, type SandboxVolume } from './port.js';
import { supervisorScript, supervisorSettings } from './supervisor.js';
import { GUEST_FILES_DIR, guestFile } from './guest-files.js';
import { ensureSandboxTools } from './tools.js';
import { claimVolumes, ensureProcessVolumeImage, waitUntilDetached, type VolumeClaim } from './volumes.js';

export interface ProcessOptions {
  cacheDir: string;
  stateDir: string;
  /** First host uid/gid of range 0; tenants' ranges follow it, 65536 ids each (id-ranges.ts). */
  idBase?: number;
  startTimeoutMs?: number;
  /** Processes and threads one instance may have at once, unless its spec says (default 512; ALTO_SANDBOX_PIDS_MAX). */
  pidsMax?: number;
  /** Size of an instance's writable root layer in MiB (default 1024; ALTO_SANDBOX_ROOT_DISK_MIB). */
  rootDiskMiB?: number;
}

export const DEFAULT_PIDS_MAX = 512;
export const DEFAULT_ROOT_DISK_MIB = 1024;
const RUN_DIR = '/run/alto-sandbox';
/** The host id range of sandboxes from before ranges per tenant: their volumes' files are moved from it. */
const LEGACY_ID_BASE = 100_000;

/** Copies being made in this process, by folder: concurrent first starts of one image share one. */
const shiftedRootsInFlight = new Map<string, Promise<string>>();

/** Copies a root filesystem once per id range with every owner moved into that range. */
function ensureShiftedRoot(cacheDir: string, rootfs: string, base: number): Promise<string> {
  const real = realpathSync(rootfs);
  const key = createHash('sha256').update(`${real}\n${statSync(real).mtimeMs}\n${base}`).digest('hex').slice(0, 20);
  const dir = join(cacheDir, 'process-roots', key);
  if (existsSync(dir)) return Promise.resolve(dir);
  let building = shiftedRootsInFlight.get(dir);
  if (!building) {
    building = buildShiftedRoot(real, dir, base).finally(() => shiftedRootsInFlight.delete(dir));
    shiftedRootsInFlight.set(dir, building);
  }
  return building;
}

async function buildShiftedRoot(real: string, dir: string, base: number): Promise<string> {
  // Another process may build the same copy: each builds its own, and the first rename wins.
  const building = `${dir}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(building, { recursive: true });
  await run('cp', ['-a', '--reflink=auto', `${real}/.`, building], { timeoutMs: 600_000 });
  const shift = (path: string) => {
    const stat = lstatSync(path);
    const uid = stat.uid < ID_COUNT ? base + stat.uid : base + 65_534;
    const gid = stat.gid < ID_COUNT ? base + stat.gid : base + 65_534;
    lchownSync(path, uid, gid);
    // chown clears set-uid/set-gid bits; put the image's mode back.
    if (!stat.isSymbolicLink()) chmodSync(path, stat.mode & 0o7777);
    if (stat.isDirectory()) for (const name of readdirSync(path)) shift(join(path, name));
  };
  shift(building);
  renameIntoPlace(building, dir);
  return dir;
}

/**
 * The top layer of every sandbox's root (`<cacheDir>/process-layer/<key>`): `/.alto/bin` with
 * the tools and the launcher, `/.alto/run` for the supervisor and `/.alto/old` for pivot_root.
 * Owned by host root, which no sandbox maps, so root inside can read it and change nothing.
 */
async function ensureToolsLayer(cacheDir: string, tools: string, launcher: string): Promise<string> {
  const key = createHash('sha256').update(`${launcher}\n${statSync(join(tools, '.complete')).mtimeMs}`).digest('hex').slice(0, 20);
  const dir = join(cacheDir, 'process-layer', key);
  if (existsSync(dir)) return dir;
  const building = `${dir}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  rmSync(building, { recursive: true, force: true });
  for (const sub of ['.alto/run', '.alto/old']) mkdirSync(join(building, sub), { recursive: true, mode: 0o755 });
  // The tools folder itself, not a link to it (a test's cache links to the shared one): a copied
  // link would name a host path the sandbox cannot see, and the writes below would land in it.
  await run('cp', ['-a', realpathSync(tools), join(building, '.alto', 'bin')]);
  rmSync(join(building, '.alto', 'bin', '.complete'), { force: true });
  copyFileSync(launcher, join(building, '.alto', 'bin', LAUNCHER_NAME));
  chmodSync(join(building, '.alto', 'bin', LAUNCHER_NAME), 0o755);
  for (const sub of ['', '.alto', '.alto/bin', '.alto/run', '.alto/old']) chmodSync(join(building, sub), 0o755);
  renameIntoPlace(building, dir);
  return dir;
}

export class ProcessDriver implements SandboxDriver {
  readonly name = 'process' as const;
  private description: Promise<SandboxDescription> | undefined;
  private toolsDir: string | undefined;
  private launcher: string | undefined;
  private toolsLayer: string | undefined;
  /** cgroup v1 only: thaws this Alto's frozen sandboxes once it has ended, so they end too. */
  private freezerGuard: ChildProcess | undefined;
  private readonly instances = new Set<ProcessInstance>();
  private readonly idRanges: IdRanges;

  constructor(private readonly options: ProcessOptions) {
    this.idRanges = new IdRanges(join(options.stateDir, 'id-ranges'), options.idBase ?? LEGACY_ID_BASE);
  }

  probe(): Promise<SandboxDescription> {
    this.description ??= this.runProbe();
    return this.description;
  }

  describe(): Promise<SandboxDescription> {
    return this.probe();
  }

  private async runProbe(): Promise<SandboxDescription> {
    if (process.getuid?.() !== 0) throw new Error('the process driver needs root (network namespaces, cgroups, id-mapped user namespaces)');
    for (const tool of ['unshare', 'nsenter', 'ip', 'cp', 'mkfs.ext4', 'debugfs']) {
      if (!hasCommand(tool)) throw new Error(`the process driver needs ${tool} (util-linux, iproute2, e2fsprogs)`);
    }
    const maxUserNamespaces = Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim());
    if (!(maxUserNamespaces > 0)) throw new Error('user namespaces are disabled on this host (user.max_user_namespaces is 0)');
    if (!existsSync('/dev/loop-control')) throw new Error('this host has no loop devices (/dev/loop-control), which hold the sandboxes\' disks: load the loop module');
    const cgroups = detectCgroups();
    if (!cgroups) throw new Error('this host has no usable cgroups for memory, CPU and process limits');
    mkdirSync(this.options.cacheDir, { recursive: true });
    this.toolsDir = await ensureSandboxTools(this.options.cacheDir);
    this.launcher = await ensureLauncher(this.options.cacheDir);
    this.toolsLayer = await ensureToolsLayer(this.options.cacheDir, this.toolsDir, this.launcher);
    if (cgroups.version === 'v1') this.freezerGuard = startFreezerGuard(this.launcher, join(this.toolsDir, 'busybox'), this.options.stateDir);
    const firewall = await ensureFirewall();
    return {
      driver: 'process',
      accelerator: 'none',
      reason: `Linux namespaces (user, pid, mount, net, ipc, uts, cgroup) with cgroup ${cgroups.version} limits, a seccomp filter and disks of fixed size${firewall ? ' and an nftables guard' : '; nft missing, so no outbound access'}`,
      capabilities: { suspend: true, snapshot: false, outbound: firewall },
    };
  }

  async start(spec: SandboxSpec): Promise<ProcessInstance> {
    const argv = validateSpec(spec);
    validateLinks(spec.links ?? []);
    const user = resolveUser(spec.rootfs, spec.user);
    const pidsMax = spec.pidsMax ?? this.options.pidsMax ?? DEFAULT_PIDS_MAX;
    if (!Number.isInteger(pidsMax) || pidsMax < 16) throw errors.badRequest(`pids limit ${pidsMax} must be a whole number of at least 16`);
    const description = await this.probe();
    if (spec.allowOutbound && !description.capabilities.outbound) throw errors.badRequest('outbound access needs nftables on this host');
    const id = randomBytes(6).toString('hex');
    const volumes = spec.volumes ?? [];
    const claim = claimVolumes(volumes);
    const folders = { stateDir: join(this.options.stateDir, id), runDir: join(RUN_DIR, id) };
    const cgroupName = `${spec.name ?? 'app'}-${id}`.replace(/[^A-Za-z0-9-]/g, '-');
    mkdirSync(this.options.stateDir, { recursive: true });
    // Named before any of it is made, so the next run finds all of it should this one be killed (reap.ts).
    const record = InstanceRecordFile.create(this.options.stateDir, {
      driver: 'process',
      id,
      dirs: [folders.stateDir, folders.runDir],
      cgroups: SandboxCgroup.plannedDirs(cgroupName),
      network: sandboxNetworkNames(id),
    });
    try {
      return await this.startClaimed(spec, argv, user, pidsMax, id, volumes, claim, { ...folders, cgroupName, record });
    } catch (error) {
      // What a failed start made (an instance that began has given back the rest as it ended).
      claim.release();
      rmSync(folders.runDir, { recursive: true, force: true });
      rmSync(folders.stateDir, { recursive: true, force: true });
      record.remove();
      throw error;
    }
  }

  private async startClaimed(
    spec: SandboxSpec,
    argv: string[],
    user: { uid: number; gid: number },
    pidsMax: number,
    id: string,
    volumes: SandboxVolume[],
    claim: VolumeClaim,
    { stateDir, runDir, cgroupName, record }: { stateDir: string; runDir: string; cgroupName: string; record: InstanceRecordFile },
  ): Promise<ProcessInstance> {
    const idBase = this.idRanges.baseOf(spec.tenant);
    // The app's user as the host sees it: the top of each volume is theirs to write.
    const owner = { uid: idBase + user.uid, gid: idBase + user.gid };
    const legacy = { from: LEGACY_ID_BASE, to: idBase, count: ID_COUNT };
    const volumeImages: string[] = [];
    for (const volume of volumes) volumeImages.push(await ensureProcessVolumeImage(volume, owner, legacy));
    // A volume's disk may still be mounted by the instance before this one, for a moment after it ended.
    await waitUntilDetached(volumeImages);
    const lower = await ensureShiftedRoot(this.options.cacheDir, spec.rootfs, idBase);
    const root = join(runDir, 'root');
    mkdirSync(stateDir, { recursive: true });
    const rootDisk = join(stateDir, 'root.ext4');
    // No journal: the writable layer lives and dies with its instance.
    await run('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-E', 'lazy_itable_init=1', '-L', 'alto-upper', rootDisk, `${this.options.rootDiskMiB ?? DEFAULT_ROOT_DISK_MIB}M`]);
    mkdirSync(root, { recursive: true, mode: 0o755 });
    chmodSync(RUN_DIR, 0o755);
    chmodSync(runDir, 0o755);
    // The names the overlay is mounted by, so the app's mount table shows `lowerdir=t:l` and no host path.
    symlinkSync(this.toolsLayer!, join(runDir, 't'));
    symlinkSync(lower, join(runDir, 'l'));
    const cgroup = SandboxCgroup.create(cgroupName, {
      memoryBytes: spec.memoryMiB * 1024 * 1024,
      cpus: spec.cpus,
      pidsMax,
    });
    let network: SandboxNetwork;
    let platform: PlatformAccess | undefined;
    let links: LinkRelays | undefined;
    let resolver: Resolver | undefined;
    try {
      network = await createSandboxNetwork(id, Boolean(spec.allowOutbound));
    } catch (error) {
      await cgroup.destroy();
      throw error;
    }
    try {
      if (spec.platform) platform = await openPlatformAccess(network, spec.platform.port);
      if (spec.links?.length) links = await openLinkRelays(spec.links, network);
      resolver = await openSandboxResolverIfPossible(network, { names: linkNames(links?.relays.map((relay) => ({ name: relay.name, aliases: relay.aliases, host: relay.address })) ?? []), forward: Boolean(spec.allowOutbound) });
    } catch (error) {
      await links?.close();
      await platform?.close();
      await destroySandboxNetwork(network);
      await cgroup.destroy();
      throw error;
    }
    const env = expandEnvReferences({
      ...spec.env,
      ...(platform ? { [PLATFORM_URL_VARIABLE]: `http://${platform.address}:${platform.port}` } : {}),
      ...(links ? linkVariables(links.relays.map((relay) => ({ name: relay.name, host: relay.address, port: relay.port }))) : {}),
    });
    const hostname = (spec.name ?? `alto-${id}`).replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63);
    writeFileSync(join(stateDir, 'supervisor.sh'), supervisorScript(), { mode: 0o644 });
    writeFileSync(
      join(stateDir, 'settings.sh'),
      supervisorSettings({ argv: spec.expandArgs ? expandArgReferences(argv, env) : argv, env, workdir: spec.workdir || '/', uid: user.uid, gid: user.gid, port: spec.port, stopSignal: spec.stopSignal, defaultSignals: true, health: spec.health, resolvConf: resolver ? resolvConf(resolver.address) : undefined, secretFiles: spec.secretFiles, ...(links ? { hosts: linkHostLines(links.relays.map((relay) => ({ name: relay.name, aliases: relay.aliases, host: relay.address }))) } : {}) }),
      { mode: 0o644 },
    );
    const busybox = join(this.toolsDir!, 'busybox');
    // guest/process-stage1.sh: what it is told comes in its environment (dropped before the
    // sandbox's first exec), the volumes as its arguments (image, path) in order.
    writeFileSync(join(stateDir, 'stage1.sh'), guestFile('process-stage1.sh'), { mode: 0o644 });
    const stage1: Stage1 = {
      script: join(stateDir, 'stage1.sh'),
      env: {
        ALTO_BUSYBOX: busybox,
        ALTO_RUN_DIR: runDir,
        ALTO_ROOT: root,
        ALTO_ROOT_DISK: rootDisk,
        ALTO_ID_BASE: String(idBase),
        ALTO_VOLUME_OWNER: `${owner.uid}:${owner.gid}`,
        ALTO_SUPERVISOR_DIR: stateDir,
        ALTO_HOSTNAME: hostname,
        ALTO_SECRETS_TMPFS: spec.secretFiles?.length ? '1' : '',
      },
      args: volumes.flatMap((volume, index) => [volumeImages[index], volume.path]),
    };
    const instance = new ProcessInstance(id, { stateDir, runDir, cgroup, network, platform, links, resolver, port: spec.port, idBase, volumes: claim, volumeImages, record });
    this.instances.add(instance);
    void instance.exited.then(() => this.instances.delete(instance));
    // From here the instance releases the volumes when it ends, whether or not it became ready.
    await instance.boot(this.launcher!, busybox, stage1, this.options.startTimeoutMs ?? 60_000);
    return instance;
  }

  async restore(): Promise<never> {
    throw errors.badRequest('the process driver cannot restore snapshots (capabilities.snapshot is false); use the microvm driver');
  }

  async close(): Promise<void> {
    await Promise.all([...this.instances].map((instance) => instance.stop(1_000).catch(() => undefined)));
    // Nothing of this Alto is frozen any more: the guard finds no record of it and ends.
    this.freezerGuard?.stdin?.end();
  }
}

/**
 * On cgroup v1 hosts, the guard that thaws this Alto's suspended sandboxes once Alto has ended
 * (guest/freezer-guard.sh): a process frozen by the v1 freezer does not act on the SIGKILL its
 * parent-death signal sends until it is thawed. It waits on a pipe from Alto, which closes
 * however Alto ends, and holds nothing of Alto's but that pipe (the launcher closes the rest).
 */
function startFreezerGuard(launcher: string, busybox: string, stateDir: string): ChildProcess {
  guestFile('freezer-guard.sh');
  const guard = spawn(launcher, ['--fds', '3', '--session', '--', busybox, 'sh', join(GUEST_FILES_DIR, 'freezer-guard.sh'), busybox, String(process.pid), stateDir], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  guard.on('error', () => undefined);
  guard.stdin!.on('error', () => undefined);
  // Alto's event loop does not wait for it.
  guard.unref();
  (guard.stdin as unknown as { unref(): void }).unref();
  return guard;
}

/** How stage 1 (guest/process-stage1.sh) is started: its copy, environment and arguments. */
interface Stage1 {
  script: string;
  env: Record<string, string>;
  args: string[];
}

interface ProcessResources {
  stateDir: string;
  runDir: string;
  cgroup: SandboxCgroup;
  network: SandboxNetwork;
  /** The way to the edge, when the spec asked for it; closed with the network. */
  platform?: PlatformAccess;
  /** The relays to linked apps, when the spec has links; closed with the network. */
  links?: LinkRelays;
  /** The instance's resolver (dns.ts), unless port 53 of its gateway could not be had; closed with the network. */
  resolver?: Resolver;
  port: number;
  idBase: number;
  /** Released when the instance has ended and nothing in it can write any more. */
  volumes: VolumeClaim;
  /** The volumes' disk images, released with the claim once no loop device holds them. */
  volumeImages: string[];
  /** What the instance holds, for a later run should this one be killed (reap.ts); removed last. */
  record: InstanceRecordFile;
}

export class ProcessInstance extends InstanceBase {
  readonly driver = 'process' as const;
  private child: ChildProcess | undefined;
  private stopRequested: 'graceful' | 'killed' | undefined;
  private readyWaiter: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private stderrTail = '';
  private mapped = false;

  constructor(
    id: string,
    private readonly resources: ProcessResources,
  ) {
    super(id);
    this.host = resources.network.sandboxAddress;
    this.port = resources.port;
  }

  async boot(launcher: string, busybox: string, stage1: Stage1, timeoutMs: number): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => (this.readyWaiter = { resolve, reject }));
    const joinCgroups = this.resources.cgroup.procsFiles.map((file) => `echo $$ > ${shellQuote(file)}`).join('; ');
    const enter = [
      findCommand('nsenter')!, `--net=${this.resources.network.namespacePath}`, '--',
      findCommand('unshare')!, '--mount', '--propagation', 'private', '--uts', '--ipc', '--cgroup', '--pid', '--fork', '--kill-child', '--',
      busybox, 'sh', stage1.script, ...stage1.args,
    ];
    // Joining the cgroups first means nothing the sandbox ever runs escapes its limits. The
    // launcher first leaves Alto's terminal and closes every descriptor but the four pipes, and
    // has unshare killed when Alto ends, however it ends: its PID namespace goes with it (the
    // sandbox's PID 1 is killed when unshare ends, guest/process-stage1.sh).
    const command = [busybox, 'sh', '-c', `${joinCgroups}; exec ${enter.map(shellQuote).join(' ')}`];
    const child = spawn(launcher, ['--fds', '4', '--session', '--parent-death', String(process.pid), '--', ...command], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...stage1.env },
    });
    this.child = child;
    child.stdout!.on('data', (chunk) => this.pushOutput('stdout', chunk));
    child.stderr!.on('data', (chunk) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-2_000);
      this.pushOutput('stderr', chunk);
    });
    const control = new LineSplitter((line) => this.onControl(line));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => control.push(chunk));
    // 'close', not 'exit': the pipes are read to their end first, so no last line or exit code is lost.
    child.on('close', (code, signal) => void this.onExit(code, signal));
    const timer = setTimeout(() => {
      this.readyWaiter?.reject(new Error(`instance ${this.id} was not ready within ${timeoutMs} ms`));
      this.kill();
    }, timeoutMs);
    try {
      await ready;
    } catch (error) {
      this.kill();
      await this.exited;
      throw this.startFailure(error);
    } finally {
      clearTimeout(timer);
    }
  }

  private onControl(line: string): void {
    if (line === 'alto:userns' && this.currentState === 'starting' && !this.mapped) {
      this.mapUserNamespace();
      return;
    }
    const message = parseControlLine(line);
    if (!message) return;
    if (message.kind === 'ready' && this.currentState === 'starting') {
      this.currentState = 'running';
      this.readyWaiter?.resolve();
    } else if (message.kind === 'health') this.health = message.healthy ? 'healthy' : 'unhealthy';
    else if (message.kind === 'exit') this.reportedExitCode = message.code;
  }

  /** Writes the id maps of the sandbox's new user namespace, then lets its PID 1 go on. */
  private mapUserNamespace(): void {
    this.mapped = true;
    const init = this.sandboxInit();
    try {
      if (!init) throw new Error('the sandbox has no PID 1');
      writeFileSync(`/proc/${init}/uid_map`, `0 ${this.resources.idBase} ${ID_COUNT}\n`);
      writeFileSync(`/proc/${init}/gid_map`, `0 ${this.resources.idBase} ${ID_COUNT}\n`);
      this.child!.stdin!.end('go\n');
    } catch (error) {
      this.stderrTail += `alto: cannot map the user namespace: ${(error as Error).message}\n`;
      this.kill();
    }
  }

  /** The sandbox's PID 1 as the host sees it: the one child of the unshare process Node started. */
  private sandboxInit(): number | undefined {
    const pid = this.child?.pid;
    if (!pid) return undefined;
    try {
      const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      return children.length ? Number(children[0]) : undefined;
    } catch {
      return undefined;
    }
  }

  private kill(): void {
    this.resources.cgroup.killAll();
    try {
      this.child?.kill('SIGKILL');
    } catch {
      // Gone already.
    }
  }

  private async onExit(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    // Anything left in the group (a daemon the app forked) goes with it.
    this.resources.cgroup.killAll();
    await this.resources.cgroup.destroy();
    await this.resources.platform?.close();
    await this.resources.links?.close();
    await this.resources.resolver?.close();
    await destroySandboxNetwork(this.resources.network);
    // The volumes' disks are free once the sandbox's mount namespace has let go of them.
    await waitUntilDetached(this.resources.volumeImages).catch((error: Error) => (this.stderrTail += `alto: ${error.message}\n`));
    this.resources.volumes.release();
    rmSync(this.resources.runDir, { recursive: true, force: true });
    rmSync(this.resources.stateDir, { recursive: true, force: true });
    this.resources.record.remove();
    const exitCode = this.reportedExitCode ?? null;
    let reason: string;
    if (this.stopRequested === 'killed') reason = 'killed after grace period';
    else if (this.stopRequested === 'graceful') reason = 'stopped';
    else if (exitCode !== null) reason = 'exited';
    else reason = `sandbox crashed: ${this.stderrTail.trim().split('\n').slice(-3).join(' / ') || `unshare ended with ${signal ?? code}`}`;
    if (this.currentState === 'starting') this.readyWaiter?.reject(new Error(`instance ${this.id} ended before it was ready: ${reason}${exitCode !== null ? ` (exit code ${exitCode})` : ''}`));
    this.finish({ code: exitCode, reason });
  }

  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<InstanceExit> {
    if (this.exitInfo) return this.exitInfo;
    if (this.currentState === 'stopping') return this.exited;
    if (this.currentState === 'suspended') this.resources.cgroup.thaw();
    this.currentState = 'stopping';
    this.stopRequested = 'graceful';
    const init = this.sandboxInit();
    // PID 1 of a namespace only gets the signals it handles; the supervisor traps SIGTERM and
    // passes the app's stop signal on.
    if (init) process.kill(init, 'SIGTERM');
    else this.kill();
    const timer = setTimeout(() => {
      this.stopRequested = 'killed';
      this.kill();
    }, graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  async suspend(): Promise<void> {
    this.assertState(['running'], 'suspend');
    await this.resources.cgroup.freeze();
    this.currentState = 'suspended';
  }

  async resume(): Promise<void> {
    this.assertState(['suspended'], 'resume');
    this.resources.cgroup.thaw();
    this.currentState = 'running';
  }

  async isFrozen(): Promise<boolean> {
    return this.resources.cgroup.isFrozen();
  }

  /** CPU periods in which this instance hit its CPU quota. */
  throttledPeriods(): number {
    return this.resources.cgroup.throttledPeriods();
  }

  /** OOM kills inside this instance's memory limit so far. */
  oomKills(): number {
    return this.resources.cgroup.oomKills();
  }

  async snapshot(): Promise<void> {
    throw errors.badRequest('the process driver cannot take snapshots (capabilities.snapshot is false); use the microvm driver');
  }
}
