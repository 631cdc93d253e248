/**
 * @module kit/outbound-guard
 * The one guard every outbound connection made on a tenant's behalf goes through (cron
 * callbacks, SMTP, git clones, registry pulls and their redirects, any future webhook): the
 * host is normalised as a URL parser would (so `2130706433`, `0x7f.1` and `127.1` are
 * 127.0.0.1), resolved, and refused when any of its addresses is loopback, private, link-local,
 * CGNAT, benchmark, documentation, multicast, broadcast or reserved, or an IPv6 form that
 * carries such an IPv4 address (mapped, compatible, NAT64, 6to4; Teredo is refused outright).
 * The connection then uses the checked addresses only (`pinnedLookup`), so a name cannot be
 * re-pointed at 127.0.0.1 between the check and the connection (DNS rebinding).
 *
 * ALTO_ALLOW_PRIVATE_CALLBACKS=1 lifts the rule for every tenant connection (local development).
 */
import { promises as dns, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { AltoError } from './errors.js';

const IPV4_RANGES: [string, number, string][] = [
  ['0.0.0.0', 8, 'a "this network" address'],
  ['10.0.0.0', 8, 'a private address'],
  ['100.64.0.0', 10, 'a carrier-grade NAT address'],
  ['127.0.0.0', 8, 'a loopback address'],
  ['169.254.0.0', 16, 'a link-local address'],
  ['172.16.0.0', 12, 'a private address'],
  ['192.0.0.0', 24, 'a protocol-assignment address'],
  ['192.0.2.0', 24, 'a documentation address'],
  ['192.88.99.0', 24, 'a 6to4 relay address'],
  ['192.168.0.0', 16, 'a private address'],
  ['198.18.0.0', 15, 'a benchmarking address'],
  ['198.51.100.0', 24, 'a documentation address'],
  ['203.0.113.0', 24, 'a documentation address'],
  ['224.0.0.0', 4, 'a multicast address'],
  ['240.0.0.0', 4, 'a reserved (or broadcast) address'],
];

const IPV6_RANGES: [string, number, string][] = [
  ['::', 128, 'the unspecified address'],
  ['::1', 128, 'a loopback address'],
  ['64:ff9b:1::', 48, 'a local-use NAT64 address'],
  ['100::', 64, 'a discard-only address'],
  ['2001::', 32, 'a Teredo address'],
  ['2001:2::', 48, 'a benchmarking address'],
  ['2001:10::', 28, 'an ORCHID address'],
  ['2001:20::', 28, 'an ORCHID address'],
  ['2001:db8::', 32, 'a documentation address'],
  ['3fff::', 20, 'a documentation address'],
  ['fc00::', 7, 'a unique-local (private) address'],
  ['fe80::', 10, 'a link-local address'],
  ['fec0::', 10, 'a site-local address'],
  ['ff00::', 8, 'a multicast address'],
];

const ipv4Lists = IPV4_RANGES.map(([network, prefix, reason]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, 'ipv4');
  return { list, reason };
});
const ipv6Lists = IPV6_RANGES.map(([network, prefix, reason]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, 'ipv6');
  return { list, reason };
});

/** The 16 bytes of an IPv6 address (which `isIP` accepted), dotted IPv4 tail included. */
function ipv6Bytes(address: string): number[] {
  let text = address.replace(/%.*$/, '');
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, -dotted[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.flatMap((group) => {
    const value = parseInt(group, 16);
    return [value >> 8, value & 0xff];
  });
}

const dottedOf = (bytes: number[]) => bytes.join('.');

/** The IPv4 address an IPv6 form carries, and which form: mapped, compatible, NAT64 or 6to4. */
export function embeddedIpv4(address: string): { form: 'mapped' | 'compatible' | 'nat64' | '6to4'; ipv4: string } | undefined {
  const bytes = ipv6Bytes(address);
  const zeros = (from: number, to: number) => bytes.slice(from, to).every((byte) => byte === 0);
  const last = dottedOf(bytes.slice(12));
  // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (SIIT translated).
  if (zeros(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff) return { form: 'mapped', ipv4: last };
  if (zeros(0, 8) && bytes[8] === 0xff && bytes[9] === 0xff && zeros(10, 12)) return { form: 'mapped', ipv4: last };
  // ::a.b.c.d (IPv4-compatible, deprecated); :: and ::1 are judged as IPv6.
  if (zeros(0, 12) && !zeros(12, 15)) return { form: 'compatible', ipv4: last };
  // 64:ff9b::a.b.c.d (NAT64 well-known prefix).
  if (bytes[0] === 0 && bytes[1] === 0x64 && bytes[2] === 0xff && bytes[3] === 0x9b && zeros(4, 12)) return { form: 'nat64', ipv4: last };
  // 2002:aabb:ccdd::/48 (6to4).
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return { form: '6to4', ipv4: dottedOf(bytes.slice(2, 6)) };
  return undefined;
}

/**
 * Why a tenant's connection must not reach `address` (an IP literal), or undefined when it may.
 * Anything that is not an IP address is refused.
 */
export function forbiddenReason(address: string): string | undefined {
  const literal = address.replace(/^\[|\]$/g, '');
  const family = isIP(literal);
  if (family === 4) return ipv4Lists.find(({ list }) => list.check(literal, 'ipv4'))?.reason;
  if (family !== 6) return 'not an IP address';
  if (literal.includes('%')) return 'a scoped (link-local) address';
  const embedded = embeddedIpv4(literal);
  if (embedded?.form === 'compatible') return `an IPv4-compatible IPv6 address (${embedded.ipv4}), a deprecated form`;
  if (embedded) {
    const reason = forbiddenReason(embedded.ipv4);
    return reason ? `${reason} (${embedded.ipv4}) in an IPv6 ${embedded.form} form` : undefined;
  }
  return ipv6Lists.find(({ list }) => list.check(literal, 'ipv6'))?.reason;
}

/** True for an address a tenant's connection must not reach. */
export function isForbiddenAddress(address: string): boolean {
  return forbiddenReason(address) !== undefined;
}

export interface OutboundPolicy {
  /** Skip the address rule (an admin-trusted host, or ALTO_ALLOW_PRIVATE_CALLBACKS=1); names still resolve once and are pinned. */
  allowPrivate?: boolean;
}

/** Where a guarded connection goes: the host as asked for, and the addresses checked for it. */
export interface OutboundTarget {
  host: string;
  addresses: LookupAddress[];
}

/** A refused outbound connection: a 400 that names the host and why, never bytes of a peer. */
export class OutboundRefused extends AltoError {
  constructor(
    readonly host: string,
    readonly reason: string,
  ) {
    super('bad_request', 400, `"${host}" is (or resolves to) ${reason}; Alto connects only to public hosts on a project's behalf`);
    this.name = 'OutboundRefused';
  }
}

/** Whether ALTO_ALLOW_PRIVATE_CALLBACKS=1 lets tenants' connections reach private addresses. */
export function privateTargetsAllowed(): boolean {
  return process.env.ALTO_ALLOW_PRIVATE_CALLBACKS === '1';
}

/**
 * A host as a URL parser normalises it: numeric IPv4 forms become dotted (`2130706433`,
 * `0x7f.1`, `127.1` → 127.0.0.1), IPv6 loses its brackets and takes its short form, names are
 * lower-cased. Throws OutboundRefused for what is not a host.
 */
export function normalizeHost(host: string): string {
  const bare = host.trim().replace(/^\[|\]$/g, '');
  if (!bare) throw new OutboundRefused(host, 'no host at all');
  let hostname: string;
  try {
    hostname = new URL(`http://${isIP(bare) === 6 ? `[${bare}]` : bare}/`).hostname;
  } catch {
    throw new OutboundRefused(host, 'not a valid host name');
  }
  return hostname.replace(/^\[|\]$/g, '');
}

/**
 * Resolves `host` and checks every address it has (one bad address refuses the host: a
 * connection could pick any of them). Answers the addresses to connect to, for `pinnedLookup`.
 */
export async function resolveOutbound(host: string, policy: OutboundPolicy = {}): Promise<OutboundTarget> {
  const hostname = normalizeHost(host);
  let addresses: LookupAddress[];
  const family = isIP(hostname);
  if (family !== 0) addresses = [{ address: hostname, family }];
  else {
    try {
      addresses = await dns.lookup(hostname, { all: true, verbatim: true });
    } catch {
      throw new AltoError('bad_request', 400, `the host "${hostname}" does not resolve; give a public host name`);
    }
    if (addresses.length === 0) throw new AltoError('bad_request', 400, `the host "${hostname}" has no address`);
  }
  if (!policy.allowPrivate) {
    for (const entry of addresses) {
      const reason = forbiddenReason(entry.address);
      if (reason) throw new OutboundRefused(hostname, family !== 0 ? reason : `${reason} (${entry.address})`);
    }
  }
  return { host: hostname, addresses };
}

/**
 * A `lookup` for net/tls/http(s) that answers only the checked addresses of `target`, whatever
 * name it is asked for: the connection cannot go anywhere the guard did not see.
 */
export function pinnedLookup(target: OutboundTarget): LookupFunction {
  return (_hostname, options, callback) => {
    const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all;
    const wanted = typeof options === 'object' && options !== null ? (options as { family?: number | string }).family : undefined;
    const family = wanted === 'IPv4' ? 4 : wanted === 'IPv6' ? 6 : Number(wanted) || 0;
    const candidates = family ? target.addresses.filter((entry) => entry.family === family) : target.addresses;
    process.nextTick(() => {
      if (candidates.length === 0) {
        const error = Object.assign(new Error(`${target.host} has no IPv${family} address`), { code: 'ENOTFOUND' });
        return callback(error, '', 0);
      }
      if (all) return (callback as unknown as (error: null, addresses: LookupAddress[]) => void)(null, candidates);
      callback(null, candidates[0].address, candidates[0].family);
    });
  };
}
