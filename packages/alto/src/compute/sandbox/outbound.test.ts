/**
 * Outbound access, on both sandbox drivers, with traffic only to namespaces this file makes: an
 * "internet" network namespace joined to the host by a veth, with a public-looking address out
 * of 203.0.113.0/24 (TEST-NET-3, which the sandbox rules do not treat as private) and an HTTP
 * server inside. Each app serves busybox httpd with a CGI probe (`/cgi-bin/probe?HOST:PORT/PATH`)
 * that makes one TCP request from inside the sandbox, so the test asks for every connection on
 * demand, also from a restored copy.
 *
 * Checked: an instance with outbound on fetches from the internet server; one with it off cannot
 * (and the server never sees its request); the outbound-on instance still cannot reach a server
 * on the host's 127.0.0.1 (through the user-mode 10.0.2.2 or its gateway), the host's own
 * addresses (its veth gateway, its address on the internet link, its other interfaces) nor
 * another outbound-on instance (microvm: a restored copy in a namespace of its own, which itself
 * gets out). The host-side servers count connections, so a probe that got through cannot hide.
 * Names: the instance's /etc/resolv.conf names Alto's resolver, which forwards for an instance
 * with outbound access (to an upstream this file runs on 127.0.0.1, `ALTO_DNS_UPSTREAM`) and not
 * for one without (process: REFUSED; microvm: no nameserver at all); a restored microVM resolves too.
 *
 * Needs root, nftables, iproute2, qemu-system-x86, busybox-static and e2fsprogs.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findCommand, run } from './common.js';
import { defaultSandboxCacheDir } from './index.js';
import { MicrovmDriver } from './microvm.js';
import type { Instance, SandboxDriver, SandboxSpec } from './port.js';
import { ProcessDriver } from './process.js';
import { GUEST_NAMESERVER } from './dns.js';
import { startDnsUpstream, type DnsUpstream } from './test-dns-upstream.js';
import { gatewayOf, httpGet, isOpen, probeFrom } from './test-probe.js';
import { ensureBusyboxRootfs } from './test-rootfs.js';

const INTERNET_PAGE = 'hello from the internet';

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A TCP server on the host that answers "trap" and counts who got through. */
interface Trap {
  server: Server;
  port: number;
  connections: number;
}

async function listenTrap(address: string): Promise<Trap> {
  const trap = { connections: 0 } as Trap;
  trap.server = createServer((socket) => {
    trap.connections += 1;
    socket.on('error', () => undefined);
    socket.end('HTTP/1.0 200 OK\r\n\r\ntrap\n');
  });
  await new Promise<void>((resolve) => trap.server.listen(0, address, resolve));
  trap.port = (trap.server.address() as { port: number }).port;
  return trap;
}

/** Connects from the host itself: proves a trap really listens where the sandbox is sent. */
function hostCanConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The "internet": a network namespace with a veth to the host and an HTTP server inside. */
interface Internet {
  namespace: string;
  hostInterface: string;
  /** The host's end of the link: one of the host's own addresses, public-looking. */
  hostAddress: string;
  /** The server's address, reached through the host like any address out there. */
  serverAddress: string;
  server: ChildProcess;
  /** Request paths the server has seen. */
  requests: string[];
}

const SERVER_SCRIPT = `
require('node:http').createServer((request, response) => {
  console.log('request ' + request.url);
  response.end(${JSON.stringify(`${INTERNET_PAGE}\n`)});
}).listen(80, '0.0.0.0', () => console.log('listening'));
`;

async function createInternet(): Promise<Internet> {
  const tag = randomBytes(2).toString('hex');
  const namespace = `alto-test-inet-${tag}`;
  const hostInterface = `atinet${tag}`;
  // A /30 of 203.0.113.0/24 no other link on this host uses (another run of this file, say).
  const routes = (await run('ip', ['-4', 'route', 'show'])).stdout;
  const free = Array.from({ length: 64 }, (_, slot) => slot).filter((slot) => !routes.includes(`203.0.113.${slot * 4}/30`));
  const slot = free[Math.floor(Math.random() * free.length)]!;
  const hostAddress = `203.0.113.${slot * 4 + 1}`;
  const serverAddress = `203.0.113.${slot * 4 + 2}`;
  await run('ip', ['-batch', '-'], {
    input: [
      `netns add ${namespace}`,
      `link add ${hostInterface} type veth peer name ${hostInterface}i netns ${namespace}`,
      `addr add ${hostAddress}/30 dev ${hostInterface}`,
      `link set ${hostInterface} up`,
      '',
    ].join('\n'),
  });
  await run('ip', ['-netns', namespace, '-batch', '-'], {
    input: ['link set lo up', `addr add ${serverAddress}/30 dev ${hostInterface}i`, `link set ${hostInterface}i up`, `route add default via ${hostAddress}`, ''].join('\n'),
  });
  const server = spawn(findCommand('nsenter')!, [`--net=/run/netns/${namespace}`, '--', process.execPath, '-e', SERVER_SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
  const internet: Internet = { namespace, hostInterface, hostAddress, serverAddress, server, requests: [] };
  let listening = false;
  let buffered = '';
  server.stdout!.on('data', (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      if (line === 'listening') listening = true;
      else if (line.startsWith('request ')) internet.requests.push(line.slice('request '.length));
    }
  });
  try {
    await waitFor(() => listening || server.exitCode !== null, 'the internet server');
    if (!listening) throw new Error('the internet server did not start');
  } catch (error) {
    await destroyInternet(internet);
    throw error;
  }
  return internet;
}

async function destroyInternet(internet: Internet): Promise<void> {
  if (internet.server.exitCode === null && internet.server.signalCode === null) {
    const ended = new Promise((resolve) => internet.server.once('exit', resolve));
    internet.server.kill('SIGKILL');
    await ended;
  }
  // Deleting the namespace deletes the veth pair with it.
  await run('ip', ['netns', 'del', internet.namespace]).catch(() => undefined);
  await run('ip', ['link', 'del', internet.hostInterface]).catch(() => undefined);
}

/** busybox httpd with a CGI that makes one TCP request from inside the sandbox and says how it went. */
function probeSpec(allowOutbound: boolean, memoryMiB: number): SandboxSpec {
  const probe = [
    '#!/bin/sh',
    'target=${QUERY_STRING%%/*}; path=${QUERY_STRING#*/}',
    'echo "Content-Type: text/plain"; echo',
    // nc exits 0 only when the connection was made; -w bounds a connect that is never answered.
    'if printf "GET /$path HTTP/1.0\\r\\n\\r\\n" | nc -w 3 "${target%:*}" "${target##*:}" >/tmp/reply.$$ 2>&1; then echo open; cat /tmp/reply.$$; else echo blocked; fi',
    'rm -f /tmp/reply.$$',
  ].join('\n');
  // /cgi-bin/lookup?NAME: the instance's resolv.conf, then what nslookup (busybox's DNS client, which reads it) got.
  const lookup = ['#!/bin/sh', 'echo "Content-Type: text/plain"; echo', 'cat /etc/resolv.conf', 'echo ---', 'nslookup -type=a "$QUERY_STRING" 2>&1'].join('\n');
  const script = [
    'mkdir -p /tmp/www/cgi-bin',
    `cat > /tmp/www/cgi-bin/probe <<'EOF'\n${probe}\nEOF`,
    'chmod 755 /tmp/www/cgi-bin/probe',
    `cat > /tmp/www/cgi-bin/lookup <<'EOF'\n${lookup}\nEOF`,
    'chmod 755 /tmp/www/cgi-bin/lookup',
    'echo up > /tmp/www/index.html',
    'exec httpd -f -p 8080 -h /tmp/www',
  ].join('\n');
  return {
    rootfs,
    entrypoint: ['/bin/sh', '-c'],
    cmd: [script],
    env: { PATH: '/bin' },
    port: 8080,
    memoryMiB,
    cpus: 1,
    allowOutbound,
    name: allowOutbound ? 'outbound-on' : 'outbound-off',
  };
}

/** The host's IPv4 addresses on its lasting interfaces (other tests' sandbox and internet links come and go). */
function hostAddresses(): string[] {
  return Object.entries(networkInterfaces())
    .filter(([name]) => !name.startsWith('altoh') && !name.startsWith('atinet'))
    .flatMap(([, entries]) => entries ?? [])
    .filter((entry) => entry.family === 'IPv4' && !entry.internal)
    .map((entry) => entry.address);
}

const workspace = mkdtempSync(join(tmpdir(), 'alto-outbound-test-'));
let rootfs: string;
let internet: Internet | undefined;
let loopbackTrap: Trap;
let anyAddressTrap: Trap;
let dnsUpstream: DnsUpstream;
const upstreamBefore = process.env.ALTO_DNS_UPSTREAM;

/** The instance's resolv.conf and nslookup's answer for `name`, by its lookup CGI. */
async function lookupFrom(instance: Instance, name: string): Promise<{ resolvConf: string; answer: string }> {
  const response = await httpGet(instance.host, instance.port, `/cgi-bin/lookup?${name}`);
  assert.equal(response.status, 200, `the lookup in ${instance.id} answered ${response.status}`);
  const [resolvConf, answer] = response.body.split('---\n');
  return { resolvConf: resolvConf!, answer: answer ?? '' };
}

before(async () => {
  rootfs = await ensureBusyboxRootfs(defaultSandboxCacheDir());
  // The drivers' resolvers read their upstreams per query: this file's server, never the host's.
  dnsUpstream = await startDnsUpstream({ 'on.example': ['127.0.0.7'], 'off.example': ['127.0.0.8'], 'restored.example': ['127.0.0.9'] });
  process.env.ALTO_DNS_UPSTREAM = `127.0.0.1:${dnsUpstream.port}`;
  internet = await createInternet();
  loopbackTrap = await listenTrap('127.0.0.1');
  anyAddressTrap = await listenTrap('0.0.0.0');
});

after(async () => {
  loopbackTrap?.server.close();
  anyAddressTrap?.server.close();
  if (internet) await destroyInternet(internet);
  await dnsUpstream?.stop();
  if (upstreamBefore === undefined) delete process.env.ALTO_DNS_UPSTREAM;
  else process.env.ALTO_DNS_UPSTREAM = upstreamBefore;
  rmSync(workspace, { recursive: true, force: true });
});

interface DriverCase {
  name: 'microvm' | 'process';
  make(stateDir: string): SandboxDriver;
  memoryMiB: number;
}

const cases: DriverCase[] = [
  { name: 'microvm', make: (stateDir) => new MicrovmDriver({ cacheDir: defaultSandboxCacheDir(), stateDir }), memoryMiB: 128 },
  { name: 'process', make: (stateDir) => new ProcessDriver({ cacheDir: defaultSandboxCacheDir(), stateDir }), memoryMiB: 64 },
];

for (const driverCase of cases) {
  describe(`outbound access: ${driverCase.name}`, () => {
    let driver: SandboxDriver;
    let outboundOn: Instance;
    let outboundOff: Instance;

    before(async () => {
      driver = driverCase.make(join(workspace, `state-${driverCase.name}`));
      await driver.probe();
      [outboundOn, outboundOff] = await Promise.all([
        driver.start(probeSpec(true, driverCase.memoryMiB)),
        driver.start(probeSpec(false, driverCase.memoryMiB)),
      ]);
    });

    after(async () => {
      await driver?.close();
    });

    test('says it can give outbound access', async () => {
      assert.equal((await driver.describe()).capabilities.outbound, true);
    });

    test('an instance with outbound on fetches from a server on the internet', async () => {
      const answer = await probeFrom(outboundOn, `${internet!.serverAddress}:80`, `from-${driverCase.name}-on`);
      assert.ok(isOpen(answer), answer);
      assert.ok(answer.includes(INTERNET_PAGE), answer);
      assert.ok(internet!.requests.includes(`/from-${driverCase.name}-on`), internet!.requests.join(', '));
    });

    test('an instance with outbound off cannot, though its probe works', async () => {
      // The probe itself works: the app reaches its own server.
      assert.ok(isOpen(await probeFrom(outboundOff, '127.0.0.1:8080')));
      const answer = await probeFrom(outboundOff, `${internet!.serverAddress}:80`, `from-${driverCase.name}-off`);
      assert.equal(answer.split('\n')[0], 'blocked', answer);
      assert.ok(!internet!.requests.includes(`/from-${driverCase.name}-off`), 'the internet server saw the request');
    });

    test("names resolve through Alto's resolver with outbound on, and not with it off", async () => {
      const on = await lookupFrom(outboundOn, 'on.example');
      const nameserver = driverCase.name === 'microvm' ? GUEST_NAMESERVER : gatewayOf(outboundOn);
      assert.equal(on.resolvConf, `# Alto's resolver for this instance\nnameserver ${nameserver}\noptions ndots:0\n`);
      assert.match(on.answer, /Address: 127\.0\.0\.7$/m, on.answer);
      assert.ok(dnsUpstream.asked('on.example').length > 0);
      const off = await lookupFrom(outboundOff, 'off.example');
      if (driverCase.name === 'microvm') assert.doesNotMatch(off.resolvConf, /nameserver/, off.resolvConf);
      else assert.equal(off.resolvConf, `# Alto's resolver for this instance\nnameserver ${gatewayOf(outboundOff)}\noptions ndots:0\n`);
      assert.doesNotMatch(off.answer, /127\.0\.0\.8/, off.answer);
      if (driverCase.name === 'process') assert.match(off.answer, /REFUSED/, off.answer);
      assert.equal(dnsUpstream.asked('off.example').length, 0, 'the upstream was asked for an instance without outbound access');
    });

    test('outbound on still cannot reach the host loopback nor the host own addresses', async () => {
      const gateway = gatewayOf(outboundOn);
      const ownAddresses = [gateway, internet!.hostAddress, ...hostAddresses().filter((address) => address !== gateway)];
      // The traps really listen on every one of those addresses: the host reaches them.
      for (const address of ownAddresses) assert.ok(await hostCanConnect(address, anyAddressTrap.port), `the trap does not listen on ${address}`);
      const before = { loopback: loopbackTrap.connections, any: anyAddressTrap.connections };
      const targets = [
        // User-mode networking's alias of the loopback of the namespace QEMU runs in.
        `10.0.2.2:${loopbackTrap.port}`,
        `10.0.2.2:${anyAddressTrap.port}`,
        `127.0.0.1:${loopbackTrap.port}`,
        `${gateway}:${loopbackTrap.port}`,
        ...ownAddresses.map((address) => `${address}:${anyAddressTrap.port}`),
      ];
      const answers = await Promise.all(targets.map((target) => probeFrom(outboundOn, target)));
      targets.forEach((target, index) => assert.equal(answers[index]!.split('\n')[0], 'blocked', `${target}: ${answers[index]}`));
      assert.equal(loopbackTrap.connections, before.loopback, 'the host loopback server saw a connection from the sandbox');
      assert.equal(anyAddressTrap.connections, before.any, 'a server on the host addresses saw a connection from the sandbox');
    });

    test(
      driverCase.name === 'microvm'
        ? 'a restored copy gets a namespace of its own: it gets out, and neither reaches the other'
        : 'outbound on cannot reach another outbound-on instance, and neither reaches the other',
      async () => {
        let other: Instance;
        if (driverCase.name === 'microvm') {
          const snapshotDir = join(workspace, 'snapshot');
          await outboundOn.snapshot(snapshotDir);
          other = await driver.restore(snapshotDir);
          await outboundOn.resume();
        } else {
          other = await driver.start(probeSpec(true, driverCase.memoryMiB));
        }
        try {
          assert.notEqual(other.host, outboundOn.host, 'each outbound instance has an address of its own');
          // Both answer the host, so a blocked probe below is the rules, not a dead target.
          assert.equal((await httpGet(other.host, other.port, '/')).body, 'up\n');
          assert.equal((await httpGet(outboundOn.host, outboundOn.port, '/')).body, 'up\n');
          const out = await probeFrom(other, `${internet!.serverAddress}:80`, `from-${driverCase.name}-other`);
          assert.ok(isOpen(out) && out.includes(INTERNET_PAGE), out);
          // Names resolve there too: a restored microVM's QEMU reaches a resolver of its own.
          assert.match((await lookupFrom(other, 'restored.example')).answer, /Address: 127\.0\.0\.9$/m);
          const [toOther, fromOther] = await Promise.all([
            probeFrom(outboundOn, `${other.host}:${other.port}`),
            probeFrom(other, `${outboundOn.host}:${outboundOn.port}`),
          ]);
          assert.equal(toOther.split('\n')[0], 'blocked', toOther);
          assert.equal(fromOther.split('\n')[0], 'blocked', fromOther);
        } finally {
          await other.stop(1_000);
        }
      },
    );
  });
}
