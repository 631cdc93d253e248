/**
 * @module compute/build/run-step
 * Runs one RUN instruction in a process sandbox of the building project, exactly as an app
 * instance runs (compute/sandbox/process.ts): the root folder of the layers so far as its
 * read-only image, the project's own host id range, cgroup limits, no network unless the build
 * asked for it (then the outbound guard of apps applies), and the step's env, user and working
 * directory. The step's output streams to the build log as it is written.
 *
 * What the step changed is overlayfs's upper folder on the sandbox's writable ext4 disk, which
 * the driver deletes when the instance ends: the disk is hard-linked aside while the step runs,
 * and read once no loop device holds it any more (layer.ts).
 *
 * Each build has a sandbox cache folder of its own (the tools and the launcher linked from the
 * shared one), so the id-shifted copies the driver makes of each step's root go with the build.
 */
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import { ProcessDriver, isSandboxStartError, processSetting, type Instance } from '../sandbox/index.js';
import { ensureLauncher } from '../sandbox/launcher.js';
import { ensureSandboxTools } from '../sandbox/tools.js';

export interface RunStepSpec {
  /** The root folder of the layers so far (read only to the sandbox). */
  root: string;
  argv: string[];
  env: Record<string, string>;
  user: string;
  workdir: string;
  network: boolean;
  /** The building project: its sandboxes share its host id range. */
  tenant: string;
  name: string;
  memoryMiB: number;
  timeoutMs: number;
  /** Where the step's writable disk is kept for reading its changes. */
  keepDiskAt: string;
  onOutput(stream: 'stdout' | 'stderr', line: string): void;
}

export interface RunStepResult {
  code: number | null;
  reason: string;
  /** The last lines of output, for the error of a failed step. */
  tail: string[];
}

const TAIL_LINES = 30;

/** A process driver of one build: its own cache folder, the id ranges of every process sandbox of this node. */
export function buildSandboxDriver(sharedCacheDir: string, buildCacheDir: string, stateDir: string): Promise<ProcessDriver> {
  return (async () => {
    const tools = await ensureSandboxTools(sharedCacheDir);
    const launcher = await ensureLauncher(sharedCacheDir);
    mkdirSync(buildCacheDir, { recursive: true });
    if (!existsSync(join(buildCacheDir, 'tools'))) symlinkSync(tools, join(buildCacheDir, 'tools'));
    // The launcher's folder is <cache>/launcher/<hash>/.
    const launcherFolder = join(launcher, '..', '..');
    if (!existsSync(join(buildCacheDir, 'launcher'))) symlinkSync(launcherFolder, join(buildCacheDir, 'launcher'));
    // The same limits as the apps' process sandboxes (ALTO_SANDBOX_PIDS_MAX, ALTO_SANDBOX_ROOT_DISK_MIB).
    const driver = new ProcessDriver({
      cacheDir: buildCacheDir,
      stateDir,
      pidsMax: processSetting('ALTO_SANDBOX_PIDS_MAX', process.env.ALTO_SANDBOX_PIDS_MAX, 16),
      rootDiskMiB: processSetting('ALTO_SANDBOX_ROOT_DISK_MIB', process.env.ALTO_SANDBOX_ROOT_DISK_MIB, 16),
    });
    try {
      await driver.probe();
    } catch (error) {
      throw errors.unavailable(`Dockerfile builds need the process sandbox, which cannot run here: ${(error as Error).message}`);
    }
    return driver;
  })();
}

/** Runs the step to its end; the caller reads its changes from `keepDiskAt` afterwards. */
export async function runStep(driver: ProcessDriver, spec: RunStepSpec, stateDir: string): Promise<RunStepResult> {
  const tail: string[] = [];
  const output = (stream: 'stdout' | 'stderr', line: string) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    spec.onOutput(stream, line);
  };
  let instance: Instance;
  try {
    instance = await driver.start({
      rootfs: spec.root,
      entrypoint: [],
      cmd: spec.argv,
      env: spec.env,
      workdir: spec.workdir,
      user: spec.user,
      port: 0,
      memoryMiB: spec.memoryMiB,
      cpus: 1,
      allowOutbound: spec.network,
      tenant: spec.tenant,
      name: spec.name,
    });
  } catch (error) {
    if (isSandboxStartError(error)) {
      for (const line of error.logTail) output(line.stream, line.line);
      return { code: error.exit?.code ?? null, reason: error.message, tail };
    }
    throw error;
  }
  const disk = join(stateDir, instance.id, 'root.ext4');
  try {
    // Kept before the driver deletes it when the instance ends.
    linkSync(disk, spec.keepDiskAt);
  } catch (error) {
    await instance.stop(1_000);
    throw new Error(`the writable layer of build step ${spec.name} could not be kept: ${(error as Error).message}`);
  }
  const timer = setTimeout(() => {
    output('stderr', `alto: the step ran longer than ${Math.round(spec.timeoutMs / 1000)} s and was stopped`);
    void instance.stop(1_000);
  }, spec.timeoutMs);
  try {
    for await (const line of instance.logs({ follow: true })) output(line.stream, line.line);
    const exit = await instance.exited;
    await waitUntilReleased(disk);
    return { code: exit.code, reason: exit.reason, tail };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits until no loop device is backed by `file` (or by it deleted): the sandbox's mount of its
 * disk is gone with its mount namespace, and everything it wrote is on the disk.
 */
async function waitUntilReleased(file: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const held = () => {
    let names: string[];
    try {
      names = readdirSync('/sys/block').filter((name) => name.startsWith('loop'));
    } catch {
      return false;
    }
    return names.some((name) => {
      try {
        const backing = readFileSync(join('/sys/block', name, 'loop', 'backing_file'), 'utf8').trim();
        return backing === file || backing === `${file} (deleted)`;
      } catch {
        return false;
      }
    });
  };
  while (held()) {
    if (Date.now() > deadline) throw new Error(`a loop device still holds the writable layer ${file} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
