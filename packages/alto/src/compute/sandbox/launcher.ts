/**
 * @module compute/sandbox/launcher
 * Builds `alto-enter` (launcher/alto-enter.c), the launcher the drivers put between Alto and what
 * they start: it closes every descriptor Alto holds or inherited, leaves the operator's terminal
 * (a session of its own) and, for apps, applies no-new-privileges and the default seccomp filter
 * before exec, and has what it starts killed when Alto ends (a parent-death signal), so sandboxes
 * do not outlive an Alto killed with SIGKILL. Node can do none of this in a child before exec, so it is a few lines of C,
 * compiled once with the host's `cc` into the sandbox cache (static, so it runs inside any
 * image), in a folder named by the source's hash so a changed source builds anew.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findCommand, run } from './common.js';

export const LAUNCHER_NAME = 'alto-enter';

/** The C source: beside this module, or under src/ when running the compiled dist/ build. */
function launcherSource(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'launcher', `${LAUNCHER_NAME}.c`), join(here, '..', '..', '..', 'src', 'compute', 'sandbox', 'launcher', `${LAUNCHER_NAME}.c`)];
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error(`the sandbox launcher's source ${LAUNCHER_NAME}.c is missing from the package (looked in ${candidates.join(', ')})`);
  return found;
}

const building = new Map<string, Promise<string>>();

/** The path of the compiled launcher in `<cacheDir>/launcher/<hash>/`, compiling it on first use. */
export function ensureLauncher(cacheDir: string): Promise<string> {
  const source = launcherSource();
  const hash = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
  const dir = join(cacheDir, 'launcher', hash);
  const binary = join(dir, LAUNCHER_NAME);
  if (existsSync(binary)) return Promise.resolve(binary);
  let build = building.get(binary);
  if (!build) {
    build = compileLauncher(source, dir, binary).finally(() => building.delete(binary));
    building.set(binary, build);
  }
  return build;
}

async function compileLauncher(source: string, dir: string, binary: string): Promise<string> {
  const cc = findCommand('cc') ?? findCommand('gcc');
  if (!cc)
    throw new Error(`the sandbox launcher (${LAUNCHER_NAME}) is compiled on first use, and this host has no C compiler: install one (apt-get install gcc)`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  // Another Alto sharing the cache may compile at the same time: each into its own file, the rename wins.
  const temporary = `${binary}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    await run(cc, ['-static', '-O2', '-Wall', '-o', temporary, source], { timeoutMs: 120_000 });
    chmodSync(temporary, 0o755);
    renameSync(temporary, binary);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw new Error(`cannot compile the sandbox launcher ${source} with ${cc} (a static build needs the C library's static files, libc6-dev): ${(error as Error).message}`);
  }
  return binary;
}
