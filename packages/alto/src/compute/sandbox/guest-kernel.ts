/**
 * @module compute/sandbox/guest-kernel
 * The microVM's guest kernel: Debian's `linux-image-cloud-amd64` fetched with
 * `apt-get download` and unpacked with `dpkg -x` into the cache folder (never installed into the
 * host's /boot). The uncompressed ELF `vmlinux` is cut out of the lz4 payload of `vmlinuz` so
 * QEMU boots it through PVH, which skips the bzImage decompressor (a large share of a boot under
 * tcg); the bzImage stays the fallback when that fails. Modules are found by name, with their
 * dependencies read from each module's own `.modinfo` (the package ships no modules.dep; it is
 * made by depmod at install time).
 */
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, readSync, closeSync, renameSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { run } from './common.js';

export const KERNEL_PACKAGE = 'linux-image-cloud-amd64';

export interface GuestKernel {
  version: string;
  /** The file QEMU boots: the extracted vmlinux (PVH) or the bzImage. */
  image: string;
  format: 'vmlinux-pvh' | 'bzImage';
  modulesDir: string;
}

/** Modules the guest needs, in load order once dependencies are added. */
export const GUEST_MODULES = ['virtio_mmio', 'virtio_blk', 'virtio_net', 'virtio_console'];

/** The versioned package the meta package points at, e.g. linux-image-6.1.0-56-cloud-amd64. */
async function resolveKernelPackage(): Promise<string> {
  const { stdout } = await run('apt-cache', ['depends', '--no-recommends', '--no-suggests', KERNEL_PACKAGE]).catch((error) => {
    throw new Error(`cannot look up ${KERNEL_PACKAGE} with apt-cache (run \`apt-get update\` first): ${error.message}`);
  });
  const match = /Depends:\s+(linux-image-[^\s]+)/.exec(stdout);
  if (!match) throw new Error(`apt-cache does not know ${KERNEL_PACKAGE}; run \`apt-get update\` first`);
  return match[1];
}

/** Finds the lz4 legacy frame inside a bzImage and writes the ELF vmlinux it holds. */
async function extractVmlinux(vmlinuz: string, target: string): Promise<boolean> {
  const data = readFileSync(vmlinuz);
  const offset = data.indexOf(Buffer.from([0x02, 0x21, 0x4c, 0x18]));
  if (offset < 0) return false;
  const temporary = `${target}.tmp`;
  await new Promise<void>((resolve) => {
    const lz4 = spawn('lz4', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const out = createWriteStream(temporary);
    lz4.stdout.pipe(out);
    lz4.on('error', () => resolve());
    // lz4 exits non-zero on the bytes that follow the frame; the ELF is whole all the same.
    out.on('close', () => resolve());
    lz4.stdin.on('error', () => undefined);
    lz4.stdin.end(data.subarray(offset));
  });
  if (!existsSync(temporary)) return false;
  const fd = openSync(temporary, 'r');
  const magic = Buffer.alloc(4);
  readSync(fd, magic, 0, 4, 0);
  closeSync(fd);
  if (magic.readUInt32BE(0) !== 0x7f454c46) {
    rmSync(temporary, { force: true });
    return false;
  }
  renameSync(temporary, target);
  return true;
}

/** Downloads and unpacks the kernel once into `<cacheDir>/kernel`; later calls read the cache. */
export async function ensureGuestKernel(cacheDir: string): Promise<GuestKernel> {
  const kernelDir = join(cacheDir, 'kernel');
  const manifest = join(kernelDir, 'kernel.json');
  if (existsSync(manifest)) return JSON.parse(readFileSync(manifest, 'utf8')) as GuestKernel;
  const packageName = await resolveKernelPackage();
  const building = `${kernelDir}.${process.pid}.tmp`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(building, { recursive: true });
  await run('apt-get', ['download', packageName], { cwd: building, timeoutMs: 600_000 });
  const deb = readdirSync(building).find((name) => name.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${packageName} produced no .deb`);
  await run('dpkg', ['-x', join(building, deb), join(building, 'root')]);
  rmSync(join(building, deb));
  const version = readdirSync(join(building, 'root', 'lib', 'modules'))[0];
  if (!version) throw new Error(`${packageName} holds no modules`);
  const vmlinuz = join(building, 'root', 'boot', `vmlinuz-${version}`);
  const vmlinux = join(building, 'vmlinux');
  const pvh = await extractVmlinux(vmlinuz, vmlinux);
  const finalImage = pvh ? join(kernelDir, 'vmlinux') : join(kernelDir, 'root', 'boot', `vmlinuz-${version}`);
  const kernel: GuestKernel = {
    version,
    image: finalImage,
    format: pvh ? 'vmlinux-pvh' : 'bzImage',
    modulesDir: join(kernelDir, 'root', 'lib', 'modules', version),
  };
  writeFileSync(join(building, 'kernel.json'), JSON.stringify(kernel, null, 2));
  rmSync(kernelDir, { recursive: true, force: true });
  renameSync(building, kernelDir);
  return kernel;
}

/** `name=` and `depends=` from a module's .modinfo strings. */
function moduleInfo(path: string): { name: string; depends: string[] } {
  const data = readFileSync(path);
  const field = (key: string): string | undefined => {
    const start = data.indexOf(Buffer.from(`\0${key}=`));
    if (start < 0) return undefined;
    const valueStart = start + key.length + 2;
    return data.subarray(valueStart, data.indexOf(0, valueStart)).toString();
  };
  const depends = field('depends');
  return { name: field('name') ?? '', depends: depends ? depends.split(',').filter(Boolean) : [] };
}

function indexModules(dir: string, index = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) indexModules(path, index);
    else if (entry.name.endsWith('.ko')) index.set(entry.name.slice(0, -3).replaceAll('-', '_'), path);
  }
  return index;
}

/** The module files to load, dependencies first. */
export function resolveModules(kernel: GuestKernel, wanted: string[] = GUEST_MODULES): string[] {
  const index = indexModules(join(kernel.modulesDir, 'kernel'));
  const ordered: string[] = [];
  const visit = (name: string, trail: string[]) => {
    const path = index.get(name);
    if (!path) throw new Error(`kernel ${kernel.version} has no module ${name} (needed by ${trail.join(' <- ') || 'the guest'})`);
    if (ordered.includes(path)) return;
    for (const dependency of moduleInfo(path).depends) visit(dependency, [name, ...trail]);
    ordered.push(path);
  };
  for (const name of wanted) visit(name, []);
  return ordered;
}
