/**
 * @module compute/cluster/routing
 * Any node's edge serves any app: a request for an app this node runs goes to a local instance
 * (the apps' gateway); a request for an app another live node runs is relayed to that node's
 * edge, which serves it as its own (its instances, its queue, its wake-ups, its accounting). The
 * relayed request says so (`x-alto-via`, set by the edge), and a relayed request is never relayed
 * again, so two nodes with different views of an app's owner cannot pass a request back and forth.
 *
 * Which node runs an app comes from the apps store, kept here for OWNER_FRESH_MS so a stream of
 * requests to a remote app reads the database once per that time, not once per request. An app
 * whose node is lost is answered 503 saying so: failover.ts moves it to a live node within a
 * lease and a refresh, unless it has volumes, which wait for their node.
 *
 * TCP apps are relayed too: every node listens on a TCP app's edge port (tcp-relay-ports.ts),
 * and a connection to it on a node that does not run the app goes through a tunnel on the edge
 * of the node that does (tcp-tunnel.ts), which takes an instance of its own and never relays
 * the connection again.
 *
 * A drain hands apps between live nodes (drain.ts) with no request failing: the receiving node
 * holds requests for an app it is taking (`arriving`) until its instances are ready, and the
 * node that handed it over remembers where it went (`movedTo`) for MOVED_FRESH_MS, so a request
 * relayed to it by a node whose view of the owner is older is relayed once more, to the new
 * owner, rather than answered 503. That second hop goes to the node that took the app, which
 * serves it or holds it; it never relays it further.
 */
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import { addressKeyOf, type AppAddress, type AppResolver, type ProxyTarget } from '../apps/gateway.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import type { AppStore, StoredApp } from '../../store/apps/port.js';
import type { Socket } from 'node:net';
import { connectToPeer, type PeerAddress, type PeerView } from './peers.js';

/** How long this node trusts what it read of a remote app's owner. */
const OWNER_FRESH_MS = 2_000;
/** Remote apps whose owner is kept at most (the map is emptied when it fills). */
const MAX_KNOWN_OWNERS = 10_000;
/** How long a node that handed an app over relays requests for it to its new node: past any other node's OWNER_FRESH_MS. */
const MOVED_FRESH_MS = 30_000;
/** How long a request waits for an app this node is taking to be ready before the local answer. */
const ARRIVAL_WAIT_MS = 60_000;

/** A target on another node: the edge adds `x-alto-via` with this node's name. */
export interface RelayTarget extends ProxyTarget {
  via: string;
}

export interface ClusterRoutingOptions {
  /** This node's apps. */
  local: AppResolver;
  apps: AppStore;
  peers: PeerView;
  self: { id: string; name: string };
  /** Whether an app may move to another node (no volumes), for what a lost node's app is told. */
  movable(app: StoredApp): boolean;
  /** This node may not serve now: its lease lapsed and its apps are not yet checked against the store (membership.ts). */
  fenced?(): boolean;
  /** A tunnel to a TCP app through another node's edge (tcp-tunnel.ts); without it TCP apps are not relayed. */
  tunnel?(peer: PeerAddress, address: AppAddress): Promise<Socket>;
}

export class ClusterRouting implements AppResolver {
  private readonly owners = new Map<string, { app: StoredApp; until: number }>();
  /** Apps this node is taking from another live node, by address: settled once they are ready here (or not taken). */
  private readonly arrivals = new Map<string, Promise<void>>();
  /** Apps this node handed to another node, by address. */
  private readonly moved = new Map<string, { node: string; until: number }>();

  constructor(private readonly options: ClusterRoutingOptions) {}

  /**
   * This node is taking the app at `address`: its requests wait until `ready` settles (at most
   * ARRIVAL_WAIT_MS), then go to the local gateway. Call before the store names this node.
   */
  arriving(address: AppAddress, ready: Promise<unknown>): void {
    const key = addressKeyOf(address);
    this.moved.delete(key);
    const settled: Promise<void> = ready.then(
      () => undefined,
      () => undefined,
    );
    this.arrivals.set(key, settled);
    void settled.then(() => {
      if (this.arrivals.get(key) === settled) this.arrivals.delete(key);
    });
  }

  /** This node handed the app at `address` to node `node`: requests it still gets go there. */
  movedTo(address: AppAddress, node: string, now = Date.now()): void {
    for (const [key, entry] of this.moved) if (entry.until <= now) this.moved.delete(key);
    this.moved.set(addressKeyOf(address), { node, until: now + MOVED_FRESH_MS });
  }

  /** A local instance at once when nothing about the app is in motion between nodes (see AppResolver). */
  tryAcquire(address: AppAddress): ProxyTarget | undefined {
    if (this.options.fenced?.() || this.arrivals.size > 0 || this.owners.size > 0) return undefined;
    return this.options.local.tryAcquire?.(address);
  }

  acquire(address: AppAddress, kind: 'http' | 'tcp', relayed = false): Promise<ProxyTarget> {
    // Another node may have taken this node's apps while its lease was lapsed: no answer from a
    // copy that may no longer be the app's one until they are checked (the next read of the nodes).
    if (this.options.fenced?.())
      return Promise.reject(errors.unavailable(`node ${this.options.self.name} is rejoining the cloud (its lease lapsed); try again`).withHeaders({ 'retry-after': '1' }));
    // Empty maps are checked without building the key (every proxied request comes here).
    const arrival = this.arrivals.size === 0 ? undefined : this.arrivals.get(addressKeyOf(address));
    if (arrival) return withTimeout(arrival, ARRIVAL_WAIT_MS).then(() => this.resolve(address, kind, relayed));
    return this.resolve(address, kind, relayed);
  }

  /** The local answer once an app that began arriving while this request looked for it is here; undefined when none is arriving. */
  private afterArrival(address: AppAddress, kind: 'http' | 'tcp', relayed: boolean): Promise<ProxyTarget> | undefined {
    const arrival = this.arrivals.get(addressKeyOf(address));
    if (!arrival) return undefined;
    return withTimeout(arrival, ARRIVAL_WAIT_MS).then(() => this.options.local.acquire(address, kind, relayed));
  }

  private resolve(address: AppAddress, kind: 'http' | 'tcp', relayed: boolean): Promise<ProxyTarget> {
    if (!relayed) {
      const known = this.owners.size === 0 ? undefined : this.owners.get(addressKeyOf(address));
      if (known && known.until > Date.now()) {
        const target = this.remote(known.app, kind, address);
        if (target) return Promise.resolve(target);
      }
    }
    return this.options.local.acquire(address, kind, relayed).catch((error: unknown) => this.elsewhere(address, kind, relayed, error));
  }

  /** The local gateway could not serve it: relay it if another live node runs the app, else say why. */
  private async elsewhere(address: AppAddress, kind: 'http' | 'tcp', relayed: boolean, error: unknown): Promise<ProxyTarget> {
    if (!isAltoError(error) || error.status !== 503) throw error;
    const handedOver = this.handedOver(address, kind);
    if (handedOver) return handedOver;
    // The gateway looked before the app began arriving here (its answer read the store after the
    // move): wait for it, as the requests that came after do.
    const arrived = this.afterArrival(address, kind, relayed);
    if (arrived) return arrived;
    const app = await this.options.apps.findByAddress(address.project, address.environment ?? DEFAULT_ENVIRONMENT, address.app);
    if (app?.node === this.options.self.id) {
      const arrivedNow = this.afterArrival(address, kind, relayed);
      if (arrivedNow) return arrivedNow;
    }
    if (!app || app.node === this.options.self.id) throw error;
    if (this.owners.size >= MAX_KNOWN_OWNERS) this.owners.clear();
    this.owners.set(addressKeyOf(address), { app, until: Date.now() + OWNER_FRESH_MS });
    if (relayed) throw errors.unavailable(`app "${app.name}" does not run on this node (${this.options.self.name}) and a relayed request is not relayed again; try again`).withHeaders({ 'retry-after': '1' });
    if (kind === 'tcp' && !this.options.tunnel) throw error;
    const target = this.remote(app, kind, address);
    if (target) return target;
    // A node this one has not read as live yet (it joined, or came back, since the last read of
    // the nodes, up to a heartbeat ago): read them again before saying it is not reachable.
    await this.options.peers.readNow();
    const afterReading = this.remote(app, kind, address);
    if (afterReading) return afterReading;
    throw this.unreachable(app);
  }

  /** A target on the node this node handed the app to, within MOVED_FRESH_MS of the hand-off (HTTP, relayed or not). */
  private handedOver(address: AppAddress, kind: 'http' | 'tcp'): RelayTarget | undefined {
    if (kind !== 'http') return undefined;
    const moved = this.moved.get(addressKeyOf(address));
    if (!moved || moved.until <= Date.now()) return undefined;
    return this.relayTo(moved.node);
  }

  /** A target on the live node that runs the app, if it is live: its edge (HTTP), or a tunnel through it (TCP). */
  private remote(app: StoredApp, kind: 'http' | 'tcp', address: AppAddress): RelayTarget | undefined {
    if (kind === 'http') return this.relayTo(app.node);
    const peer = this.options.peers.addressOf(app.node);
    const tunnel = this.options.tunnel;
    if (!peer || !tunnel) return undefined;
    return { host: peer.host, port: peer.port, connect: () => tunnel(peer, address), release: () => undefined, via: this.options.self.name };
  }

  /** The edge of node `node`, when it is live: a relay target that holds nothing here. */
  private relayTo(node: string): RelayTarget | undefined {
    const peer = this.options.peers.addressOf(node);
    if (!peer) return undefined;
    return { host: peer.host, port: peer.port, connect: () => connectToPeer(peer), release: () => undefined, via: this.options.self.name };
  }

  /** The answer for an app whose node is not live. */
  private unreachable(app: StoredApp): AltoError {
    const node = this.options.peers.find(app.node);
    const name = node?.name ?? app.node;
    if (!this.options.movable(app))
      return errors.unavailable(`app "${app.name}" has volumes on node ${name}, which is not reachable; it runs again when that node is back`).withHeaders({ 'retry-after': '10' });
    return errors.unavailable(`app "${app.name}" ran on node ${name}, which is not reachable; it moves to a live node within about 30 s`).withHeaders({ 'retry-after': '5' });
  }
}

/** Resolves when `promise` settles or `ms` pass, whichever is first. */
function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer));
}
