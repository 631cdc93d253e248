/**
 * One suite, run against both sandbox drivers on a busybox root filesystem built here from the
 * host's busybox-static: busybox httpd served over HTTP, suspend/resume checked against the
 * kernel's (cgroup freezer) or QEMU's own state, SIGTERM with a grace period, exit codes and
 * stdout/stderr forwarded, env/workdir/user applied, the memory limit enforced, zombies reaped,
 * a start that fails carries the app's exit and last log lines, and isolation: the app cannot
 * reach a TCP server on the host's 127.0.0.1 nor see the host's data folder. The microvm driver also snapshots and restores a private copy that answers, and
 * snapshots such copies again, those owning their memory and those sharing the snapshot's pages.
 *
 * Needs root, qemu-system-x86, busybox-static and e2fsprogs (scripts/test-services.sh installs
 * them); the first run downloads Debian's cloud kernel into the sandbox cache.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { chooseSandboxDriver, defaultSandboxCacheDir, sandboxStatus } from './index.js';
import { MicrovmDriver, MicrovmInstance } from './microvm.js';
import { isSandboxStartError, type Instance, type SandboxDriver, type SandboxSpec } from './port.js';
import { ProcessDriver, ProcessInstance } from './process.js';
import { TEST_PAGE, ensureBusyboxRootfs } from './test-rootfs.js';

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function hasLine(instance: Instance, stream: 'stdout' | 'stderr', line: string): Promise<boolean> {
  return (async () => {
    for await (const entry of instance.logs()) if (entry.stream === stream && entry.line === line) return true;
    return false;
  })();
}

async function allLines(instance: Instance): Promise<string[]> {
  const lines: string[] = [];
  for await (const entry of instance.logs()) lines.push(`${entry.stream}: ${entry.line}`);
  return lines;
}

/** One raw HTTP/1.0 GET; resolves with the whole response once the server closes. */
function rawGet(host: string, port: number): { connected: Promise<void>; response: Promise<string>; received: () => number } {
  const socket = connect(port, host);
  let body = '';
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', () => socket.write('GET / HTTP/1.0\r\nHost: sandbox\r\n\r\n', () => resolve()));
    socket.once('error', reject);
  });
  const response = new Promise<string>((resolve, reject) => {
    socket.on('data', (chunk) => (body += chunk));
    socket.on('end', () => resolve(body));
    socket.on('error', reject);
  });
  return { connected, response, received: () => body.length };
}

const workspace = mkdtempSync(join(tmpdir(), 'alto-sandbox-test-'));
let rootfs: string;
// Stands in for Alto's data folder: a secret the sandbox must not be able to see.
const hostDataDir = mkdtempSync(join(tmpdir(), 'alto-sandbox-data-'));
writeFileSync(join(hostDataDir, 'secret.txt'), 'host secret');

/** A TCP server on the host's loopback, standing for PostgreSQL or Alto's own port. */
let loopbackServer: Server;
let loopbackConnections = 0;

before(async () => {
  rootfs = await ensureBusyboxRootfs(defaultSandboxCacheDir());
  loopbackServer = createServer((socket) => {
    loopbackConnections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => loopbackServer.listen(0, '127.0.0.1', resolve));
});

after(() => {
  loopbackServer?.close();
  rmSync(workspace, { recursive: true, force: true });
  rmSync(hostDataDir, { recursive: true, force: true });
});

function webSpec(memoryMiB: number): SandboxSpec {
  const port = (loopbackServer.address() as { port: number }).port;
  const script = [
    'echo "user=$(id -u):$(id -g) dir=$(pwd) greeting=$GREETING"',
    'echo to-stderr >&2',
    'httpd -f -p 8080 -h /www & pid=$!',
    'trap "echo got-term; kill $pid; exit 7" TERM',
    '(',
    // busybox-static's wget crashes without NSS libraries; nc is enough for a raw request.
    '  until printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 127.0.0.1 8080 | grep -q "200 OK"; do sleep 0.1; done; echo "self-check: ok"',
    '  gateway=$(ip route | awk "/default/ {print \\$3}")',
    '  for target in 10.0.2.2 $gateway 127.0.0.1; do',
    '    if echo hello | nc -w 2 $target $HOST_LOOPBACK_PORT >/dev/null 2>&1; then echo "reach $target: open"; else echo "reach $target: blocked"; fi',
    '  done',
    '  if [ -e "$HOST_DATA_DIR/secret.txt" ]; then echo "data-folder: visible"; else echo "data-folder: absent"; fi',
    '  echo isolation-probes-done',
    ') &',
    'wait $pid',
  ].join('\n');
  return {
    rootfs,
    entrypoint: ['/bin/sh', '-c'],
    cmd: [script],
    env: {
      PATH: '/bin',
      GREETING: "hello 'quoted' world",
      HOST_LOOPBACK_PORT: String(port),
      HOST_DATA_DIR: hostDataDir,
    },
    workdir: '/srv/data',
    user: 'app',
    port: 8080,
    memoryMiB,
    cpus: 1,
    name: 'web',
  };
}

function batchSpec(memoryMiB: number, cpus: number): SandboxSpec {
  const script = [
    'dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null && echo small-allocation-ok',
    `dd if=/dev/zero of=/dev/null bs=${memoryMiB * 2}M count=1 2>/dev/null`,
    'echo "big-allocation-exit $?"',
    // An orphan: the subshell exits at once, leaving `sleep` to PID 1, which must reap it.
    '(sleep 0.1 &)',
    'sleep 1',
    'echo "zombies=$(ps -o stat | grep -c "^Z")"',
    'echo "cpus=$(nproc)"',
    'echo bye >&2',
    'exit 3',
  ].join('\n');
  return { rootfs, entrypoint: [], cmd: ['sh', '-c', script], env: { PATH: '/bin' }, port: 0, memoryMiB, cpus, name: 'batch' };
}

interface DriverCase {
  name: 'microvm' | 'process';
  make(stateDir: string): SandboxDriver;
  /** Guest RAM must hold the Debian kernel; a cgroup can be tighter. */
  memoryMiB: number;
}

const cases: DriverCase[] = [
  {
    name: 'microvm',
    make: (stateDir) => new MicrovmDriver({ cacheDir: defaultSandboxCacheDir(), stateDir }),
    memoryMiB: 128,
  },
  {
    name: 'process',
    make: (stateDir) => new ProcessDriver({ cacheDir: defaultSandboxCacheDir(), stateDir }),
    memoryMiB: 64,
  },
];

for (const driverCase of cases) {
  describe(`sandbox driver: ${driverCase.name}`, () => {
    let driver: SandboxDriver;
    let web: Instance;

    before(async () => {
      driver = driverCase.make(join(workspace, `state-${driverCase.name}`));
      await driver.probe();
      web = await driver.start(webSpec(driverCase.memoryMiB));
    });

    after(async () => {
      await driver?.close();
    });

    test('describes itself: driver, accelerator and why', async () => {
      const description = await driver.describe();
      assert.equal(description.driver, driverCase.name);
      if (driverCase.name === 'microvm') assert.ok(['kvm', 'tcg'].includes(description.accelerator));
      else assert.equal(description.accelerator, 'none');
      assert.ok(description.reason.length > 10, description.reason);
      assert.equal(description.capabilities.snapshot, driverCase.name === 'microvm');
    });

    test('is ready when the app listens, and serves HTTP at the host address it gives', async () => {
      assert.equal(web.state, 'running');
      const response = await fetch(`http://${web.host}:${web.port}/`);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), TEST_PAGE);
    });

    test('runs the command with the spec env, workdir and user, forwarding stdout and stderr', async () => {
      await waitFor(() => hasLine(web, 'stdout', "user=1000:1000 dir=/srv/data greeting=hello 'quoted' world"), 'the identity line on stdout');
      await waitFor(() => hasLine(web, 'stderr', 'to-stderr'), 'the stderr line');
    });

    test('isolation: no way to the host loopback server, no sight of the host data folder', async () => {
      await waitFor(() => hasLine(web, 'stdout', 'isolation-probes-done'), 'the isolation probes', 60_000).catch(async (error) => {
        throw new Error(`${error.message}; the app said:\n${(await allLines(web)).join('\n')}`);
      });
      const lines = await allLines(web);
      // The probes' tools work: the app reaches itself over its own loopback.
      assert.ok(lines.includes('stdout: self-check: ok'), lines.join('\n'));
      const reach = lines.filter((line) => line.startsWith('stdout: reach '));
      assert.ok(reach.length >= 2, lines.join('\n'));
      for (const line of reach) assert.match(line, /: blocked$/);
      assert.ok(lines.includes('stdout: data-folder: absent'), lines.join('\n'));
      assert.ok(existsSync(join(hostDataDir, 'secret.txt')), 'the secret exists on the host');
      assert.equal(loopbackConnections, 0, 'the host loopback server saw a connection from the sandbox');
    });

    test('suspend freezes the app: a request waits until resume, then completes', async () => {
      await web.suspend();
      assert.equal(web.state, 'suspended');
      assert.equal(await web.isFrozen(), true, 'the kernel/QEMU report the instance frozen');
      const request = rawGet(web.host, web.port);
      await request.connected;
      // The request is on its way in while the instance is frozen: nothing has come back.
      assert.equal(await web.isFrozen(), true);
      assert.equal(request.received(), 0);
      await web.resume();
      assert.equal(await web.isFrozen(), false);
      const response = await request.response;
      assert.match(response, /^HTTP\/1\.[01] 200/);
      assert.ok(response.endsWith(TEST_PAGE), response);
    });

    if (driverCase.name === 'microvm') {
      test('snapshot then restore: a private copy that answers while the original goes on', async () => {
        const snapshotDir = join(workspace, 'snapshot');
        await web.snapshot(snapshotDir);
        assert.equal(web.state, 'suspended');
        const copy = await driver.restore(snapshotDir);
        try {
          assert.ok(copy instanceof MicrovmInstance);
          assert.notEqual(copy.port, web.port);
          const fromCopy = await fetch(`http://${copy.host}:${copy.port}/`);
          assert.equal(await fromCopy.text(), TEST_PAGE);
          await web.resume();
          const fromOriginal = await fetch(`http://${web.host}:${web.port}/`);
          assert.equal(await fromOriginal.text(), TEST_PAGE);
          // A second copy of the same snapshot works too: the snapshot stays untouched.
          const second = await driver.restore(snapshotDir);
          assert.equal(await (await fetch(`http://${second.host}:${second.port}/`)).text(), TEST_PAGE);
          await second.stop(5_000);
        } finally {
          await copy.stop(5_000);
        }
      });

      test("a copy's snapshot: of a copy that owns its memory, the quick kind; of one that shares the snapshot's pages, the memory in the state; both restore", async () => {
        const snapshotDir = join(workspace, 'snapshot-for-copies');
        await web.snapshot(snapshotDir);
        await web.resume();
        const memoryDigest = () => createHash('sha256').update(readFileSync(join(snapshotDir, 'memory'))).digest('hex');
        const digestBefore = memoryDigest();
        const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8')) as { memoryInState?: boolean };
        for (const ownMemory of [true, false]) {
          const copy = await driver.restore(snapshotDir, { ownMemory });
          const copySnapshot = join(workspace, ownMemory ? 'snapshot-of-own' : 'snapshot-of-shared');
          try {
            assert.equal(await (await fetch(`http://${copy.host}:${copy.port}/`)).text(), TEST_PAGE);
            await copy.snapshot(copySnapshot);
          } finally {
            await copy.stop(5_000);
          }
          // Its own memory is a file to copy, as a booted instance's; shared pages are not the copy's to copy.
          assert.equal(manifestOf(copySnapshot).memoryInState, ownMemory ? undefined : true);
          assert.equal(existsSync(join(copySnapshot, 'memory')), ownMemory);
          // A guest whose memory did not come back would not answer.
          const again = await driver.restore(copySnapshot, { ownMemory: true });
          try {
            assert.equal(await (await fetch(`http://${again.host}:${again.port}/`)).text(), TEST_PAGE);
          } finally {
            await again.stop(5_000);
          }
        }
        assert.equal(memoryDigest(), digestBefore, 'no copy wrote into the snapshot it came from');
      });
    } else {
      test('says it cannot snapshot instead of pretending to', async () => {
        await assert.rejects(web.snapshot(join(workspace, 'no-snapshot')), (error) => isAltoError(error) && error.status === 400);
        await assert.rejects(driver.restore(join(workspace, 'no-snapshot')), (error) => isAltoError(error) && error.status === 400);
      });
    }

    test('stop sends SIGTERM and the app exits on its own within the grace period', async () => {
      const exit = await web.stop(20_000);
      assert.deepEqual(exit, { code: 7, reason: 'stopped' });
      assert.equal(web.state, 'exited');
      assert.ok(await hasLine(web, 'stdout', 'got-term'));
    });

    test('forwards the exit code and logs, enforces the memory limit and reaps orphans', async (t) => {
      const batch = await driver.start(batchSpec(driverCase.memoryMiB, driverCase.name === 'microvm' ? 2 : 1));
      const exit = await batch.exited;
      const lines = await allLines(batch);
      assert.deepEqual(exit, { code: 3, reason: 'exited' }, lines.join('\n'));
      assert.ok(lines.includes('stdout: small-allocation-ok'), lines.join('\n'));
      const big = lines.find((line) => line.startsWith('stdout: big-allocation-exit '));
      assert.ok(big, lines.join('\n'));
      t.diagnostic(big);
      assert.notEqual(big, 'stdout: big-allocation-exit 0', 'an allocation of twice the limit succeeded');
      if (batch instanceof ProcessInstance) assert.equal(big, 'stdout: big-allocation-exit 137', 'the OOM killer ends the allocating process');
      assert.ok(lines.includes('stdout: zombies=0'), lines.join('\n'));
      // A microVM's CPU limit is its vCPU count, which the guest sees.
      if (driverCase.name === 'microvm') assert.ok(lines.includes('stdout: cpus=2'), lines.join('\n'));
      assert.ok(lines.includes('stderr: bye'), lines.join('\n'));
    });

    if (driverCase.name === 'process') {
      test('the CPU quota holds a busy app back (cgroup cpu.stat)', async () => {
        const busy = await driver.start({
          rootfs,
          entrypoint: [],
          cmd: ['sh', '-c', 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo busy-done; exec sleep 600'],
          env: { PATH: '/bin' },
          port: 0,
          memoryMiB: 32,
          cpus: 0.05,
          name: 'busy',
        });
        try {
          assert.ok(busy instanceof ProcessInstance);
          await waitFor(() => hasLine(busy, 'stdout', 'busy-done'), 'the busy loop', 120_000);
          assert.ok(busy.throttledPeriods() > 0, 'the kernel never held the app back at 5% of a CPU');
        } finally {
          await busy.stop(1_000);
        }
      });
    }

    test('a volume keeps its files from one instance to the next, with one instance at a time', async () => {
      const volume = { dir: join(workspace, `volume-${driverCase.name}`), path: '/var/lib/notes', sizeMiB: 64 };
      const stamp = `written-${Date.now()}`;
      const volumeSpec = (script: string): SandboxSpec => ({
        rootfs,
        entrypoint: [],
        cmd: ['sh', '-c', script],
        env: { PATH: '/bin', STAMP: stamp },
        user: 'app',
        port: 0,
        memoryMiB: driverCase.memoryMiB,
        cpus: 1,
        name: 'volume',
        volumes: [volume],
      });
      // The app's own user writes into the volume, then ignores SIGTERM: it is killed at the end
      // of the grace period, and what it wrote must survive that too.
      const writer = await driver.start(
        volumeSpec('echo "$STAMP" > /var/lib/notes/note.txt && mkdir -p /var/lib/notes/sub && echo deep > /var/lib/notes/sub/file && echo write-done; trap "" TERM; while :; do sleep 1; done'),
      );
      await waitFor(() => hasLine(writer, 'stdout', 'write-done'), 'the write into the volume', 60_000).catch(async (error) => {
        throw new Error(`${error.message}; the app said:\n${(await allLines(writer)).join('\n')}`);
      });
      // A second instance on the same volume would be a second writer: refused, the first unharmed.
      await assert.rejects(driver.start(volumeSpec('true')), (error) => isAltoError(error) && error.status === 409);
      assert.equal(writer.state, 'running');
      assert.equal((await writer.stop(1_000)).reason, 'killed after grace period');

      const reader = await driver.start(volumeSpec('cat /var/lib/notes/note.txt /var/lib/notes/sub/file; echo "owner=$(stat -c %u /var/lib/notes)"'));
      const exit = await reader.exited;
      const lines = await allLines(reader);
      assert.equal(exit.code, 0, lines.join('\n'));
      assert.ok(lines.includes(`stdout: ${stamp}`), lines.join('\n'));
      assert.ok(lines.includes('stdout: deep'), lines.join('\n'));
      assert.ok(lines.includes('stdout: owner=1000'), lines.join('\n'));
    });

    test('refuses a volume at a reserved or malformed path with a 400', async () => {
      for (const path of ['/', 'data', '/proc/x', '/a/../b', '/.alto']) {
        await assert.rejects(
          driver.start({ ...batchSpec(driverCase.memoryMiB, 1), volumes: [{ dir: join(workspace, 'bad-volume'), path }] }),
          (error) => isAltoError(error) && error.status === 400,
          path,
        );
      }
    });

    test('refuses a spec it cannot run with a 400 that says why', async () => {
      await assert.rejects(driver.start({ ...webSpec(driverCase.memoryMiB), user: 'nobody-here' }), (error) => {
        assert.ok(isAltoError(error));
        assert.equal(error.status, 400);
        assert.match(error.detail, /nobody-here/);
        return true;
      });
      const description = await driver.describe();
      if (!description.capabilities.outbound) {
        // A driver that cannot give outbound access without exposing the host says so.
        await assert.rejects(driver.start({ ...webSpec(driverCase.memoryMiB), allowOutbound: true }), (error) => isAltoError(error) && error.status === 400);
      }
    });

    test('a start that ends before the app is ready says why, with the exit and the last log lines', async () => {
      const spec: SandboxSpec = {
        ...batchSpec(driverCase.memoryMiB, 1),
        cmd: ['sh', '-c', 'echo "reading settings"; echo "fatal: no settings file" >&2; exit 4'],
        port: 8080,
        name: 'failing',
      };
      await assert.rejects(driver.start(spec), (error) => {
        assert.ok(isSandboxStartError(error), String(error));
        assert.match(error.message, /ended before it was ready/);
        assert.deepEqual(error.exit, { code: 4, reason: 'exited' });
        assert.deepEqual(
          error.logTail.map((line) => `${line.stream}: ${line.line}`),
          ['stdout: reading settings', 'stderr: fatal: no settings file'],
        );
        return true;
      });
    });
  });
}

describe('sandbox driver choice', () => {
  test('--sandbox process picks the process driver and says so; auto explains its pick', async () => {
    const stateDir = join(workspace, 'choice');
    const chosen = await chooseSandboxDriver({ choice: 'process', stateDir });
    assert.equal(chosen.driver.name, 'process');
    const status = sandboxStatus(chosen);
    assert.equal(status.driver, 'process');
    assert.equal(status.accelerator, 'none');
    assert.match(status.reason, /--sandbox process/);
    const auto = await chooseSandboxDriver({ choice: 'auto', stateDir });
    const autoStatus = sandboxStatus(auto);
    assert.match(autoStatus.reason, /^auto: /);
    // auto takes microVMs exactly when KVM works.
    const vm = await new MicrovmDriver({ cacheDir: defaultSandboxCacheDir(), stateDir }).probe();
    assert.equal(autoStatus.driver, vm.accelerator === 'kvm' ? 'microvm' : 'process');
    await chosen.driver.close();
    await auto.driver.close();
  });
});
