/**
 * @module compute/apps/domains
 * Custom domains of apps (`app/Update {custom_domains}`, the `domains` service, `alto domains`):
 * a domain belongs to one app of one project, claimed in the store (store/domains) so another
 * project asking for it gets 409 and a list with one taken domain saves nothing. Each domain's
 * status: `pending_dns` until its name resolves (through `ALTO_DNS_SERVER` when set, else the
 * system's resolver), then `issuing`, `active` once its certificate is served, or `failed` with
 * the reason. The edge asks for the certificate (edge/custom-domains.ts); a passed ACME
 * challenge is the proof the domain points at Alto.
 */
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { errors } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import type { StoredDomain } from '../../store/domains/port.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';

/** At most this many custom domains per app. */
export const MAX_DOMAINS_PER_APP = 20;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** How long a DNS pre-check waits for an answer. */
const DNS_TIMEOUT_MS = 3_000;

export type DomainStatus = 'pending_dns' | 'issuing' | 'active' | 'failed';

export interface DomainView {
  domain: string;
  app: string;
  status: DomainStatus;
  /** Why the certificate could not be obtained (status failed). */
  error?: string;
  /** The record to create at the domain's DNS host. */
  dns: { type: 'CNAME'; name: string; value: string };
  created: string;
}

/**
 * A domain as Alto keeps it: lower case, no final dot. Throws 400 saying what is wrong for a
 * name that is not a domain, an address, or one of Alto's own names.
 */
export function customDomainOf(text: unknown, platform: Platform): string {
  if (typeof text !== 'string') throw errors.badRequest('custom_domains: each entry must be a domain name such as www.example.com');
  const domain = text.trim().toLowerCase().replace(/\.$/, '');
  if (domain.length > 253 || isIP(domain) !== 0 || !domain.includes('.') || !domain.split('.').every((label) => LABEL.test(label)) || /^[0-9]+$/.test(domain.split('.').pop()!))
    throw errors.badRequest(`"${String(text).slice(0, 100)}" is not a domain name: give one such as www.example.com (letters, digits and dashes, dot-separated)`);
  const appsDomain = platform.config.appsDomain ?? 'localhost';
  if (domain === appsDomain || domain.endsWith(`.${appsDomain}`))
    throw errors.badRequest(`"${domain}" is under the apps domain (${appsDomain}), where apps have their own names: a custom domain is one of yours elsewhere`);
  return domain;
}

/** The app's host on the edge, which a custom domain's CNAME points at. */
export function appHostOf(platform: Platform, app: string, projectName: string): string {
  return `${app}.${projectName}.${platform.config.appsDomain ?? 'localhost'}`;
}

async function assertAppExists(platform: Platform, projectId: string, app: string): Promise<void> {
  // Custom domains serve apps of the project's default environment.
  if (!(await platform.stores.apps.findByName(projectId, DEFAULT_ENVIRONMENT, app))) throw errors.notFound(`app "${app}" does not exist in this project; app/List lists them`);
}

function takenError(domain: StoredDomain, projectId: string): Error {
  if (domain.projectId === projectId) return errors.conflict(`"${domain.domain}" is a custom domain of app "${domain.app}" already: remove it there first`);
  return errors.conflict(`"${domain.domain}" belongs to an app of another project; a domain serves one app`);
}

/** Makes `domains` the app's whole list (app/Update); nothing changes when one is refused. */
export async function setAppDomains(platform: Platform, tenant: { projectId: string }, app: string, domains: unknown[]): Promise<string[]> {
  const wanted = [...new Set(domains.map((domain) => customDomainOf(domain, platform)))];
  if (wanted.length > MAX_DOMAINS_PER_APP) throw errors.badRequest(`custom_domains: at most ${MAX_DOMAINS_PER_APP} per app, not ${wanted.length}`);
  await assertAppExists(platform, tenant.projectId, app);
  const { taken } = await platform.stores.domains.replaceAppDomains(tenant.projectId, app, wanted, Date.now());
  if (taken) throw takenError(taken, tenant.projectId);
  return wanted.sort();
}

/** Adds one domain to an app (domains/Add). */
export async function addAppDomain(platform: Platform, tenant: { projectId: string; projectName: string }, app: string, text: unknown): Promise<DomainView> {
  const domain = customDomainOf(text, platform);
  await assertAppExists(platform, tenant.projectId, app);
  const count = (await platform.stores.domains.listDomains(tenant.projectId)).filter((row) => row.app === app).length;
  if (count >= MAX_DOMAINS_PER_APP) throw errors.badRequest(`app "${app}" has ${count} custom domains, the most it may have`);
  const claim = await platform.stores.domains.claimDomain({ domain, projectId: tenant.projectId, app, createdAt: Date.now() });
  if (claim.outcome === 'taken') throw takenError(claim.owner, tenant.projectId);
  return domainView(platform, tenant.projectName, (await platform.stores.domains.domain(domain))!);
}

export async function removeAppDomain(platform: Platform, tenant: { projectId: string }, text: unknown): Promise<void> {
  const domain = customDomainOf(text, platform);
  if (!(await platform.stores.domains.removeDomain(tenant.projectId, domain))) throw errors.notFound(`"${domain}" is not a custom domain of this project; domains/List lists them`);
}

/** The project's custom domains (of one app when named), with their status. */
export async function listAppDomains(platform: Platform, tenant: { projectId: string; projectName: string }, app?: string): Promise<DomainView[]> {
  const rows = (await platform.stores.domains.listDomains(tenant.projectId)).filter((row) => app === undefined || row.app === app);
  return Promise.all(rows.map((row) => domainView(platform, tenant.projectName, row)));
}

/** The custom domains of each app of a project, for the apps' views. */
export async function domainsByApp(platform: Platform, projectId: string): Promise<Map<string, string[]>> {
  const byApp = new Map<string, string[]>();
  for (const row of await platform.stores.domains.listDomains(projectId)) byApp.set(row.app, [...(byApp.get(row.app) ?? []), row.domain]);
  return byApp;
}

async function domainView(platform: Platform, projectName: string, row: StoredDomain): Promise<DomainView> {
  const certificate = await platform.stores.domains.certificate(row.domain);
  let status: DomainStatus;
  if (certificate?.error !== undefined) status = 'failed';
  else if (certificate?.certificate) status = 'active';
  else if (certificate) status = 'issuing';
  else status = (await domainResolves(row.domain)) ? 'issuing' : 'pending_dns';
  return {
    domain: row.domain,
    app: row.app,
    status,
    ...(certificate?.error !== undefined ? { error: certificate.error } : {}),
    dns: { type: 'CNAME', name: row.domain, value: appHostOf(platform, row.app, projectName) },
    created: new Date(row.createdAt).toISOString(),
  };
}

/**
 * Whether `domain` has an address (A or AAAA, following CNAMEs), asked of `ALTO_DNS_SERVER`
 * (`host[:port]`) when set, else of the system's resolvers. A pre-check only: the ACME
 * challenge proves the name reaches Alto.
 */
export async function domainResolves(domain: string, server = process.env.ALTO_DNS_SERVER): Promise<boolean> {
  const resolver = new Resolver({ timeout: DNS_TIMEOUT_MS, tries: 1 });
  if (server) resolver.setServers([server]);
  const found = await Promise.all([resolver.resolve4(domain).catch(() => []), resolver.resolve6(domain).catch(() => [])]);
  return found.some((addresses) => addresses.length > 0);
}
