/**
 * @module compute/sandbox/platform-access
 * The one way out of a sandbox to the host: Alto's own edge (`SandboxSpec.platform`), so an app
 * or function can call Alto's API with the SDK at `ALTO_URL`. Everything else on the host stays
 * refused.
 *
 * For an instance in a network namespace of its own (the process driver, and microvm with
 * outbound on, whose QEMU runs in one), the instance's gateway (the host's end of its veth) is
 * opened for exactly one TCP port by an element in the nftables set `platform`
 * (`interface . address . port`, see network.ts); every other port of the gateway, the host's
 * other addresses and its loopback stay dropped. Which port depends on where the edge listens:
 * - the edge listens on every address (`alto up`'s default, 0.0.0.0): the gateway's edge port
 *   itself, straight into the edge (no extra hop; the edge sees the instance's own address);
 * - the edge listens on the loopback only (`--host 127.0.0.1`): the gateway address cannot reach
 *   it, so a small TCP forwarder listens on the gateway address (a free port) and relays each
 *   connection to 127.0.0.1:<edge port>. Chosen over opening the edge to every address, which
 *   would undo what `--host` asked for.
 * Which case holds is measured, not configured: the host connects to the gateway's edge port.
 *
 * microvm with outbound off has no namespace: QEMU's user-mode stack forwards the guest's
 * connections to 10.0.2.100:80 to the host's 127.0.0.1:<edge port> (microvm.ts).
 *
 * The relay (`listenRelay`) and the gateway's firewall opening (`openGatewayPort`) serve links
 * too (links.ts): one more relay per linked app, opened the same way and for that instance only.
 */
import { connect, createServer, type Socket } from 'node:net';
import { run } from './common.js';
import { ensureFirewall, FIREWALL_TABLE, type SandboxNetwork } from './network.js';

/** Where an instance reaches the edge, until `close`. */
export interface PlatformAccess {
  /** Address and port as seen from inside the instance's namespace. */
  address: string;
  port: number;
  /** 'direct' (the edge listens on the gateway address) or 'forwarder' (relayed to its loopback). */
  via: 'direct' | 'forwarder';
  close(): Promise<void>;
}

/** The variable an instance finds the edge by. */
export const PLATFORM_URL_VARIABLE = 'ALTO_URL';

const CONNECT_PROBE_TIMEOUT_MS = 2_000;

/**
 * Open connections one relay takes at once. A relay serves one instance (its way to the edge, or
 * one of its links), so this caps what one sandbox can hold of the host's descriptors; the excess
 * is closed as it is accepted.
 */
export const MAX_RELAY_CONNECTIONS = 256;

/** Whether something accepts TCP connections at host:port (from the host itself). */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(CONNECT_PROBE_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Where one relayed connection goes, and what to call once it has ended. */
export interface RelayTarget {
  host: string;
  port: number;
  /** How to open the connection when a plain connect to host:port is not the best way (`Instance.connect`). */
  connect?(): Promise<Socket>;
  release(): void;
}

/** Finds the target of each new connection (rejecting closes that connection). */
export type RelayConnect = () => Promise<RelayTarget>;

/** A TCP relay listening on one address until `close`. */
export interface Relay {
  port: number;
  close(): Promise<void>;
}

/**
 * Relays each connection on `listenAddress` (a free port) to the target `connect` gives for it,
 * releasing that target when the connection ends. A connection whose target cannot be had or
 * reached is closed. Used for the edge (a fixed target on the loopback) and for links (links.ts:
 * an app's instance, woken for the connection).
 */
export async function listenRelay(listenAddress: string, connectTarget: RelayConnect, preferredPort?: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  let closed = false;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const relay = async (inbound: Socket) => {
    const target = await connectTarget();
    let outbound: Socket;
    try {
      outbound = target.connect ? await target.connect() : connect({ host: target.host, port: target.port });
    } catch (error) {
      target.release();
      throw error;
    }
    track(outbound);
    let open = 2;
    for (const socket of [inbound, outbound]) {
      socket.once('close', () => {
        // Either side failing ends both; the target is released once both are gone.
        inbound.destroy();
        outbound.destroy();
        if (--open === 0) target.release();
      });
    }
    if (closed || inbound.destroyed) {
      outbound.destroy();
      return;
    }
    // Half-open both ways: a client that shuts down its side after the request still gets the reply.
    outbound.allowHalfOpen = true;
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.resume();
  };
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (inbound) => {
    track(inbound);
    relay(inbound).catch(() => inbound.destroy());
  });
  server.maxConnections = MAX_RELAY_CONNECTIONS;
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, listenAddress, () => {
        server.off('error', reject);
        // A failed accept (out of descriptors) is an 'error' on the server: the relay keeps going.
        server.on('error', () => undefined);
        resolve();
      });
    });
  // The preferred port when it is free on this address, else any.
  if (preferredPort === undefined) await listen(0);
  else await listen(preferredPort).catch(() => listen(0));
  return {
    port: (server.address() as { port: number }).port,
    async close() {
      if (closed) return;
      closed = true;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function element(network: SandboxNetwork, port: number): string {
  return `{ "${network.hostInterface}" . ${network.hostAddress} . ${port} }`;
}

/** Lets the instance reach one TCP port of its gateway (the nftables set `platform`); false when there is no firewall. */
export async function openGatewayPort(network: SandboxNetwork, port: number): Promise<boolean> {
  const guarded = await ensureFirewall();
  if (guarded) await run('nft', ['add', 'element', 'inet', FIREWALL_TABLE, 'platform', element(network, port)]);
  return guarded;
}

/** Closes what openGatewayPort opened (an instance's namespace going away does not remove the element). */
export async function closeGatewayPort(network: SandboxNetwork, port: number): Promise<void> {
  await run('nft', ['delete', 'element', 'inet', FIREWALL_TABLE, 'platform', element(network, port)]).catch(() => undefined);
}

/**
 * Opens the instance's gateway for the edge and nothing else. Without nftables there is no guard
 * to open (network.ts: the host's addresses are then not closed to sandboxes at all), so only the
 * forwarder, when needed, is set up.
 */
export async function openPlatformAccess(network: SandboxNetwork, edgePort: number): Promise<PlatformAccess> {
  let forwarder: Relay | undefined;
  let port = edgePort;
  if (!(await accepts(network.hostAddress, edgePort))) {
    forwarder = await listenRelay(network.hostAddress, async () => ({ host: '127.0.0.1', port: edgePort, release() {} }));
    port = forwarder.port;
  }
  let guarded: boolean;
  try {
    guarded = await openGatewayPort(network, port);
  } catch (error) {
    await forwarder?.close();
    throw error;
  }
  let closed = false;
  return {
    address: network.hostAddress,
    port,
    via: forwarder ? 'forwarder' : 'direct',
    async close() {
      if (closed) return;
      closed = true;
      if (guarded) await closeGatewayPort(network, port);
      await forwarder?.close();
    },
  };
}
