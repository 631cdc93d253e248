/**
 * Restored copies are reseeded (issue 8, microvm): two copies restored from one snapshot, some
 * seconds after it was taken, each read the time now (not the snapshot's) and random bytes of
 * their own from /dev/urandom, although both started from the same memory. Read through a CGI
 * of busybox httpd in the guest; QEMU under tcg or kvm, whichever the host has. Distinct random
 * bytes alone would not prove the reseed (the guest kernel also reseeds from its own interrupt
 * timings on an interval, which can already tell two copies apart), so the guests' answer that
 * they took the host's seed is checked too, and the clock is what fails without it.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MicrovmDriver, type MicrovmInstance } from '../src/compute/sandbox/microvm.js';
import { buildBusyboxRootfs } from '../src/compute/sandbox/test-rootfs.js';
import { eventually, privateSandboxCache } from './apps-fixture.js';

/** The guest's clock (unix seconds) and 16 bytes of /dev/urandom, in hex. */
const PROBE_CGI = ['#!/bin/sh', "printf 'Content-Type: text/plain\\r\\n\\r\\n'", 'date +%s', "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'", 'echo'].join('\n');
/** How long after the snapshot the copies start: a copy whose clock stayed at the snapshot would be this far behind. */
const GAP_MS = 5_000;

describe('restored microVM copies are reseeded', () => {
  const cache = privateSandboxCache();
  const workspace = mkdtempSync(join(tmpdir(), 'alto-reseed-'));
  let driver: MicrovmDriver;
  let rootfs: string;

  before(async () => {
    rootfs = await buildBusyboxRootfs(join(workspace, 'rootfs'));
    mkdirSync(join(rootfs, 'www', 'cgi-bin'), { recursive: true });
    writeFileSync(join(rootfs, 'www', 'cgi-bin', 'probe'), PROBE_CGI);
    chmodSync(join(rootfs, 'www', 'cgi-bin', 'probe'), 0o755);
    driver = new MicrovmDriver({ cacheDir: cache.dir, stateDir: join(workspace, 'state') });
    await driver.probe();
  });

  after(async () => {
    await driver?.close();
    cache.remove();
    rmSync(workspace, { recursive: true, force: true });
  });

  async function probe(instance: MicrovmInstance): Promise<{ clock: number; random: string }> {
    const response = await fetch(`http://${instance.host}:${instance.port}/cgi-bin/probe`);
    assert.equal(response.status, 200);
    const [clock, random] = (await response.text()).trim().split('\n');
    assert.match(random, /^[0-9a-f]{32}$/);
    return { clock: Number(clock), random };
  }

  test('two copies of one snapshot: each with the time now and random bytes of its own', async () => {
    const original = await driver.start({
      rootfs,
      entrypoint: ['httpd'],
      cmd: ['-f', '-p', '8080', '-h', '/www'],
      env: { PATH: '/bin' },
      user: 'root',
      port: 8080,
      memoryMiB: 128,
      cpus: 1,
    });
    const before = await probe(original);
    await original.suspend();
    const snapshotDir = join(workspace, 'snapshot');
    await original.snapshot(snapshotDir);
    const snapshotAt = Date.now();
    await original.stop(0);

    await eventually(async () => Date.now() - snapshotAt >= GAP_MS, `${GAP_MS} ms after the snapshot`, GAP_MS * 2);
    const copies = [await driver.restore(snapshotDir), await driver.restore(snapshotDir)];
    try {
      assert.deepEqual(copies.map((copy) => copy.reseedApplied), [true, true], 'both guests said they reseeded');
      const [first, second] = [await probe(copies[0]), await probe(copies[1])];
      const now = Date.now() / 1000;
      for (const reading of [first, second]) {
        assert.ok(Math.abs(reading.clock - now) <= 2, `a copy's clock ${reading.clock} is the time now (${Math.round(now)}), not the snapshot's (${Math.round(snapshotAt / 1000)})`);
      }
      assert.notEqual(first.random, second.random, 'each copy draws random bytes of its own');
      assert.notEqual(first.random, before.random);
    } finally {
      await Promise.all(copies.map((copy) => copy.stop(0)));
    }
  });
});
