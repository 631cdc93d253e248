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
 * TCP apps are not relayed: each listens on an edge port of the node that runs it.
 */
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { AppAddress, AppResolver, ProxyTarget } from '../apps/gateway.js';
import type { AppStore, StoredApp } from '../../store/apps/port.js';
import { connectToPeer, type PeerView } from './peers.js';

/** How long this node trusts what it read of a remote app's owner. */
const OWNER_FRESH_MS = 2_000;
/** Remote apps whose owner is kept at most (the map is emptied when it fills). */
const MAX_KNOWN_OWNERS = 10_000;

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
}

export class ClusterRouting implements AppResolver {
  private readonly owners = new Map<string, { app: StoredApp; until: number }>();

  constructor(private readonly options: ClusterRoutingOptions) {}

  acquire(address: AppAddress, kind: 'http' | 'tcp', relayed = false): Promise<ProxyTarget> {
    if (!relayed && kind === 'http') {
      const known = this.owners.get(`${address.app}.${address.project}`);
      if (known && known.until > Date.now()) {
        const target = this.remote(known.app);
        if (target) return Promise.resolve(target);
      }
    }
    return this.options.local.acquire(address, kind, relayed).catch((error: unknown) => this.elsewhere(address, kind, relayed, error));
  }

  /** The local gateway could not serve it: relay it if another live node runs the app, else say why. */
  private async elsewhere(address: AppAddress, kind: 'http' | 'tcp', relayed: boolean, error: unknown): Promise<ProxyTarget> {
    if (!isAltoError(error) || error.status !== 503) throw error;
    const app = await this.options.apps.findByAddress(address.project, address.app);
    if (!app || app.node === this.options.self.id) throw error;
    if (this.owners.size >= MAX_KNOWN_OWNERS) this.owners.clear();
    this.owners.set(`${address.app}.${address.project}`, { app, until: Date.now() + OWNER_FRESH_MS });
    if (relayed) throw errors.unavailable(`app "${app.name}" does not run on this node (${this.options.self.name}) and a relayed request is not relayed again; try again`).withHeaders({ 'retry-after': '1' });
    if (kind === 'tcp') throw error;
    const target = this.remote(app);
    if (target) return target;
    throw this.unreachable(app);
  }

  /** A target on the live node that runs the app, if it is live. */
  private remote(app: StoredApp): RelayTarget | undefined {
    const peer = this.options.peers.addressOf(app.node);
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
