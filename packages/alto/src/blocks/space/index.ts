/**
 * @module blocks/space
 * The `space` block: object storage. M3O-compatible `Create`, `Update`, `Delete`, `List`,
 * `Head`, `Read`, `Download` (a presigned GET URL) and `Upload` (a presigned PUT URL for
 * objects of any size, streamed to disk), plus paging, content types and SHA-256. Objects are
 * served at `/space/{projectId}/{environment}/{name}`: public ones to anyone, private ones with
 * a key or a presigned URL. The objects port comes from the store factory: files under
 * `<data>/objects/`, or an S3-compatible bucket with `--objects s3://...`.
 */
import { parseBaseUrl } from '../../kit/public-url.js';
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import {
  CreateRequest,
  CreateResponse,
  DeleteRequest,
  DeleteResponse,
  DownloadRequest,
  DownloadResponse,
  HeadRequest,
  HeadResponse,
  ListRequest,
  ListResponse,
  ReadRequest,
  ReadResponse,
  UpdateRequest,
  UpdateResponse,
  UploadRequest,
  UploadResponse,
} from './schema.js';
import { spaceRoute } from './serve.js';
import { loadCloudSigningKey, UrlSigner } from './signing.js';
import { INLINE_LIMIT_HINT, inlineBodyLimit, Space, type StorageGuard } from './space.js';
import { spaceSection } from './transfer.js';

const spaceBlock = component('space.objects', async (platform) => {
  const store = platform.stores.objects;
  const signer = new UrlSigner(await loadCloudSigningKey(platform));
  return new Space(store, signer, parseBaseUrl(process.env.ALTO_PUBLIC_URL, 'ALTO_PUBLIC_URL'));
});

function use(context: CallContext): { space: Space; namespace: string } {
  return { space: context.platform.use(spaceBlock), namespace: context.tenant.namespace };
}

/** The caller's project's space_bytes cap, as a guard for writes: objects and images pushed to Alto's registry count. */
function storageGuard(context: CallContext, space: Space): StorageGuard {
  const tenant = context.tenant;
  const stored = async () => (await space.store.projectBytes(tenant.projectId)) + (await context.platform.stores.registry.repositoryBytes(`${tenant.projectId}/`));
  return (adding) => context.platform.limits.assertStorage(tenant, 'space_bytes', adding, stored);
}

const inlineBody = { maxBytes: inlineBodyLimit(), hint: INLINE_LIMIT_HINT };

export const spaceService = defineService({
  name: 'space',
  description: 'Object storage: store files of any size, public at a stable URL or private behind keys and presigned URLs.',
  priceMicros: 10,
  components: [spaceBlock],
  httpRoutes: [spaceRoute(spaceBlock)],
  endpoints: {
    Create: endpoint({
      description:
        'Create an object from base64 content (at most 10 MiB; use Upload for larger ones). 409 when the name is taken: use Update to replace.',
      request: CreateRequest,
      response: CreateResponse,
      example: { name: 'images/hello.txt', object: Buffer.from('hello').toString('base64'), visibility: 'public' },
      largeBody: inlineBody,
      async handler(request, context) {
        const { space, namespace } = use(context);
        const info = await space.write(namespace, request, true, storageGuard(context, space));
        return { url: space.publicUrlOf(namespace, info, context.origin) };
      },
    }),
    Update: endpoint({
      description: 'Create or replace an object from base64 content (at most 10 MiB). Visibility is "private" unless given, as in M3O.',
      request: UpdateRequest,
      response: UpdateResponse,
      example: { name: 'images/hello.txt', object: Buffer.from('hello again').toString('base64'), visibility: 'public' },
      largeBody: inlineBody,
      async handler(request, context) {
        const { space, namespace } = use(context);
        const info = await space.write(namespace, request, false, storageGuard(context, space));
        return { url: space.publicUrlOf(namespace, info, context.origin) };
      },
    }),
    Delete: endpoint({
      description: 'Delete an object. Deleting one that does not exist succeeds all the same.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { name: 'images/hello.txt' },
      async handler(request, context) {
        const { space, namespace } = use(context);
        await space.delete(namespace, request.name);
        return {};
      },
    }),
    List: endpoint({
      description: 'List objects sorted by name, optionally only those starting with `prefix`; page with `limit` and `startAfter`.',
      request: ListRequest,
      response: ListResponse,
      example: { prefix: 'images/' },
      async handler(request, context) {
        const { space, namespace } = use(context);
        const page = await space.list(namespace, request.prefix, request.limit, request.startAfter);
        return {
          objects: page.objects.map((info) => space.view(namespace, info, context.origin)),
          nextStartAfter: page.nextStartAfter ?? '',
        };
      },
    }),
    Head: endpoint({
      description: "An object's metadata: times, visibility, public URL, size, content type, SHA-256.",
      request: HeadRequest,
      response: HeadResponse,
      example: { name: 'images/hello.txt' },
      async handler(request, context) {
        const { space, namespace } = use(context);
        return { object: space.view(namespace, await space.head(namespace, request.name), context.origin) };
      },
    }),
    Read: endpoint({
      description: 'An object with its content inline as base64 (at most 10 MiB; use Download for larger ones).',
      request: ReadRequest,
      response: ReadResponse,
      example: { name: 'images/hello.txt' },
      async handler(request, context) {
        const { space, namespace } = use(context);
        const { info, data } = await space.read(namespace, request.name);
        return { object: { ...space.view(namespace, info, context.origin), data: data.toString('base64') } };
      },
    }),
    Download: endpoint({
      description: 'A presigned URL that downloads the object with a plain GET, no key, until it expires (default: one hour).',
      request: DownloadRequest,
      response: DownloadResponse,
      example: { name: 'images/hello.txt' },
      async handler(request, context) {
        const { space, namespace } = use(context);
        return space.download(namespace, request.name, request.expiresIn, context.origin);
      },
    }),
    Upload: endpoint({
      description:
        'A presigned URL to upload an object of any size: PUT the bytes as the request body, no key, until it expires (default: one hour).',
      request: UploadRequest,
      response: UploadResponse,
      example: { name: 'videos/launch.mp4', visibility: 'private' },
      async handler(request, context) {
        const { space, namespace } = use(context);
        // A project already at its cap gets no upload URL (the PUT checks again, with the real size).
        await storageGuard(context, space)(1);
        return space.upload(namespace, request.name, request.visibility, request.expiresIn, context.origin);
      },
    }),
  },
  transfer: spaceSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(spaceBlock).store.deleteProject(projectId);
  },
});
