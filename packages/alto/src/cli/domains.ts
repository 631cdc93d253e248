/**
 * @module cli/domains
 * `alto domains add DOMAIN --app APP` (prints the DNS record to create), `alto domains` (each
 * domain's app and status: pending DNS, issuing, active, failed and why) and `alto domains
 * remove DOMAIN`, through the `domains` service.
 */
import type { Command } from 'commander';
import { bold, dim, printJson, printTable, wantsJson } from './output.js';
import type { CommandHelpers } from './usage.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string };

interface DomainView {
  domain: string;
  app: string;
  status: 'pending_dns' | 'issuing' | 'active' | 'failed';
  error?: string;
  dns: { type: string; name: string; value: string };
  created: string;
}

/** A domain's status in words: "pending DNS", "failed: <why>". */
export function statusText(view: Pick<DomainView, 'status' | 'error'>): string {
  if (view.status === 'pending_dns') return 'pending DNS';
  if (view.status === 'failed') return `failed: ${view.error ?? 'unknown reason'}`;
  return view.status;
}

/** What `/v1/status` says of HTTPS to the admin key. */
export interface HttpsInfo {
  port?: number;
  acme_directory?: string;
  certificates?: { host: string; status: string; error?: string; not_after?: string; next_attempt?: string }[];
}

/** `alto status`'s HTTPS lines: the port, and each certificate's state (a failure with its reason). */
export function httpsLines(https: HttpsInfo | undefined): string {
  if (!https) return '';
  let text = `  https:    port ${https.port}${https.acme_directory ? ` ${dim(`(ACME: ${https.acme_directory})`)}` : ''}\n`;
  for (const certificate of https.certificates ?? []) {
    const state =
      certificate.status === 'failed'
        ? `failed: ${certificate.error ?? 'unknown reason'}${certificate.next_attempt ? ` ${dim(`(next attempt ${certificate.next_attempt})`)}` : ''}`
        : certificate.status === 'active'
          ? `active until ${certificate.not_after}`
          : certificate.status;
    text += `    ${certificate.host}: ${state}\n`;
  }
  return text;
}

export function addDomainCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const domains = program.command('domains').description("custom domains of the project's apps, served over HTTPS: list, add, remove");

  remote(domains.command('list', { isDefault: true }).description('list the custom domains with their app and status (the default)').option('--app <name>', 'only this app\'s')).action(
    action(async (flags: Flags & { app?: string }) => {
      const result = await client(flags).transport.call<{ domains: DomainView[] }>('domains', 'List', flags.app ? { app: flags.app } : {});
      if (wantsJson(flags)) return printJson(result, flags);
      printTable(result.domains.map((view) => ({ domain: view.domain, app: view.app, status: statusText(view), cname: view.dns.value })), ['domain', 'app', 'status', 'cname'], flags, result);
    }),
  );

  remote(domains.command('add <domain>').description('give an app a custom domain; prints the DNS record to create').requiredOption('--app <name>', 'the app it serves')).action(
    action(async (domain: string, flags: Flags & { app: string }) => {
      const result = await client(flags).transport.call<{ domain: DomainView }>('domains', 'Add', { domain, app: flags.app });
      if (wantsJson(flags)) return printJson(result, flags);
      const view = result.domain;
      process.stdout.write(
        `${bold(view.domain)} now serves app ${bold(view.app)} — ${statusText(view)}\n` +
          `  Create this DNS record: ${view.dns.name}  ${view.dns.type}  ${view.dns.value}\n` +
          `  ${dim("(or A/AAAA records to this server's addresses); the certificate follows once it resolves")}\n`,
      );
    }),
  );

  remote(domains.command('remove <domain>').description('take a custom domain from its app')).action(
    action(async (domain: string, flags: Flags) => {
      const result = await client(flags).transport.call<Record<string, never>>('domains', 'Remove', { domain });
      if (wantsJson(flags)) return printJson(result, flags);
      process.stdout.write(`removed ${bold(domain)}\n`);
    }),
  );
}
