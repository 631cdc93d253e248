/**
 * @module blocks/url
 * The `url` block: short URLs. M3O-compatible `Shorten`, `Create`, `List`, `Resolve`,
 * `Update`, `Delete`, plus hit counts and a choice of 301 or 302, and the public redirect at
 * `GET /u/{id}`. Short ids are unique across projects, since the redirect carries no key.
 */
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import { errors } from '../../kit/errors.js';
import { redirectRoute } from './redirect.js';
import {
  CreateRequest,
  CreateResponse,
  DeleteRequest,
  DeleteResponse,
  ListRequest,
  ListResponse,
  ResolveRequest,
  ResolveResponse,
  ShortenRequest,
  ShortenResponse,
  UpdateRequest,
  UpdateResponse,
} from './schema.js';
import { checkPublicUrl, idOfRequest, ShortUrls } from './short-urls.js';
import { urlSection } from './transfer.js';

const shortUrls = component('url.shortUrls', (platform) => {
  return new ShortUrls(platform.stores.urls, checkPublicUrl(process.env.ALTO_PUBLIC_URL));
});

function namespaceOf(context: CallContext): string {
  return context.tenant.namespace;
}

export const urlService = defineService({
  name: 'url',
  description: 'Short URLs: shorten a link, pick your own id, count its visits; GET /u/{id} redirects.',
  priceMicros: 10,
  components: [shortUrls],
  httpRoutes: [redirectRoute(shortUrls)],
  endpoints: {
    Shorten: endpoint({
      description: 'Shorten a URL under a random id; returns the short URL, which redirects with 302 (301 if permanent).',
      request: ShortenRequest,
      response: ShortenResponse,
      example: { destinationURL: 'https://example.com/a/long/page' },
      async handler(request, context) {
        const urls = context.platform.use(shortUrls);
        const created = await urls.shorten(namespaceOf(context), request.destinationURL, request.permanent ?? false);
        return { shortURL: urls.shortUrlOf(created.id, context.origin) };
      },
    }),
    Create: endpoint({
      description: 'Create a short URL with an id of your choice (unique on this server); 409 when it is taken.',
      request: CreateRequest,
      response: CreateResponse,
      example: { id: 'launch', destinationURL: 'https://example.com/launch', permanent: false },
      async handler(request, context) {
        const urls = context.platform.use(shortUrls);
        const created = await urls.create(namespaceOf(context), request.id, request.destinationURL, request.permanent ?? false);
        return { url: urls.view(created, context.origin) };
      },
    }),
    List: endpoint({
      description: "List this project's short URLs with their hit counts, oldest first.",
      request: ListRequest,
      response: ListResponse,
      example: {},
      async handler(request, context) {
        const urls = context.platform.use(shortUrls);
        const records = await urls.list(namespaceOf(context), request.shortURL);
        return { urlPairs: records.map((record) => urls.view(record, context.origin)) };
      },
    }),
    Resolve: endpoint({
      description: 'The destination of a short URL, by id or short URL, with its hit count (resolving does not count a hit).',
      request: ResolveRequest,
      response: ResolveResponse,
      example: { id: 'launch' },
      async handler(request, context) {
        const record = await context.platform.use(shortUrls).get(namespaceOf(context), idOfRequest(request));
        return { destinationURL: record.destination, hitCount: record.hitCount, permanent: record.permanent };
      },
    }),
    Update: endpoint({
      description: 'Change the destination (or the redirect kind) of a short URL, by id or short URL.',
      request: UpdateRequest,
      response: UpdateResponse,
      example: { id: 'launch', destinationURL: 'https://example.com/launch-v2' },
      async handler(request, context) {
        await context.platform.use(shortUrls).update(namespaceOf(context), idOfRequest(request), request);
        return {};
      },
    }),
    Delete: endpoint({
      description: 'Delete a short URL, by id or short URL; its id becomes free again.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { id: 'launch' },
      async handler(request, context) {
        await context.platform.use(shortUrls).delete(namespaceOf(context), idOfRequest(request));
        return {};
      },
    }),
  },
  transfer: urlSection(shortUrls),
  async deleteProjectData(projectId, platform) {
    await platform.use(shortUrls).store.deleteProject(projectId);
  },
});
