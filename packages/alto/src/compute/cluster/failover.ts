/**
 * @module compute/cluster/failover
 * Apps of a lost node run again on live ones. After each read of the nodes (peers.ts), every
 * live node that is not draining looks at the lost nodes' apps and moves a fair share of them to
 * itself (its share: the lost apps divided by the live nodes, rounded up), in a random order so
 * that nodes asking at once take different ones. A move is one conditional update in the store
 * (`AppStore.move`): of nodes asking at once, one gets each app. The node then starts the app as
 * it starts its own apps when Alto starts, so its `min_instances` are back within a lease
 * (LEASE_MS) plus a refresh plus the start.
 *
 * An app with volumes stays with its node: its data is on that node's disk, so it is reported
 * unavailable while the node is down (gateway.ts) and runs again when the node comes back.
 */
import type { Logger } from '../../kit/logger.js';
import type { AppStore, StoredApp } from '../../store/apps/port.js';
import type { ListedNode } from '../../store/nodes/port.js';
import { isLost } from './peers.js';

export interface FailoverOptions {
  apps: AppStore;
  /** This node's id. */
  self: string;
  /** Whether an app may run on another node than the one that ran it (no volumes). */
  movable(app: StoredApp): boolean;
  /** Starts an app just moved to this node. */
  adopt(appId: string): Promise<void>;
  log: Logger;
}

export class Failover {
  private running = false;

  constructor(private readonly options: FailoverOptions) {}

  /** One round over the nodes just read: takes this node's share of every lost node's movable apps. */
  async round(nodes: ListedNode[], now = Date.now()): Promise<number> {
    if (this.running) return 0;
    const self = nodes.find((node) => node.id === this.options.self);
    // A node that is not live itself, or is draining, takes nothing.
    if (!self?.live || self.draining) return 0;
    const lost = nodes.filter((node) => node.id !== this.options.self && isLost(node, now));
    if (lost.length === 0) return 0;
    const live = nodes.filter((node) => node.live && !node.draining).length;
    this.running = true;
    let taken = 0;
    try {
      for (const node of lost) {
        const apps = (await this.options.apps.listOfNode(node.id)).filter((app) => this.options.movable(app));
        if (apps.length === 0) continue;
        const share = Math.ceil(apps.length / Math.max(1, live));
        let mine = 0;
        for (const app of shuffled(apps)) {
          if (mine >= share) break;
          if (!(await this.options.apps.move(app.id, node.id, this.options.self))) continue;
          mine++;
          taken++;
          this.options.log.warn({ app: app.name, project: app.projectName, from: node.name }, `node ${node.name} is lost: app "${app.name}" runs here now`);
          try {
            await this.options.adopt(app.id);
          } catch (error) {
            this.options.log.error({ err: error, app: app.name, project: app.projectName }, 'starting an app moved here failed');
          }
        }
      }
    } finally {
      this.running = false;
    }
    return taken;
  }
}

function shuffled<T>(items: T[]): T[] {
  const copy = [...items];
  for (let index = copy.length - 1; index > 0; index--) {
    const other = Math.floor(Math.random() * (index + 1));
    [copy[index], copy[other]] = [copy[other], copy[index]];
  }
  return copy;
}
