/**
 * @module edge/custom-domains
 * Routes the apps' custom domains (compute/apps/domains.ts) on this node: the domain → app map
 * the app proxy consults for hosts outside the apps domain, read again from the store every few
 * seconds (so a domain added through any node is served by all), and for each domain with no
 * certificate yet whose name now resolves, the certificate is asked for (edge/acme.ts).
 */
import type { Logger } from '../kit/logger.js';
import type { Stores } from '../store/index.js';
import type { AppAddress } from './proxy.js';
import { domainResolves } from '../compute/apps/domains.js';
import { DEFAULT_ENVIRONMENT } from '../platform/tenancy.js';

export interface CustomDomainsOptions {
  stores: Pick<Stores, 'domains' | 'apps'>;
  /** Asks for `domain`'s certificate; undefined without ACME. */
  demand?: (domain: string) => Promise<boolean>;
  /** Whether a certificate is asked for (or held) for `domain` already. */
  tracked?: (domain: string) => boolean;
  /** How often the map is read again (ALTO_DOMAIN_CHECK_MS, default 5 s). */
  everyMs?: number;
  log: Logger;
}

export class CustomDomains {
  private routes = new Map<string, AppAddress>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(private readonly options: CustomDomainsOptions) {}

  /** The app `host` (lower case, no port) is a custom domain of. */
  addressOf(host: string): AppAddress | undefined {
    return this.routes.get(host);
  }

  /** Whether `host` is a custom domain of an app now. */
  async has(host: string): Promise<boolean> {
    return (await this.options.stores.domains.domain(host)) !== undefined;
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.everyMs ?? 5_000);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.refreshing;
  }

  /** Reads the domains again; asks for the certificates of those that now resolve. */
  refresh(): Promise<void> {
    this.refreshing ??= this.readDomains()
      .catch((error) => this.options.log.warn({ err: error }, 'reading the custom domains failed'))
      .finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async readDomains(): Promise<void> {
    const { stores, demand, tracked } = this.options;
    const routes = new Map<string, AppAddress>();
    const projects = new Map<string, string | undefined>();
    for (const row of await stores.domains.listDomains()) {
      const key = `${row.projectId}\n${row.app}`;
      if (!projects.has(key)) projects.set(key, (await stores.apps.findByName(row.projectId, DEFAULT_ENVIRONMENT, row.app))?.projectName);
      const project = projects.get(key);
      if (project !== undefined) routes.set(row.domain, { app: row.app, project });
    }
    this.routes = routes;
    if (!demand) return;
    for (const domain of routes.keys()) {
      if (tracked?.(domain)) continue;
      if (await domainResolves(domain)) await demand(domain);
    }
  }
}
