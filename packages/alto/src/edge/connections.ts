/**
 * @module edge/connections
 * Caps on open connections to a listener: in all, and per client address. A connection past a
 * cap is closed at once, before anything is read from it, so no client (or app relaying through
 * the edge) can hold every descriptor or every byte of memory the process has.
 *
 * The host's own loopback (`127.0.0.1`, `::1`) counts toward the total only: it is where a TLS
 * proxy in front of Alto and the sandboxes' relays come from, and those relays cap connections
 * per sandbox themselves (compute/sandbox/platform-access.ts), so one tenant cannot starve another.
 * So do the other nodes of the cloud (`exempt`): a node relays every client's requests for the
 * apps this one runs, and the clients were counted where they came in.
 */
import { isIP, type Server, type Socket } from 'node:net';
import type { Logger } from '../kit/logger.js';

export interface ConnectionCaps {
  /** Open connections in all (`ALTO_MAX_CONNECTIONS`); 0: no cap. */
  maxConnections: number;
  /** Open connections per client address (`ALTO_MAX_CONNECTIONS_PER_CLIENT`); 0: no cap. */
  maxConnectionsPerClient: number;
}

export const DEFAULT_CONNECTION_CAPS: ConnectionCaps = { maxConnections: 10_000, maxConnectionsPerClient: 256 };

/** Addresses that only the host itself connects from. */
const HOST_LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

/**
 * Applies the caps to `server` (an HTTP server or a plain TCP one): the total through Node's own
 * `maxConnections` (it closes the excess as it accepts), the per-client one by counting here.
 * Also listens for the server's own errors after it listens (a failed accept, as when the process
 * runs out of descriptors, is an 'error' on the server), so they are logged, never thrown.
 */
export function capConnections(server: Server, caps: ConnectionCaps, log: Logger, exempt?: (address: string) => boolean): void {
  if (caps.maxConnections > 0) server.maxConnections = caps.maxConnections;
  server.on('error', (error) => log.warn({ err: error }, 'the listener failed to accept a connection'));
  if (!(caps.maxConnectionsPerClient > 0)) return;
  const openByClient = new Map<string, number>();
  let refusedSinceLog = 0;
  // Before the HTTP server's own listener, so a refused connection is never parsed.
  server.prependListener('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined || HOST_LOOPBACK.has(address) || exempt?.(plainAddress(address))) return;
    const open = openByClient.get(address) ?? 0;
    if (open >= caps.maxConnectionsPerClient) {
      socket.on('error', () => undefined);
      socket.destroy();
      if (refusedSinceLog++ === 0) {
        log.warn({ client: address, cap: caps.maxConnectionsPerClient }, 'connections past the per-client cap are closed');
        setTimeout(() => (refusedSinceLog = 0), 10_000).unref();
      }
      return;
    }
    openByClient.set(address, open + 1);
    socket.once('close', () => {
      const left = (openByClient.get(address) ?? 1) - 1;
      if (left > 0) openByClient.set(address, left);
      else openByClient.delete(address);
    });
  });
}

/** `::ffff:10.0.0.5` is `10.0.0.5`: one client, one address. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address;
}

/**
 * The addresses the cloud's other nodes connect from, taken to be those their advertised URLs
 * name: an address as it is, a host name as it resolves (looked up once per name, again when
 * the names change).
 */
export class PeerAddresses {
  private addresses = new Set<string>();
  private readonly resolved = new Map<string, string[]>();

  constructor(private readonly lookupAll: (host: string) => Promise<string[]>) {}

  has(address: string): boolean {
    return this.addresses.has(address);
  }

  /** The live peers' hosts now (from their advertised URLs). */
  async update(hosts: string[]): Promise<void> {
    const next = new Set<string>();
    for (const host of hosts) {
      if (isIP(host)) {
        next.add(plainAddress(host));
        continue;
      }
      let addresses = this.resolved.get(host);
      if (!addresses) {
        addresses = await this.lookupAll(host).catch(() => []);
        if (addresses.length > 0) this.resolved.set(host, addresses);
      }
      for (const address of addresses) next.add(plainAddress(address));
    }
    this.addresses = next;
  }
}

/** Reads the caps from the environment, falling back to the defaults. */
export function connectionCapsFrom(env: NodeJS.ProcessEnv): ConnectionCaps {
  return {
    maxConnections: wholeNumber(env.ALTO_MAX_CONNECTIONS, DEFAULT_CONNECTION_CAPS.maxConnections, 'ALTO_MAX_CONNECTIONS'),
    maxConnectionsPerClient: wholeNumber(env.ALTO_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_CONNECTION_CAPS.maxConnectionsPerClient, 'ALTO_MAX_CONNECTIONS_PER_CLIENT'),
  };
}

function wholeNumber(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined || text.trim() === '') return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a whole number (0 for no cap), not "${text}"`);
  return value;
}
