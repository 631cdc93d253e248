/**
 * @module compute/sandbox/process
 * The process driver, for hosts without a usable VMM: the app runs on the host kernel in its own
 * user, PID, mount, network, IPC, UTS and cgroup namespaces, inside cgroup limits, with the
 * image's root filesystem as its root (pivot_root, so the host's tree is gone, not just hidden by
 * chroot). It needs root on the host (it creates network namespaces and cgroups).
 *
 * - User namespace: ids 0-65535 inside map to 100000-165535 on the host, so root in the sandbox
 *   owns nothing on the host. The image's files are copied once per image with their owners
 *   shifted into that range (cached), and each instance writes into its own overlay upper layer.
 *   The user namespace owns no other namespace: root inside can act on its own files but cannot
 *   mount, unmount, change the network or the hostname.
 * - Network: network.ts (veth pair in a host-owned namespace, nftables); with `spec.platform`,
 *   the one port of the gateway that leads to the edge (platform-access.ts), as `ALTO_URL`; with
 *   `spec.links`, one more gateway port per linked app (links.ts), as `<NAME>_SERVICE_HOST/PORT`.
 * - Limits: cgroups.ts (memory, CPU quota); suspend is the cgroup freezer.
 * - Volumes (volumes.ts): `<dir>/data` bind-mounted onto the overlay root before pivot_root,
 *   its top owned by the app's user as the host sees it (shifted into the sandbox id range).
 * - Snapshots: not supported (capability `snapshot: false`; the calls throw).
 *
 * Start-up chain, each step exec'ing the next, so PID 1 stays one process from mount to app:
 *   sh: join the cgroups -> nsenter --net -> unshare --mount --uts --ipc --cgroup --pid --fork
 *   -> stage1.sh as PID 1 (host root): mount the overlay root, /dev, /proc, /.alto (tools and
 *      supervisor), pivot_root into it and detach the host's tree (pivot_root rather than chroot,
 *      so there is nothing left to escape to)
 *   -> setpriv to uid 100000 -> busybox unshare --user; the host writes the id maps
 *      (/proc/<pid>/uid_map) while the shell waits on stdin, and the next exec turns the
 *      process into root of its user namespace -> the supervisor.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import { SandboxCgroup, detectCgroups } from './cgroups.js';
import { InstanceBase, LineSplitter, findCommand, hasCommand, parseControlLine, resolveUser, run, shellQuote, validateSpec } from './common.js';
import { createSandboxNetwork, destroySandboxNetwork, ensureFirewall, type SandboxNetwork } from './network.js';
import { linkVariables, openLinkRelays, validateLinks, type LinkRelays } from './links.js';
import { openPlatformAccess, PLATFORM_URL_VARIABLE, type PlatformAccess } from './platform-access.js';
import { DEFAULT_STOP_GRACE_MS, type InstanceExit, type SandboxDescription, type SandboxDriver, type SandboxSpec, type SandboxVolume } from './port.js';
import { buildSupervisorScript } from './supervisor.js';
import { ensureSandboxTools } from './tools.js';
import { claimVolumes, prepareVolumeFolder, type VolumeClaim } from './volumes.js';

export interface ProcessOptions {
  cacheDir: string;
  stateDir: string;
  /** First host uid/gid of the range sandbox ids 0-65535 map to. */
  idBase?: number;
  startTimeoutMs?: number;
}

const ID_COUNT = 65_536;
const RUN_DIR = '/run/alto-sandbox';

/** Copies a root filesystem once with every owner moved into the sandbox id range. */
/** Copies being made in this process, by folder: concurrent first starts of one image share one. */
const shiftedRootsInFlight = new Map<string, Promise<string>>();

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
  try {
    renameSync(building, dir);
  } catch (error) {
    // Lost the race to another process: its copy is the same.
    if (!existsSync(dir)) throw error;
    rmSync(building, { recursive: true, force: true });
  }
  return dir;
}

export class ProcessDriver implements SandboxDriver {
  readonly name = 'process' as const;
  private description: Promise<SandboxDescription> | undefined;
  private toolsDir: string | undefined;
  private readonly instances = new Set<ProcessInstance>();
  private readonly idBase: number;

  constructor(private readonly options: ProcessOptions) {
    this.idBase = options.idBase ?? 100_000;
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
    for (const tool of ['unshare', 'nsenter', 'ip', 'cp']) {
      if (!hasCommand(tool)) throw new Error(`the process driver needs ${tool} (util-linux, iproute2)`);
    }
    const maxUserNamespaces = Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim());
    if (!(maxUserNamespaces > 0)) throw new Error('user namespaces are disabled on this host (user.max_user_namespaces is 0)');
    const cgroups = detectCgroups();
    if (!cgroups) throw new Error('this host has no usable cgroups for memory and CPU limits');
    mkdirSync(this.options.cacheDir, { recursive: true });
    this.toolsDir = await ensureSandboxTools(this.options.cacheDir);
    const firewall = await ensureFirewall();
    return {
      driver: 'process',
      accelerator: 'none',
      reason: `Linux namespaces (user, pid, mount, net, ipc, uts, cgroup) with cgroup ${cgroups.version} limits${firewall ? ' and an nftables guard' : '; nft missing, so no outbound access'}`,
      capabilities: { suspend: true, snapshot: false, outbound: firewall },
    };
  }

  async start(spec: SandboxSpec): Promise<ProcessInstance> {
    const argv = validateSpec(spec);
    validateLinks(spec.links ?? []);
    const user = resolveUser(spec.rootfs, spec.user);
    const description = await this.probe();
    if (spec.allowOutbound && !description.capabilities.outbound) throw errors.badRequest('outbound access needs nftables on this host');
    const id = randomBytes(6).toString('hex');
    const volumes = spec.volumes ?? [];
    const claim = claimVolumes(volumes);
    try {
      return await this.startClaimed(spec, argv, user, id, volumes, claim);
    } catch (error) {
      claim.release();
      throw error;
    }
  }

  private async startClaimed(
    spec: SandboxSpec,
    argv: string[],
    user: { uid: number; gid: number },
    id: string,
    volumes: SandboxVolume[],
    claim: VolumeClaim,
  ): Promise<ProcessInstance> {
    // The app's user as the host sees it: the top of each volume is theirs to write.
    const volumeMounts = volumes.map((volume) => ({
      source: prepareVolumeFolder(volume, this.idBase + user.uid, this.idBase + user.gid),
      path: volume.path,
    }));
    const lower = await ensureShiftedRoot(this.options.cacheDir, spec.rootfs, this.idBase);
    const stateDir = join(this.options.stateDir, id);
    const runDir = join(RUN_DIR, id);
    const root = join(runDir, 'root');
    mkdirSync(join(stateDir, 'upper'), { recursive: true });
    mkdirSync(join(stateDir, 'work'), { recursive: true });
    chownSync(join(stateDir, 'upper'), this.idBase, this.idBase);
    mkdirSync(root, { recursive: true, mode: 0o755 });
    chmodSync(RUN_DIR, 0o755);
    chmodSync(runDir, 0o755);
    const cgroup = SandboxCgroup.create(`${spec.name ?? 'app'}-${id}`.replace(/[^A-Za-z0-9-]/g, '-'), {
      memoryBytes: spec.memoryMiB * 1024 * 1024,
      cpus: spec.cpus,
    });
    let network: SandboxNetwork;
    let platform: PlatformAccess | undefined;
    let links: LinkRelays | undefined;
    try {
      network = await createSandboxNetwork(id, Boolean(spec.allowOutbound));
    } catch (error) {
      await cgroup.destroy();
      throw error;
    }
    try {
      if (spec.platform) platform = await openPlatformAccess(network, spec.platform.port);
      if (spec.links?.length) links = await openLinkRelays(spec.links, network);
    } catch (error) {
      await platform?.close();
      await destroySandboxNetwork(network);
      await cgroup.destroy();
      throw error;
    }
    const env = {
      ...spec.env,
      ...(platform ? { [PLATFORM_URL_VARIABLE]: `http://${platform.address}:${platform.port}` } : {}),
      ...(links ? linkVariables(links.relays.map((relay) => ({ name: relay.name, host: relay.address, port: relay.port }))) : {}),
    };
    const hostname = (spec.name ?? `alto-${id}`).replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63);
    writeFileSync(
      join(stateDir, 'supervisor.sh'),
      buildSupervisorScript({
        argv,
        env,
        workdir: spec.workdir || '/',
        uid: user.uid,
        gid: user.gid,
        port: spec.port,
        prelude: ['exec </dev/null'],
        epilogue: [],
      }),
      { mode: 0o644 },
    );
    const tools = this.toolsDir!;
    const busybox = join(tools, 'busybox');
    const userStage = [
      'echo alto:userns >&3',
      'read -r go',
      'exec /.alto/bin/busybox sh /.alto/supervisor.sh',
    ].join('; ');
    // Bind mounts onto the overlay root, before pivot_root: the app never sees the host path.
    const volumeLines = volumeMounts
      .map(({ source, path }) => {
        const target = `"$R"${shellQuote(path)}`;
        return `$B mkdir -p ${target}\n$B mount --bind ${shellQuote(source)} ${target}\n$B mount -o remount,bind,nosuid,nodev ${target}`;
      })
      .join('\n');
    const stage1 = `# Alto process sandbox, stage 1 (generated): PID 1 of the new PID namespace, still host root.
set -e
B=${shellQuote(busybox)}
R=${shellQuote(root)}
$B mount -t overlay overlay -o ${shellQuote(`lowerdir=${lower},upperdir=${join(stateDir, 'upper')},workdir=${join(stateDir, 'work')}`)} "$R"
${volumeLines}
for dir in dev proc .alto; do [ -d "$R/$dir" ] || $B mkdir -p "$R/$dir"; done
[ -d "$R/tmp" ] || { $B mkdir -p "$R/tmp"; $B chmod 1777 "$R/tmp"; }
$B mount -t tmpfs -o mode=0755,size=1m,nosuid,uid=${this.idBase},gid=${this.idBase} alto-dev "$R/dev"
for node in null zero full random urandom tty; do $B touch "$R/dev/$node"; $B mount --bind "/dev/$node" "$R/dev/$node"; done
$B mkdir -p "$R/dev/shm" "$R/dev/pts"
$B mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
$B ln -s /proc/self/fd "$R/dev/fd"; $B ln -s /proc/self/fd/0 "$R/dev/stdin"; $B ln -s /proc/self/fd/1 "$R/dev/stdout"; $B ln -s /proc/self/fd/2 "$R/dev/stderr"
$B mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
$B mount -t tmpfs -o mode=0755,size=1m alto "$R/.alto"
$B mkdir "$R/.alto/bin" "$R/.alto/old"
$B touch "$R/.alto/supervisor.sh"
$B mount --bind ${shellQuote(tools)} "$R/.alto/bin"
$B mount -o remount,bind,ro "$R/.alto/bin"
$B mount --bind ${shellQuote(join(stateDir, 'supervisor.sh'))} "$R/.alto/supervisor.sh"
$B hostname ${shellQuote(hostname)}
cd "$R"
$B pivot_root . .alto/old
B=/.alto/bin/busybox
cd /
$B umount -l /.alto/old
$B rmdir /.alto/old
$B mount -o remount,ro /.alto
exec /.alto/bin/ld.so --library-path /.alto/bin/lib /.alto/bin/setpriv --reuid=${this.idBase} --regid=${this.idBase} --clear-groups -- /.alto/bin/busybox unshare --user -- /.alto/bin/busybox sh -c ${shellQuote(userStage)}
`;
    writeFileSync(join(stateDir, 'stage1.sh'), stage1, { mode: 0o644 });
    const instance = new ProcessInstance(id, { stateDir, runDir, cgroup, network, platform, links, port: spec.port, idBase: this.idBase, volumes: claim });
    this.instances.add(instance);
    void instance.exited.then(() => this.instances.delete(instance));
    // From here the instance releases the volumes when it ends, whether or not it became ready.
    await instance.boot(busybox, join(stateDir, 'stage1.sh'), this.options.startTimeoutMs ?? 60_000);
    return instance;
  }

  async restore(): Promise<never> {
    throw errors.badRequest('the process driver cannot restore snapshots (capabilities.snapshot is false); use the microvm driver');
  }

  async close(): Promise<void> {
    await Promise.all([...this.instances].map((instance) => instance.stop(1_000).catch(() => undefined)));
  }
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
  port: number;
  idBase: number;
  /** Released when the instance has ended and nothing in it can write any more. */
  volumes: VolumeClaim;
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

  async boot(busybox: string, stage1: string, timeoutMs: number): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => (this.readyWaiter = { resolve, reject }));
    const joinCgroups = this.resources.cgroup.procsFiles.map((file) => `echo $$ > ${shellQuote(file)}`).join('; ');
    const enter = [
      findCommand('nsenter')!, `--net=${this.resources.network.namespacePath}`, '--',
      findCommand('unshare')!, '--mount', '--propagation', 'private', '--uts', '--ipc', '--cgroup', '--pid', '--fork', '--kill-child', '--',
      busybox, 'sh', stage1,
    ];
    // Joining the cgroups first means nothing the sandbox ever runs escapes its limits.
    const child = spawn(busybox, ['sh', '-c', `${joinCgroups}; exec ${enter.map(shellQuote).join(' ')}`], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
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
    } else if (message.kind === 'exit') this.reportedExitCode = message.code;
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
    await destroySandboxNetwork(this.resources.network);
    this.resources.volumes.release();
    rmSync(this.resources.runDir, { recursive: true, force: true });
    rmSync(this.resources.stateDir, { recursive: true, force: true });
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
    // PID 1 of a namespace only gets the signals it handles; the supervisor traps SIGTERM.
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
