/**
 * @module compute/sandbox/network
 * The process driver's network: each instance gets a network namespace (owned by the host, so
 * root inside the sandbox cannot change its addresses or routes) joined to the host by a veth
 * pair on its own /30 out of 10.231.0.0/16. The edge reaches the app at the sandbox's address;
 * the sandbox reaches nothing:
 * - the host's loopback services cannot be reached from a veth by construction (127.0.0.0/8 is
 *   local to each namespace, and the kernel drops packets from other interfaces to it);
 * - services bound to the host's other addresses, other sandboxes and the outside world are cut
 *   off by an nftables table (`inet alto_sandbox`) that drops anything a sandbox starts except,
 *   for instances that asked for it, traffic forwarded out to non-private addresses (NAT), and
 *   one TCP port of the instance's own gateway when its spec asks for the platform (the edge;
 *   the set `platform`, managed by platform-access.ts), one more per link to another app
 *   (links.ts, same set), and its resolver's port 53, UDP and TCP (dns.ts, the set `resolver`).
 * Outbound access needs the host to forward (net.ipv4.ip_forward): Alto turns it on for the first
 * instance that asks and puts back the value it found when the last one of any Alto on the host
 * has ended (leases marked `outbound`; the value found is kept in /run/alto-sandbox/ip_forward.saved,
 * so one that crashed is put back by the next Alto's first network). The sandbox itself sees its
 * own network namespace's sysctls only, and those read-only (process.ts mounts /proc/sys so).
 * Chosen over slirp4netns (user-mode networking, like QEMU's) because a veth is in the kernel
 * already, costs no extra process per instance and its isolation is the kernel's routing, not
 * a userspace stack's options.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, run } from './common.js';

const LEASE_DIR = '/run/alto-sandbox/leases';
const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
/** The host's ip_forward as Alto found it, while Alto's outbound instances need it on. */
const IP_FORWARD_SAVED = '/run/alto-sandbox/ip_forward.saved';
const OUTBOUND_MARK = ' outbound';
const SUBNET_SLOTS = 16_384;
const TABLE = 'alto_sandbox';
/** How long a reaped namespace's veth may take to go with it. */
const INTERFACE_GONE_WAIT_MS = 5_000;
export const FIREWALL_TABLE = TABLE;

/** Instances' ways to the host: their gateway's edge port and link relays (platform-access.ts adds and removes elements). */
const PLATFORM_SET = 'set platform { type ifname . ipv4_addr . inet_service; }';
const PLATFORM_RULE = 'iifname . ip daddr . tcp dport @platform accept';
/** Instances' resolvers: their gateway's port 53, UDP and TCP (dns.ts adds and removes elements). */
const RESOLVER_SET = 'set resolver { type ifname . ipv4_addr . inet_service; }';
const RESOLVER_RULES = ['iifname . ip daddr . udp dport @resolver accept', 'iifname . ip daddr . tcp dport @resolver accept'];

export interface SandboxNetwork {
  namespace: string;
  /** /run/netns/<namespace>, for nsenter. */
  namespacePath: string;
  hostInterface: string;
  hostAddress: string;
  sandboxAddress: string;
  outbound: boolean;
  lease: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Takes a free /30 with a lease file (O_EXCL, so concurrent Alto processes never share one). */
function leaseSlot(owner: string): { slot: number; lease: string } {
  mkdirSync(LEASE_DIR, { recursive: true });
  const start = Math.floor(Math.random() * SUBNET_SLOTS);
  for (let i = 0; i < SUBNET_SLOTS; i++) {
    const slot = (start + i) % SUBNET_SLOTS;
    const lease = join(LEASE_DIR, String(slot));
    if (existsSync(lease)) {
      // A lease whose process is gone (a crash) is free again.
      const [pid] = readFileSync(lease, 'utf8').split(' ');
      if (pidAlive(Number(pid))) continue;
      rmSync(lease, { force: true });
    }
    try {
      const fd = openSync(lease, 'wx');
      writeSync(fd, `${process.pid} ${owner}`);
      closeSync(fd);
      return { slot, lease };
    } catch {
      // Taken meanwhile by someone else: try the next one.
    }
  }
  throw new Error('no free sandbox subnet left in 10.231.0.0/16');
}

function slotAddresses(slot: number): { host: string; sandbox: string } {
  const base = slot * 4;
  const third = Math.floor(base / 256);
  const fourth = base % 256;
  return { host: `10.231.${third}.${fourth + 1}`, sandbox: `10.231.${third}.${fourth + 2}` };
}

/** Whether an instance with outbound access, of this Alto or another one still alive, holds a lease. */
function outboundLeaseAlive(): boolean {
  let names: string[];
  try {
    names = readdirSync(LEASE_DIR);
  } catch {
    return false;
  }
  return names.some((name) => {
    try {
      const text = readFileSync(join(LEASE_DIR, name), 'utf8');
      return text.endsWith(OUTBOUND_MARK) && pidAlive(Number(text.split(' ')[0]));
    } catch {
      return false;
    }
  });
}

/** Turns the host's forwarding on, first noting what it was (unless Alto turned it on already). */
function enableForwarding(): void {
  const current = readFileSync(IP_FORWARD, 'utf8').trim();
  if (current === '1') return;
  if (!existsSync(IP_FORWARD_SAVED)) writeFileSync(IP_FORWARD_SAVED, current);
  writeFileSync(IP_FORWARD, '1');
}

/** Puts back the forwarding Alto found, once no instance with outbound access is left on the host. */
export function restoreForwarding(): void {
  if (!existsSync(IP_FORWARD_SAVED) || outboundLeaseAlive()) return;
  const saved = readFileSync(IP_FORWARD_SAVED, 'utf8').trim();
  writeFileSync(IP_FORWARD, /^[01]$/.test(saved) ? saved : '0');
  rmSync(IP_FORWARD_SAVED, { force: true });
  // Another Alto may have leased an outbound instance meanwhile: it still needs forwarding.
  if (outboundLeaseAlive()) enableForwarding();
}

let firewall: Promise<boolean> | undefined;

/** Installs the nftables table once per host; false when nft is not available. */
export function ensureFirewall(): Promise<boolean> {
  firewall ??= (async () => {
    // Forwarding left on by an Alto that ended without putting it back.
    restoreForwarding();
    if (!hasCommand('nft')) return false;
    const existing = await run('nft', ['list', 'table', 'inet', TABLE]).catch(() => undefined);
    if (existing) {
      // A table from an Alto without platform access: add the set and its rule in place, so
      // instances running meanwhile (other Alto processes) keep their rules.
      if (!existing.stdout.includes('set platform')) {
        await run('nft', ['-f', '-'], { input: `add ${PLATFORM_SET.replace('set platform', `set inet ${TABLE} platform`)}\ninsert rule inet ${TABLE} input ${PLATFORM_RULE}\n` });
      }
      if (!existing.stdout.includes('set resolver')) {
        await run('nft', ['-f', '-'], { input: `add ${RESOLVER_SET.replace('set resolver', `set inet ${TABLE} resolver`)}\n${RESOLVER_RULES.map((rule) => `insert rule inet ${TABLE} input ${rule}\n`).join('')}` });
      }
      return true;
    }
    await run('nft', ['-f', '-'], {
      input: `table inet ${TABLE} {
  set outbound { type ifname; }
  ${PLATFORM_SET}
  ${RESOLVER_SET}
  chain input {
    type filter hook input priority filter; policy accept;
    ${PLATFORM_RULE}
    ${RESOLVER_RULES.join('\n    ')}
    iifname "altoh*" ct state established,related accept
    iifname "altoh*" drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "altoh*" oifname "altoh*" drop
    iifname @outbound ip daddr { 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16 } drop
    iifname @outbound accept
    oifname @outbound ct state established,related accept
    iifname "altoh*" drop
    oifname "altoh*" drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    iifname @outbound masquerade
  }
}
`,
    });
    return true;
  })();
  return firewall;
}

/** What an instance's network is named by, known from its id before anything is made (reap.ts records it first). */
export function sandboxNetworkNames(id: string): { namespace: string; hostInterface: string } {
  return { namespace: `alto-${id}`, hostInterface: `altoh${id.slice(0, 8)}` };
}

export async function createSandboxNetwork(id: string, outbound: boolean): Promise<SandboxNetwork> {
  const hasFirewall = await ensureFirewall();
  if (outbound && !hasFirewall) throw new Error('outbound access needs nftables (apt-get install nftables)');
  const { namespace, hostInterface } = sandboxNetworkNames(id);
  const sandboxInterface = `altoc${id.slice(0, 8)}`;
  // The lease says whether the instance needs forwarding, before forwarding is turned on.
  const { slot, lease } = leaseSlot(outbound ? `${namespace}${OUTBOUND_MARK}` : namespace);
  const addresses = slotAddresses(slot);
  try {
    await run('ip', ['-batch', '-'], {
      input: [
        `netns add ${namespace}`,
        `link add ${hostInterface} type veth peer name ${sandboxInterface} netns ${namespace}`,
        `addr add ${addresses.host}/30 dev ${hostInterface}`,
        `link set ${hostInterface} up`,
        '',
      ].join('\n'),
    });
    await run('ip', ['-netns', namespace, '-batch', '-'], {
      input: [
        'link set lo up',
        `link set ${sandboxInterface} name eth0`,
        `addr add ${addresses.sandbox}/30 dev eth0`,
        'link set eth0 up',
        `route add default via ${addresses.host}`,
        '',
      ].join('\n'),
    });
    // Root inside the sandbox is not root of this (host-owned) namespace; let it bind low ports.
    await run('nsenter', [`--net=/run/netns/${namespace}`, '--', 'sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start']);
    if (outbound) {
      enableForwarding();
      await run('nft', ['add', 'element', 'inet', TABLE, 'outbound', `{ ${hostInterface} }`]);
    }
  } catch (error) {
    await run('ip', ['netns', 'del', namespace]).catch(() => undefined);
    rmSync(lease, { force: true });
    if (outbound) restoreForwarding();
    throw error;
  }
  return {
    namespace,
    namespacePath: `/run/netns/${namespace}`,
    hostInterface,
    hostAddress: addresses.host,
    sandboxAddress: addresses.sandbox,
    outbound,
    lease,
  };
}

export async function destroySandboxNetwork(network: SandboxNetwork): Promise<void> {
  if (network.outbound) await run('nft', ['delete', 'element', 'inet', TABLE, 'outbound', `{ ${network.hostInterface} }`]).catch(() => undefined);
  // Deleting the namespace deletes the veth pair with it.
  await run('ip', ['netns', 'del', network.namespace]).catch(() => undefined);
  rmSync(network.lease, { force: true });
  if (network.outbound) restoreForwarding();
}


/** The nftables elements naming `hostInterface` in the table's sets (`outbound`, and `platform` and `resolver`: interface . address . port). */
async function firewallElementsOf(hostInterface: string): Promise<{ set: string; element: string }[]> {
  const found: { set: string; element: string }[] = [];
  for (const set of ['outbound', 'platform', 'resolver']) {
    const listed = await run('nft', ['-j', 'list', 'set', 'inet', TABLE, set]).catch(() => undefined);
    if (!listed) continue;
    const entries = (JSON.parse(listed.stdout) as { nftables: { set?: { elem?: unknown[] } }[] }).nftables.flatMap((entry) => entry.set?.elem ?? []);
    for (const entry of entries) {
      if (entry === hostInterface) found.push({ set, element: `"${hostInterface}"` });
      const parts = (entry as { concat?: unknown[] }).concat;
      if (parts?.[0] === hostInterface && parts.length === 3) found.push({ set, element: `"${hostInterface}" . ${String(parts[1])} . ${String(parts[2])}` });
    }
  }
  return found;
}

/**
 * Gives back the network of an instance whose Alto ended without doing it (reap.ts has proved
 * that Alto gone): its firewall elements, its namespace (the veth pair goes with it), the host's
 * end should it be left alone, and its subnet's lease while the lease still names this namespace
 * (another Alto may have taken the slot since, its owner being gone). Returns what was there to remove.
 */
export async function reapSandboxNetwork(names: { namespace: string; hostInterface: string }): Promise<string[]> {
  const removed: string[] = [];
  for (const { set, element } of await firewallElementsOf(names.hostInterface)) {
    await run('nft', ['delete', 'element', 'inet', TABLE, set, `{ ${element} }`]);
    removed.push(`nftables element ${element} of set ${set}`);
  }
  const hostInterface = join('/sys/class/net', names.hostInterface);
  if (existsSync(join('/run/netns', names.namespace))) {
    await run('ip', ['netns', 'del', names.namespace]);
    removed.push(`network namespace ${names.namespace}`);
    // The kernel tears the namespace down, and the veth pair with it, a moment later.
    const deadline = Date.now() + INTERFACE_GONE_WAIT_MS;
    while (existsSync(hostInterface) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (existsSync(hostInterface)) {
    await run('ip', ['link', 'del', names.hostInterface]).catch((error: Error) => {
      if (existsSync(hostInterface)) throw error; // else gone meanwhile
    });
    removed.push(`interface ${names.hostInterface}`);
  }
  let leases: string[] = [];
  try {
    leases = readdirSync(LEASE_DIR);
  } catch {
    // No lease was ever taken on this host.
  }
  for (const name of leases) {
    const path = join(LEASE_DIR, name);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      continue; // taken back meanwhile by another Alto, its process being gone
    }
    const owner = text.slice(text.indexOf(' ') + 1);
    if (owner !== names.namespace && owner !== `${names.namespace}${OUTBOUND_MARK}`) continue;
    rmSync(path, { force: true });
    removed.push(`subnet lease ${name}`);
  }
  restoreForwarding();
  return removed;
}
