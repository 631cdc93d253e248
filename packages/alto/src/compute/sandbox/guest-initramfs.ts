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
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { buildCpio, type CpioEntry } from './cpio.js';
import { resolveModules, type GuestKernel } from './guest-kernel.js';

/** The guest's address on QEMU's user-mode network (its built-in DHCP range starts here). */
export const GUEST_ADDRESS = '10.0.2.15';
export const GUEST_GATEWAY = '10.0.2.2';

function initScript(modules: string[]): string {
  return `#!/tools/busybox sh
# Alto guest init (generated): modules, root disk, supervisor, network, then switch_root.
B=/tools/busybox
fail() { echo "alto-init: $*" > /dev/ttyS0; $B sync; $B reboot -f; }
$B mount -t devtmpfs devtmpfs /dev
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
for module in ${modules.map((path) => basename(path)).join(' ')}; do
  $B insmod /modules/$module || fail "cannot load $module"
done
# Devices appear as the drivers probe them; wait for the ones the boot needs.
wait_for() { i=0; while [ ! -e "$1" ]; do i=$((i+1)); [ $i -gt 1000 ] && fail "no $1"; $B usleep 2000; done; }
wait_for /dev/vda
wait_for /dev/vdb
# A port's name arrives from the host a moment after the port itself.
i=0
while [ ! -e /dev/alto.control ] || [ ! -e /dev/alto.stdout ] || [ ! -e /dev/alto.stderr ] || [ ! -e /dev/alto.signal ]; do
  for port in /sys/class/virtio-ports/*; do
    name=$($B cat "$port/name" 2>/dev/null)
    [ -n "$name" ] && $B ln -sf "/dev/\${port##*/}" "/dev/$name"
  done
  i=$((i+1)); [ $i -gt 1000 ] && fail "virtio-serial ports missing"; $B usleep 2000
done
$B mount -t ext4 -o noatime /dev/vda /newroot || fail "cannot mount the root disk"
for dir in .alto dev proc sys tmp; do [ -d /newroot/$dir ] || $B mkdir -p /newroot/$dir; done
$B mount -t tmpfs -o mode=0755,size=32m alto /newroot/.alto
$B cp -a /tools /newroot/.alto/bin
$B tar -xf /dev/vdb -C /newroot/.alto || fail "cannot read the supervisor disk"
$B ip link set lo up
$B ip link set eth0 up
$B ip addr add ${GUEST_ADDRESS}/24 dev eth0
$B ip route add default via ${GUEST_GATEWAY}
$B mount --move /dev /newroot/dev
$B mount --move /proc /newroot/proc
$B mount --move /sys /newroot/sys
exec $B switch_root /newroot /.alto/bin/busybox sh /.alto/supervisor.sh
`;
}

/** The accelerator probe's init: say so on the serial console, then end the VM. */
const PROBE_INIT = `#!/tools/busybox sh
/tools/busybox mount -t devtmpfs devtmpfs /dev
echo alto-probe-ok > /dev/ttyS0
/tools/busybox reboot -f
`;

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

/** The instance initramfs (cached per kernel and init script). */
export function ensureInitramfs(cacheDir: string, kernel: GuestKernel, toolsDir: string): string {
  const modules = resolveModules(kernel);
  const init = initScript(modules);
  const entries = baseEntries(toolsDir);
  entries.push({ kind: 'file', path: 'init', data: init, mode: 0o755 });
  for (const module of modules) entries.push({ kind: 'hostfile', path: `modules/${basename(module)}`, source: module, mode: 0o644 });
  return writeCached(cacheDir, 'guest', entries, `${kernel.version}\n${init}\n${modules.join('\n')}`);
}

/** The initramfs of the accelerator probe: no modules, no disks, just a line on the console. */
export function ensureProbeInitramfs(cacheDir: string, toolsDir: string): string {
  const entries = baseEntries(toolsDir).filter((entry) => !entry.path.startsWith('tools/lib') && !entry.path.includes('setpriv') && !entry.path.includes('ld.so'));
  entries.push({ kind: 'file', path: 'init', data: PROBE_INIT, mode: 0o755 });
  return writeCached(cacheDir, 'probe', entries, PROBE_INIT);
}
