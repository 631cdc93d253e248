/**
 * @module compute/cluster/tcp-relay-ports
 * Every node of a cloud listens on the edge port of every TCP app, so a client can reach a TCP
 * app through any node (behind any load balancer), as it can an HTTP app. The node that runs the
 * app listens for it as it always has (the app manager opens the port); each other node opens a
 * relay port: the same port number, whose connections the cluster's routing carries to the app's
 * node through a tunnel (tcp-tunnel.ts).
 *
 * At each read of the nodes (every heartbeat), the relay ports are brought in line with the store:
 * one for each TCP app with a port that a live node other than this one runs, none for the rest.
 * A port this node cannot open (taken by something else, or by another node on the same host) is
 * tried again at the next read, and said once in the log until it opens. When an app comes to
 * this node, its own port takes the place of the relay port (the edge closes the relay port
 * first, edge/server.ts).
 */
import type { Logger } from '../../kit/logger.js';
import type { AppStore, StoredApp } from '../../store/apps/port.js';
import type { AppAddress } from '../apps/gateway.js';
import type { ListedNode } from '../../store/nodes/port.js';

/** The edge's way to open and close a relay port. */
export interface RelayPortOpener {
  /** Listens on `port` for the app at `address`, its connections resolved by the cluster's routing. */
  openRelayPort(address: AppAddress, port: number): Promise<{ close(): Promise<void> }>;
}

export interface TcpRelayPortsOptions {
  apps: AppStore;
  self: string;
  edge: RelayPortOpener;
  log: Logger;
}

interface RelayPort {
  key: string;
  close(): Promise<void>;
}

/** Whether a stored app is a TCP app with an edge port. */
function tcpPortOf(app: StoredApp): number | undefined {
  if (!app.tcpPort) return undefined;
  try {
    const settings = JSON.parse(app.settings) as { tcp?: number };
    return settings.tcp ? app.tcpPort : undefined;
  } catch {
    return undefined;
  }
}

export class TcpRelayPorts {
  private readonly open = new Map<number, RelayPort>();
  /** Ports that would not open, with what was said, so it is said once. */
  private readonly failing = new Map<number, string>();
  private syncing: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: TcpRelayPortsOptions) {}

  /** Brings the relay ports in line with the apps of the live nodes (one round at a time). */
  sync(nodes: ListedNode[]): Promise<void> {
    this.syncing ??= this.round(nodes).finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async round(nodes: ListedNode[]): Promise<void> {
    if (this.stopped) return;
    const { apps, self, edge, log } = this.options;
    const wanted = new Map<number, { key: string; address: AppAddress }>();
    for (const node of nodes) {
      if (node.id === self || !node.live) continue;
      let listed: StoredApp[];
      try {
        listed = await apps.listOfNode(node.id);
      } catch (error) {
        log.warn({ err: error, node: node.name }, 'reading the apps of a node for relay ports failed; kept as they are');
        return;
      }
      for (const app of listed) {
        const port = tcpPortOf(app);
        if (port) wanted.set(port, { key: `${app.id}:${port}`, address: { app: app.name, project: app.projectName } });
      }
    }
    for (const [port, relay] of this.open) {
      if (wanted.get(port)?.key === relay.key) continue;
      this.open.delete(port);
      await relay.close().catch(() => undefined);
    }
    for (const [port, { key, address }] of wanted) {
      if (this.stopped || this.open.has(port)) continue;
      try {
        const opened = await edge.openRelayPort(address, port);
        if (this.stopped) {
          await opened.close();
          continue;
        }
        this.open.set(port, { key, close: opened.close });
        if (this.failing.delete(port)) log.info({ port, app: address.app, project: address.project }, `relay port ${port} for TCP app "${address.app}" is open now`);
      } catch (error) {
        const message = (error as Error).message;
        if (this.failing.get(port) !== message)
          log.warn({ port, app: address.app, project: address.project, err: error }, `could not open relay port ${port} for TCP app "${address.app}" (tried again at the next read of the nodes): ${message}`);
        this.failing.set(port, message);
      }
    }
    for (const port of this.failing.keys()) if (!wanted.has(port)) this.failing.delete(port);
  }

  /** The relay ports now open, by port (for tests and status). */
  ports(): number[] {
    return [...this.open.keys()].sort((a, b) => a - b);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.syncing?.catch(() => undefined);
    for (const relay of this.open.values()) await relay.close().catch(() => undefined);
    this.open.clear();
  }
}
