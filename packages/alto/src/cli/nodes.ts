/**
 * @module cli/nodes
 * `alto nodes` (the cloud's nodes: state, address, capacity, last heartbeat), `alto nodes drain
 * NAME`, `alto nodes undrain NAME` and `alto nodes remove NAME`, with the admin key. They call
 * the `nodes` service by name through the SDK's transport. Draining today marks the node (the
 * list shows it); moving its instances elsewhere comes with placement across nodes.
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
  capacity: {
    memory_total_mib: number;
    memory_free_mib: number;
    cpus: number;
    driver: string;
    accelerator: string;
    instances: Record<string, number>;
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
    heartbeat: ago(node.heartbeat_at, now),
  };
}

export function addNodeCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const nodes = program
    .command('nodes')
    .description('the nodes of the cloud (every `alto up` sharing one --store): list, drain, undrain, remove; admin key')
    .addHelpText(
      'after',
      '\nA node is live while it heartbeats (every 2 s; lost 10 s after the last one).\n' +
        'Draining marks a node so no new instances are placed on it; for now it only sets the flag the list\n' +
        'shows: moving its running instances to other nodes comes with placement across nodes.',
    );

  remote(nodes.command('list', { isDefault: true }).description('list the nodes with their state, address, capacity and last heartbeat (the default)')).action(
    action(async (flags: Flags) => {
      const result = await client(flags).transport.call<{ nodes: NodeView[] }>('nodes', 'List', {});
      if (wantsJson(flags)) return printJson(result, flags);
      printTable(result.nodes.map((node) => nodeRow(node)), ['name', 'state', 'advertise', 'version', 'memory', 'cpus', 'driver', 'instances', 'heartbeat'], flags, result);
      const live = result.nodes.filter((node) => node.live).length;
      process.stdout.write(dim(`${live} of ${result.nodes.length} node${result.nodes.length === 1 ? '' : 's'} live`) + '\n');
    }),
  );

  for (const [verb, endpoint, done, description] of [
    ['drain', 'Drain', 'draining', 'mark a node as draining: no new instances are placed on it (moving its running ones comes with placement)'],
    ['undrain', 'Undrain', 'no longer draining', 'clear the draining flag: the node takes new instances again'],
  ] as const) {
    remote(nodes.command(`${verb} <name>`).description(description)).action(
      action(async (name: string, flags: Flags) => {
        const result = await client(flags).transport.call<{ node: NodeView }>('nodes', endpoint, { name });
        if (wantsJson(flags)) return printJson(result, flags);
        process.stdout.write(`node ${bold(name)} is ${done} ${dim(`(${result.node.state})`)}\n`);
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
