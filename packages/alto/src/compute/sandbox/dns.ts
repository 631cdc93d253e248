/**
 * @module compute/sandbox/dns
 * The resolver Alto runs for its sandboxes, as Docker's embedded DNS does for containers: each
 * instance's /etc/resolv.conf names it (supervisor.sh writes the file), and it answers that
 * instance only, over UDP and TCP:
 * - the names of the instance's links (the addresses its /etc/hosts gives them), type A;
 * - for an instance with outbound access, any other name by forwarding the query, as it came,
 *   to the host's resolvers (`nameserver` lines of the host's /etc/resolv.conf, or
 *   `ALTO_DNS_UPSTREAM=host:port[,host:port]`) under an ID and a source port of its own, and
 *   relaying the answer whose ID, source and question match;
 * - for an instance without outbound access, REFUSED for any other name: it could not reach the
 *   answer, and REFUSED says "not for you" where NXDOMAIN would claim the name does not exist.
 *
 * Bounded: queries of at most 512 bytes, exactly one question and no records but one EDNS OPT
 * (FORMERR otherwise), standard queries only (QR=0, opcode 0: NOTIMP otherwise; responses are
 * never answered, so two resolvers cannot bounce a packet between them), ANY, AXFR, IXFR and
 * MAILA/MAILB refused, at most MAX_IN_FLIGHT forwarded queries per instance (SERVFAIL beyond),
 * UPSTREAM_TIMEOUT_MS per upstream, MAX_TCP_CONNECTIONS idle-timed TCP connections. An upstream
 * never lies inside the sandboxes' own network (10.231.0.0/16), where it could be a resolver of
 * this kind. A UDP answer longer than the client can take (512 bytes, or its EDNS size up to
 * 1232) is cut to its question with the TC bit, and the client asks again over TCP, which is
 * forwarded over TCP.
 *
 * Answers are relayed unchanged, also those naming loopback or private addresses (no DNS
 * rebinding filter): what a sandbox may reach is decided per packet by the firewall (network.ts
 * drops private destinations of outbound traffic, the gateway opens only its listed ports), so
 * such an answer gives it nothing it could not try with the address itself.
 *
 * Where it listens (`openSandboxResolver`): the instance's gateway, port 53 (resolv.conf has no
 * port), opened for that instance alone by elements of the nftables set `resolver` (UDP and TCP),
 * and it takes queries only from the instance's own address (no open resolver for whoever can
 * route to a gateway).
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket as DatagramSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { BlockList, connect, createServer, isIP, type Socket } from 'node:net';
import { run } from './common.js';
import { ensureFirewall, FIREWALL_TABLE, type SandboxNetwork } from './network.js';

/** The port a resolver must listen on: /etc/resolv.conf cannot name another. */
export const DNS_PORT = 53;
/** A query is a header, one question and perhaps an EDNS OPT record: this is plenty. */
export const MAX_QUERY_BYTES = 512;
/** What a UDP client without EDNS can take (RFC 1035), and the most we send to one with it (DNS flag day 2020). */
const CLASSIC_UDP_BYTES = 512;
const MAX_EDNS_UDP_BYTES = 1232;
/** Forwarded queries one instance may have waiting on upstreams at once. */
export const MAX_IN_FLIGHT = 32;
export const UPSTREAM_TIMEOUT_MS = 2_000;
export const MAX_TCP_CONNECTIONS = 16;
const TCP_IDLE_MS = 10_000;
/** A TCP answer from an upstream is at most this long (the length prefix's maximum). */
const MAX_TCP_ANSWER_BYTES = 65_535;
const MAX_UPSTREAMS = 3;
const LOCAL_TTL_SECONDS = 10;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const TYPE_A = 1;
const TYPE_OPT = 41;
const CLASS_IN = 1;
/** IXFR, AXFR, MAILB, MAILA, ANY: transfers and wildcards a sandbox has no business asking. */
const REFUSED_TYPES = new Set([251, 252, 253, 254, 255]);

/** Where queries go that the resolver does not answer itself. */
export interface Upstream {
  host: string;
  port: number;
}

/** What one instance's resolver answers. */
export interface ResolverScope {
  /** Names answered here (lower case, no trailing dot) and their IPv4 addresses. */
  names: Record<string, string>;
  /** Whether other names are forwarded upstream (the instance has outbound access); REFUSED otherwise. */
  forward: boolean;
  /** Upstream resolvers (default: `dnsUpstreams()`). */
  upstreams?: Upstream[];
  /** The one address queries are taken from (the instance's own); others are dropped. Default: any. */
  client?: string;
}

const sandboxNetwork = new BlockList();
sandboxNetwork.addSubnet('10.231.0.0', 16, 'ipv4');

/** One `host:port` (IPv6 as `[addr]:port`; port 53 when left out), or undefined when it is none. */
function parseUpstream(text: string): Upstream | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|[0-9a-fA-F:]+))(?::(\d{1,5}))?$/.exec(text.trim());
  if (!match) return undefined;
  const host = match[1] ?? match[2];
  // A bare IPv6 address has colons of its own: no port can follow it.
  if (match[2] && match[3] !== undefined && isIP(match[2]) === 6) return undefined;
  const port = match[3] === undefined ? DNS_PORT : Number(match[3]);
  if (!isIP(host) || port < 1 || port > 65_535) return undefined;
  if (isIP(host) === 4 && sandboxNetwork.check(host, 'ipv4')) return undefined;
  return { host, port };
}

/**
 * The upstream resolvers: `ALTO_DNS_UPSTREAM` (comma-separated `host:port`) when set, else the
 * `nameserver` lines of the host's /etc/resolv.conf; at most three, none in the sandboxes' network.
 */
export function dnsUpstreams(env: NodeJS.ProcessEnv = process.env, resolvConf = '/etc/resolv.conf'): Upstream[] {
  const configured = env.ALTO_DNS_UPSTREAM?.trim();
  if (configured) {
    const upstreams = configured.split(',').map((entry) => {
      const upstream = parseUpstream(entry);
      if (!upstream) throw new Error(`ALTO_DNS_UPSTREAM: "${entry.trim()}" is not host:port with an IP address outside 10.231.0.0/16`);
      return upstream;
    });
    return upstreams.slice(0, MAX_UPSTREAMS);
  }
  let text = '';
  try {
    text = readFileSync(resolvConf, 'utf8').slice(0, 64 * 1024);
  } catch {
    return [];
  }
  const upstreams: Upstream[] = [];
  for (const line of text.split('\n')) {
    const [keyword, address] = line.trim().split(/\s+/);
    if (keyword !== 'nameserver' || !address) continue;
    // A scoped IPv6 address (fe80::1%eth0) cannot be told apart from the next field here: skip it.
    const upstream = address.includes('%') ? undefined : parseUpstream(isIP(address) === 6 ? `[${address}]` : address);
    if (upstream) upstreams.push(upstream);
  }
  return upstreams.slice(0, MAX_UPSTREAMS);
}

/** A query as far as the resolver reads it. */
interface Query {
  id: number;
  /** RD, kept in the answer. */
  recursionDesired: boolean;
  /** The question section as it came (case kept, so 0x20 randomisation survives). */
  question: Buffer;
  name: string;
  type: number;
  qclass: number;
  /** The EDNS UDP payload size the client takes, or undefined without EDNS. */
  ednsSize?: number;
}

type Parsed = { query: Query } | { reject: Buffer } | { drop: true };

/** A reply with no records: the header, the question when there is one, and `rcode`. */
function replyWith(id: number, rcode: number, options: { question?: Buffer; recursionDesired?: boolean; truncated?: boolean; opcode?: number } = {}): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  // QR, the opcode as asked, TC when cut, RD as asked, RA (this resolver recurses for whom it may).
  header.writeUInt16BE(0x8000 | ((options.opcode ?? 0) << 11) | (options.truncated ? 0x0200 : 0) | (options.recursionDesired ? 0x0100 : 0) | 0x0080 | rcode, 2);
  header.writeUInt16BE(options.question ? 1 : 0, 4);
  return options.question ? Buffer.concat([header, options.question]) : header;
}

/**
 * Reads a query, bounded: the length, the header, one question (labels of at most 63 bytes, a
 * name of at most 255, no compression) and at most one additional record, an EDNS OPT.
 * Anything that is no query at all (too short, too long, a response) is dropped.
 */
export function parseQuery(message: Buffer): Parsed {
  if (message.length < 12 || message.length > MAX_QUERY_BYTES) return { drop: true };
  const id = message.readUInt16BE(0);
  const flags = message.readUInt16BE(2);
  if (flags & 0x8000) return { drop: true }; // a response: never answered (no loops)
  const opcode = (flags >> 11) & 0x0f;
  const recursionDesired = Boolean(flags & 0x0100);
  if (opcode !== 0) return { reject: replyWith(id, RCODE.NOTIMP, { opcode, recursionDesired }) };
  const formerr = { reject: replyWith(id, RCODE.FORMERR, { recursionDesired }) };
  const [questions, answers, authorities, additionals] = [4, 6, 8, 10].map((offset) => message.readUInt16BE(offset));
  if (questions !== 1 || answers !== 0 || authorities !== 0 || additionals > 1) return formerr;
  let offset = 12;
  const labels: string[] = [];
  let nameLength = 1;
  for (;;) {
    if (offset >= message.length) return formerr;
    const length = message[offset];
    if (length === 0) break;
    if (length > 63) return formerr; // a compression pointer or a reserved label type
    nameLength += length + 1;
    if (nameLength > 255 || offset + 1 + length > message.length) return formerr;
    labels.push(message.subarray(offset + 1, offset + 1 + length).toString('latin1'));
    offset += 1 + length;
  }
  offset += 1;
  if (offset + 4 > message.length) return formerr;
  const type = message.readUInt16BE(offset);
  const qclass = message.readUInt16BE(offset + 2);
  offset += 4;
  const question = Buffer.from(message.subarray(12, offset));
  let ednsSize: number | undefined;
  if (additionals === 1) {
    // The OPT record: the root name, type 41, the UDP size in the class field, TTL, RDATA.
    if (offset + 11 > message.length || message[offset] !== 0 || message.readUInt16BE(offset + 1) !== TYPE_OPT) return formerr;
    ednsSize = message.readUInt16BE(offset + 3);
    const dataLength = message.readUInt16BE(offset + 9);
    offset += 11 + dataLength;
  }
  if (offset !== message.length) return formerr;
  const name = labels.join('.').toLowerCase();
  return { query: { id, recursionDesired, question, name, type, qclass, ednsSize } };
}

/** The A answer for a local name (a pointer to the question's name, class IN, a short TTL). */
function localAnswer(query: Query, address: string | undefined): Buffer {
  const reply = replyWith(query.id, RCODE.NOERROR, { question: query.question, recursionDesired: query.recursionDesired });
  // Another type for a known name: no records of that type (NODATA), not NXDOMAIN.
  if (query.type !== TYPE_A || !address || isIP(address) !== 4) return reply;
  reply.writeUInt16BE(1, 6);
  const record = Buffer.alloc(16);
  record.writeUInt16BE(0xc00c, 0);
  record.writeUInt16BE(TYPE_A, 2);
  record.writeUInt16BE(CLASS_IN, 4);
  record.writeUInt32BE(LOCAL_TTL_SECONDS, 6);
  record.writeUInt16BE(4, 10);
  address.split('.').forEach((part, index) => record.writeUInt8(Number(part), 12 + index));
  return Buffer.concat([reply, record]);
}

/** Whether `answer` is the answer to `query` sent under `id`: a response, that ID, the same question. */
function answers(answer: Buffer, id: number, query: Query): boolean {
  if (answer.length < 12 + query.question.length || answer.readUInt16BE(0) !== id || !(answer.readUInt16BE(2) & 0x8000)) return false;
  if (answer.readUInt16BE(4) !== 1) return false;
  const question = answer.subarray(12, 12 + query.question.length);
  // Names compare without regard to case (an upstream may answer in its own).
  return question.toString('latin1').toLowerCase() === query.question.toString('latin1').toLowerCase();
}

/** Asks one upstream over UDP; the answer (its ID put back) or undefined on timeout or error. */
function askOverUdp(upstream: Upstream, message: Buffer, query: Query): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const id = randomInt(0x10000);
    const outgoing = Buffer.from(message);
    outgoing.writeUInt16BE(id, 0);
    const socket: DatagramSocket = createSocket(isIP(upstream.host) === 6 ? 'udp6' : 'udp4');
    let done = false;
    const finish = (answer: Buffer | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(undefined), UPSTREAM_TIMEOUT_MS);
    socket.on('error', () => finish(undefined));
    socket.on('message', (answer, from) => {
      // Only the upstream asked, and only the answer to this question (anything else is ignored).
      if (from.address !== upstream.host || from.port !== upstream.port || !answers(answer, id, query)) return;
      const relayed = Buffer.from(answer);
      relayed.writeUInt16BE(query.id, 0);
      finish(relayed);
    });
    socket.send(outgoing, upstream.port, upstream.host, (error) => {
      if (error) finish(undefined);
    });
  });
}

/** Asks one upstream over TCP (a connection per query); the answer (its ID put back) or undefined. */
function askOverTcp(upstream: Upstream, message: Buffer, query: Query): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const id = randomInt(0x10000);
    const outgoing = Buffer.alloc(2 + message.length);
    outgoing.writeUInt16BE(message.length, 0);
    message.copy(outgoing, 2);
    outgoing.writeUInt16BE(id, 2);
    const socket = connect({ host: upstream.host, port: upstream.port });
    let received = Buffer.alloc(0);
    let done = false;
    const finish = (answer: Buffer | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(undefined), UPSTREAM_TIMEOUT_MS);
    socket.on('error', () => finish(undefined));
    socket.on('close', () => finish(undefined));
    socket.on('connect', () => socket.write(outgoing));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length > 2 + MAX_TCP_ANSWER_BYTES) return finish(undefined);
      if (received.length < 2 || received.length < 2 + received.readUInt16BE(0)) return;
      const answer = received.subarray(2, 2 + received.readUInt16BE(0));
      if (!answers(answer, id, query)) return finish(undefined);
      const relayed = Buffer.from(answer);
      relayed.writeUInt16BE(query.id, 0);
      finish(relayed);
    });
  });
}

/** How the query came, which decides how it is forwarded and how long the answer may be. */
export type Transport = 'udp' | 'tcp';

/**
 * Answers one message from a sandbox: the bytes to send back, or undefined to send nothing.
 * `inFlight` counts this instance's forwarded queries (shared by its UDP and TCP listeners).
 */
export async function answerMessage(message: Buffer, scope: ResolverScope, transport: Transport, inFlight: { count: number } = { count: 0 }): Promise<Buffer | undefined> {
  const parsed = parseQuery(message);
  if ('drop' in parsed) return undefined;
  if ('reject' in parsed) return parsed.reject;
  const { query } = parsed;
  const reply = (rcode: number) => replyWith(query.id, rcode, { question: query.question, recursionDesired: query.recursionDesired });
  if (query.qclass !== CLASS_IN || REFUSED_TYPES.has(query.type)) return reply(RCODE.REFUSED);
  const name = query.name.endsWith('.') ? query.name.slice(0, -1) : query.name;
  if (Object.hasOwn(scope.names, name)) return localAnswer(query, scope.names[name]);
  if (!scope.forward) return reply(RCODE.REFUSED);
  const upstreams = scope.upstreams ?? dnsUpstreams();
  if (upstreams.length === 0 || inFlight.count >= MAX_IN_FLIGHT) return reply(RCODE.SERVFAIL);
  inFlight.count += 1;
  try {
    for (const upstream of upstreams) {
      const answer = transport === 'udp' ? await askOverUdp(upstream, message, query) : await askOverTcp(upstream, message, query);
      if (!answer) continue;
      if (transport === 'tcp') return answer;
      const limit = Math.min(Math.max(query.ednsSize ?? CLASSIC_UDP_BYTES, CLASSIC_UDP_BYTES), MAX_EDNS_UDP_BYTES);
      if (answer.length <= limit) return answer;
      // Too long for the client over UDP: the question and TC, and it asks again over TCP.
      return replyWith(query.id, answer.readUInt16BE(2) & 0x000f, { question: query.question, recursionDesired: query.recursionDesired, truncated: true });
    }
    return reply(RCODE.SERVFAIL);
  } finally {
    inFlight.count -= 1;
  }
}

/** A resolver listening for one instance until `close`. */
export interface Resolver {
  address: string;
  port: number;
  close(): Promise<void>;
}

/** Listens on `address`:`port` (UDP and TCP; 0: any free port, the same for both) and answers per `scope`. */
export async function listenResolver(address: string, port: number, scope: ResolverScope): Promise<Resolver> {
  const inFlight = { count: 0 };
  const udp = createSocket({ type: isIP(address) === 6 ? 'udp6' : 'udp4' });
  let closed = false;
  udp.on('message', (message, from) => {
    if (scope.client !== undefined && from.address !== scope.client) return;
    answerMessage(message, scope, 'udp', inFlight)
      .then((answer) => {
        if (answer && !closed) udp.send(answer, from.port, from.address, () => undefined);
      })
      .catch(() => undefined);
  });
  const sockets = new Set<Socket>();
  const tcp = createServer((socket) => {
    if (scope.client !== undefined && socket.remoteAddress !== scope.client) {
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    let buffered = Buffer.alloc(0);
    let busy = false;
    // One query at a time per connection; what comes meanwhile waits in a bounded buffer.
    const next = () => {
      if (busy || buffered.length < 2) return;
      const length = buffered.readUInt16BE(0);
      if (length > MAX_QUERY_BYTES) return socket.destroy();
      if (buffered.length < 2 + length) return;
      const message = buffered.subarray(2, 2 + length);
      buffered = buffered.subarray(2 + length);
      busy = true;
      answerMessage(Buffer.from(message), scope, 'tcp', inFlight)
        .then((answer) => {
          busy = false;
          if (socket.destroyed) return;
          if (!answer) return socket.destroy();
          const framed = Buffer.alloc(2 + answer.length);
          framed.writeUInt16BE(answer.length, 0);
          answer.copy(framed, 2);
          socket.write(framed);
          next();
        })
        .catch(() => socket.destroy());
    };
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length > 2 * (2 + MAX_QUERY_BYTES)) return socket.destroy();
      next();
    });
  });
  tcp.maxConnections = MAX_TCP_CONNECTIONS;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
    await new Promise<void>((resolve) => {
      try {
        udp.close(() => resolve());
      } catch {
        resolve(); // never bound
      }
    });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, address, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
    const tcpPort = (tcp.address() as { port: number }).port;
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(tcpPort, address, () => {
        udp.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await close();
    throw error;
  }
  // Later failures (an accept out of descriptors, an unreachable sender) end nothing.
  tcp.on('error', () => undefined);
  udp.on('error', () => undefined);
  return { address, port: (tcp.address() as { port: number }).port, close };
}

function resolverElements(network: SandboxNetwork): string {
  return `{ "${network.hostInterface}" . ${network.hostAddress} . ${DNS_PORT} }`;
}

/** The resolver of one instance with a namespace of its own: on its gateway, port 53, opened in the firewall for it alone. */
export async function openSandboxResolver(network: SandboxNetwork, scope: ResolverScope): Promise<Resolver> {
  // Queries only from the instance itself: nobody else who can route to its gateway may use it.
  const resolver = await listenResolver(network.hostAddress, DNS_PORT, { ...scope, client: network.sandboxAddress });
  let guarded = false;
  try {
    guarded = await ensureFirewall();
    if (guarded) await run('nft', ['add', 'element', 'inet', FIREWALL_TABLE, 'resolver', resolverElements(network)]);
  } catch (error) {
    await resolver.close();
    throw error;
  }
  return {
    ...resolver,
    async close() {
      if (guarded) await run('nft', ['delete', 'element', 'inet', FIREWALL_TABLE, 'resolver', resolverElements(network)]).catch(() => undefined);
      await resolver.close();
    },
  };
}

let warnedUnavailable = false;

/**
 * `openSandboxResolver`, or undefined when its port cannot be had (another DNS server holding
 * port 53 on every address of the host): the instance then runs with its image's
 * /etc/resolv.conf, and the host is told once.
 */
export async function openSandboxResolverIfPossible(network: SandboxNetwork, scope: ResolverScope): Promise<Resolver | undefined> {
  try {
    return await openSandboxResolver(network, scope);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
    if (!warnedUnavailable) {
      warnedUnavailable = true;
      process.emitWarning(`sandboxes get no resolver: port 53 of their gateway cannot be had (${code}); a DNS server listening on every address of this host holds it`);
    }
    return undefined;
  }
}

/** The names an instance's resolver answers: its links' names and aliases, at their addresses (as in its /etc/hosts). */
export function linkNames(links: { name: string; aliases?: string[]; host: string }[]): Record<string, string> {
  const names: Record<string, string> = {};
  for (const link of links) for (const name of [link.name, ...(link.aliases ?? [])]) names[name.toLowerCase()] = link.host;
  return names;
}

/** Where a microVM guest finds its resolver: QEMU's user-mode DNS address, relayed to Alto's resolver (microvm.ts). */
export const GUEST_NAMESERVER = '10.0.2.3';

/**
 * A microVM guest's /etc/resolv.conf. With outbound access: QEMU's DNS address. Without: no
 * nameserver (its restricted user-mode network drops every UDP packet of the guest, and QEMU
 * cannot forward a guest's UDP), so a lookup goes to the guest's own loopback, where glibc fails
 * at once and clients that wait out a refused query (musl, busybox) wait one second, not the
 * image's servers' timeouts; its links' names are in /etc/hosts.
 */
export function guestResolvConf(outbound: boolean): string {
  return outbound ? resolvConf(GUEST_NAMESERVER) : "# no resolver: this instance has no outbound access (its links' names are in /etc/hosts)\noptions ndots:0 timeout:1 attempts:1";
}

/** The /etc/resolv.conf of an instance whose resolver is at `address` (port 53), Docker's way. */
export function resolvConf(address: string): string {
  return `# Alto's resolver for this instance\nnameserver ${address}\noptions ndots:0`;
}
