/**
 * @module compute/sandbox/links
 * Links (`SandboxSpec.links`): an instance reaches other apps of its project by name, and only
 * those, through relays on the host. Each link is one TCP relay (platform-access.ts'
 * `listenRelay`) whose every connection asks the link's `connect()` for a target (the app layer
 * wakes the linked app's instance and counts the connection until it ends) and carries the bytes
 * there. The instance learns where each link is the way Kubernetes tells pods about services:
 * `<NAME>_SERVICE_HOST` and `<NAME>_SERVICE_PORT`.
 *
 * Where a relay listens keeps platform-access.ts' guarantees (nothing else of the host opens):
 * - instances in a network namespace of their own (process driver, microvm with outbound on):
 *   on the gateway address, a free port, opened for that instance alone by an element in the
 *   nftables set `platform`; the process driver's env names that address and port;
 * - microvm without a namespace: on the host's loopback, which the guest cannot route to; QEMU's
 *   user-mode stack forwards the guest's 10.0.2.(101+i):<port> to it (microvm.ts), so the guest's
 *   address for a link never changes, whatever port the relay gets after a restore.
 */
import { errors } from '../../kit/errors.js';
import { closeGatewayPort, listenRelay, openGatewayPort, type Relay, type RelayConnect } from './platform-access.js';
import type { SandboxNetwork } from './network.js';
import type { SandboxLink } from './port.js';

/** At most this many links per instance (each is a listener on the host, and a guest address for microvm). */
export const MAX_LINKS = 16;

/** Refuses links no driver can honour: too many, a name twice, a name that is no app name, a port out of range. */
export function validateLinks(links: SandboxLink[]): void {
  if (links.length > MAX_LINKS) throw errors.badRequest(`links: at most ${MAX_LINKS}, not ${links.length}`);
  const names = new Set<string>();
  for (const link of links) {
    if (!/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/.test(link.name)) throw errors.badRequest(`link "${link.name}": an app name (lower-case letters, digits and dashes)`);
    if (names.has(link.name)) throw errors.badRequest(`link "${link.name}" is given twice`);
    names.add(link.name);
    if (!Number.isInteger(link.port) || link.port < 1 || link.port > 65_535) throw errors.badRequest(`link "${link.name}": port ${link.port} is not 1-65535`);
  }
}

/** A link as a snapshot keeps it: everything but the function. */
export type SavedLink = Pick<SandboxLink, 'name' | 'port'>;

/** The relays of one instance's links, open until `close`. */
export interface LinkRelays {
  /** Per link, in the spec's order: where its relay listens on the host. */
  relays: { name: string; aliases?: string[]; address: string; port: number }[];
  close(): Promise<void>;
}

/** `cache-2` → `CACHE_2`: the prefix of a link's variables (Kubernetes' service variables). */
export function linkVariablePrefix(name: string): string {
  return name.toUpperCase().replaceAll('-', '_');
}

/**
 * The /etc/hosts lines naming each link's address (`address name alias...`), for links whose
 * relay listens on the linked app's own port: there `name:port` reaches the app as on a network.
 */
export function linkHostLines(links: { name: string; aliases?: string[]; host: string }[]): string[] {
  return links.map((link) => [link.host, link.name, ...(link.aliases ?? [])].join(' '));
}

/** The variables that tell an instance where each link is. */
export function linkVariables(links: { name: string; host: string; port: number }[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const link of links) {
    const prefix = linkVariablePrefix(link.name);
    env[`${prefix}_SERVICE_HOST`] = link.host;
    env[`${prefix}_SERVICE_PORT`] = String(link.port);
  }
  return env;
}

/** The guest address of the i-th link of a microVM (10.0.2.101 onwards, next to the platform's .100). */
export function linkGuestAddress(index: number): string {
  return `10.0.2.${101 + index}`;
}

/** Connections to a link whose app the restore was not told how to reach: closed at once. */
export const unreachableLink: RelayConnect = () => Promise.reject(new Error('this link has no target'));

/**
 * Opens one relay per link: on the gateway of `network` (and opened there in the firewall) or,
 * without a namespace, on the host's loopback.
 */
export async function openLinkRelays(links: SandboxLink[], network?: SandboxNetwork): Promise<LinkRelays> {
  const address = network ? network.hostAddress : '127.0.0.1';
  const opened: { link: SandboxLink; relay: Relay; guarded: boolean }[] = [];
  const close = async () => {
    for (const { relay, guarded } of opened.splice(0)) {
      if (guarded && network) await closeGatewayPort(network, relay.port);
      await relay.close();
    }
  };
  try {
    for (const link of links) {
      // On the linked app's own port when it is free on this address (the gateway is the
      // instance's alone), so `name:port` works through /etc/hosts; else any port.
      const relay = await listenRelay(address, link.connect, network ? link.port : undefined);
      const entry = { link, relay, guarded: false };
      opened.push(entry);
      if (network) entry.guarded = await openGatewayPort(network, relay.port);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return {
    relays: opened.map(({ link, relay }) => ({ name: link.name, aliases: link.aliases, address, port: relay.port })),
    close,
  };
}
