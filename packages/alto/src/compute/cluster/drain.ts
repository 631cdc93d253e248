/**
 * @module compute/cluster/drain
 * A draining node (`alto nodes drain NAME`) hands its apps to other live nodes, with no request
 * failing. The draining node does it itself: after each read of the nodes (peers.ts) where it
 * sees its own flag, it takes its movable apps (no volumes: an app with volumes is pinned to its
 * node's disk and stays) one at a time. For each it chooses a live, non-draining node
 * (`chooseTarget`), holds the app (busy: Update and Delete answer 409, reconcile leaves it) while
 * it keeps serving, and asks that node over the node link to take it (hand-off.ts). The receiver
 * moves the app to itself in the store and holds its requests until its instances are ready,
 * then answers; only then does this node forget the app (new requests are relayed to the new
 * node, those relayed here by nodes that still think it runs here too: routing.ts `movedTo`)
 * and stop its instances once their requests in flight end. A receiver that fails moves the app
 * back, and this node keeps serving it; the drain tries it again after RETRY_AFTER_MS.
 *
 * Undrain stops further moves (a hand-off under way finishes); apps moved stay where they went.
 */
import type { Logger } from '../../kit/logger.js';
import type { AppStore, StoredApp } from '../../store/apps/port.js';
import type { ListedNode } from '../../store/nodes/port.js';
import type { AppAddress } from '../apps/gateway.js';
import type { PeerAddress } from './peers.js';

/** What draining needs of this node's apps (the app manager). */
export interface MovableApps {
  /** Marks the app busy for a move while it keeps serving; false when it is not here or busy. */
  holdForMove(id: string): boolean;
  /** The move did not happen. */
  unhold(id: string): void;
  /** The app runs elsewhere now: forget it, then stop its instances gracefully. */
  release(id: string): Promise<void>;
}

export interface DrainOptions {
  apps: AppStore;
  /** This node's id. */
  self: string;
  movable(app: StoredApp): boolean;
  local: MovableApps;
  /** Where a live peer's edge listens. */
  addressOf(id: string): PeerAddress | undefined;
  /** Asks a peer to take the app; resolves once it is ready there. */
  handOff(peer: PeerAddress, appId: string): Promise<void>;
  /** Tells routing where a handed-off app went. */
  movedTo(address: AppAddress, node: string): void;
  log: Logger;
  random?: () => number;
}

/** How long an app a node did not take waits before the drain tries it again. */
export const RETRY_AFTER_MS = 30_000;

export class Drain {
  private running = false;
  private draining = false;
  /** Apps a hand-off failed for, and when they may be tried again. */
  private readonly retryAt = new Map<string, number>();

  constructor(private readonly options: DrainOptions) {}

  /**
   * One pass over the nodes just read: when this node is live and draining, hands over its
   * movable apps one at a time (until a later read finds it undrained). Returns how many moved.
   */
  async round(nodes: ListedNode[], now = Date.now()): Promise<number> {
    const self = nodes.find((node) => node.id === this.options.self);
    this.draining = Boolean(self?.live && self.draining);
    if (!this.draining || this.running) return 0;
    this.running = true;
    let moved = 0;
    // Memory each target was given in this pass: its heartbeat does not show it yet.
    const given = new Map<string, number>();
    try {
      for (const [id, at] of this.retryAt) if (at <= now) this.retryAt.delete(id);
      const apps = (await this.options.apps.listOfNode(this.options.self)).filter((app) => this.options.movable(app) && !this.retryAt.has(app.id));
      for (const app of apps) {
        if (!this.draining) break;
        const candidates = nodes.filter((node) => node.live && !node.draining && node.id !== this.options.self && this.options.addressOf(node.id));
        const target = chooseTarget(candidates, given, this.options.random);
        if (!target) {
          this.options.log.warn({ apps: apps.length - moved }, 'draining: no live node that is not draining takes apps; they stay here for now');
          break;
        }
        if (await this.handOff(app, target)) {
          moved++;
          given.set(target.id, (given.get(target.id) ?? 0) + memoryOf(app));
        }
      }
    } catch (error) {
      this.options.log.error({ err: error }, 'draining this node failed; the next read of the nodes tries again');
    } finally {
      this.running = false;
    }
    return moved;
  }

  /** Hands one app to `target`; true when it runs there now. */
  private async handOff(app: StoredApp, target: ListedNode): Promise<boolean> {
    const { local, log } = this.options;
    const peer = this.options.addressOf(target.id);
    if (!peer || !local.holdForMove(app.id)) return false;
    const where = { app: app.name, project: app.projectName, to: target.name };
    const began = Date.now();
    try {
      await this.options.handOff(peer, app.id);
    } catch (error) {
      if (!(await this.tookIt(app, target))) {
        local.unhold(app.id);
        this.retryAt.set(app.id, Date.now() + RETRY_AFTER_MS);
        log.warn({ ...where, err: error }, `draining: node ${target.name} did not take app "${app.name}"; it keeps running here`);
        return false;
      }
    }
    const ready = Date.now();
    this.options.movedTo({ app: app.name, project: app.projectName }, target.id);
    await local.release(app.id);
    log.info({ ...where, ready_ms: ready - began, stopped_ms: Date.now() - ready }, `draining: app "${app.name}" runs on node ${target.name} now`);
    return true;
  }

  /**
   * After a hand-off that did not answer ready: whether the app is the target's now. One that the
   * target took without answering (a call cut off) is taken back, unless another move came first.
   */
  private async tookIt(app: StoredApp, target: ListedNode): Promise<boolean> {
    const now = await this.options.apps.get(app.id).catch(() => undefined);
    if (!now) return true; // deleted meanwhile: nothing left to serve here
    if (now.node === this.options.self) return false;
    if (now.node === target.id && (await this.options.apps.move(app.id, target.id, this.options.self))) return false;
    return true;
  }
}

/** The memory an app's instances take, in MiB, as its settings say (256 when they do not). */
export function memoryOf(app: StoredApp): number {
  try {
    const settings = JSON.parse(app.settings) as { memory?: number; min_instances?: number };
    return (settings.memory ?? 256) * Math.max(1, settings.min_instances ?? 1);
  } catch {
    return 256;
  }
}

/**
 * The node to hand an app to: of two candidates drawn at random (power of two choices), the one
 * with more free memory, less what this pass gave it already (`given`, MiB by node id). With
 * fewer than three candidates, the best of them.
 */
export function chooseTarget(candidates: ListedNode[], given: ReadonlyMap<string, number> = new Map(), random: () => number = Math.random): ListedNode | undefined {
  const free = (node: ListedNode) => node.capacity.memoryFreeMiB - (given.get(node.id) ?? 0);
  let drawn = candidates;
  if (candidates.length > 2) {
    const first = Math.floor(random() * candidates.length);
    let second = Math.floor(random() * (candidates.length - 1));
    if (second >= first) second++;
    drawn = [candidates[first], candidates[second]];
  }
  let best: ListedNode | undefined;
  for (const node of drawn) if (!best || free(node) > free(best)) best = node;
  return best;
}
