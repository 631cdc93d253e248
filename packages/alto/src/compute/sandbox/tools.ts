/**
 * @module compute/sandbox/tools
 * The tools Alto brings into every sandbox at /.alto/bin, so the supervisor never depends on
 * what an image happens to contain: busybox-static (the shell, mount, grep...) and util-linux
 * `setpriv` with the shared libraries it links and the dynamic loader that starts it. Assembled
 * once from the host into the cache folder.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, openSync, readSync, closeSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { run } from './common.js';

const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

/** Whether an ELF file asks for a dynamic loader (a PT_INTERP program header). */
export function isDynamicElf(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(64);
    readSync(fd, header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${path} is not an ELF file`);
    const programHeaderOffset = Number(header.readBigUInt64LE(32));
    const entrySize = header.readUInt16LE(54);
    const count = header.readUInt16LE(56);
    const table = Buffer.alloc(entrySize * count);
    readSync(fd, table, 0, table.length, programHeaderOffset);
    for (let i = 0; i < count; i++) if (table.readUInt32LE(i * entrySize) === 3) return true;
    return false;
  } finally {
    closeSync(fd);
  }
}

/** The host's static busybox (Debian's busybox-static), or a sentence saying how to get it. */
export function findStaticBusybox(): string {
  for (const candidate of BUSYBOX_CANDIDATES) {
    if (existsSync(candidate) && !isDynamicElf(realpathSync(candidate))) return realpathSync(candidate);
  }
  throw new Error('no static busybox on this host: install it with `apt-get install busybox-static`');
}

/**
 * Builds (once) `<cacheDir>/tools`: busybox, setpriv, ld.so and lib/. Returns its path.
 * The supervisor calls `ld.so --library-path lib setpriv ...`, which works whatever libc the
 * image has (glibc, musl or none), since nothing is looked up in the image.
 */
export async function ensureSandboxTools(cacheDir: string): Promise<string> {
  const toolsDir = join(cacheDir, 'tools');
  if (existsSync(join(toolsDir, '.complete'))) return toolsDir;
  const busybox = findStaticBusybox();
  const setpriv = '/usr/bin/setpriv';
  if (!existsSync(setpriv)) throw new Error('no setpriv on this host: install util-linux');
  // Other Altos sharing the cache (and other instances in this process) may build at the same
  // time: each in a folder of its own, and a complete folder once in place is never removed, since
  // sandboxes and the tools layer copy from it.
  const building = `${toolsDir}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  mkdirSync(join(building, 'lib'), { recursive: true, mode: 0o755 });
  copyFileSync(busybox, join(building, 'busybox'));
  copyFileSync(setpriv, join(building, 'setpriv'));
  const { stdout } = await run('ldd', [setpriv]);
  for (const line of stdout.split('\n')) {
    const library = /=>\s+(\/\S+)/.exec(line);
    const loader = /^\s*(\/\S*ld-linux\S*)\s/.exec(line);
    if (library) copyFileSync(realpathSync(library[1]), join(building, 'lib', basename(library[1])));
    else if (loader) copyFileSync(realpathSync(loader[1]), join(building, 'ld.so'));
  }
  if (!existsSync(join(building, 'ld.so'))) throw new Error(`could not find the dynamic loader of ${setpriv} in ldd's output`);
  copyFileSync('/dev/null', join(building, '.complete'));
  try {
    renameSync(building, toolsDir);
  } catch (error) {
    rmSync(building, { recursive: true, force: true });
    if (existsSync(join(toolsDir, '.complete'))) return toolsDir; // another build won the race
    if (!existsSync(toolsDir)) throw error;
    // A folder left half-built by an older Alto that was killed: set it aside, then build again.
    const stale = `${toolsDir}.${process.pid}-${randomBytes(4).toString('hex')}.stale`;
    renameSync(toolsDir, stale);
    rmSync(stale, { recursive: true, force: true });
    return ensureSandboxTools(cacheDir);
  }
  return toolsDir;
}
