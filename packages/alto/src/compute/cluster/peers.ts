/**
 * @module compute/cluster/peers
 * The other nodes of the cloud as this node sees them: the nodes store read again every
 * `refreshMs` (the heartbeat interval), kept in memory, so routing a request to the node that
 * runs its app reads no database. A node is live while its lease runs; a node whose lease
 * lapsed is lost, unless it said it was leaving (a clean stop) less than LEFT_GRACE_MS ago: a
 * node restarted for an upgrade comes back in that time and keeps its apps.
 *
 * A peer's edge is reached at its advertised URL: plain TCP for `http:`, TLS for `https:` (nodes
 * on a network they do not trust), its certificate verified against Node's default roots (the
 * system's, plus NODE_EXTRA_CA_CERTS for a cloud's own authority) and never trusted blindly.
 */
import { connect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Logger } from '../../kit/logger.js';
import type { ListedNode, NodeStore } from '../../store/nodes/port.js';
import { HEARTBEAT_INTERVAL_MS } from './membership.js';

/** A node that stopped cleanly is given this long to come back before its apps move. */
export const LEFT_GRACE_MS = 30_000;
/** `readNow` reads the nodes at most this often. */
const READ_NOW_MIN_MS = 500;

/** How to reach a peer node's edge, for requests to apps it runs. */
export interface PeerAddress {
  id: string;
  name: string;
  /** The advertised URL's host (an IPv6 address without brackets): connected to, and for TLS the name its certificate must carry. */
  host: string;
  port: number;
  /** It advertised an `https:` URL: its edge is spoken to over TLS. */
  tls: boolean;
}

export interface PeerViewOptions {
  store: NodeStore;
  /** This node's id: never a peer of itself. */
  self: string;
  log: Logger;
  refreshMs?: number;
}

export class PeerView {
  private nodes = new Map<string, ListedNode>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private readingNow: Promise<void> | undefined;
  private lastReadAt = 0;
  private readonly listeners: ((nodes: ListedNode[]) => void | Promise<void>)[] = [];
  private failingSince: number | undefined;

  constructor(private readonly options: PeerViewOptions) {}

  /** Reads the nodes once, then keeps reading them every `refreshMs` until `stop()`. */
  async start(): Promise<void> {
    await this.refresh();
    const every = this.options.refreshMs ?? HEARTBEAT_INTERVAL_MS;
    const schedule = () => {
      this.timer = setTimeout(() => {
        this.refreshing = this.refresh().finally(() => {
          this.refreshing = undefined;
          if (this.timer) schedule();
        });
      }, every);
      this.timer.unref();
    };
    schedule();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.refreshing;
  }

  /**
   * Reads the nodes now, one read shared by every caller meanwhile, and none when the last read
   * is under READ_NOW_MIN_MS old: a node that joined since the last read is known after it
   * (routing asks before answering that an app's node is not reachable), and requests for an app
   * whose node is down cost the store at most a read per READ_NOW_MIN_MS.
   */
  readNow(): Promise<void> {
    if (Date.now() - this.lastReadAt < READ_NOW_MIN_MS) return this.readingNow ?? Promise.resolve();
    this.readingNow ??= this.refresh().finally(() => (this.readingNow = undefined));
    return this.readingNow;
  }

  /** Called with every node after each read (failover looks for lost nodes' apps here). */
  onRefresh(listener: (nodes: ListedNode[]) => void | Promise<void>): void {
    this.listeners.push(listener);
  }

  /** The live node of this id, other than this one. */
  live(id: string): ListedNode | undefined {
    const node = this.nodes.get(id);
    return node && node.live && id !== this.options.self ? node : undefined;
  }

  /** The node of this id as last read, live or not. */
  find(id: string): ListedNode | undefined {
    return this.nodes.get(id);
  }

  /** Live nodes, this one included when its lease runs. */
  liveNodes(): ListedNode[] {
    return [...this.nodes.values()].filter((node) => node.live);
  }

  /** Nodes whose apps should move: lease lapsed, and not within the grace of a clean stop. */
  lostNodes(now = Date.now()): ListedNode[] {
    return [...this.nodes.values()].filter((node) => node.id !== this.options.self && isLost(node, now));
  }

  /** Where a live peer's edge listens: its advertised URL, `http:` or `https:`. */
  addressOf(id: string): PeerAddress | undefined {
    const node = this.live(id);
    return node && peerAddressOf(node);
  }

  private async refresh(): Promise<void> {
    try {
      const nodes = await this.options.store.list(Date.now());
      this.nodes = new Map(nodes.map((node) => [node.id, node]));
      this.lastReadAt = Date.now();
      if (this.failingSince !== undefined) this.options.log.info({ failed_for_ms: Date.now() - this.failingSince }, 'the nodes are read again');
      this.failingSince = undefined;
      for (const listener of this.listeners) await listener(nodes);
    } catch (error) {
      // The view keeps what it last read; logged once per failing stretch.
      if (this.failingSince === undefined) {
        this.failingSince = Date.now();
        this.options.log.warn({ err: error }, 'reading the cloud\'s nodes failed; routing uses the last list read');
      }
    }
  }
}

/** Lease lapsed, and not a clean stop within LEFT_GRACE_MS. */
export function isLost(node: ListedNode, now: number): boolean {
  if (node.live) return false;
  return node.leftAt === undefined || now - node.leftAt >= LEFT_GRACE_MS;
}

/** Where `node`'s edge is reached, from its advertised URL; undefined for a URL that is neither `http:` nor `https:`. */
export function peerAddressOf(node: Pick<ListedNode, 'id' | 'name' | 'advertiseUrl'>): PeerAddress | undefined {
  const url = new URL(node.advertiseUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  const tls = url.protocol === 'https:';
  return { id: node.id, name: node.name, host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || (tls ? 443 : 80)), tls };
}

/** A TLS peer took the TCP connection but the handshake failed (its certificate refused, most often); `code` is OpenSSL's or Node's, as on the error it wraps. */
export class PeerHandshakeError extends Error {
  /** The failure without the TLS library's message, which may name the peer's address: for answers to clients. */
  readonly summary: string;

  constructor(
    peer: PeerAddress,
    readonly code: string | undefined,
    cause: Error,
  ) {
    super(`the TLS handshake with node ${peer.name} failed: ${cause.message}${code && !cause.message.includes(code) ? ` (${code})` : ''}`, { cause });
    this.summary = `the TLS handshake with node ${peer.name} failed${code ? `: ${code}` : ''}`;
  }
}

/**
 * A connection to a peer's edge, ready for HTTP/1.1. For a TLS peer it resolves once the
 * handshake is done and the certificate verified for `host` (sent as SNI when it is a name; Node
 * sends none for an address, and checks the certificate's IP names instead); a refused
 * certificate rejects with PeerHandshakeError. Connection and handshake together have `timeoutMs`.
 */
export function connectToPeer(peer: PeerAddress, timeoutMs = 5_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = peer.tls
      ? tlsConnect({
          host: peer.host,
          port: peer.port,
          // Without a name, the peer's edge serves its operator's certificate (edge/tls.ts).
          ...(isIP(peer.host) ? {} : { servername: peer.host }),
          // Its listener also speaks HTTP/2; what goes over this connection is HTTP/1.1.
          ALPNProtocols: ['http/1.1'],
        })
      : connect({ host: peer.host, port: peer.port });
    // Past the TCP connection, a TLS peer's failures are its handshake's.
    const handshaking = () => peer.tls && !socket.connecting;
    const timer = setTimeout(() => {
      socket.destroy(new Error(handshaking() ? `node ${peer.name} did not finish the TLS handshake within ${timeoutMs} ms` : `node ${peer.name} did not accept a connection within ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(handshaking() && error.code !== undefined ? new PeerHandshakeError(peer, error.code, error) : error);
    };
    socket.once(peer.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.setNoDelay(true);
      resolve(socket);
    });
    // Kept until it resolves: a failing handshake may say so more than once.
    socket.on('error', onError);
  });
}
