/**
 * @module compute/images/schema
 * The wire schema of the `images` and `registry` services (zod): what Pull streams, what List,
 * Inspect, Delete, Prune, Import and Unpack answer, and registry Login/Logout.
 */
import { z } from 'zod';
import type { ImageDetails, ImageSummary, PruneResult, RemoveResult } from './manager.js';
import type { ImageSpec } from './spec.js';
import type { UnpackStats } from './unpack.js';

const ImageName = z
  .string({ error: 'expected a string: an image reference (redis:7) or digest' })
  .min(1, 'name the image: a reference such as redis:7, or a digest (prefix)')
  .describe('an image reference (`redis:7`, `ghcr.io/org/app:v1`) or digest (a unique prefix of at least 4 hex digits works)');

export const ImageSpecView = z
  .object({
    os: z.string(),
    architecture: z.string(),
    variant: z.string().optional(),
    entrypoint: z.array(z.string()),
    cmd: z.array(z.string()),
    env: z.record(z.string(), z.string()).describe('environment variables, in the image\'s order'),
    working_dir: z.string(),
    user: z.string().describe('user, uid, user:group or uid:gid; empty means root'),
    exposed_ports: z.array(z.object({ port: z.number().int(), protocol: z.enum(['tcp', 'udp', 'sctp']) })),
    volumes: z.array(z.string()),
    labels: z.record(z.string(), z.string()),
    stop_signal: z.string().optional(),
    created: z.string().optional(),
  })
  .meta({ id: 'ImageSpec' });

export const ImageSummaryView = z
  .object({
    digest: z.string().describe('the manifest digest: the image\'s identity'),
    references: z.array(z.string()).describe('names that point at the image, full form (docker.io/library/redis:7)'),
    repository: z.string(),
    size: z.number().int().describe('bytes of the layers as stored (compressed)'),
    layers: z.number().int(),
    created: z.string().optional().describe('when the image was built, as it says'),
    source: z.enum(['pull', 'import']).or(z.string()),
    pulled_at: z.string().describe('when it was last pulled or imported, RFC 3339'),
    users: z.array(z.string()).describe('apps and sandboxes using the image; an image in use is never removed'),
  })
  .meta({ id: 'ImageSummary' });

export const ImageBlobView = z.object({
  digest: z.string(),
  role: z.enum(['manifest', 'index', 'config', 'layer']),
  media_type: z.string(),
  size: z.number().int(),
  diff_id: z.string().optional().describe('for layers: the digest of the uncompressed tar'),
});

export const ImageDetailsView = ImageSummaryView.extend({
  media_type: z.string(),
  index_digest: z.string().optional().describe('the multi-platform index the image was chosen from'),
  config_digest: z.string(),
  spec: ImageSpecView,
  blobs: z.array(ImageBlobView),
}).meta({ id: 'ImageDetails' });

export const PullRequest = z.object({
  reference: z
    .string({ error: 'expected a string: the image to pull, e.g. redis:7' })
    .min(1, 'name the image to pull, e.g. redis:7')
    .describe('the image: redis:7, ghcr.io/org/app@sha256:..., localhost:5000/app:v2'),
  insecure: z.boolean().default(false).describe('allow plain HTTP for this registry (loopback registries always may)'),
});
export const PullMessage = z
  .object({
    status: z
      .enum(['resolved', 'waiting', 'downloading', 'resuming', 'done', 'cached', 'pulled'])
      .describe('resolved: the manifest is known; per blob: waiting, downloading, resuming, done or cached; pulled: the last message, with the image'),
    digest: z.string().optional(),
    role: z.enum(['config', 'layer']).optional(),
    current: z.number().int().optional().describe('bytes of the blob stored so far'),
    total: z.number().int().optional().describe('bytes of the blob (or, for resolved, of all layers)'),
    layers: z.number().int().optional(),
    image: ImageDetailsView.optional(),
  })
  .meta({ id: 'ImagePullMessage' });

export const ListRequest = z.object({});
export const ListResponse = z.object({ images: z.array(ImageSummaryView) });

export const InspectRequest = z.object({ image: ImageName });
export const InspectResponse = z.object({ image: ImageDetailsView });

export const ShareRequest = z.object({
  image: ImageName,
  project: z.string().trim().min(1, 'project: name the project (or "*" for every project)').max(200).describe('the project (name in the admin account, or id) that may run the image; "*" for every project'),
  revoke: z.boolean().default(false).describe('take back a share given before'),
});
export const ShareResponse = z.object({
  digest: z.string(),
  project: z.string().describe('the project id, or "*"'),
  shared: z.boolean().describe('whether the project may now run the image by this share'),
});

export const DeleteRequest = z.object({ image: ImageName });
export const DeleteResponse = z.object({
  untagged: z.array(z.string()).describe('references removed'),
  deleted: z.array(z.string()).describe('digests of images removed with their last reference'),
  blobs_deleted: z.number().int(),
  freed_bytes: z.number().int(),
});

export const PruneRequest = z.object({
  all: z.boolean().default(false).describe('also remove tagged images no app uses (default: only untagged ones)'),
});
export const PruneResponse = z.object({
  deleted: z.array(z.string()).describe('digests of the images removed'),
  blobs_deleted: z.number().int(),
  freed_bytes: z.number().int(),
});

export const ImportRequest = z.object({
  path: z.string().min(1, 'give the path of a docker save tarball or an OCI layout').describe("a docker save tarball, an OCI archive or an OCI layout folder, on the server's machine"),
  reference: z.string().optional().describe('the name to give the image when the archive has none (or to rename its only image)'),
});
export const ImportResponse = z.object({ images: z.array(ImageDetailsView) });

export const UnpackRequest = z.object({
  image: ImageName,
  path: z.string().min(1).describe("a new folder on the server's machine to unpack the root filesystem into"),
});
export const UnpackResponse = z.object({
  digest: z.string(),
  spec: ImageSpecView,
  files: z.number().int(),
  directories: z.number().int(),
  symlinks: z.number().int(),
  hard_links: z.number().int(),
  whiteouts: z.number().int(),
  bytes: z.number().int().describe('uncompressed bytes read from the layers'),
  skipped: z.array(z.object({ path: z.string(), type: z.string() })).describe('entries not created: device nodes, FIFOs (the first 100)'),
});

export const LoginRequest = z.object({
  registry: z.string().min(1, 'name the registry, e.g. ghcr.io').describe('registry host: docker.io, ghcr.io, localhost:5000'),
  username: z.string().min(1, 'give the user name'),
  password: z.string().min(1, 'give the password or access token'),
  insecure: z.boolean().default(false).describe('allow plain HTTP for this registry'),
});
export const LoginResponse = z.object({ registry: z.string(), username: z.string(), status: z.string() });
export const LogoutRequest = z.object({ registry: z.string().min(1, 'name the registry, e.g. ghcr.io') });
export const LogoutResponse = z.object({ registry: z.string(), removed: z.boolean() });
export const RegistriesResponse = z.object({
  registries: z.array(z.object({ registry: z.string(), username: z.string(), saved_at: z.string() })),
});

export function specView(spec: ImageSpec): z.input<typeof ImageSpecView> {
  return {
    os: spec.os,
    architecture: spec.architecture,
    ...(spec.variant ? { variant: spec.variant } : {}),
    entrypoint: spec.entrypoint,
    cmd: spec.cmd,
    env: spec.env,
    working_dir: spec.workingDir,
    user: spec.user,
    exposed_ports: spec.exposedPorts,
    volumes: spec.volumes,
    labels: spec.labels,
    ...(spec.stopSignal ? { stop_signal: spec.stopSignal } : {}),
    ...(spec.created ? { created: spec.created } : {}),
  };
}

export function summaryView(image: ImageSummary): z.input<typeof ImageSummaryView> {
  return {
    digest: image.digest,
    references: image.references,
    repository: image.repository,
    size: image.size,
    layers: image.layers,
    ...(image.created ? { created: image.created } : {}),
    source: image.source,
    pulled_at: image.pulledAt,
    users: image.users,
  };
}

export function detailsView(image: ImageDetails): z.input<typeof ImageDetailsView> {
  return {
    ...summaryView(image),
    media_type: image.mediaType,
    ...(image.indexDigest ? { index_digest: image.indexDigest } : {}),
    config_digest: image.configDigest,
    spec: specView(image.spec),
    blobs: image.blobs.map((blob) => ({
      digest: blob.digest,
      role: blob.role,
      media_type: blob.mediaType,
      size: blob.size,
      ...(blob.diffId ? { diff_id: blob.diffId } : {}),
    })),
  };
}

export function removeView(result: RemoveResult): z.input<typeof DeleteResponse> {
  return { untagged: result.untagged, deleted: result.deleted, blobs_deleted: result.blobsDeleted, freed_bytes: result.freedBytes };
}

export function pruneView(result: PruneResult): z.input<typeof PruneResponse> {
  return { deleted: result.deleted, blobs_deleted: result.blobsDeleted, freed_bytes: result.freedBytes };
}

export function unpackView(digest: string, spec: ImageSpec, stats: UnpackStats): z.input<typeof UnpackResponse> {
  return {
    digest,
    spec: specView(spec),
    files: stats.files,
    directories: stats.directories,
    symlinks: stats.symlinks,
    hard_links: stats.hardLinks,
    whiteouts: stats.whiteouts,
    bytes: stats.bytes,
    skipped: stats.skipped,
  };
}
