/**
 * @module compute/cluster/schema
 * The wire schema of the `nodes` service (zod): a node as List, Drain, Undrain and Remove answer
 * it (with a draining node's apps left to move and pinned), and the name they take. `nodeView` turns a stored node into it (also for `/v1/status`).
 */
import { z } from 'zod';
import type { ListedNode } from '../../store/nodes/port.js';

/** A node name as every node endpoint takes it: bounded and checked before any lookup. */
const NodeName = z
  .string({ error: 'expected a string: the node\'s name, as `alto nodes` lists it' })
  .min(1, 'name the node, as `alto nodes` lists it')
  .max(64, 'a node name is at most 64 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a node name is letters, digits, ".", "_" or "-", not starting with "." "_" or "-"')
  .describe('the node\'s name (`--node` of its `alto up`)');

export const NodeView = z
  .object({
    name: z.string(),
    id: z.string().describe("the node's id: its data folder's node-id file, the same across restarts"),
    state: z
      .enum(['ready', 'draining', 'left', 'lost'])
      .describe('ready: live, taking new instances; draining: live, taking none; left: stopped cleanly; lost: its lease lapsed'),
    live: z.boolean().describe('whether its lease is running: a node renews it every 2 s and is lost 10 s after the last renewal'),
    draining: z.boolean().describe('set with nodes/Drain: the node hands its apps without volumes to other live nodes, one at a time, and takes none'),
    apps: z
      .object({
        to_move: z.number().int().describe('apps without volumes it still runs: while it drains, they move to other nodes'),
        pinned: z.array(z.string()).describe('apps with volumes it runs, as `<app>.<project>`: their data is on its disk, so they stay when it drains'),
      })
      .optional()
      .describe('the apps the store records on this node: in List for draining nodes, in the answers of Drain and Undrain always'),
    advertise_url: z.string().describe('the URL other nodes reach it at (`--advertise`)'),
    version: z.string(),
    started_at: z.string().describe('when its process started, RFC 3339'),
    heartbeat_at: z.string().describe('its last heartbeat, RFC 3339'),
    lease_expires_at: z.string().describe('when it counts as lost without another heartbeat, RFC 3339'),
    left_at: z.string().optional().describe('when it stopped cleanly, RFC 3339'),
    capacity: z.object({
      memory_total_mib: z.number().int(),
      memory_free_mib: z.number().int(),
      cpus: z.number().int(),
      driver: z.string().describe('the sandbox driver its apps run on, or its choice (auto) until the first app probes it'),
      accelerator: z.string().describe('kvm, none, or unknown until probed'),
      instances: z.record(z.string(), z.number().int()).describe('its app instances by state (running, suspended, ...)'),
      sandboxes: z.number().int().describe("instances in its own sandboxes now, those it runs for other nodes' apps included"),
      max_instances: z.number().int().describe('the most instances its sandboxes hold at once (ALTO_MAX_INSTANCES; 0: no cap): past it, its apps place new instances on other nodes'),
    }),
  })
  .meta({ id: 'Node' });

export const ListRequest = z.object({});
export const ListResponse = z.object({ nodes: z.array(NodeView).describe('every node of the cloud, by name') });
export const NodeRequest = z.object({ name: NodeName });
export const NodeResponse = z.object({ node: NodeView });
export const RemoveResponse = z.object({ name: z.string(), removed: z.boolean() });

const iso = (ms: number) => new Date(ms).toISOString();

/** A node's apps as a drain sees them. */
export interface NodeApps {
  toMove: number;
  pinned: string[];
}

export function nodeView(node: ListedNode, apps?: NodeApps): z.input<typeof NodeView> {
  const state = node.live ? (node.draining ? 'draining' : 'ready') : node.leftAt !== undefined ? 'left' : 'lost';
  return {
    name: node.name,
    id: node.id,
    state,
    live: node.live,
    draining: node.draining,
    ...(apps ? { apps: { to_move: apps.toMove, pinned: apps.pinned } } : {}),
    advertise_url: node.advertiseUrl,
    version: node.version,
    started_at: iso(node.startedAt),
    heartbeat_at: iso(node.heartbeatAt),
    lease_expires_at: iso(node.leaseExpiresAt),
    ...(node.leftAt !== undefined ? { left_at: iso(node.leftAt) } : {}),
    capacity: {
      memory_total_mib: node.capacity.memoryTotalMiB,
      memory_free_mib: node.capacity.memoryFreeMiB,
      cpus: node.capacity.cpus,
      driver: node.capacity.driver,
      accelerator: node.capacity.accelerator,
      instances: node.capacity.instances,
      sandboxes: node.capacity.sandboxes ?? 0,
      max_instances: node.capacity.maxInstances ?? 0,
    },
  };
}
