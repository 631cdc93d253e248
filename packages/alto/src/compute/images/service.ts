/**
 * @module compute/images/service
 * The `images` service (pull with progress, list, inspect, delete, prune, import, unpack) and
 * the `registry` service (login, logout, list saved logins). Images and registry credentials
 * belong to the machine, not to a project, so every endpoint needs the admin key. Other compute
 * parts reach the same images with `platform.use(imagesComponent)`.
 *
 * Settings (environment of `alto up`): ALTO_IMAGES_MAX_LAYER_BYTES (largest uncompressed
 * layer, default 8 GiB), ALTO_INSECURE_REGISTRIES (comma-separated hosts that may answer plain
 * HTTP; loopback registries always may), ALTO_TRUSTED_REGISTRIES (comma-separated `host:port`, or
 * `host` for every port: registries that project keys may pull from although they are on
 * private or loopback addresses, over plain HTTP too; the admin key pulls from anywhere).
 */
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import { EVERY_PROJECT } from '../../store/images/port.js';
import { component, defineService, endpoint, streamEndpoint, type CallContext } from '../../platform/service.js';
import { distributionRoute } from './distribution.js';
import { ImageManager, type PullEvent } from './manager.js';
import type { Repository } from './repositories.js';
import {
  DeleteRequest,
  DeleteResponse,
  detailsView,
  ImportRequest,
  ImportResponse,
  InspectRequest,
  InspectResponse,
  ListRequest,
  ListResponse,
  LoginRequest,
  LoginResponse,
  LogoutRequest,
  LogoutResponse,
  PruneRequest,
  PruneResponse,
  pruneView,
  PullMessage,
  PullRequest,
  RegistriesResponse,
  removeView,
  ShareRequest,
  ShareResponse,
  summaryView,
  UnpackRequest,
  UnpackResponse,
  unpackView,
} from './schema.js';
import type { z } from 'zod';

function positiveNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0) throw new Error(`${name} must be a positive whole number of bytes, not "${value}"`);
  return parsed;
}

export const imagesComponent = component(
  'images.manager',
  (platform) =>
    new ImageManager({
      root: join(platform.config.dataDir, 'images'),
      records: platform.stores.images,
      catalog: platform.stores.registry,
      // Blobs pushed to one node are read by the others from the bucket; on disk, each node keeps its own.
      objects: platform.stores.objects.backend === 's3' ? platform.stores.objects : undefined,
      log: platform.log.child({ component: 'images' }),
      maxLayerBytes: positiveNumber('ALTO_IMAGES_MAX_LAYER_BYTES', process.env.ALTO_IMAGES_MAX_LAYER_BYTES),
      insecureRegistries: listSetting(process.env.ALTO_INSECURE_REGISTRIES),
      trustedRegistries: listSetting(process.env.ALTO_TRUSTED_REGISTRIES),
    }),
);

function listSetting(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((host) => host.trim())
    .filter(Boolean);
}

/** The id of the project an admin names for a share: a project of the admin's account by name, else an id as given. */
async function projectIdFor(name: string, context: CallContext): Promise<string> {
  if (name === EVERY_PROJECT) return EVERY_PROJECT;
  try {
    return (await context.platform.tenancy.findProject(context.tenant.accountId, name)).id;
  } catch (error) {
    if (/^[0-9a-f-]{36}$/i.test(name)) return name.toLowerCase();
    throw error;
  }
}

/** The images manager for any key: a project key reaches only its project's repositories through it. */
function imagesFor(context: CallContext): ImageManager {
  return context.platform.use(imagesComponent);
}

/** A project's tag as `images/Delete` names it: `<project>/<name>:<tag>`, with or without this Alto's host first. */
function projectTag(manager: ImageManager, text: string, context: CallContext): { repository: Repository; tag: string } {
  const trimmed = text.trim();
  const firstSlash = trimmed.indexOf('/');
  const withoutHost = firstSlash > 0 && manager.repositories.isOwnRegistry(trimmed.slice(0, firstSlash)) ? trimmed.slice(firstSlash + 1) : trimmed;
  const colon = withoutHost.lastIndexOf(':');
  const prefix = `${context.tenant.projectName}/`;
  if (colon < 0 || !withoutHost.startsWith(prefix) || withoutHost.indexOf('/', colon) >= 0) {
    throw errors.badRequest(`name a tag of this project's repositories: ${prefix}<name>:<tag> ("alto images list" shows them)`);
  }
  return { repository: manager.repositories.repository(context.tenant, withoutHost.slice(prefix.length, colon)), tag: withoutHost.slice(colon + 1) };
}

/** The images of this machine, for an admin key only: they are shared by every tenant. */
function images(context: CallContext): ImageManager {
  if (context.tenant.role !== 'admin') {
    throw errors.forbidden('images and registry credentials belong to the whole machine: use the admin key');
  }
  return context.platform.use(imagesComponent);
}

type PullOutput = z.input<typeof PullMessage>;

function pullMessageOf(event: PullEvent): PullOutput {
  if (event.type === 'resolved') return { status: 'resolved', digest: event.digest, layers: event.layers, total: event.size };
  return { status: event.state, digest: event.digest, role: event.role, current: event.current, total: event.total };
}

/**
 * Runs a pull and yields its progress as it happens, then the image. The pull itself is not
 * tied to the caller: if the client goes away, it still completes (another pull of the same
 * image joins its downloads).
 */
async function* pullWithProgress(manager: ImageManager, reference: string, insecure: boolean, context: CallContext): AsyncGenerator<PullOutput> {
  const queue: PullOutput[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const pulling = manager
    .pull(reference, {
      insecure,
      onProgress: (event) => {
        queue.push(pullMessageOf(event));
        notify();
      },
    })
    .then(
      (image) => {
        queue.push({ status: 'pulled', digest: image.digest, image: detailsView(image) });
      },
      (error) => {
        failure = error;
        if (context.signal.aborted) context.log.warn({ err: error, reference }, 'image pull failed after its client left');
      },
    )
    .finally(() => {
      finished = true;
      notify();
    });
  while (true) {
    if (queue.length > 0) {
      yield queue.shift()!;
      continue;
    }
    if (finished) break;
    await new Promise<void>((resolve) => (wake = resolve));
  }
  await pulling;
  if (failure) throw failure;
}

export const imagesService = defineService({
  name: 'images',
  description: 'OCI images of this machine: pull from any registry, import from files, inspect, unpack, remove and prune. Admin key only.',
  priceMicros: 0,
  components: [imagesComponent],
  endpoints: {
    Pull: streamEndpoint({
      description:
        'Pull an image (redis:7, ghcr.io/org/app@sha256:..., localhost:5000/app:v2): streams progress messages, then one with status "pulled" and the image. Blobs already stored are not downloaded again.',
      access: 'manage',
      request: PullRequest,
      response: PullMessage,
      example: { reference: 'redis:7' },
      handler(request, context) {
        return pullWithProgress(images(context), request.reference, request.insecure, context);
      },
    }),
    List: endpoint({
      description:
        "List the images stored on this machine (admin key); with a project's key, the tags of the project's repositories in Alto's own registry (<project>/<name>:<tag>).",
      request: ListRequest,
      response: ListResponse,
      example: {},
      async handler(_request, context) {
        if (context.tenant.role === 'admin') return { images: images(context).list().map(summaryView) };
        const manager = imagesFor(context);
        return {
          images: (await manager.repositories.list(context.tenant)).map((image) => ({
            digest: image.digest,
            references: [image.reference],
            repository: image.repository,
            size: image.size,
            layers: manager.records.blobsOf(image.digest).filter((blob) => blob.role === 'layer').length,
            source: 'push',
            pulled_at: image.pushedAt,
            users: manager.records.get(image.digest)?.users ?? [],
          })),
        };
      },
    }),
    Inspect: endpoint({
      description: 'Show one image: its references, blobs, and the spec it runs with (entrypoint, cmd, env, working directory, user, ports, volumes).',
      access: 'manage',
      request: InspectRequest,
      response: InspectResponse,
      example: { image: 'redis:7' },
      handler(request, context) {
        return { image: detailsView(images(context).inspect(request.image)) };
      },
    }),
    Share: endpoint({
      description:
        'Let a project (or every project, "*") run an image this machine holds. Projects run only public images, images they pulled or built, and images shared with them: an image pulled with the admin\'s registry login is the admin\'s until shared. With revoke: take a share back.',
      access: 'manage',
      request: ShareRequest,
      response: ShareResponse,
      example: { image: 'ghcr.io/org/private-app:v1', project: 'shop' },
      async handler(request, context) {
        const manager = images(context);
        const project = await projectIdFor(request.project, context);
        if (request.revoke) {
          const { digest } = manager.resolve(request.image);
          manager.unshare(request.image, project);
          return { digest, project, shared: false };
        }
        return { digest: manager.share(request.image, project), project, shared: true };
      },
    }),
    Delete: endpoint({
      description:
        "Remove a reference; the image goes with its last reference (or at once when named by digest) and its blobs with the last image using them. An image in use by an app is kept. A project key removes tags of its own repositories (<project>/<name>:<tag>); prune then frees their blobs.",
      request: DeleteRequest,
      response: DeleteResponse,
      example: { image: 'redis:7' },
      async handler(request, context) {
        if (context.tenant.role === 'admin') return removeView(await images(context).remove(request.image));
        // A project key deletes tags of its own repositories; prune frees what no image uses then.
        const manager = imagesFor(context);
        const { repository, tag } = projectTag(manager, request.image, context);
        await manager.repositories.delete(repository, tag);
        return { untagged: [`${repository.projectName}/${repository.name}:${tag}`], deleted: [], blobs_deleted: 0, freed_bytes: 0 };
      },
    }),
    Prune: endpoint({
      description:
        "Remove untagged images no app uses (with all: every image no app uses), manifests of Alto's registry no tag reaches, blobs no image or repository uses, and abandoned downloads. A project key prunes its own repositories.",
      request: PruneRequest,
      response: PruneResponse,
      example: { all: false },
      async handler(request, context) {
        const manager = imagesFor(context);
        // The admin collects every project's repositories; a project key its own (and the files no one uses).
        const admin = context.tenant.role === 'admin';
        return pruneView(await manager.repositories.prune(admin ? undefined : context.tenant.projectId, { all: admin && request.all }));
      },
    }),
    Import: endpoint({
      description: "Import the images of a docker save tarball, an OCI archive or an OCI layout folder on the server's machine.",
      access: 'manage',
      request: ImportRequest,
      response: ImportResponse,
      example: { path: '/srv/images/app.tar', reference: 'app:v1' },
      async handler(request, context) {
        const imported = await images(context).import(request.path, { reference: request.reference });
        return { images: imported.map(detailsView) };
      },
    }),
    Unpack: endpoint({
      description: "Unpack an image's root filesystem into a new folder on the server's machine, exactly as its layers say.",
      access: 'manage',
      request: UnpackRequest,
      response: UnpackResponse,
      example: { image: 'redis:7', path: '/srv/rootfs/redis' },
      async handler(request, context) {
        const result = await images(context).unpack(request.image, request.path);
        return unpackView(result.digest, result.spec, result.stats);
      },
    }),
  },
  async deleteProjectData(projectId, platform) {
    // The project's repositories of Alto's registry, and the bucket's blobs no other repository holds.
    await platform.use(imagesComponent).repositories.removeProject(projectId);
  },
});

export const registryService = defineService({
  name: 'registry',
  description:
    "Credentials for private image registries, kept on the server (owner-only file in the data folder; admin key only). Also Alto's own registry at /v2/ (OCI Distribution API): projects push and pull <alto host>/<project>/<name>:<tag> with a key of the app or registry scope.",
  priceMicros: 0,
  components: [imagesComponent],
  httpRoutes: [distributionRoute(imagesComponent)],
  endpoints: {
    Login: endpoint({
      description: 'Check credentials against a registry (as docker login does) and save them for pulls.',
      access: 'manage',
      request: LoginRequest,
      response: LoginResponse,
      example: { registry: 'ghcr.io', username: 'octocat', password: 'ghp_...' },
      async handler(request, context) {
        const registry = await images(context).login(request.registry, { username: request.username, password: request.password }, { insecure: request.insecure });
        return { registry, username: request.username, status: 'ok' };
      },
    }),
    Logout: endpoint({
      description: 'Forget the saved credentials of a registry.',
      access: 'manage',
      request: LogoutRequest,
      response: LogoutResponse,
      example: { registry: 'ghcr.io' },
      handler(request, context) {
        return images(context).logout(request.registry);
      },
    }),
    List: endpoint({
      description: 'List the registries with saved credentials (never the passwords).',
      access: 'manage',
      request: ListRequest,
      response: RegistriesResponse,
      example: {},
      handler(_request, context) {
        return {
          registries: images(context)
            .credentials.list()
            .map((entry) => ({ registry: entry.registry, username: entry.username, saved_at: entry.savedAt })),
        };
      },
    }),
  },
});
