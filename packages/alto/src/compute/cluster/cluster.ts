/**
 * @module compute/cluster/cluster
 * What a node does as part of the cloud once it has joined (membership.ts): it keeps a view of
 * the other nodes (peers.ts), relays requests for apps other nodes run (routing.ts), and takes
 * its share of a lost node's apps (failover.ts).
 */
import type { Logger } from '../../kit/logger.js';
import type { Platform } from '../../platform/platform.js';
import type { StoredApp } from '../../store/apps/port.js';
import type { AppResolver } from '../apps/gateway.js';
import type { NodeMembership } from './membership.js';
import { PeerView } from './peers.js';
import { ClusterRouting } from './routing.js';
import { Failover } from './failover.js';

export interface Cluster {
  peers: PeerView;
  /** The edge's resolver: this node's apps, and other nodes' relayed. */
  routing: AppResolver;
  stop(): Promise<void>;
}

/** Whether an app may run on another node than the one that ran it: its volumes live on that node's disk. */
export function movable(app: StoredApp): boolean {
  try {
    const settings = JSON.parse(app.settings) as { volumes?: unknown[] };
    return !settings.volumes?.length;
  } catch {
    return false;
  }
}

/** What the cluster needs of this node's apps. */
export interface LocalApps {
  /** The edge's resolver for this node's apps. */
  gateway: AppResolver;
  /** Starts an app just moved to this node. */
  adopt(appId: string): Promise<void>;
  /** Stops the apps this node runs that the store records as another node's now. */
  reconcile(): Promise<unknown>;
}

export async function joinCluster(platform: Platform, membership: NodeMembership, apps: LocalApps, log: Logger): Promise<Cluster> {
  const local = apps.gateway;
  const peers = new PeerView({ store: platform.stores.nodes, self: membership.id, log });
  const failover = new Failover({ apps: platform.stores.apps, self: membership.id, movable, adopt: (id) => apps.adopt(id), log });
  // In the background: starting or stopping apps must not hold up the next read of the nodes.
  // A node that was paused past its lease finds its apps moved and stops its copies.
  peers.onRefresh((nodes) => {
    void failover.round(nodes);
    void apps.reconcile().catch((error) => log.error({ err: error }, 'reconciling this node\'s apps with the store failed'));
  });
  await peers.start();
  const routing = new ClusterRouting({ local, apps: platform.stores.apps, peers, self: { id: membership.id, name: membership.name }, movable });
  return {
    peers,
    routing,
    stop: () => peers.stop(),
  };
}
