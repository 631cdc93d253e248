/**
 * @module compute/cluster/cluster
 * What a node does as part of the cloud once it has joined (membership.ts): it keeps a view of
 * the other nodes (peers.ts), relays requests for apps other nodes run (routing.ts), takes its
 * share of a lost node's apps (failover.ts), hands its apps to other nodes while it is draining
 * (drain.ts) and takes those other nodes hand it (hand-off.ts, over the node link), and keeps a
 * relay port for each TCP app another node runs (tcp-relay-ports.ts), whose connections go
 * through a tunnel on that node's edge (tcp-tunnel.ts). A node at its instance cap places boots of
 * its apps on other nodes (remote-instances.ts), and hosts those other nodes place on it
 * (hosted-instances.ts); a draining node asks the owners of the instances it hosts to move them.
 */
import type { Logger } from '../../kit/logger.js';
import type { Platform } from '../../platform/platform.js';
import type { StoredApp } from '../../store/apps/port.js';
import type { AppResolver } from '../apps/gateway.js';
import type { NodeMembership } from './membership.js';
import { PeerView } from './peers.js';
import { ClusterRouting } from './routing.js';
import { Failover } from './failover.js';
import { Drain, type MovableApps } from './drain.js';
import { registerHandOffReceiver, requestHandOff } from './hand-off.js';
import { deriveNodeLinkKey, ReplayGuard } from './node-link.js';
import { openTcpTunnel, registerTunnelReceiver } from './tcp-tunnel.js';
import { TcpRelayPorts, type RelayPortOpener } from './tcp-relay-ports.js';
import { errors } from '../../kit/errors.js';
import type { RemotePlacer } from '../apps/placement.js';
import { HostedInstances, registerHostedInstances, type InstanceHost } from './hosted-instances.js';
import { PeerPlacer } from './remote-instances.js';

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
export interface LocalApps extends MovableApps, InstanceHost {
  /** Boots past this node's instance cap go to other nodes through `remote`. */
  placeOnOtherNodes(remote: RemotePlacer | undefined): void;
  /** The edge's resolver for this node's apps. */
  gateway: AppResolver;
  /** Starts an app just moved to this node. */
  adopt(appId: string): Promise<void>;
  /** Starts an app a live node hands over (moved here already); resolves once it is ready, throws when it is not. */
  receive(appId: string): Promise<void>;
  /** Stops the apps this node runs that the store records as another node's now. */
  reconcile(): Promise<unknown>;
}

export async function joinCluster(platform: Platform, membership: NodeMembership, apps: LocalApps, log: Logger, edge?: RelayPortOpener): Promise<Cluster> {
  const local = apps.gateway;
  const peers = new PeerView({ store: platform.stores.nodes, self: membership.id, log });
  const store = platform.stores.apps;
  const self = membership.id;
  const key = deriveNodeLinkKey(platform.masterKey().key.key);
  const routing = new ClusterRouting({
    local,
    apps: store,
    peers,
    self: { id: self, name: membership.name },
    movable,
    fenced: () => membership.fenced(),
    tunnel: (peer, address) => openTcpTunnel(peer, key, self, address),
  });
  const replays = new ReplayGuard();
  const relayPorts = edge ? new TcpRelayPorts({ apps: store, self, edge, log }) : undefined;
  const failover = new Failover({ apps: store, self, movable, adopt: (id) => apps.adopt(id), log });
  const drain = new Drain({
    apps: store,
    self,
    movable,
    local: apps,
    addressOf: (id) => peers.addressOf(id),
    handOff: (peer, appId) => requestHandOff(peer, key, self, appId),
    movedTo: (address, node) => routing.movedTo(address, node),
    log,
  });
  const hosted = new HostedInstances({
    key,
    replays,
    self: { id: self, name: membership.name },
    host: apps,
    apps: store,
    isLiveNode: (id) => peers.live(id) !== undefined,
    draining: () => peers.find(self)?.draining === true,
    log,
  });
  const unregisterHosted = registerHostedInstances(platform, hosted);
  apps.placeOnOtherNodes(new PeerPlacer({ key, self: { id: self, name: membership.name }, peers, log }));
  // In the background: starting or stopping apps must not hold up the next read of the nodes.
  // A node that was paused past its lease finds its apps moved and stops its copies.
  peers.onRefresh((nodes) => {
    void failover.round(nodes);
    void drain.round(nodes);
    void relayPorts?.sync(nodes);
    // A draining node's hosted instances move too: their owners start replacements elsewhere.
    if (nodes.find((node) => node.id === self)?.draining && hosted.count > 0) {
      const asked = hosted.retireAll(`node ${membership.name} is draining`);
      if (asked > 0) log.info({ instances: asked }, `draining: asked the owners of ${asked} hosted instance(s) to move them`);
    }
    const startedAt = Date.now();
    void apps
      .reconcile()
      .then(() => membership.reconciled(startedAt))
      .catch((error) => log.error({ err: error }, 'reconciling this node\'s apps with the store failed'));
  });
  const unregisterTunnels = registerTunnelReceiver(platform, { key, replays, local, isLiveNode: (id) => peers.live(id) !== undefined, log });
  const unregister = registerHandOffReceiver(platform, {
    key,
    replays,
    log,
    isLiveNode: (id) => peers.live(id) !== undefined,
    async receive(appId, from) {
      const app = await store.get(appId);
      if (!app) throw errors.notFound(`no app ${appId}`);
      if (app.node !== from) throw errors.conflict(`app "${app.name}" is not node ${from}'s (the store names ${app.node || 'no node'})`);
      if (!movable(app)) throw errors.conflict(`app "${app.name}" has volumes on node ${from}: it stays there`);
      if (peers.find(self)?.draining) throw errors.conflict('this node is draining: it takes no apps');
      // Requests for it wait here from before the store names this node until it is ready.
      let arrived!: () => void;
      routing.arriving({ app: app.name, project: app.projectName }, new Promise<void>((resolve) => (arrived = resolve)));
      try {
        if (!(await store.move(appId, from, self))) throw errors.conflict(`app "${app.name}" moved meanwhile`);
        try {
          await apps.receive(appId);
        } catch (error) {
          if (!(await store.move(appId, self, from))) log.error({ app: app.name, project: app.projectName }, `app "${app.name}" could not be moved back to node ${from}`);
          throw error;
        }
        log.info({ app: app.name, project: app.projectName, from: peers.find(from)?.name ?? from }, `app "${app.name}" was handed to this node and is ready`);
      } finally {
        arrived();
      }
    },
  });
  await peers.start();
  return {
    peers,
    routing,
    stop: async () => {
      apps.placeOnOtherNodes(undefined);
      unregisterHosted();
      await hosted.close();
      unregister();
      unregisterTunnels();
      await peers.stop();
      await relayPorts?.stop();
    },
  };
}
