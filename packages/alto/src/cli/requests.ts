/**
 * @module cli/requests
 * `alto requests`: the project's request log (logs/Read), every API call and app request through
 * the edge, oldest of the page first like a log, filtered by time, kind, app, status and path;
 * `-f` keeps polling for new requests until Ctrl-C. (`alto logs NAME` is an app's own output.)
 * It calls the endpoint by name through the SDK's transport, so it works before the SDK is
 * regenerated. JSON lines when piped or with --json.
 */
import type { LogsReadResponse, RequestLogEntry } from '@alto/sdk';
import type { Command } from 'commander';
import { bold, dim, red, wantsJson, yellow } from './output.js';
import type { CommandHelpers } from './usage.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

/** How often `-f` asks for new requests. */
const FOLLOW_EVERY_MS = 1000;

function whole(flag: string, value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new Error(`${flag} must be a whole number of at least 1, not "${value}"`);
  return number;
}

function statusText(status: number): string {
  const text = String(status);
  return status >= 500 ? red(text) : status >= 400 ? yellow(text) : text;
}

/** One request as a line: time, kind, method, path, status, duration, bytes, who, app, request id. */
function line(entry: RequestLogEntry): string {
  const who = entry.kind === 'api' ? (entry.key_prefix ?? '-') : (entry.client_address ?? '-');
  return [
    dim(entry.time),
    entry.kind === 'app' ? `app:${entry.app ?? '?'}` : 'api',
    entry.method.padEnd(6),
    statusText(entry.status),
    `${entry.duration_ms.toFixed(1)}ms`.padStart(9),
    `${entry.bytes_in}/${entry.bytes_out}B`.padStart(12),
    entry.path,
    dim(who),
    dim(entry.request_id ?? ''),
  ].join('  ');
}

export function addRequestCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  remote(
    program
      .command('requests')
      .description("the project's request log: every API call and app request through the edge (time, method, path, status, duration, bytes, key prefix or client, request id)")
      .option('-f, --follow', 'keep printing new requests until Ctrl-C')
      .option('-n, --limit <count>', 'how many of the newest requests (at most 1000)', '100')
      .option('--since <time>', 'only requests from then on: an RFC 3339 time or a duration back from now (10m, 2h, 7d)')
      .option('--until <time>', 'only requests before then: an RFC 3339 time or a duration back from now')
      .option('--kind <kind>', 'only api calls or app requests')
      .option('--app <name>', 'only requests to this app')
      .option('--status <status>', 'only this status (404) or class (5xx)')
      .option('--path <prefix>', 'only paths starting with this')
      .option('--project <name>', "another project of your account (owner or admin key); default: the key's own"),
  ).action(
    action(async (flags: Flags & { follow?: boolean; limit: string; since?: string; until?: string; kind?: string; app?: string; status?: string; path?: string; project?: string }) => {
      const transport = client(flags).transport;
      const filters = Object.fromEntries(
        (['since', 'until', 'kind', 'app', 'status', 'path', 'project'] as const).filter((name) => flags[name] !== undefined).map((name) => [name, flags[name]]),
      );
      const limit = whole('--limit', flags.limit);
      const json = wantsJson(flags);
      const print = (entry: RequestLogEntry) => process.stdout.write((json ? JSON.stringify(entry) : line(entry)) + '\n');
      const first = await transport.call<LogsReadResponse>('logs', 'Read', { ...filters, limit });
      const shown = [...first.requests].reverse();
      if (!json && shown.length === 0 && !flags.follow) process.stdout.write(dim('(no requests)') + '\n');
      if (!json && shown.length > 0) process.stdout.write(bold(`${first.project}: ${shown.length} request${shown.length === 1 ? '' : 's'}, oldest first`) + '\n');
      for (const entry of shown) print(entry);
      if (!flags.follow) return;
      // From the newest time seen on: the requests of that very millisecond already shown are
      // told apart by what they hold, so none is printed twice.
      let since = first.requests[0]?.time ?? new Date().toISOString();
      let seenAtSince = new Set(first.requests.filter((entry) => entry.time === since).map((entry) => JSON.stringify(entry)));
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, FOLLOW_EVERY_MS));
        const page = await transport.call<LogsReadResponse>('logs', 'Read', { ...filters, since, limit: 1000 });
        const fresh = page.requests.filter((entry) => entry.time !== since || !seenAtSince.has(JSON.stringify(entry))).reverse();
        for (const entry of fresh) print(entry);
        if (page.requests.length === 0) continue;
        const newest = page.requests[0].time;
        const atNewest = page.requests.filter((entry) => entry.time === newest).map((entry) => JSON.stringify(entry));
        seenAtSince = newest === since ? new Set([...seenAtSince, ...atNewest]) : new Set(atNewest);
        since = newest;
      }
    }),
  );
}
