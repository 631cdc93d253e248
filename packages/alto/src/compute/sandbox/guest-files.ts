/**
 * @module compute/sandbox/guest-files
 * The programs that run inside sandboxes, each a file of its own in guest/ beside this module:
 * the microVM's init (init.sh, probe-init.sh), the supervisor (supervisor.sh) with its microVM
 * prelude and epilogue, the process sandbox's stage 1 (process-stage1.sh) and the microVM guest
 * agent (agent, assembled from agent.s); also, run on the host, the process driver's guard that
 * thaws its frozen sandboxes on cgroup v1 once Alto has ended (freezer-guard.sh).
 * scripts.test.ts shell-checks the scripts and assembles the agent again. The build copies
 * guest/ into dist/ (scripts/copy-assets.mjs), so they are found beside the running module from
 * src/ (tests, through tsx) and dist/ alike.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type GuestFileName =
  | 'init.sh'
  | 'probe-init.sh'
  | 'supervisor.sh'
  | 'microvm-prelude.sh'
  | 'microvm-epilogue.sh'
  | 'process-stage1.sh'
  | 'freezer-guard.sh'
  | 'agent';

/** The folder of the guest files, beside this module. */
export const GUEST_FILES_DIR = fileURLToPath(new URL('./guest/', import.meta.url));

const read = new Map<GuestFileName, Buffer>();

/** A guest file's bytes, read once per process. */
export function guestFile(name: GuestFileName): Buffer {
  let bytes = read.get(name);
  if (!bytes) {
    const path = `${GUEST_FILES_DIR}${name}`;
    try {
      bytes = readFileSync(path);
    } catch (error) {
      throw new Error(`the sandbox file ${path} is missing from Alto's package (the build copies guest/ into dist/: npm run build -w packages/alto): ${(error as Error).message}`);
    }
    read.set(name, bytes);
  }
  return bytes;
}
