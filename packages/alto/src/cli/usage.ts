/**
 * @module cli/usage
 * `alto usage` (this month's usage and cost; `read` for daily rows, `prices` for the price
 * list) and the limit commands `alto projects update` and `alto keys update`. They call the
 * endpoints by name through the SDK's transport, so they work before the SDK is regenerated.
 */
import type { Command } from 'commander';
import type { Alto } from '@alto/sdk';
import { bold, dim, printJson, printTable, wantsJson } from './output.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

export interface CommandHelpers {
  remote(command: Command): Command;
  action<Args extends unknown[]>(run: (...args: Args) => Promise<void>): (...args: Args) => Promise<void>;
  client(flags: Flags): Alto;
}

interface UsageSummary {
  project: string;
  month: string;
  currency: string;
  calls: number;
  errors: number;
  endpoints: { service: string; endpoint: string; calls: number; errors: number; price_micros: number }[];
  compute: { running_ms: number; mib_ms: number; requests: number; price_micros: number };
  requests_micros: number;
  compute_micros: number;
  total_micros: number;
  free_credit_micros: number;
  due_micros: number;
  due: string;
  limits: Record<string, number>;
}

/** `1234567` → `"1.234567"`, as the server writes amounts. */
function money(micros: number): string {
  return `${Math.floor(micros / 1_000_000)}.${String(micros % 1_000_000).padStart(6, '0')}`;
}

interface LimitOption {
  flag: string;
  /** The property commander gives the option's value. */
  property: string;
  field: string;
  what: string;
}

const LIMIT_OPTIONS: LimitOption[] = [
  { flag: '--rate-limit <n>', property: 'rateLimit', field: 'rate_limit', what: 'requests per second' },
  { flag: '--monthly-quota <n>', property: 'monthlyQuota', field: 'monthly_quota', what: 'requests per month' },
  { flag: '--spend-cap <micros>', property: 'spendCap', field: 'monthly_spend_cap_micros', what: 'most cost per month, in micro-units' },
  { flag: '--db-rows <n>', property: 'dbRows', field: 'db_rows', what: 'most db records' },
  { flag: '--space-bytes <n>', property: 'spaceBytes', field: 'space_bytes', what: 'most bytes in space' },
  { flag: '--compute-apps <n>', property: 'computeApps', field: 'compute_apps', what: 'most apps' },
  { flag: '--compute-instances <n>', property: 'computeInstances', field: 'compute_instances', what: 'most running instances' },
  { flag: '--compute-gb-seconds <n>', property: 'computeGbSeconds', field: 'compute_gb_seconds', what: 'most GB-seconds per month' },
];
const PROJECT_LIMITS = LIMIT_OPTIONS.map((option) => option.field);
const KEY_LIMITS = ['rate_limit', 'monthly_quota'];

/** `--rate-limit 5` → `{ rate_limit: 5 }`; `none` → 0 (no limit), `default` → null (cleared). */
function limitChanges(flags: Record<string, unknown>, names: string[]): Record<string, number | null> {
  const changes: Record<string, number | null> = {};
  for (const option of LIMIT_OPTIONS.filter((candidate) => names.includes(candidate.field))) {
    const value = flags[option.property];
    if (value === undefined) continue;
    if (value === 'none') changes[option.field] = 0;
    else if (value === 'default') changes[option.field] = null;
    else {
      const number = Number(value);
      if (typeof value !== 'string' || value.trim() === '' || !Number.isSafeInteger(number) || number < 0) {
        throw new Error(`${option.flag.split(' ')[0]} must be a whole number, "none" or "default", not "${String(value)}"`);
      }
      changes[option.field] = number;
    }
  }
  if (Object.keys(changes).length === 0) throw new Error('give at least one limit to change, e.g. --rate-limit 10');
  return changes;
}

function withLimitOptions(command: Command, names: string[]): Command {
  for (const option of LIMIT_OPTIONS) {
    if (names.includes(option.field)) command.option(option.flag, `${option.what}; "none" for no limit, "default" to clear`);
  }
  return command;
}

export function addUsageCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const usage = program.command('usage').description("a project's usage and cost, and the price list");

  remote(
    usage
      .command('summary', { isDefault: true })
      .description("this month's usage and cost (the default)")
      .option('--project <name>', "project (default: the key's own)")
      .option('--month <YYYY-MM>', 'month, UTC (default: this one)'),
  ).action(
    action(async (flags: Flags & { project?: string; month?: string }) => {
      const summary = await client(flags).transport.call<UsageSummary>('usage', 'Summary', { project: flags.project, month: flags.month });
      if (wantsJson(flags)) return printJson(summary, flags);
      process.stdout.write(`${bold(`Project ${summary.project}`)}, ${summary.month}: ${summary.calls} calls (${summary.errors} failed)\n\n`);
      printTable(
        summary.endpoints.map((row) => ({ ...row, cost: money(row.price_micros) })),
        ['service', 'endpoint', 'calls', 'errors', 'cost'],
        flags,
        summary,
      );
      const lines = [
        '',
        `requests  ${money(summary.requests_micros)} ${summary.currency}`,
        `compute   ${money(summary.compute_micros)} ${summary.currency}  ${dim(`(${summary.compute.running_ms} ms running, ${summary.compute.requests} requests)`)}`,
        `free      -${money(Math.min(summary.free_credit_micros, summary.total_micros))} ${summary.currency}`,
        `${bold('due')}       ${bold(summary.due)} ${summary.currency}`,
        dim(`limits: ${Object.entries(summary.limits).map(([name, value]) => `${name} ${value === 0 ? 'none' : value}`).join(', ')}`),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    }),
  );

  remote(
    usage
      .command('read')
      .description('daily usage by key, service and endpoint')
      .option('--project <name>', "project (default: the key's own)")
      .option('--key-id <id>', 'only calls made with this key')
      .option('--service <name>', 'only this service')
      .option('--endpoint <name>', 'only this endpoint')
      .option('--from <YYYY-MM-DD>', 'first day (default: the first of this month)')
      .option('--to <YYYY-MM-DD>', 'last day (default: today)'),
  ).action(
    action(async (flags: Flags & { project?: string; keyId?: string; service?: string; endpoint?: string; from?: string; to?: string }) => {
      const result = await client(flags).transport.call<{ usage: Record<string, unknown>[] }>('usage', 'Read', {
        project: flags.project,
        key: flags.keyId,
        service: flags.service,
        endpoint: flags.endpoint,
        from: flags.from,
        to: flags.to,
      });
      printTable(result.usage, ['day', 'service', 'endpoint', 'key', 'calls', 'errors', 'price_micros'], flags, result);
    }),
  );

  remote(usage.command('prices').description('the price list: every endpoint, compute and the free tier')).action(
    action(async (flags: Flags) => {
      const prices = await client(flags).transport.call<{
        currency: string;
        requests: { service: string; endpoint: string; price_micros: number; price: string }[];
        compute: { gb_second_micros: number; request_micros: number };
        free_tier: { monthly_credit_micros: number };
      }>('usage', 'Prices', {});
      printTable(prices.requests, ['service', 'endpoint', 'price_micros', 'price'], flags, prices);
      if (wantsJson(flags)) return;
      process.stdout.write(
        `\ncompute: ${money(prices.compute.gb_second_micros)} ${prices.currency} per GB-second, ` +
          `${money(prices.compute.request_micros)} per request; free credit ${money(prices.free_tier.monthly_credit_micros)} a month\n`,
      );
    }),
  );

  const projects = program.commands.find((command) => command.name() === 'projects');
  if (projects) {
    remote(withLimitOptions(projects.command('update <name>').description("change a project's limits"), PROJECT_LIMITS)).action(
      action(async (name: string, flags: Flags & Record<string, unknown>) => {
        const changes = limitChanges(flags, PROJECT_LIMITS);
        const result = await client(flags).transport.call<{ project: { limits: Record<string, number> } }>('projects', 'Update', { name, ...changes });
        printJson(result, flags);
      }),
    );
  }
  const keys = program.commands.find((command) => command.name() === 'keys');
  if (keys) {
    remote(withLimitOptions(keys.command('update <id>').description("change a key's limits"), KEY_LIMITS)).action(
      action(async (id: string, flags: Flags & Record<string, unknown>) => {
        const changes = limitChanges(flags, KEY_LIMITS);
        printJson(await client(flags).transport.call('keys', 'Update', { id, ...changes }), flags);
      }),
    );
  }
}
