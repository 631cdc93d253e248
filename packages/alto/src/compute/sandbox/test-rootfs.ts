/**
 * @module compute/sandbox/test-rootfs
 * A small root filesystem for the sandbox tests and benchmark, built from the host's
 * busybox-static (Debian's package): /bin with every applet linked, a page for `httpd` under
 * /www, and an `app` user (1000:1000) in /etc/passwd. It stands in for an unpacked OCI image.
 */
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './common.js';
import { findStaticBusybox } from './tools.js';

export const TEST_PAGE = 'hello from the sandbox\n';

export async function buildBusyboxRootfs(dir: string): Promise<string> {
  const busybox = findStaticBusybox();
  for (const sub of ['bin', 'etc', 'www', 'home/app', 'tmp', 'dev', 'proc', 'sys', 'srv/data']) mkdirSync(join(dir, sub), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  copyFileSync(busybox, join(dir, 'bin', 'busybox'));
  const { stdout } = await run(busybox, ['--list']);
  for (const applet of stdout.split('\n').filter(Boolean)) {
    if (applet !== 'busybox') symlinkSync('busybox', join(dir, 'bin', applet));
  }
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\napp:x:1000:\n');
  writeFileSync(join(dir, 'www', 'index.html'), TEST_PAGE);
  writeFileSync(join(dir, 'srv', 'data', 'note.txt'), 'workdir file\n');
  chownSync(join(dir, 'home', 'app'), 1000, 1000);
  return dir;
}

/**
 * The test root filesystem at a fixed place in the sandbox cache, built once: drivers cache a
 * disk image (microvm) and an id-shifted copy (process) per root filesystem, so a fixed tree is
 * reused from run to run instead of adding a new cached copy each time.
 */
export async function ensureBusyboxRootfs(cacheDir: string): Promise<string> {
  const dir = join(cacheDir, 'test-rootfs');
  if (existsSync(join(dir, 'www', 'index.html'))) return dir;
  const building = `${dir}.${process.pid}.tmp`;
  rmSync(building, { recursive: true, force: true });
  await buildBusyboxRootfs(building);
  try {
    renameSync(building, dir);
  } catch {
    // Another process finished first; its tree is the same.
    rmSync(building, { recursive: true, force: true });
  }
  return dir;
}
