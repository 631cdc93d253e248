/**
 * @module compute/images/manifest
 * The documents of the OCI image and distribution specs and their Docker v2 twins: media types,
 * descriptors, manifests, indexes (manifest lists) and the image config. Parsing checks what
 * the puller relies on and keeps the rest; an index is resolved to one platform (linux/amd64).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { errors } from '../../kit/errors.js';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What the puller sends in `Accept` when it asks for a manifest. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
].join(', ');

/** Manifests and configs are small; anything bigger is refused rather than buffered. */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

const LAYER_TYPES = new Set<string>([
  MediaType.ociLayer,
  MediaType.ociLayerGzip,
  MediaType.ociLayerZstd,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  MediaType.dockerLayerGzip,
  MediaType.dockerForeignLayerGzip,
  // Not in Docker's spec, but written by some tools for uncompressed layers.
  'application/vnd.docker.image.rootfs.diff.tar',
]);

const Digest = z.string().regex(/^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/, 'expected sha256:<64 hex digits>');

export const Platform = z.looseObject({
  architecture: z.string(),
  os: z.string(),
  variant: z.string().optional(),
  'os.version': z.string().optional(),
});
export type Platform = z.infer<typeof Platform>;

export const Descriptor = z.looseObject({
  mediaType: z.string(),
  digest: Digest,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: Platform.optional(),
});
export type Descriptor = z.infer<typeof Descriptor>;

export const ImageManifest = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: Descriptor,
  layers: z.array(Descriptor),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ImageManifest = z.infer<typeof ImageManifest>;

export const ImageIndex = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(Descriptor),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ImageIndex = z.infer<typeof ImageIndex>;

/** The image config: what the runtime needs (`config`) and the layers' uncompressed digests. */
export const ImageConfig = z.looseObject({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  created: z.string().optional(),
  config: z
    .looseObject({
      User: z.string().optional(),
      ExposedPorts: z.record(z.string(), z.unknown()).nullish(),
      Env: z.array(z.string()).nullish(),
      Entrypoint: z.array(z.string()).nullish(),
      Cmd: z.array(z.string()).nullish(),
      Volumes: z.record(z.string(), z.unknown()).nullish(),
      WorkingDir: z.string().optional(),
      Labels: z.record(z.string(), z.string()).nullish(),
      StopSignal: z.string().optional(),
    })
    .nullish(),
  rootfs: z.looseObject({ type: z.string(), diff_ids: z.array(Digest) }),
});
export type ImageConfig = z.infer<typeof ImageConfig>;

export function digestOf(bytes: Buffer | string, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** Hashes `bytes` with the digest's own algorithm and says whether they match. */
export function matchesDigest(bytes: Buffer, digest: string): boolean {
  const algorithm = digest.slice(0, digest.indexOf(':'));
  return digestOf(bytes, algorithm) === digest;
}

export type ManifestKind = 'index' | 'manifest';

export interface ParsedManifest {
  kind: ManifestKind;
  mediaType: string;
  index?: ImageIndex;
  manifest?: ImageManifest;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.join('.') || '(document)'}: ${issue.message}`)
    .join('; ');
}

/**
 * Parses a manifest or index by its media type (from the response header or the document's
 * own `mediaType`); `where` names its origin in errors.
 */
export function parseManifest(bytes: Buffer, headerMediaType: string | undefined, where: string): ParsedManifest {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw errors.badRequest(`the manifest of ${where} is not JSON: ${(error as Error).message}`);
  }
  const declared = (document as { mediaType?: unknown })?.mediaType;
  const mediaType = (typeof declared === 'string' && declared) || (headerMediaType ?? '').split(';')[0].trim();
  if (mediaType === MediaType.dockerSchema1 || mediaType === MediaType.dockerSchema1Signed || (document as { schemaVersion?: unknown })?.schemaVersion === 1) {
    throw errors.badRequest(`${where} has a Docker schema 1 manifest, which is deprecated and not supported; push it again with a current tool`);
  }
  const looksLikeIndex = Array.isArray((document as { manifests?: unknown })?.manifests);
  if (mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList || (!mediaType && looksLikeIndex) || (mediaType === 'application/json' && looksLikeIndex)) {
    const parsed = ImageIndex.safeParse(document);
    if (!parsed.success) throw errors.badRequest(`the image index of ${where} is not valid: ${describeIssues(parsed.error)}`);
    return { kind: 'index', mediaType: mediaType || MediaType.ociIndex, index: parsed.data };
  }
  if (mediaType && mediaType !== MediaType.ociManifest && mediaType !== MediaType.dockerManifest && mediaType !== 'application/json') {
    throw errors.badRequest(`${where} is a "${mediaType}", not an image manifest or index`);
  }
  const parsed = ImageManifest.safeParse(document);
  if (!parsed.success) throw errors.badRequest(`the manifest of ${where} is not valid: ${describeIssues(parsed.error)}`);
  for (const layer of parsed.data.layers) {
    if (!LAYER_TYPES.has(layer.mediaType)) {
      throw errors.badRequest(`${where} has a layer of type "${layer.mediaType}", which is not a container filesystem layer`);
    }
    if (layer.mediaType === MediaType.dockerForeignLayerGzip) {
      throw errors.badRequest(`${where} has a foreign (Windows) layer ${layer.digest}; only Linux images are supported`);
    }
  }
  return { kind: 'manifest', mediaType: mediaType || MediaType.ociManifest, manifest: parsed.data };
}

export interface WantedPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

export const DEFAULT_PLATFORM: WantedPlatform = { os: 'linux', architecture: 'amd64' };

/** Picks the entry of an index for a platform; throws a 404 listing what the index offers. */
export function selectPlatform(index: ImageIndex, wanted: WantedPlatform, where: string): Descriptor {
  const candidates = index.manifests.filter(
    (entry) =>
      entry.platform?.os === wanted.os &&
      entry.platform?.architecture === wanted.architecture &&
      (!wanted.variant || entry.platform?.variant === wanted.variant) &&
      // Build attestations (`unknown/unknown`) are never runnable images.
      entry.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest',
  );
  if (candidates.length > 0) return candidates[0];
  const offered = index.manifests
    .filter((entry) => entry.platform)
    .map((entry) => `${entry.platform!.os}/${entry.platform!.architecture}${entry.platform!.variant ? `/${entry.platform!.variant}` : ''}`);
  throw errors.notFound(
    `${where} has no ${wanted.os}/${wanted.architecture} image; it offers ${offered.length ? [...new Set(offered)].join(', ') : 'no platform-tagged images'}`,
  );
}

/** The compression a layer's media type declares. */
export function layerCompression(mediaType: string): 'gzip' | 'zstd' | 'none' {
  if (mediaType.endsWith('+zstd') || mediaType.endsWith('.zstd')) return 'zstd';
  if (mediaType.endsWith('gzip')) return 'gzip';
  return 'none';
}
