/**
 * Sandboxes end with their Alto, and the next run gives back what they held (reap.ts). A small
 * program (test-holder.ts) stands for Alto: it starts a sandbox through the driver and is killed
 * with SIGKILL; the sandbox's processes (the process driver's PID namespace, QEMU) must end with
 * it. What stays on the host (control groups, the network namespace and veth, nftables elements,
 * the subnet's lease, folders) is given back by `reapLeftovers` on the holder's state folder,
 * and only there: a live holder's sandbox, one on another folder, and anything not recorded in
 * the folder are left alone, and a record whose owner's pid now names another process is reaped.
 *
 * Needs root and what sandbox.test.ts needs (scripts/test-services.sh installs it).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { run } from './common.js';
import { isAlive, processIdentity, reapLeftovers, type InstanceRecord, type ProcessIdentity } from './reap.js';
import { httpGet } from './test-probe.js';
import { TEST_PAGE } from './test-rootfs.js';

const HOLDER = fileURLToPath(new URL('./test-holder.ts', import.meta.url));
const workspace = mkdtempSync(join(tmpdir(), 'alto-reap-test-'));
/** Holders still running, stopped at the end by their own pids. */
const holders = new Set<ChildProcess>();

after(async () => {
  for (const holder of holders) if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGTERM');
  await Promise.all([...holders].map((holder) => (holder.exitCode === null && holder.signalCode === null ? new Promise((resolve) => holder.once('exit', resolve)) : undefined)));
  // Whatever a failed test left in its folders.
  for (const name of readdirSync(workspace)) await reapLeftovers(join(workspace, name));
  rmSync(workspace, { recursive: true, force: true });
});

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Held {
  holder: ChildProcess;
  stateDir: string;
  id: string;
  host: string;
  port: number;
  record: InstanceRecord;
}

/** Runs a holder on a fresh state folder and waits until its sandbox serves. */
async function hold(driver: 'process' | 'microvm', state: 'running' | 'suspended' = 'running'): Promise<Held> {
  const stateDir = mkdtempSync(join(workspace, `${driver}-`));
  const holder = spawn(process.execPath, ['--import', 'tsx', HOLDER, driver, stateDir, ...(state === 'suspended' ? ['suspended'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  holders.add(holder);
  let stdout = '';
  let stderr = '';
  holder.stderr!.on('data', (chunk) => (stderr += chunk));
  const line = await new Promise<string>((resolve, reject) => {
    holder.stdout!.on('data', (chunk) => {
      stdout += chunk;
      if (stdout.includes('\n')) resolve(stdout.split('\n')[0]);
    });
    holder.once('exit', (code, signal) => reject(new Error(`the holder ended (${code ?? signal}) before its sandbox served: ${stderr}`)));
  });
  const { id, host, port } = JSON.parse(line) as { id: string; host: string; port: number };
  const record = JSON.parse(readFileSync(join(stateDir, `${id}.instance.json`), 'utf8')) as InstanceRecord;
  return { holder, stateDir, id, host, port, record };
}

async function serves(held: Held): Promise<boolean> {
  const answer = await httpGet(held.host, held.port, '/').catch(() => undefined);
  return answer?.status === 200 && answer.body === TEST_PAGE;
}

/** Kills the holder as Alto would be killed, and waits for it to be gone. */
async function killHolder(held: Held): Promise<void> {
  const exited = new Promise((resolve) => held.holder.once('exit', resolve));
  held.holder.kill('SIGKILL');
  await exited;
  holders.delete(held.holder);
}

/** The sandbox's processes: every one in its control groups (process driver), or QEMU (microvm). */
function sandboxProcesses(held: Held): ProcessIdentity[] {
  const pids = new Set<number>();
  for (const dir of held.record.cgroups) {
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) pids.add(Number(pid));
  }
  const identities = [...pids].map((pid) => processIdentity(pid)).filter((identity) => identity !== undefined);
  return [...identities, ...held.record.processes];
}

/** Whether a process is gone: ended (a zombie nobody reaped yet has ended too) or its pid reused. */
function ended(identity: ProcessIdentity): boolean {
  if (!isAlive(identity)) return true;
  const stat = readFileSync(`/proc/${identity.pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

function cgroupEmpty(dir: string): boolean {
  return !existsSync(dir) || readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() === '';
}

/** What the instance holds on the host, as the host itself shows it. */
async function hostTraces(held: Held): Promise<string[]> {
  const traces: string[] = [];
  if (existsSync(join(held.stateDir, `${held.id}.instance.json`))) traces.push('record');
  for (const dir of [...held.record.dirs, ...held.record.cgroups]) if (existsSync(dir)) traces.push(dir);
  const network = held.record.network;
  if (network) {
    if (existsSync(join('/run/netns', network.namespace))) traces.push(network.namespace);
    if (existsSync(join('/sys/class/net', network.hostInterface))) traces.push(network.hostInterface);
    const { stdout } = await run('nft', ['list', 'table', 'inet', 'alto_sandbox']);
    if (stdout.includes(`"${network.hostInterface}"`)) traces.push('nftables elements');
    const leases = existsSync('/run/alto-sandbox/leases') ? readdirSync('/run/alto-sandbox/leases') : [];
    for (const lease of leases) {
      const text = readFileSync(join('/run/alto-sandbox/leases', lease), 'utf8');
      if (text.split(' ')[1] === network.namespace) traces.push(`lease ${lease}`);
    }
  }
  return traces;
}

describe('the process driver', () => {
  test('a sandbox ends with its killed Alto; the next run on its folder gives back what it held, and nothing of a live Alto', async () => {
    const [killed, other] = await Promise.all([hold('process'), hold('process')]);
    assert.ok(await serves(killed), 'the sandbox serves');
    const processes = sandboxProcesses(killed);
    assert.ok(processes.length >= 3, `the sandbox's processes (unshare, supervisor, httpd): ${JSON.stringify(processes)}`);
    const traces = await hostTraces(killed);
    for (const kind of ['record', killed.record.network!.namespace, killed.record.network!.hostInterface, 'nftables elements'])
      assert.ok(traces.includes(kind), `the instance holds ${kind}: ${traces.join(', ')}`);
    assert.ok(traces.some((trace) => trace.startsWith('lease ')), 'the instance holds a subnet lease');

    // Its Alto runs: a run on the same folder leaves it alone.
    const whileLive = await reapLeftovers(killed.stateDir);
    assert.deepEqual(whileLive.live, [killed.id]);
    assert.deepEqual(whileLive.reaped, []);
    assert.ok(await serves(killed), 'a live Alto\'s sandbox still serves');

    await killHolder(killed);
    await waitFor(() => processes.every(ended) && killed.record.cgroups.every(cgroupEmpty), 'the sandbox\'s processes to end with its Alto');
    assert.equal(await serves(killed), false, 'nothing answers at the sandbox\'s address');
    assert.ok((await hostTraces(killed)).includes(killed.record.network!.namespace), 'the network stays until a run gives it back');

    // Another Alto on another folder: not touched by the reap of this one's folder.
    const report = await reapLeftovers(killed.stateDir);
    assert.deepEqual({ reaped: report.reaped, failures: report.failures }, { reaped: [killed.id], failures: [] });
    assert.deepEqual(await hostTraces(killed), [], 'nothing of the killed run is left');
    assert.ok(await serves(other), 'the other Alto\'s sandbox still serves');
    assert.ok((await hostTraces(other)).includes(other.record.network!.namespace));
    assert.deepEqual((await reapLeftovers(other.stateDir)).live, [other.id]);

    // Stopped cleanly, the other leaves nothing to reap.
    const exited = new Promise((resolve) => other.holder.once('exit', resolve));
    other.holder.kill('SIGTERM');
    await exited;
    assert.deepEqual(await hostTraces(other), []);
    assert.deepEqual(await reapLeftovers(other.stateDir), { reaped: [], live: [], removed: [], failures: [] });
  });

  test('a suspended sandbox ends with its killed Alto too', async () => {
    // On cgroup v1 a frozen process acts on SIGKILL only once thawed: the driver's guard thaws it.
    const held = await hold('process', 'suspended');
    const processes = sandboxProcesses(held);
    assert.ok(processes.length >= 3, `the sandbox's processes: ${JSON.stringify(processes)}`);
    const freezer = held.record.cgroups.find((dir) => existsSync(join(dir, 'cgroup.freeze')) || dir.includes('/freezer/'))!;
    const frozen = existsSync(join(freezer, 'freezer.state')) ? readFileSync(join(freezer, 'freezer.state'), 'utf8').trim() === 'FROZEN' : /^frozen 1$/m.test(readFileSync(join(freezer, 'cgroup.events'), 'utf8'));
    assert.ok(frozen, 'the sandbox is frozen');
    await killHolder(held);
    await waitFor(() => processes.every(ended) && held.record.cgroups.every(cgroupEmpty), 'the suspended sandbox\'s processes to end with its Alto');
    const report = await reapLeftovers(held.stateDir);
    assert.deepEqual({ reaped: report.reaped, failures: report.failures }, { reaped: [held.id], failures: [] });
    assert.deepEqual(await hostTraces(held), []);
  });

  test('a record whose owner\'s pid now names another process is reaped', async () => {
    const held = await hold('process');
    await killHolder(held);
    await waitFor(() => held.record.cgroups.every(cgroupEmpty), 'the sandbox to end');
    // As if the pid had been given to a new process: this one, started at another time.
    const path = join(held.stateDir, `${held.id}.instance.json`);
    const reused = { ...held.record, owner: { ...held.record.owner, pid: process.pid } };
    assert.notEqual(processIdentity(process.pid)!.startTime, reused.owner.startTime);
    writeFileSync(path, JSON.stringify(reused));
    const report = await reapLeftovers(held.stateDir);
    assert.deepEqual({ reaped: report.reaped, failures: report.failures }, { reaped: [held.id], failures: [] });
    assert.deepEqual(await hostTraces(held), []);
  });

  test('an instance folder without a record is removed only when nothing holds it', async () => {
    const stateDir = mkdtempSync(join(workspace, 'unrecorded-'));
    for (const id of ['0123456789ab', 'ba9876543210']) {
      mkdirSync(join(stateDir, id));
      writeFileSync(join(stateDir, id, 'root.ext4'), 'disk');
    }
    mkdirSync(join(stateDir, 'id-ranges'));
    const open = openSync(join(stateDir, 'ba9876543210', 'root.ext4'), 'r');
    try {
      const report = await reapLeftovers(stateDir);
      assert.deepEqual(report.reaped, ['0123456789ab']);
      assert.deepEqual(readdirSync(stateDir).sort(), ['ba9876543210', 'id-ranges'], 'the held folder and what is no instance stay');
    } finally {
      closeSync(open);
    }
  });
});

describe('the microvm driver', () => {
  test('QEMU ends with its killed Alto; the next run gives back its folders, sockets and memory file', async () => {
    const held = await hold('microvm');
    assert.ok(await serves(held), 'the guest serves');
    const [qemu] = held.record.processes;
    assert.ok(qemu && isAlive(qemu), 'QEMU is recorded');
    assert.equal(held.record.dirs.filter((dir) => existsSync(dir)).length, held.record.dirs.length);
    await killHolder(held);
    await waitFor(() => ended(qemu), 'QEMU to end with its Alto');
    assert.ok(held.record.dirs.some((dir) => existsSync(dir)), 'the folders stay until a run gives them back');
    const report = await reapLeftovers(held.stateDir);
    assert.deepEqual({ reaped: report.reaped, failures: report.failures }, { reaped: [held.id], failures: [] });
    assert.deepEqual(await hostTraces(held), []);
  });
});
