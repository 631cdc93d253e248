/**
 * @module compute/sandbox/microvm
 * The microVM driver: one QEMU `-M microvm` per instance, booting Debian's cloud kernel (PVH)
 * with Alto's initramfs; the image's root filesystem is an ext4 disk on virtio-blk, the
 * supervisor (PID 1) runs the app. The host talks to the guest over four named virtio-serial
 * ports, each a unix socket this process listens on: the app's stdout and stderr, the control
 * channel (`alto:ready`, `alto:exit <code>`) and the signal channel (`term`).
 *
 * Accelerator: probed once per driver by booting a tiny guest with `-accel kvm -cpu host`;
 * where that fails (no /dev/kvm, or a paravirtual KVM that cannot run a stock kernel, as on
 * Alto's own CI machines) the driver uses `-accel tcg` and says why.
 *
 * Network: QEMU's user-mode stack, whose 10.0.2.2 is the loopback of the network namespace QEMU
 * runs in (QEMU 7.2 cannot turn that mapping off). Two ways, per instance:
 * - outbound off: QEMU in the host's namespace with `restrict=on` (the guest reaches nothing
 *   outside, in particular not 10.0.2.2) and one hostfwd from a free 127.0.0.1 port to the
 *   app's port;
 * - outbound on: QEMU runs (nsenter) in a network namespace of its own, made by network.ts as
 *   for the process driver (a veth to the host, NAT, and nftables rules that drop what it sends
 *   to the host's own addresses, private and link-local ranges and other instances), with
 *   `restrict=off`: the guest's connections leave from that namespace, whose loopback (the
 *   guest's 10.0.2.2) holds nothing, and the hostfwd listens on the namespace's veth address,
 *   which the host reaches. IPv6 is off in the user-mode stack (the rules filter IPv4).
 * QMP, the serial console and the virtio-serial ports stay unix sockets in both cases.
 *
 * Platform access (`spec.platform`): the guest reaches Alto's edge, and nothing else on the host,
 * at `ALTO_URL=http://10.0.2.100` (port 80), a `guestfwd` of the user-mode stack, which works
 * with `restrict=on` too. Its `cmd:` form starts the host's static busybox `nc` per connection
 * (the chardev form, `guestfwd=...-tcp:127.0.0.1:<port>`, opens one connection when QEMU starts
 * and shares it between every guest connection, which is no use for HTTP). Outbound off: `nc`
 * runs in the host's namespace and connects to 127.0.0.1:<edge port>. Outbound on: it runs in
 * the instance's namespace, whose loopback holds nothing, so it connects to the gateway's one
 * opened port (platform-access.ts, as for the process driver), which leads to the host's edge. Outbound
 * access needs root, iproute2, nsenter and nftables (capability `outbound`); a restored copy of
 * an outbound instance gets a namespace of its own.
 *
 * Links (`spec.links`, links.ts): the i-th linked app is the guest's 10.0.2.(101+i):<its port>
 * (in `<NAME>_SERVICE_HOST/PORT`), one more guestfwd whose `nc` connects to that link's relay:
 * on the host's loopback (outbound off) or the gateway (outbound on). The snapshot keeps the
 * guest's side (name, port); a restore opens new relays, told the links by `RestoreOptions`.
 *
 * Volumes (volumes.ts): each is a sparse ext4 image in its host folder, attached as one more
 * virtio-blk disk with a serial naming it; the supervisor mounts it before the app starts and
 * unmounts and syncs it after the app ends, also when a stop's grace period runs out (the host
 * asks the guest to kill the app rather than killing QEMU, so nothing written is lost). A
 * snapshot of an instance with volumes copies none of them: it records their disks as the paused
 * guest left them, the instance then ends still paused (nothing unmounts or writes them), and a
 * restore claims and attaches those same disks, refusing (409) when one was written since. So a
 * volume has one writer at a time, and the restored guest finds it as its memory expects. A
 * backup copies a running instance's volume with its filesystem frozen in the guest for the start
 * of QEMU's point-in-time copy (microvm-volume-backup.ts).
 *
 * Memory is a file on /dev/shm shared with QEMU (`memory-backend-file,share=on`), so a snapshot
 * is the device state (tens of KB, `x-ignore-shared`) plus a copy of that file; a restore maps
 * the snapshot's file privately (`share=off`: copy-on-write, the snapshot stays intact however
 * many copies run) and loads the state with `-incoming defer`. Such a copy has no memory file of
 * its own to copy, so its snapshot carries the memory in the state file (`memoryInState`), whose
 * restore loads it into a new shared file: about 110 ms more under tcg than a mapped restore. A
 * restore asked for `ownMemory` (a slot waking from its own snapshot, the only user of that
 * snapshot) copies the snapshot's file to one of its own instead, holes left out (a few tens of ms,
 * beside the disks' copies), and is shared from then on: its own next snapshot is the quick kind.
 *
 * Restored copies are reseeded: every copy of a snapshot would otherwise run on with the same
 * random generator state and a clock stopped at the snapshot. Once a copy runs, the host writes a
 * reseed record (the time now and 32 random bytes) on the signal port; the guest agent (a static
 * x86-64 program of a few hundred bytes in the supervisor disk, guest/agent.s) mixes the bytes
 * into the kernel's pool (a write to /dev/urandom), forces the generator to reseed from them
 * (RNDRESEEDCRNG), sets the clock, and answers `alto:reseeded N` on the control port, N saying
 * what failed (0: nothing); the restore waits for that answer, and fails if anything did: a copy
 * sharing its random state with its siblings is not served. The agent runs for the guest's whole life, so a reseed starts no process
 * in a guest that has just woken: under tcg that took 130 ms, now a few. Other hosts, and
 * snapshots taken before the agent, use the supervisor shell's reader and a text line
 * (`reseed <seconds> <octal escapes>`), waited for up to RESEED_WAIT_MS. The network needs no
 * reseeding: each copy has its own QEMU user-mode network, whose only guest is that copy (the same
 * MAC and 10.0.2.15 in every copy never meet), and a copy with outbound access its own namespace.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, accessSync, constants } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import {
  InstanceBase,
  LineSplitter,
  findCommand,
  freeLoopbackPort,
  hasCommand,
  parseControlLine,
  resolveUser,
  run,
  shellQuote,
  validateSpec,
} from './common.js';
import { PatientConnector } from './connect.js';
import { ensureGuestKernel, type GuestKernel } from './guest-kernel.js';
import { createSandboxNetwork, destroySandboxNetwork, ensureFirewall, sandboxNetworkNames, type SandboxNetwork } from './network.js';
import { InstanceRecordFile } from './reap.js';
import { guestResolvConf, linkNames, openSandboxResolverIfPossible, type Resolver } from './dns.js';
import { linkGuestAddress, linkHostLines, linkVariables, openLinkRelays, unreachableLink, validateLinks, type LinkRelays, type SavedLink } from './links.js';
import { expandArgReferences, expandEnvReferences } from './env-references.js';
import { openPlatformAccess, PLATFORM_URL_VARIABLE, type PlatformAccess } from './platform-access.js';
import { ensureInitramfs, ensureProbeInitramfs } from './guest-initramfs.js';
import {
  DEFAULT_STOP_GRACE_MS,
  type Accelerator,
  type InstanceExit,
  type RestoreOptions,
  type SandboxDescription,
  type SandboxDriver,
  type SandboxLink,
  type SandboxSpec,
  type SandboxVolume,
} from './port.js';
import { QmpClient } from './qmp.js';
import { MicrovmVolumeBackups } from './microvm-volume-backup.js';
import { copyDisk, ensureRootDisk } from './root-disk.js';
import { supervisorScript, supervisorSettings } from './supervisor.js';
import { guestFile } from './guest-files.js';
import { ensureSandboxTools } from './tools.js';
import { ensureLauncher } from './launcher.js';
import { claimVolumes, ensureVolumeDisk, type VolumeClaim } from './volumes.js';

export interface MicrovmOptions {
  /** Kernel, initramfs, tools and root disk images, shared by every run. */
  cacheDir: string;
  /** Per-instance disks and logs. */
  stateDir: string;
  /** Force an accelerator instead of probing ('auto', the default, probes kvm then falls back to tcg). */
  accelerator?: 'auto' | 'kvm' | 'tcg';
  qemu?: string;
  /** How long a boot may take before the instance counts as failed. */
  startTimeoutMs?: number;
  /** HTTP exchanges an instance under tcg takes at once (default MICROVM_TCG_EXCHANGES; 0: no limit but the app's concurrency). */
  tcgExchangeLimit?: number;
}

const PROBE_TIMEOUT_MS = 15_000;
const OUTBOUND_UNAVAILABLE =
  'outbound access from a microVM needs root, iproute2, nsenter and nftables on this host (a network namespace per instance); run with outbound off';
/** After a stop's grace period, how long a guest with volumes may take to unmount them. */
const VOLUME_SYNC_GRACE_MS = 5_000;
const PORT_NAMES = ['stdout', 'stderr', 'control', 'signal'] as const;
/** How long a restore waits for the guest to say it reseeded (older snapshots never do). */
const RESEED_WAIT_MS = 3_000;
/** Random bytes given to a restored copy's kernel. */
const RESEED_BYTES = 32;
/** Where a guest finds the platform's edge (forwarded by the user-mode stack, never routed). */
const PLATFORM_GUEST_ADDRESS = '10.0.2.100';
const PLATFORM_GUEST_URL = `http://${PLATFORM_GUEST_ADDRESS}`;
type PortName = (typeof PORT_NAMES)[number];

/** The host's TSC rate: without it in `tsc_early_khz`, many tcg boots hang in TSC calibration. */
function hostTscKhz(): number | undefined {
  const match = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}

function kernelCommandLine(): string {
  const tsc = hostTscKhz();
  return [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    // A triple fault ends the VM at once (with -no-reboot, QEMU exits): how the guest powers off.
    'reboot=t',
    ...(tsc ? [`tsc_early_khz=${tsc}`] : []),
    'no_timer_check',
    'tsc=reliable',
    'i8042.noaux',
    'mitigations=off',
    'random.trust_cpu=on',
  ].join(' ');
}

/** Whether this host can give a guest outbound access: a network namespace per instance, guarded by nftables. */
async function outboundSupported(): Promise<boolean> {
  if (process.getuid?.() !== 0 || !hasCommand('ip') || !hasCommand('nsenter') || !hasCommand('unshare')) return false;
  return ensureFirewall().catch(() => false);
}

function cpuArguments(accelerator: Accelerator): string[] {
  return accelerator === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', 'max'];
}

/** What a snapshot directory records so a restore can rebuild the same machine. */
interface SnapshotManifest {
  version: 1;
  accelerator: Accelerator;
  memoryMiB: number;
  cpus: number;
  port: number;
  guestPort: number;
  name: string;
  kernel: string;
  initramfs: string;
  /** Whether the instance had outbound access (absent in older snapshots: it had not). */
  outbound?: boolean;
  /** The edge port the guest's 10.0.2.100:80 led to (absent: no platform access). */
  platformPort?: number;
  /** The links, in order: the i-th is the guest's 10.0.2.(101+i):port (absent: none). */
  links?: SavedLink[];
  /** Whether the guest agent reads the signal port (absent in older snapshots: the shell does). */
  agent?: boolean;
  /**
   * Whether the guest's memory is in the state file (a snapshot of a restored copy, whose memory
   * was a private mapping of another snapshot) rather than in a `memory` file beside it.
   */
  memoryInState?: boolean;
  /**
   * The instance's volumes, in the order of their disks. A snapshot keeps no copy of them: its
   * restore attaches the same disks, claimed as a start claims them, and only when each is as the
   * snapshot left it (size and modification time); a volume written since refuses the restore.
   */
  volumes?: SavedVolume[];
}

/** A volume as a snapshot records it. */
interface SavedVolume {
  /** The volume's host folder, claimed by the restore (volumes.ts). */
  dir: string;
  disk: string;
  serial: string;
  size: number;
  mtimeMs: number;
}

interface MachineLayout {
  id: string;
  dir: string;
  socketDir: string;
  disk: string;
  configTar: string;
  memoryFile: string;
  /** Per-instance folder on /dev/shm for the shared memory file; removed when the instance ends. */
  shmDir: string;
  memoryShared: boolean;
  memoryMiB: number;
  cpus: number;
  guestPort: number;
  hostPort: number;
  /** Whether the guest may open connections out (QEMU then runs in its own network namespace). */
  outbound: boolean;
  /** The namespace QEMU runs in when `outbound` is on; made at boot, removed when QEMU ends. */
  network?: SandboxNetwork;
  /** The edge's port on the host when the guest may reach it (10.0.2.100:80). */
  platformPort?: number;
  /** With outbound on and platform access: the gateway port opened for it, closed when QEMU ends. */
  platformAccess?: PlatformAccess;
  /** Linked apps (links.ts): the i-th is forwarded from the guest's 10.0.2.(101+i):port. */
  links: SandboxLink[];
  /** Their relays on the host, open while QEMU runs (new ports after a restore). */
  linkRelays?: LinkRelays;
  /** With outbound on: Alto's resolver on the namespace's gateway, which QEMU's 10.0.2.3 forwards to (dns.ts). */
  resolver?: Resolver;
  /** The host's static busybox, whose `nc` carries each guest connection to the edge. */
  busybox: string;
  accelerator: Accelerator;
  kernel: string;
  initramfs: string;
  name: string;
  /** Whether the guest agent reads the signal port (records), or the supervisor shell (lines). */
  agent: boolean;
  /** Instance.exchangeLimit: set under tcg. */
  exchangeLimit: number | undefined;
  /** Volume disks, attached after the root and config disks, told apart by their serial; `dir` is the volume's folder. */
  volumes: { dir: string; disk: string; serial: string }[];
  /** Released once QEMU has exited and nothing can write the volumes any more. */
  volumeClaim?: VolumeClaim;
  /** What the instance holds, for a later run should this one be killed (reap.ts); removed last. */
  record: InstanceRecordFile;
}

/**
 * QEMU's user-mode network. Outbound off: restricted, forwarded from the host's loopback.
 * Outbound on: unrestricted, but QEMU runs in the instance's own namespace (see the module
 * comment), and the forward listens on that namespace's veth address.
 */
function userNetwork(layout: MachineLayout): string {
  const guestPort = layout.guestPort || 1;
  const base = layout.network
    ? `user,id=net0,restrict=off,ipv6=off,hostfwd=tcp:${layout.network.sandboxAddress}:${layout.hostPort}-:${guestPort}`
    : `user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${layout.hostPort}-:${guestPort}`;
  const withPlatform = layout.platformPort ? `${base},${platformForward(layout)}` : base;
  return layout.linkRelays ? `${withPlatform},${linkForwards(layout, layout.linkRelays)}` : withPlatform;
}

/** One guestfwd per link, from a guest address of its own to the link's relay (on the loopback or the gateway). */
function linkForwards(layout: MachineLayout, relays: LinkRelays): string {
  return layout.links
    .map((link, index) => {
      const relay = relays.relays[index];
      return `guestfwd=tcp:${linkGuestAddress(index)}:${link.port}-cmd:${layout.busybox.replaceAll(',', ',,')} nc ${relay.address} ${relay.port}`;
    })
    .join(',');
}

/** The guestfwd to the edge: one `nc` per guest connection (QEMU splits the command on spaces). */
function platformForward(layout: MachineLayout): string {
  const target = layout.platformAccess ? `${layout.platformAccess.address} ${layout.platformAccess.port}` : `127.0.0.1 ${layout.platformPort}`;
  // In a -netdev value a comma is written twice.
  return `guestfwd=tcp:${PLATFORM_GUEST_ADDRESS}:80-cmd:${layout.busybox.replaceAll(',', ',,')} nc ${target}`;
}

/**
 * Starts QEMU (or nsenter, which execs it) so that it ends when Alto does, even killed with
 * SIGKILL: through the launcher (alto-enter --parent-death) where it could be built, else through
 * util-linux `setpriv --pdeathsig KILL`, which also execs; either way the pid is QEMU's.
 */
function spawnEndingWithAlto(launcher: string | undefined, command: string, args: string[], stdio: ['ignore', 'ignore' | 'pipe', 'pipe']): ChildProcess {
  const executable = findCommand(command) ?? command;
  if (launcher) return spawn(launcher, ['--fds', '3', '--parent-death', String(process.pid), '--', executable, ...args], { stdio });
  const setpriv = findCommand('setpriv');
  if (setpriv) return spawn(setpriv, ['--pdeathsig', 'KILL', '--', executable, ...args], { stdio });
  return spawn(command, args, { stdio });
}

/** Everything an instance holds on the host's file systems. */
function removeLayout(layout: MachineLayout): void {
  for (const dir of [layout.socketDir, layout.shmDir, layout.dir]) rmSync(dir, { recursive: true, force: true });
}

export class MicrovmDriver implements SandboxDriver {
  readonly name = 'microvm' as const;
  private description: Promise<SandboxDescription> | undefined;
  private kernel: GuestKernel | undefined;
  private initramfs: string | undefined;
  private toolsDir: string | undefined;
  /** alto-enter, so QEMU gets no descriptor of Alto's beyond its stdio; undefined where it cannot be built. */
  private launcher: string | undefined;
  private readonly instances = new Set<MicrovmInstance>();
  private readonly qemu: string;

  constructor(private readonly options: MicrovmOptions) {
    this.qemu = options.qemu ?? 'qemu-system-x86_64';
  }

  probe(): Promise<SandboxDescription> {
    this.description ??= this.runProbe();
    return this.description;
  }

  describe(): Promise<SandboxDescription> {
    return this.probe();
  }

  private async runProbe(): Promise<SandboxDescription> {
    for (const tool of [this.qemu, 'mkfs.ext4', 'tar', 'cp']) {
      if (!hasCommand(tool)) throw new Error(`the microvm driver needs ${tool}; install qemu-system-x86 and e2fsprogs`);
    }
    mkdirSync(this.options.cacheDir, { recursive: true });
    const tools = await ensureSandboxTools(this.options.cacheDir);
    if (/\s/.test(tools)) throw new Error(`the sandbox cache folder ${tools} has white space in its path; QEMU cannot run its tools from there (set ALTO_SANDBOX_CACHE)`);
    this.toolsDir = tools;
    // Not required here (QEMU runs no tenant code on the host), so a host without a C compiler still runs microVMs.
    this.launcher = await ensureLauncher(this.options.cacheDir).catch(() => undefined);
    this.kernel = await ensureGuestKernel(this.options.cacheDir);
    this.initramfs = ensureInitramfs(this.options.cacheDir, this.kernel, tools, this.launcher);
    const choice = this.options.accelerator ?? 'auto';
    const capabilities = { suspend: true, snapshot: true, outbound: await outboundSupported() };
    if (choice === 'tcg') return { driver: 'microvm', accelerator: 'tcg', reason: 'tcg forced by configuration', capabilities };
    const kvm = await this.probeKvm(ensureProbeInitramfs(this.options.cacheDir, tools));
    if (kvm.ok) return { driver: 'microvm', accelerator: 'kvm', reason: 'a test guest booted with KVM', capabilities };
    if (choice === 'kvm') throw new Error(`kvm was asked for but ${kvm.reason}`);
    return { driver: 'microvm', accelerator: 'tcg', reason: `software emulation (tcg): ${kvm.reason}`, capabilities };
  }

  /** Boots the probe guest with KVM; it prints a line and powers off within a second where KVM works. */
  private async probeKvm(probeInitramfs: string): Promise<{ ok: boolean; reason: string }> {
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    } catch {
      return { ok: false, reason: existsSync('/dev/kvm') ? '/dev/kvm is not accessible to this user' : 'this host has no /dev/kvm' };
    }
    const args = [
      '-M', 'microvm', ...cpuArguments('kvm'), '-m', '128', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', this.kernel!.image, '-initrd', probeInitramfs, '-append', kernelCommandLine(), '-serial', 'stdio',
    ];
    return new Promise((resolve) => {
      // Through the launcher too, so the probe's QEMU holds no descriptor of Alto's either.
      const child = spawnEndingWithAlto(this.launcher, this.qemu, args, ['ignore', 'pipe', 'pipe']);
      let output = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
      child.stdout!.on('data', (chunk) => (output += chunk));
      child.stderr!.on('data', (chunk) => (stderr += chunk));
      child.on('close', () => {
        clearTimeout(timer);
        if (output.includes('alto-probe-ok')) resolve({ ok: true, reason: '' });
        else {
          const firstLine = stderr.split('\n').find((line) => line.trim()) ?? `no answer within ${PROBE_TIMEOUT_MS / 1000} s`;
          resolve({ ok: false, reason: `a test guest did not boot with KVM (${firstLine.replace(/^qemu-system-x86_64: /, '').trim()})` });
        }
      });
    });
  }

  async start(spec: SandboxSpec): Promise<MicrovmInstance> {
    const argv = validateSpec(spec);
    validateLinks(spec.links ?? []);
    const user = resolveUser(spec.rootfs, spec.user);
    const description = await this.probe();
    const outbound = Boolean(spec.allowOutbound);
    if (outbound && !description.capabilities.outbound) throw errors.badRequest(OUTBOUND_UNAVAILABLE);
    const baseDisk = await ensureRootDisk(this.options.cacheDir, spec.rootfs);
    const volumeClaim = claimVolumes(spec.volumes ?? []);
    const layout = this.layout(description.accelerator, spec.memoryMiB, Math.max(1, Math.ceil(spec.cpus)), spec.port, spec.name, outbound);
    layout.volumeClaim = volumeClaim;
    layout.platformPort = spec.platform?.port;
    layout.links = spec.links ?? [];
    try {
      for (const [index, volume] of (spec.volumes ?? []).entries()) {
        layout.volumes.push({ dir: volume.dir, disk: await ensureVolumeDisk(volume), serial: `alto-volume-${index}` });
      }
      await this.prepare(layout, baseDisk, spec, argv, user);
    } catch (error) {
      removeLayout(layout);
      layout.record.remove();
      volumeClaim.release();
      throw error;
    }
    const instance = new MicrovmInstance(layout, this.qemu, this.launcher);
    this.track(instance);
    await instance.boot(this.options.startTimeoutMs ?? 120_000);
    return instance;
  }

  /** The instance's private disk and its supervisor disk. */
  private async prepare(layout: MachineLayout, baseDisk: string, spec: SandboxSpec, argv: string[], user: { uid: number; gid: number }): Promise<void> {
    await copyDisk(baseDisk, layout.disk);
    const agent = guestAgent();
    layout.agent = agent !== undefined;
    const supervisorDir = join(layout.dir, 'supervisor');
    mkdirSync(supervisorDir);
    // The supervisor sources the prelude (the ports, hostname, /dev, the signal port's reader,
    // the volumes' mounts) and, once the app ended, the epilogue (unmount, sync, power off).
    const volumes = spec.volumes ?? [];
    const env = expandEnvReferences({
      ...spec.env,
      ...(spec.platform ? { [PLATFORM_URL_VARIABLE]: PLATFORM_GUEST_URL } : {}),
      ...linkVariables(layout.links.map((link, index) => ({ name: link.name, host: linkGuestAddress(index), port: link.port }))),
    });
    const settings = supervisorSettings({
      argv: spec.expandArgs ? expandArgReferences(argv, env) : argv,
      env,
      workdir: spec.workdir || '/',
      uid: user.uid,
      gid: user.gid,
      port: spec.port,
      stopSignal: spec.stopSignal,
      health: spec.health,
      resolvConf: guestResolvConf(layout.outbound),
      secretFiles: spec.secretFiles,
      hosts: linkHostLines(layout.links.map((link, index) => ({ name: link.name, aliases: (spec.links ?? []).find((given) => given.name === link.name)?.aliases, host: linkGuestAddress(index) }))),
      // alto-enter is in the guest's tools when it could be built (ensureInitramfs).
      defaultSignals: this.launcher !== undefined,
      prelude: '/.alto/prelude.sh',
      epilogue: '/.alto/epilogue.sh',
      // The i-th volume is on the disk with serial alto-volume-<i> (start); paths have no spaces (volumes.ts).
      hookSettings: { ALTO_HOSTNAME: layout.name, ALTO_VOLUMES: volumes.map((volume) => volume.path).join(' ') },
    });
    const files: [string, Buffer | string][] = [
      ['supervisor.sh', supervisorScript()],
      ['settings.sh', settings],
      ['prelude.sh', guestFile('microvm-prelude.sh')],
      ['epilogue.sh', guestFile('microvm-epilogue.sh')],
    ];
    // settings.sh holds the hidden env and the secrets' files: root's alone in the guest.
    for (const [name, data] of files) writeFileSync(join(supervisorDir, name), data, { mode: name === 'settings.sh' ? 0o600 : 0o644 });
    // Started by the prelude when it is there, in place of the shell's reader of the signal port.
    if (agent) writeFileSync(join(supervisorDir, 'agent'), agent, { mode: 0o755 });
    await run('tar', ['-cf', layout.configTar, '--owner=0', '--group=0', '--numeric-owner', '-C', supervisorDir, ...files.map(([name]) => name), ...(agent ? ['agent'] : [])]);
  }

  async restore(snapshotDir: string, options: RestoreOptions = {}): Promise<MicrovmInstance> {
    const manifestPath = join(snapshotDir, 'snapshot.json');
    if (!existsSync(manifestPath)) throw errors.notFound(`${snapshotDir} holds no microvm snapshot (snapshot.json is missing)`);
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as SnapshotManifest;
    const description = await this.probe();
    if (manifest.accelerator !== description.accelerator)
      throw errors.conflict(`the snapshot was taken under ${manifest.accelerator} but this host runs ${description.accelerator}; the CPU state does not carry over`);
    const outbound = manifest.outbound ?? false;
    if (outbound && !description.capabilities.outbound) throw errors.badRequest(`the snapshot had outbound access: ${OUTBOUND_UNAVAILABLE}`);
    const layout = this.layout(manifest.accelerator, manifest.memoryMiB, manifest.cpus, manifest.guestPort, manifest.name, outbound);
    layout.kernel = manifest.kernel;
    layout.initramfs = manifest.initramfs;
    layout.platformPort = manifest.platformPort;
    layout.agent = manifest.agent ?? false;
    // The guest keeps its links' addresses and ports; only the functions behind them come anew.
    layout.links = (manifest.links ?? []).map((saved) => ({ ...saved, connect: options.links?.find((link) => link.name === saved.name)?.connect ?? unreachableLink }));
    // The volumes are the instance's own data, not copied: the restore attaches them as they are,
    // one user at a time, and only as the snapshot left them.
    const saved = manifest.volumes ?? [];
    if (saved.length > 0) {
      try {
        layout.volumeClaim = claimVolumes(saved.map((volume) => ({ dir: volume.dir, path: '/' })));
        for (const volume of saved) {
          const now = existsSync(volume.disk) ? statSync(volume.disk) : undefined;
          if (!now || now.size !== volume.size || now.mtimeMs !== volume.mtimeMs)
            throw errors.conflict(`the volume in ${volume.dir} changed since the snapshot was taken; the snapshot no longer matches it`);
        }
      } catch (error) {
        layout.volumeClaim?.release();
        removeLayout(layout);
        layout.record.remove();
        throw error;
      }
      layout.volumes = saved.map(({ dir, disk, serial }) => ({ dir, disk, serial }));
    }
    // Private copy: the disks are copied; the memory too when the copy is to own it, else mapped
    // copy-on-write from the snapshot's file. Memory in the state file is loaded into a file of the
    // copy's own. Either way of owning it, the copy is then like a booted instance.
    let memoryCopied: Promise<void> | undefined;
    try {
      // The memory's copy goes on while QEMU starts, which only maps the file (at its full size
      // already); the state is loaded once it is done.
      if (options.ownMemory && !manifest.memoryInState) memoryCopied = copyMemoryFile(join(snapshotDir, 'memory'), layout.memoryFile);
      await Promise.all([copyDisk(join(snapshotDir, 'disk.ext4'), layout.disk), copyDisk(join(snapshotDir, 'config.tar'), layout.configTar)]);
    } catch (error) {
      await memoryCopied?.catch(() => undefined);
      removeLayout(layout);
      layout.record.remove();
      layout.volumeClaim?.release();
      throw error;
    }
    if (!manifest.memoryInState && !memoryCopied) {
      layout.memoryFile = join(snapshotDir, 'memory');
      layout.memoryShared = false;
    }
    const instance = new MicrovmInstance(layout, this.qemu, this.launcher);
    this.track(instance);
    await instance.boot(this.options.startTimeoutMs ?? 120_000, { state: join(snapshotDir, 'state'), memoryInState: manifest.memoryInState === true, memoryCopied });
    return instance;
  }

  private track(instance: MicrovmInstance): void {
    this.instances.add(instance);
    void instance.exited.then(() => this.instances.delete(instance));
  }

  private layout(accelerator: Accelerator, memoryMiB: number, cpus: number, guestPort: number, name: string | undefined, outbound: boolean): MachineLayout {
    const id = randomBytes(6).toString('hex');
    const dir = join(this.options.stateDir, id);
    // Unix socket paths must stay under 108 bytes, whatever the state folder's length.
    const socketDir = join(tmpdir(), `alto-vm-${id}`);
    const shm = existsSync('/dev/shm') ? join('/dev/shm', `alto-vm-${id}`) : dir;
    mkdirSync(this.options.stateDir, { recursive: true });
    // Named before any of it is made, so the next run finds all of it should this one be killed (reap.ts).
    const record = InstanceRecordFile.create(this.options.stateDir, {
      driver: 'microvm',
      id,
      dirs: [...new Set([dir, socketDir, shm])],
      cgroups: [],
      network: outbound ? sandboxNetworkNames(id) : undefined,
    });
    mkdirSync(dir, { recursive: true });
    mkdirSync(socketDir, { mode: 0o700 });
    mkdirSync(shm, { recursive: true, mode: 0o700 });
    return {
      record,
      id,
      dir,
      socketDir,
      disk: join(dir, 'disk.ext4'),
      configTar: join(dir, 'config.tar'),
      memoryFile: join(shm, 'memory'),
      shmDir: shm,
      memoryShared: true,
      memoryMiB,
      cpus,
      guestPort,
      hostPort: 0,
      outbound,
      accelerator,
      kernel: this.kernel!.image,
      initramfs: this.initramfs!,
      busybox: join(this.toolsDir!, 'busybox'),
      name: (name ?? `alto-${id}`).replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63) || `alto-${id}`,
      volumes: [],
      links: [],
      agent: false,
      exchangeLimit: accelerator === 'tcg' ? (this.options.tcgExchangeLimit ?? MICROVM_TCG_EXCHANGES) || undefined : undefined,
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.instances].map((instance) => instance.stop(1_000).catch(() => undefined)));
  }
}

/**
 * Copies a snapshot's memory file into `target` for a restored copy to own, leaving holes where the
 * source's 64 KiB blocks are all zero (tmpfs holds no page for them). The target has its full size
 * before this returns, so QEMU may map it at once: QEMU refuses a file smaller than the memory,
 * and a shrinking one (`cp` truncates its target first) would fault any page touched. Before the
 * state is loaded nothing reads it (`-incoming`: no vCPU runs, and ROMs are not written).
 */
function copyMemoryFile(source: string, target: string): Promise<void> {
  const { size } = statSync(source);
  const fd = openSync(target, 'w', 0o600);
  try {
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return run('dd', [`if=${source}`, `of=${target}`, 'bs=64K', 'conv=notrunc,sparse', 'status=none']).then(() => undefined);
}

/**
 * HTTP exchanges a microVM under tcg is given at once (Instance.exchangeLimit); requests past it
 * wait at the edge, in the app's queue, or go to another instance. One busybox httpd instance
 * under tcg on a 2-core host, 8 s of keep-alive load per row (`serverless.bench.ts clients
 * microvm`): with no limit, 1 client 254 req/s, 8 clients 288, 16 clients 39, 50 clients 19 req/s
 * with HTTP 408s (the app's accept queue overflows, and the handshakes and data the guest dropped
 * are sent again by the user-mode stack's BSD TCP after seconds); with 4, 50 clients 319 req/s
 * and no errors. Under kvm the app's concurrency alone decides. ALTO_MICROVM_TCG_EXCHANGES sets
 * another limit (0: none).
 */
export const MICROVM_TCG_EXCHANGES = 4;

export class MicrovmInstance extends InstanceBase {
  readonly driver = 'microvm' as const;
  private child: ChildProcess | undefined;
  private qmp: QmpClient | undefined;
  private readonly servers: Server[] = [];
  private readonly sockets = new Map<PortName, Socket>();
  private qemuStderr = '';
  private stopRequested: 'graceful' | 'killed' | undefined;
  /** For a restored copy: whether its guest took a fresh random seed and clock. */
  reseedApplied = false;
  /** A snapshot of it with volumes was just taken: it ends paused, its volumes as recorded. */
  private keptBySnapshot = false;
  /** With volumes: the consistent copies `alto backup` asks for (microvm-volume-backup.ts). */
  private volumeBackups: MicrovmVolumeBackups | undefined;
  /** QEMU's hostfwd listens with a backlog of 1: handshakes are paced (connect.ts). */
  private readonly connector = new PatientConnector(() => ({ host: this.host, port: this.port }));

  constructor(
    private readonly layout: MachineLayout,
    private readonly qemu: string,
    private readonly launcher?: string,
  ) {
    super(layout.id);
  }

  get exchangeLimit(): number | undefined {
    return this.layout.exchangeLimit;
  }

  override connect(): Promise<Socket> {
    return this.connector.connect();
  }

  /** Listens on the four port sockets QEMU connects to as a client. */
  private async listenPorts(): Promise<void> {
    for (const name of PORT_NAMES) {
      const server = createServer((socket) => {
        this.sockets.set(name, socket);
        if (name === 'stdout' || name === 'stderr') socket.on('data', (chunk) => this.pushOutput(name, chunk));
        if (name === 'control') {
          const splitter = new LineSplitter((line) => this.onControl(line));
          socket.on('data', (chunk) => splitter.push(chunk));
        }
        socket.on('error', () => undefined);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(join(this.layout.socketDir, `${name}.sock`), resolve);
      });
      this.servers.push(server);
    }
  }

  private readyWaiter: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /** Set while a restore waits for the guest's `alto:reseeded`, given what failed. */
  private reseeded: ((failed: number) => void) | undefined;

  /**
   * A restored copy's fresh start: random bytes for its kernel's generator and the time now,
   * written on the signal port; resolves when the guest says it applied them, or after `waitMs`
   * (a snapshot whose supervisor predates reseeding). Returns whether the guest answered; throws
   * when it says a step failed.
   */
  private async reseed(waitMs: number): Promise<boolean> {
    const signal = this.sockets.get('signal');
    if (!signal || signal.destroyed) return false;
    const failed = await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.reseeded = undefined;
        resolve(undefined);
      }, waitMs);
      this.reseeded = (failures) => {
        clearTimeout(timer);
        this.reseeded = undefined;
        resolve(failures);
      };
      signal.write(signalMessage(this.layout.agent, 'reseed'));
    });
    if (failed) throw new Error(`the restored copy could not be made its own: ${reseedFailures(failed)}`);
    return failed !== undefined;
  }

  private onControl(line: string): void {
    if (this.volumeBackups?.handleAnswer(line)) return;
    const reseeded = /^alto:reseeded(?: ([0-7]))?$/.exec(line.trim());
    if (reseeded) {
      // The shell, and agents before failures were told, answer without a digit.
      this.reseeded?.(Number(reseeded[1] ?? 0));
      return;
    }
    const message = parseControlLine(line);
    if (!message) return;
    if (message.kind === 'ready' && this.currentState === 'starting') {
      this.currentState = 'running';
      this.readyWaiter?.resolve();
    } else if (message.kind === 'health') this.health = message.healthy ? 'healthy' : 'unhealthy';
    else if (message.kind === 'exit') {
      this.reportedExitCode = message.code;
    }
  }

  private qemuArguments(incoming: boolean): string[] {
    const layout = this.layout;
    const socket = (name: PortName) => join(layout.socketDir, `${name}.sock`);
    const args = [
      '-name', `alto-${layout.id}`,
      '-M', 'microvm,memory-backend=mem',
      ...cpuArguments(layout.accelerator),
      '-m', `${layout.memoryMiB}M`,
      '-smp', String(layout.cpus),
      '-object', `memory-backend-file,id=mem,size=${layout.memoryMiB}M,mem-path=${layout.memoryFile},share=${layout.memoryShared ? 'on' : 'off'}`,
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', layout.kernel, '-initrd', layout.initramfs, '-append', kernelCommandLine(),
      '-serial', `file:${join(layout.dir, 'console.log')}`,
      '-drive', `id=root,file=${layout.disk},format=raw,if=none,cache=unsafe,discard=unmap`,
      '-device', 'virtio-blk-device,drive=root',
      '-drive', `id=config,file=${layout.configTar},format=raw,if=none,readonly=on`,
      '-device', 'virtio-blk-device,drive=config',
      ...layout.volumes.flatMap((volume, index) => [
        '-drive', `id=volume${index},file=${volume.disk},format=raw,if=none,cache=writeback,discard=unmap`,
        '-device', `virtio-blk-device,drive=volume${index},serial=${volume.serial}`,
      ]),
      '-netdev', userNetwork(layout),
      '-device', 'virtio-net-device,netdev=net0',
      '-device', 'virtio-serial-device,max_ports=8',
    ];
    PORT_NAMES.forEach((name, index) => {
      args.push('-chardev', `socket,id=${name},path=${socket(name)}`);
      args.push('-device', `virtserialport,chardev=${name},name=alto.${name},nr=${index + 1}`);
    });
    args.push('-qmp', `unix:${join(layout.socketDir, 'qmp.sock')},server=on,wait=off`);
    if (incoming) args.push('-incoming', 'defer');
    return args;
  }

  /** Starts QEMU; resolves once the app listens (or, for a restore, once the VM runs again). */
  async boot(timeoutMs: number, restore?: { state: string; memoryInState: boolean; memoryCopied?: Promise<void> }): Promise<void> {
    // Whatever happens first, a failed copy is this boot's failure, not an unhandled rejection.
    restore?.memoryCopied?.catch(() => undefined);
    try {
      await this.prepareHost();
    } catch (error) {
      // Nothing ran yet: give back what was taken, and end the instance so nobody waits on it.
      await this.releaseHost();
      this.finish({ code: null, reason: `sandbox could not start: ${(error as Error).message}` });
      throw error;
    }
    const ready = new Promise<void>((resolve, reject) => (this.readyWaiter = { resolve, reject }));
    const qemuArgs = this.qemuArguments(Boolean(restore));
    // nsenter execs QEMU, so the child's pid is QEMU's and signals reach it directly. With a
    // resolver, QEMU runs in a mount namespace of its own (unshare, then the shell, exec in turn)
    // whose /etc/resolv.conf names it; the host's file is untouched.
    const inNamespace = this.layout.network ? [findCommand('nsenter')!, `--net=${this.layout.network.namespacePath}`, '--', this.qemu, ...qemuArgs] : [this.qemu, ...qemuArgs];
    const [command, ...args] = this.layout.resolver
      ? [findCommand('unshare')!, '--mount', '--propagation', 'slave', '--', this.layout.busybox, 'sh', '-c', 'if [ -e /etc/resolv.conf ]; then "$1" mount --bind "$0" /etc/resolv.conf || exit 125; fi; shift; exec "$@"', join(this.layout.dir, 'resolv.conf'), this.layout.busybox, ...inNamespace]
      : inNamespace;
    // Through the launcher, which closes every descriptor but stdio before exec (Alto's own and
    // any it inherited), has QEMU killed when Alto ends however it ends, and then execs, so the
    // pid stays QEMU's.
    const child = spawnEndingWithAlto(this.launcher, command, args, ['ignore', 'ignore', 'pipe']);
    this.child = child;
    this.layout.record.addProcess(child.pid);
    child.stderr!.on('data', (chunk) => (this.qemuStderr = (this.qemuStderr + chunk).slice(-4_000)));
    child.on('exit', () => void this.onQemuExit());
    const timer = setTimeout(() => {
      this.readyWaiter?.reject(new Error(`instance ${this.id} was not ready within ${timeoutMs} ms`));
      child.kill('SIGKILL');
    }, timeoutMs);
    try {
      this.qmp = await QmpClient.connect(join(this.layout.socketDir, 'qmp.sock'));
      if (restore) {
        await this.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: !restore.memoryInState }] });
        await restore.memoryCopied;
        const completed = this.waitForMigration();
        await this.qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(restore.state)}` });
        await completed;
        await this.qmp.execute('cont');
        this.reseedApplied = await this.reseed(RESEED_WAIT_MS);
        this.currentState = 'running';
        this.readyWaiter?.resolve();
      }
      await ready;
    } catch (error) {
      child.kill('SIGKILL');
      await this.exited;
      throw this.startFailure(error);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Where the host will reach the app, and the sockets QEMU connects to. With outbound access,
   * the instance's own network namespace: the forward listens there, so any port is free.
   */
  private async prepareHost(): Promise<void> {
    if (this.layout.outbound) {
      this.layout.network = await createSandboxNetwork(this.layout.id, true);
      if (this.layout.platformPort) this.layout.platformAccess = await openPlatformAccess(this.layout.network, this.layout.platformPort);
      this.layout.hostPort = this.layout.guestPort || 1;
      this.host = this.layout.network.sandboxAddress;
    } else {
      this.layout.hostPort = await freeLoopbackPort();
    }
    if (this.layout.links.length > 0) this.layout.linkRelays = await openLinkRelays(this.layout.links, this.layout.network);
    if (this.layout.network) {
      const names = linkNames(this.layout.links.map((link, index) => ({ name: link.name, aliases: link.aliases, host: linkGuestAddress(index) })));
      this.layout.resolver = await openSandboxResolverIfPossible(this.layout.network, { names, forward: true });
      // QEMU's user-mode stack sends the guest's DNS (10.0.2.3) to the first nameserver of the
      // /etc/resolv.conf it sees: QEMU gets this file there (boot), naming the resolver.
      if (this.layout.resolver) writeFileSync(join(this.layout.dir, 'resolv.conf'), `nameserver ${this.layout.resolver.address}\n`);
    }
    this.port = this.layout.hostPort;
    await this.listenPorts();
    if (this.layout.volumes.length > 0) {
      this.volumeBackups = await MicrovmVolumeBackups.open(join(this.layout.socketDir, 'backup.sock'), this.layout.volumes, {
        qmp: () => this.qmp,
        state: () => this.currentState,
        keptBySnapshot: () => this.keptBySnapshot,
        signal: (message) => {
          const signal = this.sockets.get('signal');
          if (!signal || signal.destroyed) return false;
          signal.write(message);
          return true;
        },
        agent: this.layout.agent,
      });
    }
  }

  /** Gives back everything the instance holds on the host once QEMU is gone (or never ran). */
  private async releaseHost(): Promise<void> {
    for (const server of this.servers) server.close();
    this.volumeBackups?.close();
    // Disks, memory and sockets are per instance and worthless once it ends.
    removeLayout(this.layout);
    await this.layout.platformAccess?.close();
    await this.layout.linkRelays?.close();
    await this.layout.resolver?.close();
    if (this.layout.network) await destroySandboxNetwork(this.layout.network);
    this.layout.volumeClaim?.release();
    this.layout.record.remove();
  }

  /** Resolves when the migration in progress (either direction) has completed. */
  private async waitForMigration(): Promise<void> {
    for (;;) {
      const status = await this.qmp!.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
      if (status.status === 'completed') return;
      if (status.status === 'failed' || status.status === 'cancelled') throw new Error(`migration ${status.status}: ${status['error-desc'] ?? ''}`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }

  private consoleTail(): string {
    try {
      return readFileSync(join(this.layout.dir, 'console.log'), 'utf8').split('\n').filter(Boolean).slice(-5).join(' | ');
    } catch {
      return '';
    }
  }

  private async onQemuExit(): Promise<void> {
    this.qmp?.close();
    // QEMU is gone, but the last bytes it wrote (the exit code, final log lines) may still be
    // in flight on the port sockets: read them to their end first (bounded, to be safe).
    await Promise.race([
      Promise.all([...this.sockets.values()].map((socket) => (socket.closed ? undefined : new Promise((resolve) => socket.once('close', resolve))))),
      new Promise((resolve) => setTimeout(resolve, 1_000)),
    ]);
    for (const socket of this.sockets.values()) socket.destroy();
    const code = this.reportedExitCode ?? null;
    let reason: string;
    if (this.stopRequested === 'killed') reason = 'killed after grace period';
    else if (this.stopRequested === 'graceful') reason = 'stopped';
    else if (code !== null) reason = 'exited';
    else reason = `sandbox crashed: ${[this.qemuStderr.trim(), this.consoleTail()].filter(Boolean).join(' / ') || 'QEMU ended without an exit code'}`;
    if (this.currentState === 'starting') this.readyWaiter?.reject(new Error(`instance ${this.id} ended before it was ready: ${reason}${code !== null ? ` (exit code ${code})` : ''}`));
    await this.releaseHost();
    this.finish({ code, reason });
  }

  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<InstanceExit> {
    if (this.exitInfo) return this.exitInfo;
    if (this.currentState === 'stopping') return this.exited;
    if (this.keptBySnapshot && this.currentState === 'suspended') {
      // Its volumes must stay as the snapshot recorded them: QEMU ends with the guest still
      // paused, which neither unmounts nor writes them (the restore brings that guest back).
      this.currentState = 'stopping';
      this.stopRequested = 'graceful';
      this.child?.kill('SIGKILL');
      return this.exited;
    }
    if (this.currentState === 'suspended') await this.qmp?.execute('cont').catch(() => undefined);
    this.currentState = 'stopping';
    this.stopRequested = 'graceful';
    const signal = this.sockets.get('signal');
    if (signal && !signal.destroyed) signal.write(signalMessage(this.layout.agent, 'term'));
    else this.child?.kill('SIGKILL');
    let lastResort: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      this.stopRequested = 'killed';
      // With volumes, the guest kills the app itself and then unmounts and syncs them, so what
      // the app wrote survives; QEMU is ended from here only if the guest does not finish.
      if (this.layout.volumes.length > 0 && signal && !signal.destroyed) {
        signal.write(signalMessage(this.layout.agent, 'kill'));
        lastResort = setTimeout(() => this.child?.kill('SIGKILL'), VOLUME_SYNC_GRACE_MS);
      } else this.child?.kill('SIGKILL');
    }, graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    clearTimeout(lastResort);
    return exit;
  }

  async suspend(): Promise<void> {
    // A backup freezing a volume lets the guest run until it has thawed it.
    await this.volumeBackups?.guestSettled();
    this.assertState(['running'], 'suspend');
    await this.qmp!.execute('stop');
    this.currentState = 'suspended';
  }

  async resume(): Promise<void> {
    this.assertState(['suspended'], 'resume');
    await this.qmp!.execute('cont');
    this.currentState = 'running';
    // Running on, it writes its volumes: a snapshot taken before no longer matches them.
    this.keptBySnapshot = false;
  }

  /** QEMU's own view: 'running', 'paused'... (the tests check suspension against it). */
  async runState(): Promise<string> {
    const status = await this.qmp!.execute<{ status: string }>('query-status');
    return status.status;
  }

  /** QEMU cannot migrate with a volume's copy in progress: a snapshot waits for it, and the next copy for the snapshot. */
  snapshot(dir: string): Promise<void> {
    return this.volumeBackups ? this.volumeBackups.exclusive(() => this.writeSnapshot(dir)) : this.writeSnapshot(dir);
  }

  private async writeSnapshot(dir: string): Promise<void> {
    this.assertState(['running', 'suspended'], 'snapshot');
    if (this.currentState === 'running') await this.suspend();
    mkdirSync(dir, { recursive: true });
    // A restored copy's memory is a private mapping of the snapshot it came from, not a file of
    // its own to copy: the migration writes its pages into the state file instead.
    const memoryInState = !this.layout.memoryShared;
    await this.qmp!.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: !memoryInState }] });
    const statePath = join(dir, 'state');
    await this.qmp!.execute('migrate', { uri: `exec:cat > ${shellQuote(statePath)}` });
    await this.waitForMigration();
    if (!memoryInState) await copyDisk(this.layout.memoryFile, join(dir, 'memory'));
    await copyDisk(this.layout.disk, join(dir, 'disk.ext4'));
    await copyDisk(this.layout.configTar, join(dir, 'config.tar'));
    const manifest: SnapshotManifest = {
      version: 1,
      accelerator: this.layout.accelerator,
      memoryMiB: this.layout.memoryMiB,
      cpus: this.layout.cpus,
      port: this.layout.hostPort,
      guestPort: this.layout.guestPort,
      name: this.layout.name,
      kernel: this.layout.kernel,
      initramfs: this.layout.initramfs,
      outbound: this.layout.outbound,
      ...(this.layout.platformPort ? { platformPort: this.layout.platformPort } : {}),
      ...(this.layout.links.length > 0 ? { links: this.layout.links.map(({ name, port }) => ({ name, port })) } : {}),
      ...(this.layout.agent ? { agent: true } : {}),
      ...(memoryInState ? { memoryInState: true } : {}),
      // Paused, QEMU has drained its writes: the disks stay as they are until the restore.
      ...(this.layout.volumes.length > 0 ? { volumes: this.layout.volumes.map((volume) => ({ ...volume, ...sizeAndTime(volume.disk) })) } : {}),
    };
    writeFileSync(join(dir, 'snapshot.json'), JSON.stringify(manifest, null, 2));
    this.keptBySnapshot = this.layout.volumes.length > 0;
  }

  async isFrozen(): Promise<boolean> {
    if (!this.qmp || this.exitInfo) return false;
    return (await this.runState()) !== 'running';
  }
}

/**
 * What the host writes on the signal port: `term` (the app is asked to end), `kill` (every
 * process ends), `reseed` (the time now and 32 random bytes). To the guest agent, a record of 64
 * bytes: 8 naming it (`ALTOTERM`, `ALTOKILL`, `ALTOSEED`), then for a reseed the time as a Linux
 * timespec (seconds, nanoseconds) and the bytes. To the supervisor shell, a line; its seed is
 * written as octal escapes for the shell's printf, NUL bytes left out (printf would stop there).
 */
export function signalMessage(agent: boolean, kind: 'term' | 'kill' | 'reseed'): Buffer {
  if (!agent) {
    if (kind !== 'reseed') return Buffer.from(`${kind}\n`);
    const escapes = [...randomBytes(RESEED_BYTES)].filter((byte) => byte !== 0).map((byte) => `\\${byte.toString(8).padStart(3, '0')}`).join('');
    return Buffer.from(`reseed ${Math.round(Date.now() / 1000)} ${escapes}\n`);
  }
  const record = Buffer.alloc(AGENT_RECORD_BYTES);
  record.write({ term: 'ALTOTERM', kill: 'ALTOKILL', reseed: 'ALTOSEED' }[kind], 0, 'latin1');
  if (kind === 'reseed') {
    const nowMs = Date.now();
    record.writeBigInt64LE(BigInt(Math.floor(nowMs / 1000)), 8);
    record.writeBigInt64LE(BigInt(Math.floor((nowMs % 1000) * 1e6)), 16);
    randomBytes(RESEED_BYTES).copy(record, 24);
  }
  return record;
}

/** What the guest agent's answer `alto:reseeded N` says failed: the bits of N. */
export function reseedFailures(failed: number): string {
  const what = [
    [1, 'its random seed was not written'],
    [2, 'its kernel did not reseed its random generator'],
    [4, 'its clock was not set'],
  ] as const;
  return what.filter(([bit]) => (failed & bit) !== 0).map(([, text]) => text).join(', ');
}

/** The guest agent's records: 8 bytes of kind, a timespec (16), 32 random bytes, 8 unused. */
const AGENT_RECORD_BYTES = 64;

/**
 * The guest agent, guest/agent: a static x86-64 Linux program of 688 bytes assembled from
 * guest/agent.s (which says what it does), put in each guest's supervisor disk and started by
 * the supervisor's prelude with the signal port as its input and the control port on descriptor
 * 3. It reads the records of `signalMessage`. Undefined on other hosts (the supervisor shell
 * reads lines).
 */
export function guestAgent(): Buffer | undefined {
  return process.arch === 'x64' ? guestFile('agent') : undefined;
}

/** A file's size and modification time, to tell later whether it was written. */
function sizeAndTime(path: string): { size: number; mtimeMs: number } {
  const { size, mtimeMs } = statSync(path);
  return { size, mtimeMs };
}
