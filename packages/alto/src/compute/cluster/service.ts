/**
 * @module compute/cluster/service
 * The `nodes` service: the nodes of the cloud, for the admin key only (a project key gets 403,
 * no key 401, like `images`). List shows every node with its lease, capacity and state; Drain
 * and Undrain set and clear a node's draining flag; Remove forgets a node that is not live.
 * Draining today only marks the node (List shows it): placing instances across nodes, and so
 * moving a drained node's instances elsewhere, comes with placement (issue 23).
 */
import { errors } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import { defineService, endpoint, type CallContext } from '../../platform/service.js';
import type { ListedNode } from '../../store/nodes/port.js';
import { ListRequest, ListResponse, NodeRequest, NodeResponse, nodeView, RemoveResponse } from './schema.js';

/** The cloud's nodes, viewed as the API answers them: for `nodes/List` and `/v1/status`. */
export async function listNodes(platform: Platform): Promise<ReturnType<typeof nodeView>[]> {
  return (await platform.stores.nodes.list(Date.now())).map(nodeView);
}

/** Nodes belong to the whole cloud, not to a project: the admin key only. */
function requireAdmin(context: CallContext): void {
  if (context.tenant.role !== 'admin') throw errors.forbidden('the nodes belong to the whole cloud: use the admin key');
}

function found(node: ListedNode | undefined, name: string): ListedNode {
  if (!node) throw errors.notFound(`no node is named "${name}"; \`alto nodes\` (nodes/List) lists them`);
  return node;
}

async function setDraining(name: string, draining: boolean, context: CallContext) {
  requireAdmin(context);
  return { node: nodeView(found(await context.platform.stores.nodes.setDraining(name, draining, Date.now()), name)) };
}

export const nodesService = defineService({
  name: 'nodes',
  description:
    'The nodes of the cloud (each `alto up` sharing one --store): their leases, capacity and state; drain and undrain them. Admin key only.',
  priceMicros: 0,
  endpoints: {
    List: endpoint({
      description: 'List every node of the cloud by name: live or not (a node is lost 10 s after its last heartbeat), draining, its capacity and instances.',
      access: 'manage',
      request: ListRequest,
      response: ListResponse,
      example: {},
      async handler(_request, context) {
        requireAdmin(context);
        return { nodes: await listNodes(context.platform) };
      },
    }),
    Drain: endpoint({
      description:
        'Mark a node as draining: no new instances are placed on it. For now this sets the flag that List shows; moving its running instances to other nodes comes with placement across nodes.',
      access: 'manage',
      request: NodeRequest,
      response: NodeResponse,
      example: { name: 'node-2' },
      handler: (request, context) => setDraining(request.name, true, context),
    }),
    Undrain: endpoint({
      description: 'Clear a node\'s draining flag: it takes new instances again.',
      access: 'manage',
      request: NodeRequest,
      response: NodeResponse,
      example: { name: 'node-2' },
      handler: (request, context) => setDraining(request.name, false, context),
    }),
    Remove: endpoint({
      description: 'Forget a node that is not live (stopped, or lost for good). A live node is refused: stop it first.',
      access: 'manage',
      request: NodeRequest,
      response: RemoveResponse,
      example: { name: 'node-2' },
      async handler(request, context) {
        requireAdmin(context);
        const removal = await context.platform.stores.nodes.remove(request.name, Date.now());
        if (removal === 'missing') found(undefined, request.name);
        if (removal === 'live') throw errors.conflict(`node "${request.name}" is live; stop its \`alto up\` first (or wait until its lease lapses), then remove it`);
        return { name: request.name, removed: true };
      },
    }),
  },
});
