/**
 * @module cli/nodes
 * `alto nodes` (the cloud's nodes: state, address, capacity, last heartbeat), `alto nodes drain
 * NAME`, `alto nodes undrain NAME` and `alto nodes remove NAME`, with the admin key. They call
 * the `nodes` service by name through the SDK's transport. A draining node hands its apps
 * without volumes to other live nodes, one at a time; drain and the list show the apps left to
 * move and those pinned by their volumes.
 */
import type { Command } from 'commander';
import { bold, dim, printJson, printTable, wantsJson } from './output.js';
import type { CommandHelpers } from './usage.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

export interface NodeView {
  name: string;
  id: string;
  state: 'ready' | 'draining' | 'left' | 'lost';
  live: boolean;
  draining: boolean;
  advertise_url: string;
  version: string;
  started_at: string;
  heartbeat_at: string;
  lease_expires_at: string;
  left_at?: string;
  /** A draining node's apps: left to move, and pinned by their volumes. */
  apps?: { to_move: number; pinned: string[] };
  capacity: {
    memory_total_mib: number;
    memory_free_mib: number;
    cpus: number;
    driver: string;
    accelerator: string;
    instances: Record<string, number>;
    sandboxes?: number;
    max_instances?: number;
  };
}

/** "3s ago", "5m ago": how long since a moment, for the heartbeat column. */
export function ago(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7_200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3_600)}h ago`;
}

function instancesText(instances: Record<string, number>): string {
  const parts = Object.entries(instances).filter(([, count]) => count > 0).map(([state, count]) => `${count} ${state}`);
  return parts.length ? parts.join(', ') : '0';
}

/** A draining node's progress: "2 to move, pinned: db.shop"; "done" once only pinned apps are left. */
export function drainText(node: Pick<NodeView, 'apps'>): string {
  if (!node.apps) return '';
  const { to_move: toMove, pinned } = node.apps;
  const moving = toMove > 0 ? `${toMove} app${toMove === 1 ? '' : 's'} to move` : 'nothing left to move';
  return pinned.length ? `${moving}, pinned (volumes): ${pinned.join(', ')}` : moving;
}

/** One node as a row of the `alto nodes` table. */
export function nodeRow(node: NodeView, now = Date.now()): Record<string, string> {
  const { capacity } = node;
  return {
    name: node.name,
    state: node.state,
    advertise: node.advertise_url,
    version: node.version,
    memory: `${capacity.memory_free_mib}/${capacity.memory_total_mib} MiB free`,
    cpus: String(capacity.cpus),
    driver: capacity.accelerator && !['none', 'unknown'].includes(capacity.accelerator) ? `${capacity.driver} (${capacity.accelerator})` : capacity.driver,
    instances: instancesText(capacity.instances),
    sandboxes: capacity.max_instances ? `${capacity.sandboxes ?? 0}/${capacity.max_instances}` : String(capacity.sandboxes ?? 0),
    heartbeat: ago(node.heartbeat_at, now),
    drain: drainText(node),
  };
}

export function addNodeCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const nodes = program
    .command('nodes')
    .description('the nodes of the cloud (every `alto up` sharing one --store): list, drain, undrain, remove; admin key')
    .addHelpText(
      'after',
      '\nA node is live while it heartbeats (every 2 s; lost 10 s after the last one).\n' +
        'Draining a node hands its apps without volumes to other live nodes, one at a time, each ready on its\n' +
        'new node before its old copy stops (no request fails); apps with volumes stay, pinned. Undrain stops\n' +
        'further moves.',
    );

  remote(nodes.command('list', { isDefault: true }).description('list the nodes with their state, address, capacity and last heartbeat (the default)')).action(
    action(async (flags: Flags) => {
      const result = await client(flags).transport.call<{ nodes: NodeView[] }>('nodes', 'List', {});
      if (wantsJson(flags)) return printJson(result, flags);
      printTable(result.nodes.map((node) => nodeRow(node)), ['name', 'state', 'advertise', 'version', 'memory', 'cpus', 'driver', 'instances', 'heartbeat', ...(result.nodes.some((node) => node.apps) ? ['drain'] : [])], flags, result);
      const live = result.nodes.filter((node) => node.live).length;
      process.stdout.write(dim(`${live} of ${result.nodes.length} node${result.nodes.length === 1 ? '' : 's'} live`) + '\n');
    }),
  );

  for (const [verb, endpoint, done, description] of [
    ['drain', 'Drain', 'draining', 'drain a node: it hands its apps without volumes to other live nodes (`alto nodes` shows the progress)'],
    ['undrain', 'Undrain', 'no longer draining', 'clear the draining flag: the node takes apps again and moves no more of its own'],
  ] as const) {
    remote(nodes.command(`${verb} <name>`).description(description)).action(
      action(async (name: string, flags: Flags) => {
        const result = await client(flags).transport.call<{ node: NodeView }>('nodes', endpoint, { name });
        if (wantsJson(flags)) return printJson(result, flags);
        const progress = result.node.draining ? drainText(result.node) : '';
        process.stdout.write(`node ${bold(name)} is ${done} ${dim(`(${result.node.state})`)}${progress ? `: ${progress}` : ''}\n`);
      }),
    );
  }

  remote(nodes.command('remove <name>').description('forget a node that is not live (stopped, or lost for good)')).action(
    action(async (name: string, flags: Flags) => {
      const result = await client(flags).transport.call<{ name: string; removed: boolean }>('nodes', 'Remove', { name });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(`removed node ${bold(name)}\n`);
    }),
  );
}
