/**
 * Platform access (`SandboxSpec.platform`) on both drivers: an instance finds the edge in
 * `ALTO_URL` and reaches it, and nothing else on the host. A stand-in edge (an HTTP server
 * answering `/livez` with a marker) listens on the host, next to a trap server on a neighbouring
 * port; both count connections, so a probe that got through cannot hide.
 *
 * - process driver, edge on every address (alto up's default): reached directly at the gateway's
 *   edge port; the gateway's other ports, the host loopback, stay refused;
 * - process driver, edge on 127.0.0.1 only (`--host 127.0.0.1`): reached through the forwarder;
 * - microvm, outbound off (`restrict=on`): reached at http://10.0.2.100, also from a copy restored
 *   from a snapshot; 10.0.2.2 stays refused;
 * - microvm, outbound on: the forward reaches the host's edge (on 127.0.0.1 only, so the
 *   namespace's own loopback could not have answered), and the gateway's other ports stay refused.
 * Without `platform`, no ALTO_URL and no way to the edge.
 *
 * Each app is busybox httpd with a CGI probe (`/cgi-bin/probe?HOST:PORT/PATH`) that makes one
 * HTTP request from inside the sandbox. Needs root, nftables, iproute2, qemu-system-x86,
 * busybox-static and e2fsprogs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultSandboxCacheDir } from './index.js';
import { MicrovmDriver } from './microvm.js';
import type { Instance, SandboxDriver, SandboxSpec } from './port.js';
import { ProcessDriver } from './process.js';
import { gatewayOf, httpGet, isOpen, probeFrom } from './test-probe.js';
import { ensureBusyboxRootfs } from './test-rootfs.js';

/** A TCP server that answers one HTTP request with `reply` and counts connections. */
interface CountingServer {
  server: Server;
  port: number;
  connections: number;
}

async function listenCounting(address: string, reply: (path: string) => string): Promise<CountingServer> {
  const counting = { connections: 0 } as CountingServer;
  counting.server = createServer((socket) => {
    counting.connections += 1;
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (chunk) => {
      head += chunk;
      if (!head.includes('\r\n\r\n')) return;
      const path = /^[A-Z]+ (\S+)/.exec(head)?.[1] ?? '/';
      socket.end(`HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n${reply(path)}\n`);
    });
  });
  await new Promise<void>((resolve) => counting.server.listen(0, address, resolve));
  counting.port = (counting.server.address() as { port: number }).port;
  return counting;
}

/** ALTO_URL as the app saw it ('' when unset), written at start into a page the host can read. */
async function altoUrlOf(instance: Instance): Promise<string> {
  return (await httpGet(instance.host, instance.port, '/alto-url')).body.trim();
}

/** http://host[:port] -> host:port, as the probe takes it. */
function targetOf(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || 80}`;
}

function probeSpec(options: { platformPort?: number; allowOutbound?: boolean; memoryMiB: number }): SandboxSpec {
  const probe = [
    '#!/bin/sh',
    'target=${QUERY_STRING%%/*}; path=${QUERY_STRING#*/}',
    'echo "Content-Type: text/plain"; echo',
    'if printf "GET /$path HTTP/1.0\\r\\n\\r\\n" | nc -w 3 "${target%:*}" "${target##*:}" >/tmp/reply.$$ 2>&1; then echo open; cat /tmp/reply.$$; else echo blocked; fi',
    'rm -f /tmp/reply.$$',
  ].join('\n');
  const script = [
    'mkdir -p /tmp/www/cgi-bin',
    `cat > /tmp/www/cgi-bin/probe <<'EOF'\n${probe}\nEOF`,
    'chmod 755 /tmp/www/cgi-bin/probe',
    'echo "$ALTO_URL" > /tmp/www/alto-url',
    'exec httpd -f -p 8080 -h /tmp/www',
  ].join('\n');
  return {
    rootfs,
    entrypoint: ['/bin/sh', '-c'],
    cmd: [script],
    env: { PATH: '/bin' },
    port: 8080,
    memoryMiB: options.memoryMiB,
    cpus: 1,
    allowOutbound: options.allowOutbound,
    ...(options.platformPort ? { platform: { port: options.platformPort } } : {}),
    name: 'platform-probe',
  };
}

const workspace = mkdtempSync(join(tmpdir(), 'alto-platform-test-'));
let rootfs: string;
/** The stand-in edges: on every address, and on the loopback only. */
let edgeEverywhere: CountingServer;
let edgeLoopback: CountingServer;
/** A neighbour of the edge on every address: must stay out of reach. */
let neighbour: CountingServer;

before(async () => {
  rootfs = await ensureBusyboxRootfs(defaultSandboxCacheDir());
  edgeEverywhere = await listenCounting('0.0.0.0', (path) => `edge-everywhere ${path}`);
  edgeLoopback = await listenCounting('127.0.0.1', (path) => `edge-loopback ${path}`);
  neighbour = await listenCounting('0.0.0.0', () => 'neighbour');
});

after(() => {
  for (const counting of [edgeEverywhere, edgeLoopback, neighbour]) counting?.server.close();
  rmSync(workspace, { recursive: true, force: true });
});

describe('platform access: process driver', () => {
  let driver: SandboxDriver;
  let direct: Instance;
  let forwarded: Instance;
  let without: Instance;

  before(async () => {
    driver = new ProcessDriver({ cacheDir: defaultSandboxCacheDir(), stateDir: join(workspace, 'process') });
    [direct, forwarded, without] = await Promise.all([
      driver.start(probeSpec({ platformPort: edgeEverywhere.port, memoryMiB: 64 })),
      driver.start(probeSpec({ platformPort: edgeLoopback.port, memoryMiB: 64 })),
      driver.start(probeSpec({ memoryMiB: 64 })),
    ]);
  });

  after(async () => {
    await driver?.close();
  });

  test('edge on every address: ALTO_URL is the gateway edge port, and /livez answers from inside', async () => {
    const url = await altoUrlOf(direct);
    assert.equal(url, `http://${gatewayOf(direct)}:${edgeEverywhere.port}`);
    const answer = await probeFrom(direct, targetOf(url), 'livez');
    assert.ok(isOpen(answer) && answer.includes('edge-everywhere /livez'), answer);
  });

  test('the gateway neighbouring port and the host loopback stay refused', async () => {
    const before = neighbour.connections;
    // The neighbour really listens on the gateway address: the host reaches it there.
    assert.equal((await httpGet(gatewayOf(direct), neighbour.port, '/')).body, 'neighbour\n');
    const seen = neighbour.connections;
    assert.equal(seen, before + 1);
    for (const target of [`${gatewayOf(direct)}:${neighbour.port}`, `127.0.0.1:${edgeEverywhere.port}`, `${gatewayOf(forwarded)}:${edgeEverywhere.port}`]) {
      const answer = await probeFrom(direct, target);
      assert.equal(answer.split('\n')[0], 'blocked', `${target}: ${answer}`);
    }
    assert.equal(neighbour.connections, seen, 'the neighbouring port saw a connection from the sandbox');
  });

  test('edge on the loopback only: reached through a forwarder on the gateway', async () => {
    const url = await altoUrlOf(forwarded);
    const { hostname, port } = new URL(url);
    assert.equal(hostname, gatewayOf(forwarded));
    assert.notEqual(Number(port), edgeLoopback.port, 'the loopback edge cannot be reached on the gateway itself');
    const before = edgeLoopback.connections;
    const answer = await probeFrom(forwarded, targetOf(url), 'livez');
    assert.ok(isOpen(answer) && answer.includes('edge-loopback /livez'), answer);
    assert.equal(edgeLoopback.connections, before + 1);
    // The forwarder is this instance's alone.
    assert.equal((await probeFrom(direct, targetOf(url))).split('\n')[0], 'blocked');
  });

  test('without platform: no ALTO_URL and no way to the edge', async () => {
    assert.equal(await altoUrlOf(without), '');
    const answer = await probeFrom(without, `${gatewayOf(without)}:${edgeEverywhere.port}`);
    assert.equal(answer.split('\n')[0], 'blocked', answer);
  });
});

describe('platform access: microvm driver', () => {
  let driver: SandboxDriver;
  let restricted: Instance;
  let outbound: Instance;

  before(async () => {
    driver = new MicrovmDriver({ cacheDir: defaultSandboxCacheDir(), stateDir: join(workspace, 'microvm') });
    await driver.probe();
    [restricted, outbound] = await Promise.all([
      driver.start(probeSpec({ platformPort: edgeEverywhere.port, memoryMiB: 128 })),
      driver.start(probeSpec({ platformPort: edgeLoopback.port, allowOutbound: true, memoryMiB: 128 })),
    ]);
  });

  after(async () => {
    await driver?.close();
  });

  test('outbound off: ALTO_URL is http://10.0.2.100 and /livez answers from inside the guest', async () => {
    assert.equal(await altoUrlOf(restricted), 'http://10.0.2.100');
    const first = await probeFrom(restricted, '10.0.2.100:80', 'livez');
    assert.ok(isOpen(first) && first.includes('edge-everywhere /livez'), first);
    // One connection each: the forward is not a single shared stream.
    const second = await probeFrom(restricted, '10.0.2.100:80', 'again');
    assert.ok(isOpen(second) && second.includes('edge-everywhere /again'), second);
  });

  test('outbound off: the host loopback stays refused (10.0.2.2)', async () => {
    const before = neighbour.connections;
    for (const target of [`10.0.2.2:${neighbour.port}`, `10.0.2.2:${edgeEverywhere.port}`]) {
      const answer = await probeFrom(restricted, target);
      assert.equal(answer.split('\n')[0], 'blocked', `${target}: ${answer}`);
    }
    assert.equal(neighbour.connections, before);
  });

  test('a restored copy of a snapshot keeps its way to the edge', async () => {
    const snapshotDir = join(workspace, 'snapshot');
    await restricted.snapshot(snapshotDir);
    const copy = await driver.restore(snapshotDir);
    try {
      await restricted.resume();
      const answer = await probeFrom(copy, '10.0.2.100:80', 'from-copy');
      assert.ok(isOpen(answer) && answer.includes('edge-everywhere /from-copy'), answer);
    } finally {
      await copy.stop(1_000);
    }
  });

  test('outbound on: the forward reaches the host edge, not the namespace loopback', async () => {
    assert.equal(await altoUrlOf(outbound), 'http://10.0.2.100');
    const before = edgeLoopback.connections;
    const answer = await probeFrom(outbound, '10.0.2.100:80', 'livez');
    assert.ok(isOpen(answer) && answer.includes('edge-loopback /livez'), answer);
    assert.equal(edgeLoopback.connections, before + 1);
  });

  test('outbound on: the gateway other ports and the host loopback stay refused', async () => {
    const before = neighbour.connections;
    for (const target of [`${gatewayOf(outbound)}:${neighbour.port}`, `10.0.2.2:${neighbour.port}`, `10.0.2.2:${edgeLoopback.port}`]) {
      const answer = await probeFrom(outbound, target);
      assert.equal(answer.split('\n')[0], 'blocked', `${target}: ${answer}`);
    }
    assert.equal(neighbour.connections, before);
  });
});
