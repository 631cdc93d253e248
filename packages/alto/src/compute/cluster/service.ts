/**
 * @module compute/cluster/service
 * The `nodes` service: the nodes of the cloud, for the admin key only (a project key gets 403,
 * no key 401, like `images`). List shows every node with its lease, capacity and state; Drain
 * and Undrain set and clear a node's draining flag; Remove forgets a node that is not live.
 * A draining node hands its apps without volumes to other live nodes itself (drain.ts); List
 * and Drain show a draining node's apps left to move and those pinned by their volumes. The
 * service also serves the node link's hand-off route (hand-off.ts), which only nodes call.
 */
import { errors } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import { defineService, endpoint, type CallContext } from '../../platform/service.js';
import type { ListedNode } from '../../store/nodes/port.js';
import { movable } from './cluster.js';
import { handOffRoute } from './hand-off.js';
import { ListRequest, ListResponse, NodeRequest, NodeResponse, nodeView, RemoveResponse, type NodeApps } from './schema.js';

/** The cloud's nodes, viewed as the API answers them: for `nodes/List` and `/v1/status`. */
export async function listNodes(platform: Platform): Promise<ReturnType<typeof nodeView>[]> {
  const nodes = await platform.stores.nodes.list(Date.now());
  return Promise.all(nodes.map(async (node) => nodeView(node, node.draining ? await appsOf(platform, node) : undefined)));
}

/** A node's apps as its drain sees them: those still to move, and those its volumes pin. */
async function appsOf(platform: Platform, node: ListedNode): Promise<NodeApps> {
  const apps = await platform.stores.apps.listOfNode(node.id);
  return {
    toMove: apps.filter((app) => movable(app)).length,
    pinned: apps.filter((app) => !movable(app)).map((app) => `${app.name}.${app.projectName}`),
  };
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
  const node = found(await context.platform.stores.nodes.setDraining(name, draining, Date.now()), name);
  return { node: nodeView(node, await appsOf(context.platform, node)) };
}

export const nodesService = defineService({
  name: 'nodes',
  description:
    'The nodes of the cloud (each `alto up` sharing one --store): their leases, capacity and state; drain and undrain them. Admin key only.',
  priceMicros: 0,
  httpRoutes: [handOffRoute()],
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
        'Drain a node: it takes no apps, and hands each of its apps without volumes to another live node, one at a time, with no request failing (each is ready on its new node before the old copy stops). Apps with volumes stay (pinned). The answer shows the apps left to move; List shows the progress.',
      access: 'manage',
      request: NodeRequest,
      response: NodeResponse,
      example: { name: 'node-2' },
      handler: (request, context) => setDraining(request.name, true, context),
    }),
    Undrain: endpoint({
      description: 'Clear a node\'s draining flag: it takes apps again and moves no more of its own (apps moved stay where they went).',
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
