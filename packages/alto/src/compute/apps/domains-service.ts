/**
 * @module compute/apps/domains-service
 * The `domains` service: custom domains of a project's apps (`alto domains add|list|remove`).
 * Add answers the DNS record to create (a CNAME to the app's host) and the domain's status;
 * List shows each domain's status (pending_dns, issuing, active, failed with its reason).
 * `app/Update {custom_domains}` sets an app's whole list the same way (compute/apps/domains.ts).
 */
import { z } from 'zod';
import { defineService, endpoint } from '../../platform/service.js';
import { addAppDomain, listAppDomains, removeAppDomain } from './domains.js';

const AppName = z.string().min(1).max(63).describe('the app the domain serves');
const Domain = z.string().min(1).max(253).describe('a domain of yours, such as www.example.com');

const DomainView = z.object({
  domain: z.string(),
  app: z.string(),
  status: z.enum(['pending_dns', 'issuing', 'active', 'failed']).describe('pending_dns until the name resolves, issuing while its certificate is obtained, active once served, failed with error'),
  error: z.string().optional().describe('why the certificate could not be obtained (tried again with back-off)'),
  dns: z.object({ type: z.literal('CNAME'), name: z.string(), value: z.string() }).describe("the record to create: a CNAME to the app's host (or A/AAAA records to Alto's addresses)"),
  created: z.string(),
});

export const domainsService = defineService({
  name: 'domains',
  description: "Custom domains of the project's apps, served over HTTPS with certificates Alto obtains once the domain points at it.",
  priceMicros: 0,
  async deleteProjectData(projectId, platform) {
    for (const row of await platform.stores.domains.listDomains(projectId)) await platform.stores.domains.removeDomain(projectId, row.domain);
  },
  endpoints: {
    Add: endpoint({
      description: 'Give an app a custom domain (409 when another app has it). The answer names the DNS record to create; the certificate follows once the domain points at Alto.',
      request: z.object({ domain: Domain, app: AppName }),
      response: z.object({ domain: DomainView }),
      example: { domain: 'www.example.com', app: 'web' },
      async handler(request, context) {
        return { domain: await addAppDomain(context.platform, context.tenant, request.app, request.domain) };
      },
    }),
    List: endpoint({
      description: "The project's custom domains (of one app when named) with their status.",
      request: z.object({ app: AppName.optional() }),
      response: z.object({ domains: z.array(DomainView) }),
      example: {},
      async handler(request, context) {
        return { domains: await listAppDomains(context.platform, context.tenant, request.app) };
      },
    }),
    Remove: endpoint({
      description: 'Take a custom domain from its app: it is no longer served.',
      request: z.object({ domain: Domain }),
      response: z.object({}),
      example: { domain: 'www.example.com' },
      async handler(request, context) {
        await removeAppDomain(context.platform, context.tenant, request.domain);
        return {};
      },
    }),
  },
});
