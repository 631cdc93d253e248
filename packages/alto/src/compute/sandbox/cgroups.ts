/**
 * @module compute/sandbox/cgroups
 * Control groups for the process driver: a memory limit, a CPU quota, a limit on processes and
 * threads (so one app cannot fork the host out of PIDs), the freezer (suspend) and a way to kill
 * everything inside. cgroup v2 where the host has it (memory.max, cpu.max, pids.max,
 * cgroup.freeze, cgroup.kill); the v1 hierarchies otherwise (memory.limit_in_bytes,
 * cpu.cfs_quota_us, pids.max, freezer.state), which is what hosts like Alto's CI machines still
 * mount. The pids controller is required: without it the driver refuses to run.
 * Each instance's group is created under the cgroup Alto itself runs in, so whatever limits the
 * host puts on Alto also bound its sandboxes.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup';
const GROUP_PARENT = 'alto-sandbox';

export type CgroupVersion = 'v2' | 'v1';

interface Layout {
  version: CgroupVersion;
  /** Directory of the cgroup Alto runs in, per controller ('unified' for v2). */
  own: Record<string, string>;
}

function ownPaths(): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    if (match[1] === '') paths.set('unified', match[2]);
    for (const controller of match[1].split(',')) if (controller) paths.set(controller, match[2]);
  }
  return paths;
}

let cachedLayout: Layout | undefined | null = null;

/** Which cgroup interface this host offers for memory, cpu and freezing; undefined when none. */
export function detectCgroups(): Layout | undefined {
  if (cachedLayout !== null) return cachedLayout;
  const own = ownPaths();
  const controllersFile = join(ROOT, 'cgroup.controllers');
  if (existsSync(controllersFile)) {
    const controllers = readFileSync(controllersFile, 'utf8').split(/\s+/);
    if (controllers.includes('memory') && controllers.includes('cpu') && controllers.includes('pids')) {
      cachedLayout = { version: 'v2', own: { unified: join(ROOT, own.get('unified') ?? '/') } };
      return cachedLayout;
    }
  }
  const v1: Record<string, string> = {};
  for (const controller of ['memory', 'cpu', 'freezer', 'pids']) {
    const mount = join(ROOT, controller);
    if (!existsSync(join(mount, 'cgroup.procs'))) {
      cachedLayout = undefined;
      return undefined;
    }
    v1[controller] = join(mount, own.get(controller) ?? '/');
  }
  cachedLayout = { version: 'v1', own: v1 };
  return cachedLayout;
}

export interface CgroupLimits {
  memoryBytes: number;
  /** CPU time as a number of cores (0.5 = half of one core). */
  cpus: number;
  /** Processes and threads at once, all of the sandbox's together. */
  pidsMax: number;
}

const CPU_PERIOD_US = 100_000;

export class SandboxCgroup {
  /** One directory per hierarchy (one for v2, three for v1). */
  readonly dirs: Record<string, string>;

  private constructor(
    readonly version: CgroupVersion,
    dirs: Record<string, string>,
  ) {
    this.dirs = dirs;
  }

  /**
   * The directories `create(id)` makes, one per hierarchy, known before it makes them: an
   * instance's record (reap.ts) names them first, so a run of Alto killed at any point leaves
   * nothing the next run cannot find.
   */
  static plannedDirs(id: string): string[] {
    const layout = detectCgroups();
    if (!layout) return [];
    return Object.values(layout.own).map((own) => join(own, GROUP_PARENT, id));
  }

  static create(id: string, limits: CgroupLimits): SandboxCgroup {
    const layout = detectCgroups();
    if (!layout) throw new Error('this host has no usable cgroups (need v2 with memory, cpu and pids, or the v1 memory, cpu, freezer and pids hierarchies)');
    const quota = Math.max(1_000, Math.round(limits.cpus * CPU_PERIOD_US));
    if (layout.version === 'v2') {
      const own = layout.own.unified;
      const parent = join(own, GROUP_PARENT);
      mkdirSync(parent, { recursive: true });
      try {
        writeFileSync(join(own, 'cgroup.subtree_control'), '+memory +cpu +pids');
        writeFileSync(join(parent, 'cgroup.subtree_control'), '+memory +cpu +pids');
      } catch (error) {
        throw new Error(`cannot delegate the memory, cpu and pids controllers below ${own} (${(error as Error).message}); run Alto in its own cgroup (e.g. a systemd unit with Delegate=yes)`);
      }
      const dir = join(parent, id);
      mkdirSync(dir);
      writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
      if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
      writeFileSync(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
      writeFileSync(join(dir, 'pids.max'), String(limits.pidsMax));
      return new SandboxCgroup('v2', { unified: dir });
    }
    const dirs: Record<string, string> = {};
    for (const [controller, own] of Object.entries(layout.own)) {
      dirs[controller] = join(own, GROUP_PARENT, id);
      mkdirSync(dirs[controller], { recursive: true });
    }
    writeFileSync(join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
    // Without swap accounting the limit could be dodged by swapping; where it exists, cap it too.
    const memsw = join(dirs.memory, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) writeFileSync(memsw, String(limits.memoryBytes));
    writeFileSync(join(dirs.cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
    writeFileSync(join(dirs.cpu, 'cpu.cfs_quota_us'), String(quota));
    writeFileSync(join(dirs.pids, 'pids.max'), String(limits.pidsMax));
    return new SandboxCgroup('v1', dirs);
  }

  /** The files a process writes its pid into to join (one per hierarchy). */
  get procsFiles(): string[] {
    return Object.values(this.dirs).map((dir) => join(dir, 'cgroup.procs'));
  }

  private get freezerDir(): string {
    return this.version === 'v2' ? this.dirs.unified : this.dirs.freezer;
  }

  pids(): number[] {
    const file = join(this.version === 'v2' ? this.dirs.unified : this.dirs.memory, 'cgroup.procs');
    try {
      return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /** Whether every task in the group is frozen (the kernel's own account, not ours). */
  isFrozen(): boolean {
    if (this.version === 'v2') return /^frozen 1$/m.test(readFileSync(join(this.freezerDir, 'cgroup.events'), 'utf8'));
    return readFileSync(join(this.freezerDir, 'freezer.state'), 'utf8').trim() === 'FROZEN';
  }

  /** Freezes the group and resolves once the kernel reports it frozen. */
  async freeze(timeoutMs = 5_000): Promise<void> {
    if (this.version === 'v2') writeFileSync(join(this.freezerDir, 'cgroup.freeze'), '1');
    else writeFileSync(join(this.freezerDir, 'freezer.state'), 'FROZEN');
    const deadline = Date.now() + timeoutMs;
    while (!this.isFrozen()) {
      if (Date.now() > deadline) {
        // Not left half frozen (a task waiting in the kernel, as on a frozen filesystem, freezes
        // only once it returns): it would freeze later while it is taken for running.
        this.thaw();
        throw new Error('the cgroup did not freeze in time');
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  thaw(): void {
    // Once the group is gone there is nothing left to thaw.
    if (!existsSync(this.freezerDir)) return;
    if (this.version === 'v2') writeFileSync(join(this.freezerDir, 'cgroup.freeze'), '0');
    else writeFileSync(join(this.freezerDir, 'freezer.state'), 'THAWED');
  }

  /** SIGKILL to every task in the group (frozen ones included: they die once thawed). */
  killAll(): void {
    if (this.version === 'v2' && existsSync(join(this.dirs.unified, 'cgroup.kill'))) {
      writeFileSync(join(this.dirs.unified, 'cgroup.kill'), '1');
    } else {
      for (const pid of this.pids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    this.thaw();
  }

  /** CPU periods in which the group hit its quota and was held back (the kernel's own count). */
  throttledPeriods(): number {
    const file = join(this.version === 'v2' ? this.dirs.unified : this.dirs.cpu, 'cpu.stat');
    const match = /^nr_throttled (\d+)$/m.exec(readFileSync(file, 'utf8'));
    return match ? Number(match[1]) : 0;
  }

  /** How many times the kernel's OOM killer has killed a task in this group. */
  oomKills(): number {
    const file =
      this.version === 'v2' ? join(this.dirs.unified, 'memory.events') : join(this.dirs.memory, 'memory.oom_control');
    const match = /^oom_kill (\d+)$/m.exec(readFileSync(file, 'utf8'));
    return match ? Number(match[1]) : 0;
  }

  /** Removes the group once it is empty; retries briefly while the last tasks are being reaped. */
  async destroy(): Promise<void> {
    for (const dir of Object.values(this.dirs)) {
      for (let attempt = 0; attempt < 200; attempt++) {
        try {
          if (existsSync(dir)) rmdirSync(dir);
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    }
  }
}
