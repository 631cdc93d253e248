/**
 * @module store/nodes/port
 * The nodes storage port: one row per Alto node of the cloud (per `node-id`, the data folder's
 * stable id), with the name an operator knows it by, the URL other nodes reach it at, its
 * version, its capacity, a lease it renews by heartbeating, and whether it is draining. A node
 * is live while its lease has not expired. A name belongs to one node at a time: a heartbeat
 * under a name that another node id holds with a live lease is refused; once that lease has
 * lapsed the name passes to the new node and the old row goes. Times are milliseconds since the
 * epoch, given by the caller (the nodes of one cloud keep their clocks in step, as with NTP).
 * Adapters: `sqlite.ts` (embedded: one node) and `postgres.ts` (with `--store postgres://`).
 */
import { errors } from '../../kit/errors.js';

/** What a node has and runs, as it reports it with each heartbeat. */
export interface NodeCapacity {
  memoryTotalMiB: number;
  memoryFreeMiB: number;
  cpus: number;
  /** The sandbox driver apps run on (`microvm`, `process`), or the choice until it is probed (`auto`). */
  driver: string;
  /** `kvm`, `none`, or `unknown` until the driver is probed. */
  accelerator: string;
  /** The node's app instances by lifecycle state (`running`, `suspended`, ...). */
  instances: Record<string, number>;
  /** Instances in this node's own sandboxes now, those it hosts for other nodes' apps included. */
  sandboxes?: number;
  /** The most it holds at once (ALTO_MAX_INSTANCES); 0 or none: no cap but the machine's. */
  maxInstances?: number;
}

/** What a node writes with each heartbeat. */
export interface NodeHeartbeat {
  /** The node's id: its data folder's `node-id`. */
  id: string;
  /** The name operators use (`--node`, default the host name); unique among live nodes. */
  name: string;
  /** The URL other nodes reach this one at (`--advertise`). */
  advertiseUrl: string;
  version: string;
  /** When this process of the node started. */
  startedAt: number;
  capacity: NodeCapacity;
}

/** A node as the store keeps it. */
export interface StoredNode extends NodeHeartbeat {
  heartbeatAt: number;
  /** The node counts as live until then. */
  leaseExpiresAt: number;
  /** Set by an operator: no new instances are placed on it. Kept across heartbeats and restarts. */
  draining: boolean;
  /** When the node said it was stopping (a clean shutdown); unset by its next heartbeat. */
  leftAt?: number;
}

/** A node as listed at one moment: `live` while its lease runs. */
export interface ListedNode extends StoredNode {
  live: boolean;
}

/** What removing a node by name found. */
export type NodeRemoval = 'removed' | 'missing' | 'live';

export interface NodeStore {
  readonly backend: 'sqlite' | 'postgres';
  /**
   * Records a heartbeat: creates the node's row or updates it (its draining flag kept) and
   * renews its lease to `now + leaseMs`. Throws AltoError 409 when another node id holds the
   * name with a lease live at `now`; a lapsed holder's row is removed and the name taken.
   */
  heartbeat(node: NodeHeartbeat, now: number, leaseMs: number): Promise<StoredNode>;
  /** Every node, by name, `live` computed at `now`. */
  list(now: number): Promise<ListedNode[]>;
  /** The node of this name, `live` computed at `now`; undefined when there is none. */
  find(name: string, now: number): Promise<ListedNode | undefined>;
  /** Sets or clears the draining flag of the node of this name; undefined when there is none. */
  setDraining(name: string, draining: boolean, now: number): Promise<ListedNode | undefined>;
  /** A clean shutdown: the node's lease ends at `now` and it is marked as having left. */
  leave(id: string, now: number): Promise<void>;
  /** Removes the row of a node that is not live at `now`; a live node is left alone. */
  remove(name: string, now: number): Promise<NodeRemoval>;
}

/** The refusal of a heartbeat under a name a live node holds. */
export function nameTaken(name: string, holder: Pick<StoredNode, 'id' | 'advertiseUrl' | 'leaseExpiresAt'>, now: number): Error {
  const seconds = Math.max(1, Math.ceil((holder.leaseExpiresAt - now) / 1000));
  return errors.conflict(
    `node name "${name}" is held by another live node (id ${holder.id}, at ${holder.advertiseUrl}, lease for ${seconds} s more): ` +
      `start this node with another --node name (ALTO_NODE), or stop that node first`,
  );
}
