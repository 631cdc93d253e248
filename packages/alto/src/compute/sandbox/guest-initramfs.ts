/**
 * @module compute/sandbox/guest-initramfs
 * The initramfs every microVM boots with, assembled by Alto (cpio newc written in TypeScript,
 * see cpio.ts): busybox-static and setpriv (tools.ts), the virtio modules from the kernel
 * package, and Alto's `/init`. The init loads the modules, mounts the image's root filesystem
 * from the first virtio disk, unpacks the instance's supervisor from the second (a tar: it is
 * per instance, too long for the kernel command line, and the initramfs stays shared), brings
 * up the network, and switch_roots into the image with the supervisor as PID 1.
 *
 * The virtio-serial ports are named by the host (`alto.stdout`, `alto.stderr`, `alto.control`,
 * `alto.signal`); the init links /dev/<name> to each so the supervisor needs no probing.
 *
 * The init is guest/init.sh (the accelerator probe's guest/probe-init.sh), the same for every
 * kernel; the modules it loads, in order, are listed in /modules/order.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { buildCpio, type CpioEntry } from './cpio.js';
import { guestFile } from './guest-files.js';
import { resolveModules, type GuestKernel } from './guest-kernel.js';

function baseEntries(toolsDir: string): CpioEntry[] {
  const entries: CpioEntry[] = [];
  for (const dir of ['dev', 'proc', 'sys', 'newroot', 'modules', 'tools', 'tools/lib']) entries.push({ kind: 'dir', path: dir });
  entries.push({ kind: 'chardev', path: 'dev/console', major: 5, minor: 1 });
  for (const name of readdirSync(toolsDir)) {
    if (name === 'lib' || name.startsWith('.')) continue;
    entries.push({ kind: 'hostfile', path: `tools/${name}`, source: join(toolsDir, name) });
  }
  for (const name of readdirSync(join(toolsDir, 'lib'))) {
    entries.push({ kind: 'hostfile', path: `tools/lib/${name}`, source: join(toolsDir, 'lib', name), mode: 0o644 });
  }
  return entries;
}

function writeCached(cacheDir: string, prefix: string, entries: CpioEntry[], key: string): string {
  const dir = join(cacheDir, 'initramfs');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${prefix}-${createHash('sha256').update(key).digest('hex').slice(0, 16)}.cpio`);
  if (existsSync(path)) return path;
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, buildCpio(entries));
  renameSync(temporary, path);
  return path;
}

/** The instance initramfs (cached per kernel, init script and launcher), with alto-enter among the tools when it was built. */
export function ensureInitramfs(cacheDir: string, kernel: GuestKernel, toolsDir: string, launcher?: string): string {
  const modules = resolveModules(kernel);
  const init = guestFile('init.sh');
  const entries = baseEntries(toolsDir);
  if (launcher) entries.push({ kind: 'hostfile', path: 'tools/alto-enter', source: launcher, mode: 0o755 });
  entries.push({ kind: 'file', path: 'init', data: init, mode: 0o755 });
  for (const module of modules) entries.push({ kind: 'hostfile', path: `modules/${basename(module)}`, source: module, mode: 0o644 });
  // Dependencies first (resolveModules' order), one name a line.
  entries.push({ kind: 'file', path: 'modules/order', data: modules.map((module) => `${basename(module)}\n`).join(''), mode: 0o644 });
  return writeCached(cacheDir, 'guest', entries, `${kernel.version}\n${init}\n${modules.join('\n')}\n${launcher ?? ''}`);
}

/** The initramfs of the accelerator probe: no modules, no disks, just a line on the console. */
export function ensureProbeInitramfs(cacheDir: string, toolsDir: string): string {
  const entries = baseEntries(toolsDir).filter((entry) => !entry.path.startsWith('tools/lib') && !entry.path.includes('setpriv') && !entry.path.includes('ld.so'));
  const init = guestFile('probe-init.sh');
  entries.push({ kind: 'file', path: 'init', data: init, mode: 0o755 });
  return writeCached(cacheDir, 'probe', entries, init.toString());
}
