/**
 * The process sandbox, attacked from inside an app (issue items 3 and 12, and the sandbox's Low
 * items): the operator's terminal and a descriptor Alto inherited (the driver run in a process
 * of its own, under a pseudo-terminal, with a directory open without close-on-exec), a fork bomb
 * against the pids limit, writes past a volume's and the root filesystem's size, new user and
 * mount namespaces and mounts (seccomp), host paths in the mount table, the host's ip_forward,
 * and one tenant's inotify instances starving another's (host id ranges per tenant).
 *
 * Needs root, busybox-static, e2fsprogs, gcc and util-linux's `script` (scripts/test-services.sh).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultSandboxCacheDir } from '../../src/compute/sandbox/index.js';
import type { Instance, SandboxSpec } from '../../src/compute/sandbox/port.js';
import { ProcessDriver } from '../../src/compute/sandbox/process.js';
import { run } from '../../src/compute/sandbox/common.js';
import { buildBusyboxRootfs, ensureBusyboxRootfs } from '../../src/compute/sandbox/test-rootfs.js';
import { ALTO_ROOT, waitFor } from '../harness.js';

const workspace = mkdtempSync(join(tmpdir(), 'alto-sandbox-isolation-'));
const cacheDir = defaultSandboxCacheDir();
const ROOT_DISK_MIB = 64;
/** network.ts's leases: one per sandbox network on the host, `<pid> <namespace>[ outbound]`. */
const LEASE_DIR = '/run/alto-sandbox/leases';
/** Far from the default range 0 (100000) other test files use, so their sandboxes never share our accounting. */
const ID_BASE = 3_000_000_000;
let rootfs: string;
/** The busybox root with `inotify-hold` (inotify-hold.c) in /bin. */
let inotifyRootfs: string;
let driver: ProcessDriver;

before(async () => {
  rootfs = await ensureBusyboxRootfs(cacheDir);
  inotifyRootfs = await buildBusyboxRootfs(join(workspace, 'rootfs-inotify'));
  await run('cc', ['-static', '-O2', '-o', join(inotifyRootfs, 'bin', 'inotify-hold'), join(ALTO_ROOT, 'test/security/inotify-hold.c')]);
  driver = new ProcessDriver({ cacheDir, stateDir: join(workspace, 'state'), rootDiskMiB: ROOT_DISK_MIB, idBase: ID_BASE });
  await driver.probe();
});

after(async () => {
  await driver?.close();
  rmSync(workspace, { recursive: true, force: true });
});

function batch(script: string, extra: Partial<SandboxSpec> = {}): SandboxSpec {
  return { rootfs, entrypoint: [], cmd: ['sh', '-c', script], env: { PATH: '/bin' }, port: 0, memoryMiB: 128, cpus: 1, name: 'attacker', ...extra };
}

/** The app's stdout and stderr lines so far, kept up to date as they arrive. */
function collect(instance: Instance): string[] {
  const lines: string[] = [];
  void (async () => {
    for await (const entry of instance.logs({ follow: true })) lines.push(entry.line);
  })();
  return lines;
}

/** Runs a batch app to its end and returns its lines. */
async function runToEnd(spec: SandboxSpec): Promise<string[]> {
  const instance = await driver.start(spec);
  const lines = collect(instance);
  await instance.exited;
  await waitFor(() => lines.includes('attack-done'), 'the attack to report', 30_000).catch(() => {
    throw new Error(`the app ended without reporting:\n${lines.join('\n')}`);
  });
  return lines;
}

function valueOf(lines: string[], key: string): string | undefined {
  return lines.find((line) => line.startsWith(`${key}=`))?.slice(key.length + 1);
}

describe('process sandbox isolation', () => {
  test('item 3: no controlling terminal, no /dev/tty, no descriptor Alto inherited (driver run under a pseudo-terminal with a directory fd open)', async () => {
    const canary = join(workspace, 'canary');
    mkdirSync(canary);
    writeFileSync(join(canary, 'alto.db'), 'canary secret');
    const script = [
      // ls lists its own descriptors (what the app got, plus the one it reads the listing from);
      // straight to stdout, since a redirection or a command substitution adds descriptors of its own.
      'ls -l /proc/self/fd',
      'if cat /proc/$$/fd/7/alto.db 2>/dev/null; then echo canary=read; else echo canary=unreadable; fi',
      'if [ -e /dev/tty ]; then echo dev-tty=present; else echo dev-tty=absent; fi',
      'if (exec 9</dev/tty) 2>/dev/null; then echo tty-open=yes; else echo tty-open=no; fi',
      'echo "tty_nr=$(cut -d" " -f7 /proc/$$/stat)"',
      'echo "devices=$(ls /dev | tr "\\n" " ")"',
      'echo attack-done',
    ].join('\n');
    const fd = openSync(canary, 'r');
    const child = [process.execPath, '--import', 'tsx', join(ALTO_ROOT, 'test/security/sandbox-driver-child.ts'), join(workspace, 'child-state'), rootfs, script, '7'];
    const command = child.map((word) => `'${word.replaceAll("'", `'\\''`)}'`).join(' ');
    // util-linux `script`: the child's stdin, stdout and stderr are a pseudo-terminal, its controlling terminal.
    const runner = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
      cwd: ALTO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe', 'ignore', 'ignore', 'ignore', 'ignore', fd],
    });
    closeSync(fd);
    let output = '';
    runner.stdout.on('data', (chunk) => (output += chunk));
    runner.stderr.on('data', (chunk) => (output += chunk));
    let exited = false;
    runner.on('exit', () => (exited = true));
    await waitFor(() => exited, 'the driver process to end', 120_000);
    const lines = output.split(/\r?\n/);
    assert.ok(lines.includes('child: fd 7 open'), `the driver process did not inherit the directory:\n${output}`);
    assert.ok(lines.includes('child: done'), output);
    const app = lines.filter((line) => line.startsWith('app: ')).map((line) => line.slice(5));
    assert.equal(valueOf(app, 'canary'), 'unreadable', output);
    const descriptors = app
      .map((line) => / (\d+) -> (.*)$/.exec(line))
      .filter((match) => match && !/^\/proc\/\d+\/fd$/.test(match[2]))
      .map((match) => match![1]);
    assert.deepEqual(descriptors, ['0', '1', '2'], output);
    assert.ok(!output.includes(canary), `the app saw the inherited directory:\n${output}`);
    assert.equal(valueOf(app, 'dev-tty'), 'absent', output);
    assert.equal(valueOf(app, 'tty-open'), 'no', output);
    assert.equal(valueOf(app, 'tty_nr'), '0', output);
    assert.deepEqual(valueOf(app, 'devices')!.trim().split(' ').sort(), ['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'urandom', 'zero'], output);
  });

  test('seccomp: no new user or mount namespace, no mount, no setns; the filter is on', async () => {
    const lines = await runToEnd(
      batch(
        [
          'if unshare -U true 2>/dev/null; then echo userns=created; else echo userns=refused; fi',
          'if unshare -m true 2>/dev/null; then echo mountns=created; else echo mountns=refused; fi',
          'if unshare -Urm mount -t tmpfs x /tmp 2>/dev/null; then echo nested-mount=done; else echo nested-mount=refused; fi',
          'if mount -t tmpfs x /tmp 2>/dev/null; then echo mount=done; else echo mount=refused; fi',
          'if nsenter -t 1 -m true 2>/dev/null; then echo setns=done; else echo setns=refused; fi',
          'echo "seccomp=$(grep "^Seccomp:" /proc/self/status | tr -d "\\t" | cut -d: -f2)"',
          'echo "no_new_privs=$(grep "^NoNewPrivs:" /proc/self/status | tr -d "\\t" | cut -d: -f2)"',
          'echo attack-done',
        ].join('\n'),
      ),
    );
    assert.equal(valueOf(lines, 'userns'), 'refused', lines.join('\n'));
    assert.equal(valueOf(lines, 'mountns'), 'refused', lines.join('\n'));
    assert.equal(valueOf(lines, 'nested-mount'), 'refused', lines.join('\n'));
    assert.equal(valueOf(lines, 'mount'), 'refused', lines.join('\n'));
    assert.equal(valueOf(lines, 'setns'), 'refused', lines.join('\n'));
    assert.equal(valueOf(lines, 'seccomp'), '2', lines.join('\n'));
    assert.equal(valueOf(lines, 'no_new_privs'), '1', lines.join('\n'));
  });

  test('item 12: a fork bomb stops at the pids limit', async () => {
    const lines = await runToEnd(
      batch(
        [
          // The bomb in a subshell, which ends at its first failed fork; then counted with builtins only, since no fork is left.
          '( i=0; while [ $i -lt 300 ]; do sleep 30 & i=$((i+1)); done ) 2>/dev/null',
          'n=0; for p in /proc/[0-9]*; do n=$((n+1)); done',
          'echo "processes=$n"',
          'kill -9 -1 2>/dev/null',
          'echo attack-done',
        ].join('\n'),
        { pidsMax: 64 },
      ),
    );
    const processes = Number(valueOf(lines, 'processes'));
    assert.ok(processes > 16 && processes <= 64, `${processes} processes with a limit of 64`);
  });

  test('item 12: writes stop at a volume\'s size and at the root filesystem\'s; a volume folder from before moves into its disk', async () => {
    const volumeDir = join(workspace, 'volume');
    // A volume as the driver kept it before disks of fixed size: a plain folder, owned in range 0.
    mkdirSync(join(volumeDir, 'data'), { recursive: true });
    writeFileSync(join(volumeDir, 'data', 'kept.txt'), 'kept from before\n');
    chownSync(join(volumeDir, 'data', 'kept.txt'), 100_000, 100_000);
    const lines = await runToEnd(
      batch(
        [
          'echo "kept=$(cat /data/kept.txt) owner=$(stat -c %u /data/kept.txt)"',
          'dd if=/dev/zero of=/data/big bs=1M count=64 2>/dev/null',
          'echo "volume-bytes=$(stat -c %s /data/big)"',
          'dd if=/dev/zero of=/big bs=1M count=128 2>/dev/null',
          'echo "root-bytes=$(stat -c %s /big)"',
          'echo attack-done',
        ].join('\n'),
        { volumes: [{ dir: volumeDir, path: '/data', sizeMiB: 32 }] },
      ),
    );
    assert.equal(valueOf(lines, 'kept'), 'kept from before owner=0', lines.join('\n'));
    assert.ok(!existsSync(join(volumeDir, 'data')), 'the old folder stays beside the disk');
    assert.ok(Number(valueOf(lines, 'volume-bytes')) <= 32 * 1024 * 1024, `a 32 MiB volume took ${valueOf(lines, 'volume-bytes')} bytes`);
    assert.ok(Number(valueOf(lines, 'root-bytes')) <= ROOT_DISK_MIB * 1024 * 1024, `a ${ROOT_DISK_MIB} MiB root took ${valueOf(lines, 'root-bytes')} bytes`);
  });

  test('the mount table names no host path (state, cache, volume folders)', async () => {
    const volumeDir = join(workspace, 'volume-paths');
    const lines = await runToEnd(batch('cat /proc/self/mountinfo; echo attack-done', { volumes: [{ dir: volumeDir, path: '/data', sizeMiB: 16 }] }));
    const table = lines.join('\n');
    for (const hostPath of [workspace, cacheDir, '/run/alto-sandbox', rootfs]) assert.ok(!table.includes(hostPath), `${hostPath} in the mount table:\n${table}`);
  });

  test('ip_forward: the app cannot write sysctls, and the host\'s value is back once the outbound app ends', async () => {
    const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
    const operatorValue = readFileSync(IP_FORWARD, 'utf8').trim();
    // Start from forwarding off, as on a host that does not route, unless a sandbox on the host needs it now.
    const outboundLeases = () => readdirSync(LEASE_DIR).filter((name) => readFileSync(join(LEASE_DIR, name), 'utf8').endsWith(' outbound')).length;
    if (outboundLeases() === 0) writeFileSync(IP_FORWARD, '0');
    const before = readFileSync(IP_FORWARD, 'utf8').trim();
    try {
      const lines = await runToEnd(
        batch(
          [
            'if echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null; then echo sysctl=written; else echo sysctl=refused; fi',
            'if echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null; then echo own-sysctl=written; else echo own-sysctl=refused; fi',
            'echo attack-done',
          ].join('\n'),
          { allowOutbound: true },
        ),
      );
      assert.equal(valueOf(lines, 'sysctl'), 'refused', lines.join('\n'));
      assert.equal(valueOf(lines, 'own-sysctl'), 'refused', lines.join('\n'));
      // Another Alto's outbound instance (a test running beside this one) may hold it on a while longer.
      await waitFor(() => readFileSync(IP_FORWARD, 'utf8').trim() === before, `ip_forward back to ${before}`, 120_000);
    } finally {
      if (outboundLeases() === 0) writeFileSync(IP_FORWARD, operatorValue);
    }
  });

  test('item 12: each tenant has its own host id range, so one tenant\'s inotify instances do not starve another\'s', async () => {
    const limit = Number(readFileSync('/proc/sys/fs/inotify/max_user_instances', 'utf8').trim());
    const hog = await driver.start(
      batch(
        ['echo "map=$(cat /proc/self/uid_map | tr -s " " | sed "s/^ //")"', `exec inotify-hold ${limit + 12} hold`].join('\n'),
        { rootfs: inotifyRootfs, tenant: 'tenant-a' },
      ),
    );
    const hogLines = collect(hog);
    try {
      await waitFor(() => valueOf(hogLines, 'held') !== undefined, 'tenant a to use up its inotify instances', 60_000);
      assert.ok(Number(valueOf(hogLines, 'held')) >= limit - 4, hogLines.join('\n'));
      const other = await runToEnd(
        batch(['echo "map=$(cat /proc/self/uid_map | tr -s " " | sed "s/^ //")"', 'inotify-hold 1', 'echo attack-done'].join('\n'), {
          rootfs: inotifyRootfs,
          tenant: 'tenant-b',
        }),
      );
      assert.equal(valueOf(other, 'held'), '1', `tenant b got no inotify instance:\n${other.join('\n')}`);
      const hogBase = valueOf(hogLines, 'map')!.split(' ')[1];
      const otherBase = valueOf(other, 'map')!.split(' ')[1];
      assert.notEqual(hogBase, otherBase, 'two tenants share a host id range');
      assert.ok(Number(hogBase) >= ID_BASE + 65_536 && Number(otherBase) >= ID_BASE + 65_536, `ranges ${hogBase}, ${otherBase}`);
      // The same tenant again: the same range, so its files stay its own.
      const again = await runToEnd(batch('echo "map=$(cat /proc/self/uid_map | tr -s " " | sed "s/^ //")"; echo attack-done', { rootfs: inotifyRootfs, tenant: 'tenant-b' }));
      assert.equal(valueOf(again, 'map')!.split(' ')[1], otherBase);
    } finally {
      await hog.stop(1_000);
    }
  });
});
