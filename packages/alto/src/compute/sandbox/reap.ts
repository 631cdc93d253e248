/**
 * @module compute/sandbox/reap
 * What a run of Alto that ended without cleaning up (SIGKILL, a crash, the OOM killer) leaves of
 * its sandboxes, found and given back by the next run on the same data folder.
 *
 * The sandboxes' processes do not outlive Alto: the launcher gives the first process of each
 * (the process driver's unshare, which takes its PID namespace with it, and QEMU) a parent-death
 * SIGKILL (launcher/alto-enter.c). What they held on the host stays: control groups, the network
 * namespace with its veth pair, nftables elements, the subnet's lease, folders with disks,
 * sockets and the guest's memory file. So before a driver takes anything for an instance it
 * writes the instance's record, `<state folder>/<id>.instance.json`, naming all of it and the
 * Alto process that owns it (pid, start time, boot), and removes the record last, once it has
 * given everything back.
 *
 * `reapLeftovers` reads the records of one state folder (so only what this data folder's runs
 * made) and gives back what a record names only when its owner is provably gone: no process
 * with that pid, or one that started at another time or in another boot (the pid was reused).
 * A record of a live Alto, this one or another sharing the folder, is left alone; so is anything
 * no record of this folder names: other Altos on the machine (the tests run many) name their
 * instances from their own random ids, in their own folders.
 */
import { existsSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './common.js';
import { reapSandboxNetwork, sandboxNetworkNames } from './network.js';

/** A process told apart from any later one that is given the same pid. */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks from boot to the process's start. */
  startTime: string;
  /** /proc/sys/kernel/random/boot_id: a pid and start time from another boot name nothing now. */
  bootId: string;
}

export interface InstanceRecord {
  version: 1;
  driver: 'process' | 'microvm';
  id: string;
  /** The Alto process running the instance. */
  owner: ProcessIdentity;
  /** Its folders (files, disks, sockets, the guest's memory), removed whole, after unmounting anything below them. */
  dirs: string[];
  /** Control groups holding every process of the instance (the process driver), one per hierarchy. */
  cgroups: string[];
  /** Its network namespace and the host's end of its veth (network.ts), when it has them. */
  network?: { namespace: string; hostInterface: string };
  /** Processes of its own outside any group of its own (QEMU), killed if still the same process. */
  processes: ProcessIdentity[];
}

const RECORD_SUFFIX = '.instance.json';
/** The ids the drivers give instances (`randomBytes(6)` in hex): a folder named so is an instance's. */
const INSTANCE_ID = /^[0-9a-f]{12}$/;
const EMPTY_CGROUP_WAIT_MS = 5_000;

function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** The identity of a running process, or undefined when there is none with that pid. */
export function processIdentity(pid: number): ProcessIdentity | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, startTime: fields[19], bootId: bootId() };
  } catch {
    return undefined;
  }
}

/** Whether the process is still running: same pid, same start, same boot. */
export function isAlive(identity: ProcessIdentity): boolean {
  const now = processIdentity(identity.pid);
  return now !== undefined && now.startTime === identity.startTime && now.bootId === identity.bootId;
}

/** An instance's record on disk, written before the instance takes anything and removed once it gave everything back. */
export class InstanceRecordFile {
  private constructor(
    readonly path: string,
    private readonly record: InstanceRecord,
  ) {}

  /** Writes the record of a new instance of this process. */
  static create(stateDir: string, fields: Omit<InstanceRecord, 'version' | 'owner' | 'processes'>): InstanceRecordFile {
    const owner = processIdentity(process.pid)!;
    const file = new InstanceRecordFile(join(stateDir, `${fields.id}${RECORD_SUFFIX}`), { version: 1, owner, processes: [], ...fields });
    file.write();
    return file;
  }

  /** Adds a process started for the instance (before it can hold anything worth reaping). */
  addProcess(pid: number | undefined): void {
    const identity = pid === undefined ? undefined : processIdentity(pid);
    if (!identity) return;
    this.record.processes.push(identity);
    this.write();
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }

  private write(): void {
    // Whole or not at all: a record half written when Alto was killed would name nothing.
    const temporary = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(this.record), { mode: 0o600 });
    renameSync(temporary, this.path);
  }
}

export interface ReapReport {
  /** Instances of a run that is gone, given back. */
  reaped: string[];
  /** Instances left alone: their Alto runs (this one, or another on the same folder). */
  live: string[];
  /** What was found and removed, for the log. */
  removed: string[];
  /** What could not be given back (the record stays, for the next run). */
  failures: string[];
}

/** Gives back what dead runs of Alto left in `stateDir` (one driver's state folder); see the module comment. */
export async function reapLeftovers(stateDir: string): Promise<ReapReport> {
  const report: ReapReport = { reaped: [], live: [], removed: [], failures: [] };
  let names: string[];
  try {
    names = readdirSync(stateDir);
  } catch {
    return report; // never used
  }
  const recorded = new Set<string>();
  for (const name of names) {
    if (name.endsWith('.tmp') && name.includes(RECORD_SUFFIX)) {
      // A record whose writer was killed before renaming it into place; the writer's pid is in its name.
      const pid = Number(name.split('.').at(-2));
      if (!processIdentity(pid)) rmSync(join(stateDir, name), { force: true });
      continue;
    }
    if (!name.endsWith(RECORD_SUFFIX)) continue;
    const path = join(stateDir, name);
    let record: InstanceRecord;
    try {
      record = JSON.parse(readFileSync(path, 'utf8')) as InstanceRecord;
    } catch {
      continue; // removed meanwhile by its live owner
    }
    recorded.add(record.id);
    if (isAlive(record.owner)) {
      report.live.push(record.id);
      continue;
    }
    try {
      report.removed.push(...(await reapInstance(record)));
      rmSync(path, { force: true });
      report.reaped.push(record.id);
    } catch (error) {
      report.failures.push(`instance ${record.id}: ${(error as Error).message}`);
    }
  }
  // Folders from before instances had records: given back only when nothing on the host holds them.
  for (const name of names) {
    // A record written since the folder was read is a new instance's: it comes before the folder.
    if (!INSTANCE_ID.test(name) || recorded.has(name) || existsSync(join(stateDir, `${name}${RECORD_SUFFIX}`))) continue;
    try {
      const removed = await reapUnrecorded(stateDir, name);
      if (removed.length) report.reaped.push(name);
      report.removed.push(...removed);
    } catch (error) {
      report.failures.push(`folder ${name}: ${(error as Error).message}`);
    }
  }
  return report;
}

/** Everything one record of a gone Alto names: processes first, then groups, network, mounts and folders. */
async function reapInstance(record: InstanceRecord): Promise<string[]> {
  const removed: string[] = [];
  for (const identity of record.processes) {
    if (!isAlive(identity)) continue;
    process.kill(identity.pid, 'SIGKILL');
    removed.push(`process ${identity.pid}`);
  }
  removed.push(...(await removeCgroups(record.cgroups)));
  if (record.network) removed.push(...(await reapSandboxNetwork(record.network)));
  for (const dir of record.dirs) removed.push(...(await removeFolder(dir)));
  return removed;
}

/** Kills what is left in the groups (every process in them is the instance's) and removes them once empty. */
async function removeCgroups(dirs: string[]): Promise<string[]> {
  const present = dirs.filter((dir) => existsSync(dir));
  for (const dir of present) killCgroup(dir);
  const deadline = Date.now() + EMPTY_CGROUP_WAIT_MS;
  for (const dir of present) {
    for (;;) {
      try {
        rmdirSync(dir);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') break;
        if (Date.now() > deadline) throw new Error(`control group ${dir} still holds processes ${cgroupPids(dir).join(' ')}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  }
  return present.map((dir) => `control group ${dir}`);
}

function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGKILL to every process of the group, then thawed, since frozen ones die only once thawed. */
function killCgroup(dir: string): void {
  if (existsSync(join(dir, 'cgroup.kill'))) writeFileSync(join(dir, 'cgroup.kill'), '1');
  else
    for (const pid of cgroupPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Ended meanwhile.
      }
    }
  if (existsSync(join(dir, 'cgroup.freeze'))) writeFileSync(join(dir, 'cgroup.freeze'), '0');
  if (existsSync(join(dir, 'freezer.state'))) writeFileSync(join(dir, 'freezer.state'), 'THAWED');
}

/** Mount points at or below `dir` in this process's mount namespace, deepest first. */
function mountsBelow(dir: string): string[] {
  const unescape = (text: string) => text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => unescape(line.split(' ')[4] ?? ''))
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts what is mounted below a folder (so nothing is deleted through a mount), then removes it. */
async function removeFolder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const point of mountsBelow(dir)) {
    await run('umount', ['-l', point]);
    removed.push(`mount ${point}`);
  }
  rmSync(dir, { recursive: true, force: true });
  removed.push(`folder ${dir}`);
  return removed;
}

/** Files below `dir` that a loop device is backed by, or that a process has open. */
function holdersOf(dir: string): string[] {
  const inside = (path: string) => path === dir || path.startsWith(`${dir}/`);
  const holders: string[] = [];
  let loops: string[] = [];
  try {
    loops = readdirSync('/sys/block').filter((name) => name.startsWith('loop'));
  } catch {
    // No block devices to look at.
  }
  for (const loop of loops) {
    try {
      const backing = readFileSync(join('/sys/block', loop, 'loop', 'backing_file'), 'utf8').trim();
      if (inside(backing)) holders.push(`/dev/${loop}`);
    } catch {
      // Not attached.
    }
  }
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inside(readlinkSync(`/proc/${pid}/fd/${fd}`))) {
          holders.push(`process ${pid}`);
          break;
        }
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return holders;
}

/**
 * An instance folder without a record (left by an Alto from before records): removed, with the
 * network its id names, only when no loop device nor process holds anything in it and no process
 * is in that network namespace; otherwise something still uses it, and it stays.
 */
async function reapUnrecorded(stateDir: string, id: string): Promise<string[]> {
  const dir = join(stateDir, id);
  if (holdersOf(dir).length > 0 || mountsBelow(dir).length > 0) return [];
  const names = sandboxNetworkNames(id);
  const removed: string[] = [];
  if (existsSync(join('/run/netns', names.namespace))) {
    const { stdout } = await run('ip', ['netns', 'pids', names.namespace]);
    if (stdout.trim()) return [];
    removed.push(...(await reapSandboxNetwork(names)));
  }
  removed.push(...(await removeFolder(dir)));
  return removed;
}
