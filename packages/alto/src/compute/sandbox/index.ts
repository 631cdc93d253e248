/**
 * @module compute/sandbox
 * Picks the sandbox driver for `alto up --sandbox auto|microvm|process` and reports the choice
 * for the log and `alto status`. `auto` prefers a microVM when KVM works (hardware isolation at
 * near-native speed); without KVM it prefers the process driver, since a microVM under software
 * emulation (tcg) boots in seconds and runs many times slower; it falls back to a tcg microVM
 * only where the process driver cannot run.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { MicrovmDriver } from './microvm.js';
import type { SandboxDescription, SandboxDriver } from './port.js';
import { ProcessDriver } from './process.js';
import { reapLeftovers, type ReapReport } from './reap.js';

export type { Instance, InstanceExit, LinkTarget, LogLine, RestoreOptions, SandboxDescription, SandboxDriver, SandboxLink, SandboxSpec, SandboxVolume, SecretFile } from './port.js';
export { SandboxStartError, isSandboxStartError } from './port.js';
export { MicrovmDriver } from './microvm.js';
export { ProcessDriver } from './process.js';
export type { ReapReport } from './reap.js';

export type SandboxChoice = 'auto' | 'microvm' | 'process';

export interface SandboxSetup {
  choice: SandboxChoice;
  /** Kernel, initramfs, tools, disk images: shared across runs (default ~/.cache/alto/sandbox). */
  cacheDir?: string;
  /** Per-instance files, under the data folder. */
  stateDir: string;
  /** microvm only: skip the KVM probe. */
  accelerator?: 'auto' | 'kvm' | 'tcg';
}

export interface ChosenSandbox {
  driver: SandboxDriver;
  description: SandboxDescription;
}

/** Where the kernel and images are cached unless told otherwise (`ALTO_SANDBOX_CACHE` overrides). */
export function defaultSandboxCacheDir(): string {
  if (process.env.ALTO_SANDBOX_CACHE) return process.env.ALTO_SANDBOX_CACHE;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'alto', 'sandbox');
}

/** ALTO_MICROVM_TCG_EXCHANGES: HTTP exchanges a microVM under tcg takes at once (0: no limit; unset: the default). */
export function tcgExchangeLimit(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`ALTO_MICROVM_TCG_EXCHANGES must be a whole number (0: no limit), not "${text}"`);
  return value;
}

/** A whole-number setting of the process driver from the environment (unset: the driver's default). */
export function processSetting(name: string, text: string | undefined, minimum: number): number | undefined {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < minimum) throw new Error(`${name} must be a whole number of at least ${minimum}, not "${text}"`);
  return value;
}

/** Each driver's state folder under `SandboxSetup.stateDir`. */
const DRIVER_FOLDERS = { microvm: 'microvm', process: 'process' } as const;

/**
 * Gives back what earlier runs of Alto on this state folder left of their sandboxes when they
 * were killed (reap.ts), for both drivers; instances of a live Alto are left alone. Call it as
 * Alto starts, before its first sandbox.
 */
export async function reapSandboxLeftovers(stateDir: string): Promise<ReapReport> {
  const total: ReapReport = { reaped: [], live: [], removed: [], failures: [] };
  for (const folder of Object.values(DRIVER_FOLDERS)) {
    const report = await reapLeftovers(join(stateDir, folder));
    for (const key of Object.keys(total) as (keyof ReapReport)[]) total[key].push(...report[key]);
  }
  return total;
}

/** Probes and returns the driver to use, with the reason it was chosen in its description. */
export async function chooseSandboxDriver(setup: SandboxSetup): Promise<ChosenSandbox> {
  const cacheDir = setup.cacheDir ?? defaultSandboxCacheDir();
  const microvm = () =>
    new MicrovmDriver({ cacheDir, stateDir: join(setup.stateDir, DRIVER_FOLDERS.microvm), accelerator: setup.accelerator, tcgExchangeLimit: tcgExchangeLimit(process.env.ALTO_MICROVM_TCG_EXCHANGES) });
  const processDriver = () =>
    new ProcessDriver({
      cacheDir,
      stateDir: join(setup.stateDir, DRIVER_FOLDERS.process),
      pidsMax: processSetting('ALTO_SANDBOX_PIDS_MAX', process.env.ALTO_SANDBOX_PIDS_MAX, 16),
      rootDiskMiB: processSetting('ALTO_SANDBOX_ROOT_DISK_MIB', process.env.ALTO_SANDBOX_ROOT_DISK_MIB, 16),
    });
  if (setup.choice === 'microvm' || setup.choice === 'process') {
    const driver = setup.choice === 'microvm' ? microvm() : processDriver();
    const description = await driver.probe();
    return { driver, description: { ...description, reason: `chosen with --sandbox ${setup.choice}; ${description.reason}` } };
  }
  const vm = microvm();
  let vmDescription: SandboxDescription | undefined;
  let vmFailure = '';
  try {
    vmDescription = await vm.probe();
    if (vmDescription.accelerator === 'kvm')
      return { driver: vm, description: { ...vmDescription, reason: `auto: KVM works, so microVMs; ${vmDescription.reason}` } };
  } catch (error) {
    vmFailure = (error as Error).message;
  }
  const processSandbox = processDriver();
  try {
    const description = await processSandbox.probe();
    const why = vmDescription ? `microVMs would run without KVM (${vmDescription.reason})` : `microVMs cannot run (${vmFailure})`;
    return { driver: processSandbox, description: { ...description, reason: `auto: ${why}, so the process sandbox; ${description.reason}` } };
  } catch (error) {
    if (vmDescription)
      return {
        driver: vm,
        description: { ...vmDescription, reason: `auto: the process sandbox cannot run (${(error as Error).message}), so microVMs; ${vmDescription.reason}` },
      };
    throw new Error(`no sandbox driver can run on this host: microvm: ${vmFailure}; process: ${(error as Error).message}`);
  }
}

/** What `alto status` shows about compute: driver, accelerator, why, and what it can do. */
export interface SandboxStatus {
  driver: string;
  accelerator: string;
  reason: string;
  suspend: boolean;
  snapshot: boolean;
  outbound: boolean;
}

/** The status hook: the chosen driver's description, flattened for `alto status` and its JSON. */
export function sandboxStatus(chosen: ChosenSandbox): SandboxStatus {
  const { description } = chosen;
  return {
    driver: description.driver,
    accelerator: description.accelerator,
    reason: description.reason,
    ...description.capabilities,
  };
}
