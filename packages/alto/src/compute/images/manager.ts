/**
 * @module compute/images/manager
 * The images of one Alto machine: pull from any registry, import from files, list, inspect,
 * remove, prune, and unpack to a root filesystem with the image's typed `ImageSpec`. Blobs are
 * stored once by digest under `<data>/images/` and shared by every app and project; the
 * records (which reference points at which image, which blobs make each image, who uses it)
 * are in the node's image records port (store/images). A blob goes when the last image made of
 * it goes.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { LookupFunction } from 'node:net';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { OutboundRefused, pinnedLookup, privateTargetsAllowed, resolveOutbound } from '../../kit/outbound-guard.js';
import { EVERY_PROJECT, type ImageAccess, type ImageBlob, type ImageRecord, type ImageRecordStore } from '../../store/images/port.js';
import type { ObjectStore } from '../../store/objects/port.js';
import type { RegistryCatalog } from '../../store/registry/port.js';
import { SqliteRegistryCatalog } from '../../store/registry/sqlite.js';
import { BlobObjects } from './blob-objects.js';
import { CredentialStore, type RegistryCredentials } from './auth.js';
import { BlobStore, type BlobProgress, type BlobSource } from './blob-store.js';
import { importImageArchive } from './import.js';
import {
  DEFAULT_PLATFORM,
  ImageConfig,
  matchesDigest,
  MAX_DOCUMENT_BYTES,
  parseManifest,
  selectPlatform,
  type Descriptor,
  type ImageManifest,
  type WantedPlatform,
} from './manifest.js';
import {
  apiHostOf,
  familiarReference,
  formatReference,
  normalizeRegistry,
  parseReference,
  LOCAL_REGISTRY,
  repositoryName,
  type ImageReference,
} from './reference.js';
import { RegistryClient, upstreamError } from './registry-client.js';
import { Repositories } from './repositories.js';
import { imageSpecOf, type ImageSpec } from './spec.js';
import { unpackLayers, type UnpackStats } from './unpack.js';

export interface ImageManagerOptions {
  /** The images folder: `<data>/images`. */
  root: string;
  /** The node's image records (`stores.images`). */
  records: ImageRecordStore;
  /** The repositories of Alto's registry (`stores.registry`); the ones in `records` when absent. */
  catalog?: RegistryCatalog;
  /** Where the registry's blobs are shared with the other nodes (`--objects s3://...`); this node's disk only when absent. */
  objects?: ObjectStore;
  log: Logger;
  /** Largest uncompressed layer (and largest download) accepted. Default 8 GiB. */
  maxLayerBytes?: number;
  /** Registries (`host:port`) that may answer plain HTTP besides loopback ones. */
  insecureRegistries?: string[];
  /**
   * Hosts (`host:port`, or `host` for every port) that projects may pull from although they are
   * on private or loopback addresses, over plain HTTP too (ALTO_TRUSTED_REGISTRIES). A redirect
   * from them to another host is judged as that host.
   */
  trustedRegistries?: string[];
  /** The platform an index is resolved to. Default linux/amd64. */
  platform?: WantedPlatform;
  /** Layers downloaded at once per pull. */
  layerConcurrency?: number;
  /** Download attempts per blob and the first pause between them (tests shorten it). */
  blobAttempts?: number;
  blobRetryDelayMs?: number;
}

export type PullEvent =
  | { type: 'resolved'; reference: string; digest: string; layers: number; size: number }
  | { type: 'blob'; role: 'config' | 'layer'; digest: string; state: BlobProgress['state']; current: number; total: number };

export interface PullOptions {
  onProgress?: (event: PullEvent) => void;
  signal?: AbortSignal;
  /** Allow plain HTTP for this registry for this pull. */
  insecure?: boolean;
  /**
   * The project pulling, when it is not the admin: the pull is anonymous, every connection goes
   * through the outbound guard (unless the registry is trusted), and errors carry no bytes of
   * the registry's answers.
   */
  project?: string;
}

export interface ImageSummary {
  digest: string;
  /** References that point at the image, full form: `docker.io/library/redis:7`. */
  references: string[];
  repository: string;
  /** Compressed size of the layers, as stored. */
  size: number;
  layers: number;
  created?: string;
  source: string;
  pulledAt: string;
  users: string[];
}

export interface ImageDetails extends ImageSummary {
  mediaType: string;
  indexDigest?: string;
  configDigest: string;
  spec: ImageSpec;
  blobs: ImageBlob[];
}

export interface RemoveResult {
  untagged: string[];
  /** Image digests whose records were deleted. */
  deleted: string[];
  blobsDeleted: number;
  freedBytes: number;
}

export interface PruneResult {
  deleted: string[];
  blobsDeleted: number;
  freedBytes: number;
}

export interface UnpackResult {
  digest: string;
  spec: ImageSpec;
  stats: UnpackStats;
}

const DEFAULT_MAX_LAYER_BYTES = 8 * 1024 ** 3;

/** The store keeps an image's spec as the JSON text the manager gave it. */
function specOf(record: ImageRecord): ImageSpec {
  return JSON.parse(record.spec) as ImageSpec;
}
/** Unfinished downloads untouched this long are removed by prune. */
const STALE_INGEST_MS = 60 * 60 * 1000;

export class ImageManager {
  readonly blobs: BlobStore;
  readonly records: ImageRecordStore;
  readonly credentials: CredentialStore;
  /** The projects' repositories of Alto's own registry (pushes, builds). */
  readonly repositories: Repositories;
  /** What those repositories hold: shared by every node with `--store postgres://`. */
  readonly catalog: RegistryCatalog;
  /** The registry's blobs in the objects store, with `--objects s3://...`. */
  readonly blobObjects?: BlobObjects;
  private readonly clients = new Map<string, RegistryClient>();
  /** Largest layer (and largest blob pushed) accepted. */
  readonly maxLayerBytes: number;
  readonly log: Logger;
  private readonly platform: WantedPlatform;
  private readonly insecure: Set<string>;
  private readonly trusted: Set<string>;
  /** Blobs that pulls and imports of this process need and have not recorded yet: prune keeps them. */
  private readonly pending = new Map<string, number>();
  /** Serializes the steps that record or delete images, so a removal never races a recording. */
  private exclusiveTail: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ImageManagerOptions) {
    this.blobs = new BlobStore(options.root, { log: options.log, maxAttempts: options.blobAttempts, retryDelayMs: options.blobRetryDelayMs });
    this.records = options.records;
    this.log = options.log;
    this.credentials = new CredentialStore(join(options.root, 'credentials.json'));
    this.catalog = options.catalog ?? new SqliteRegistryCatalog(options.records);
    if (options.objects) this.blobObjects = new BlobObjects(options.objects, this.blobs);
    this.repositories = new Repositories(this);
    this.maxLayerBytes = options.maxLayerBytes ?? DEFAULT_MAX_LAYER_BYTES;
    this.platform = options.platform ?? DEFAULT_PLATFORM;
    this.insecure = new Set((options.insecureRegistries ?? []).map(normalizeRegistry));
    this.trusted = new Set((options.trustedRegistries ?? []).map((host) => normalizeRegistry(host)));
  }

  private exclusive<T>(task: () => T | Promise<T>): Promise<T> {
    const run = this.exclusiveTail.then(task, task);
    this.exclusiveTail = run.catch(() => undefined);
    return run;
  }

  /**
   * The client of a registry: the machine's (saved credentials, no address rule: the admin pulls
   * from anywhere) or a project's (anonymous, every request through the outbound guard).
   */
  private clientFor(registry: string, insecure = false, forProject = false): RegistryClient {
    const key = `${registry}${insecure ? ' insecure' : ''}${forProject ? ' project' : ''}`;
    let client = this.clients.get(key);
    if (!client) {
      client = new RegistryClient({
        registry,
        credentials: forProject ? () => undefined : () => this.credentials.get(registry),
        insecure: insecure || this.insecure.has(registry) || this.isTrusted(apiHostOf(registry)),
        log: this.options.log,
        guard: forProject ? (url) => this.guardedLookup(url) : undefined,
      });
      this.clients.set(key, client);
    }
    return client;
  }

  /** Whether the operator trusts a registry host (`name`, `name:port`, `[v6]:port`; no port means 443). */
  isTrusted(host: string): boolean {
    if (this.trusted.size === 0) return false;
    try {
      const url = new URL(`https://${host}`);
      return this.isTrustedHost(url.hostname, url.port || '443');
    } catch {
      return false;
    }
  }

  private isTrustedHost(hostname: string, port: string): boolean {
    const name = hostname.toLowerCase();
    return this.trusted.has(name) || this.trusted.has(`${name}:${port}`);
  }

  /** The outbound guard for one request of a project's pull: a trusted host may be private, any other must be public. */
  private async guardedLookup(url: URL): Promise<LookupFunction> {
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    const target = await resolveOutbound(url.hostname, { allowPrivate: this.isTrustedHost(url.hostname, port) || privateTargetsAllowed() });
    return pinnedLookup(target);
  }

  /** Whether projects could pull anonymously from where the admin just did: a trusted registry, or one on public addresses. */
  private async reachableByProjects(registry: string): Promise<boolean> {
    const host = apiHostOf(registry);
    if (this.isTrusted(host)) return true;
    try {
      await resolveOutbound(new URL(`https://${host}`).hostname);
      return true;
    } catch {
      return false;
    }
  }

  /** Keeps blobs from prune until the returned function is called (a push or build in progress). */
  hold(digests: string[]): () => void {
    for (const digest of digests) this.pending.set(digest, (this.pending.get(digest) ?? 0) + 1);
    return () => {
      for (const digest of digests) {
        const count = (this.pending.get(digest) ?? 1) - 1;
        if (count <= 0) this.pending.delete(digest);
        else this.pending.set(digest, count);
      }
    };
  }

  /**
   * Pulls an image and records it under the reference; blobs already stored are not fetched.
   * Records who may run it: everyone when the pull was anonymous from a registry projects can
   * reach, and the pulling project.
   */
  async pull(text: string, options: PullOptions = {}): Promise<ImageDetails> {
    const reference = parseReference(text);
    if (reference.registry === LOCAL_REGISTRY) {
      throw errors.badRequest(`${LOCAL_REGISTRY} names Alto's own registry, which holds what projects push; name the image as <alto host>/<project>/<name>:<tag>`);
    }
    if (options.project === undefined) {
      const anonymous = this.credentials.get(reference.registry) === undefined;
      const details = await this.pullReference(reference, options);
      if (anonymous && (await this.reachableByProjects(reference.registry))) this.records.grant(details.digest, EVERY_PROJECT, 'public');
      return details;
    }
    let details: ImageDetails;
    try {
      details = await this.pullReference(reference, options);
    } catch (error) {
      throw this.projectPullError(error, reference);
    }
    // Pulled anonymously: the image is public in its registry.
    this.records.grant(details.digest, EVERY_PROJECT, 'public');
    this.records.grant(details.digest, options.project, 'pulled');
    return this.details(details.digest)!;
  }

  /**
   * A project's pull failed: the error it sees says what kind of failure it was and names the
   * registry, but carries no bytes of what the registry (or whatever answered) sent.
   */
  private projectPullError(error: unknown, reference: ImageReference): AltoError {
    const where = familiarReference(reference);
    if (error instanceof OutboundRefused) return error;
    this.options.log.warn({ err: error, image: where }, 'a project\'s image pull failed');
    const status = isAltoError(error) ? error.status : 502;
    if (status === 404) return errors.notFound(`${where} was not found on ${reference.registry}`);
    if (status === 401 || status === 403) {
      return errors.forbidden(`${reference.registry} refused an anonymous pull of ${where}; a project runs only public images, images it built, or images the admin shared with it`);
    }
    if (status === 429) return errors.tooManyRequests(`${reference.registry} is rate-limiting pulls; try again later`);
    if (status === 400) return errors.badRequest(`${where} is not an image Alto can run (its manifest or config is not valid or not supported, or a layer is too large)`);
    return new AltoError('unavailable', 502, `${reference.registry} could not be reached, or did not answer as an image registry`);
  }

  private async pullReference(reference: ImageReference, options: PullOptions): Promise<ImageDetails> {
    const where = familiarReference(reference);
    const client = this.clientFor(reference.registry, options.insecure, options.project !== undefined);
    const top = await client.getManifest(reference.repository, reference.digest ?? reference.tag!, options.signal);
    if (reference.digest && !matchesDigest(top.bytes, reference.digest)) {
      throw upstreamError(`${reference.registry} answered ${where} with a manifest whose digest is not ${reference.digest}; refused`);
    }
    let parsed = parseManifest(top.bytes, top.mediaType, where);
    let manifestBytes = top.bytes;
    let manifestDigest = reference.digest ?? top.digest;
    let manifestMediaType = parsed.mediaType;
    let index: { digest: string; bytes: Buffer } | undefined;
    if (parsed.kind === 'index') {
      const chosen = selectPlatform(parsed.index!, this.platform, where);
      const fetched = await client.getManifest(reference.repository, chosen.digest, options.signal);
      if (!matchesDigest(fetched.bytes, chosen.digest) || fetched.bytes.length !== chosen.size) {
        throw upstreamError(`${reference.registry} answered the ${this.platform.os}/${this.platform.architecture} manifest ${chosen.digest} of ${where} with other content; refused`);
      }
      index = { digest: manifestDigest, bytes: top.bytes };
      parsed = parseManifest(fetched.bytes, fetched.mediaType ?? chosen.mediaType, `${where} (${chosen.digest})`);
      if (parsed.kind !== 'manifest') throw errors.badRequest(`${where} is an index of indexes; nested indexes are not supported`);
      manifestBytes = fetched.bytes;
      manifestDigest = chosen.digest;
      manifestMediaType = parsed.mediaType;
    }
    const manifest = parsed.manifest!;
    this.checkLimits(manifest, where);
    const size = manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
    options.onProgress?.({ type: 'resolved', reference: formatReference(reference), digest: manifestDigest, layers: manifest.layers.length, size });

    const release = this.hold([manifestDigest, ...(index ? [index.digest] : []), manifest.config.digest, ...manifest.layers.map((layer) => layer.digest)]);
    try {
      await this.blobs.putBuffer(manifestBytes, { digest: manifestDigest, size: manifestBytes.length }, where);
      if (index) await this.blobs.putBuffer(index.bytes, { digest: index.digest, size: index.bytes.length }, where);
      const source = (digest: string): BlobSource => ({
        origin: `${reference.registry}/${reference.repository}`,
        open: (offset) => client.openBlob(reference.repository, digest, offset, options.signal),
      });
      const progress = (role: 'config' | 'layer') => (event: BlobProgress) =>
        options.onProgress?.({ type: 'blob', role, digest: event.digest, state: event.state, current: event.current, total: event.total });
      const fetchAll = async () => {
        await this.blobs.fetch(manifest.config, source(manifest.config.digest), progress('config'));
        await forEachLimited(manifest.layers, this.options.layerConcurrency ?? 3, (layer) => this.blobs.fetch(layer, source(layer.digest), progress('layer')).then(() => undefined));
      };
      await fetchAll();
      const config = await this.readConfig(manifest.config, where);
      const details = await this.exclusive(() =>
        this.record({
          reference,
          manifestDigest,
          manifestMediaType,
          manifestSize: manifestBytes.length,
          index: index ? { digest: index.digest, size: index.bytes.length } : undefined,
          manifest,
          config,
          source: 'pull',
          references: [formatReference(reference)],
        }),
      );
      // A removal that ran between download and recording may have taken a shared blob.
      if (details.blobs.some((blob) => !this.blobs.has(blob.digest))) await fetchAll();
      return details;
    } finally {
      release();
    }
  }

  /**
   * Records an image whose manifest, config and layers are already in the blob store (pushed
   * to Alto's registry, or built here) under `references` (full form, each moved from any image
   * it named before), and lets `project` run it. `index` is the index it was chosen from.
   */
  async recordStored(input: {
    digest: string;
    repository: string;
    references: string[];
    source: 'push' | 'build';
    project?: string;
    index?: { digest: string; size: number };
  }): Promise<ImageDetails> {
    const where = `${input.repository}@${input.digest}`;
    const bytes = await this.blobs.read(input.digest);
    const parsed = parseManifest(bytes, undefined, where);
    if (parsed.kind !== 'manifest') throw errors.badRequest(`${where} is an index, not an image manifest`);
    const manifest = parsed.manifest!;
    this.checkLimits(manifest, where);
    const config = await this.readConfig(manifest.config, where);
    const details = await this.exclusive(() =>
      this.record({
        reference: parseReference(where),
        manifestDigest: input.digest,
        manifestMediaType: parsed.mediaType,
        manifestSize: bytes.length,
        index: input.index,
        manifest,
        config,
        source: input.source,
        references: input.references,
      }),
    );
    if (input.project !== undefined) this.records.grant(details.digest, input.project, input.source === 'push' ? 'pushed' : 'built');
    return details;
  }

  /** Blobs pulls, imports, pushes and builds of this process hold (prune keeps them). */
  heldBlobs(): Set<string> {
    return new Set(this.pending.keys());
  }

  private checkLimits(manifest: ImageManifest, where: string): void {
    for (const layer of manifest.layers) {
      if (layer.size > this.maxLayerBytes) {
        throw errors.badRequest(`${where} has a layer of ${layer.size} bytes (${layer.digest}), more than the ${this.maxLayerBytes} allowed (ALTO_IMAGES_MAX_LAYER_BYTES)`);
      }
    }
    if (manifest.config.size > MAX_DOCUMENT_BYTES) {
      throw errors.badRequest(`${where} has a config of ${manifest.config.size} bytes, more than the ${MAX_DOCUMENT_BYTES} allowed`);
    }
  }

  private async readConfig(descriptor: Descriptor, where: string): Promise<ImageConfig> {
    let document: unknown;
    try {
      document = JSON.parse((await this.blobs.read(descriptor.digest)).toString('utf8'));
    } catch (error) {
      throw errors.badRequest(`the config of ${where} is not JSON: ${(error as Error).message}`);
    }
    const parsed = ImageConfig.safeParse(document);
    if (!parsed.success) {
      throw errors.badRequest(`the config of ${where} is not a valid image config: ${parsed.error.issues.slice(0, 3).map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
    }
    return parsed.data;
  }

  private record(input: {
    reference?: ImageReference;
    manifestDigest: string;
    manifestMediaType: string;
    manifestSize: number;
    index?: { digest: string; size: number };
    manifest: ImageManifest;
    config: ImageConfig;
    source: string;
    references: string[];
  }): ImageDetails {
    const { manifest, config } = input;
    if (config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw errors.badRequest(`the image ${input.manifestDigest} has ${manifest.layers.length} layers but its config lists ${config.rootfs.diff_ids.length} diff_ids`);
    }
    const blobs: ImageBlob[] = [
      { digest: input.manifestDigest, role: 'manifest', position: 0, mediaType: input.manifestMediaType, size: input.manifestSize },
      ...(input.index ? [{ digest: input.index.digest, role: 'index' as const, position: 0, mediaType: 'index', size: input.index.size }] : []),
      { digest: manifest.config.digest, role: 'config', position: 0, mediaType: manifest.config.mediaType, size: manifest.config.size },
      ...manifest.layers.map((layer, position) => ({
        digest: layer.digest,
        role: 'layer' as const,
        position,
        mediaType: layer.mediaType,
        size: layer.size,
        diffId: config.rootfs.diff_ids[position],
      })),
    ];
    this.records.save({
      digest: input.manifestDigest,
      repository: input.reference ? repositoryName(input.reference) : '',
      mediaType: input.manifestMediaType,
      indexDigest: input.index?.digest,
      configDigest: manifest.config.digest,
      spec: JSON.stringify(imageSpecOf(config)),
      source: input.source,
      blobs,
      references: input.references,
    });
    return this.details(input.manifestDigest)!;
  }

  private summaryOf(record: ImageRecord, layers: number, spec: ImageSpec): ImageSummary {
    return {
      digest: record.digest,
      references: record.references,
      repository: record.repository,
      size: record.layersSize,
      layers,
      ...(spec.created ? { created: spec.created } : {}),
      source: record.source,
      pulledAt: new Date(record.updatedAt).toISOString(),
      users: record.users,
    };
  }

  private details(digest: string): ImageDetails | undefined {
    const record = this.records.get(digest);
    if (!record) return undefined;
    const blobs = this.records.blobsOf(digest);
    const spec = specOf(record);
    return {
      ...this.summaryOf(record, blobs.filter((blob) => blob.role === 'layer').length, spec),
      mediaType: record.mediaType,
      ...(record.indexDigest ? { indexDigest: record.indexDigest } : {}),
      configDigest: record.configDigest,
      spec,
      blobs,
    };
  }

  list(): ImageSummary[] {
    return this.records.list().map((record) => this.summaryOf(record, this.records.blobsOf(record.digest).filter((blob) => blob.role === 'layer').length, specOf(record)));
  }

  /**
   * Finds an image by reference (`redis:7`), full digest, or unique digest prefix
   * (`sha256:3f2a` or `3f2a`, at least 4 hex digits). Throws 404 when none matches.
   */
  resolve(text: string): { digest: string; reference?: string } {
    const trimmed = text.trim();
    const hex = /^(sha256:)?([a-f0-9]{4,64})$/.exec(trimmed);
    if (hex) {
      const matches = this.records.digestsStartingWith(`sha256:${hex[2]}`);
      if (matches.length === 1) return { digest: matches[0] };
      if (matches.length > 1) throw errors.badRequest(`"${trimmed}" matches ${matches.length} images; give more digits`);
      if (hex[1]) throw errors.notFound(`no image has the digest ${trimmed}; "alto images list" shows them`);
    }
    let reference: ImageReference;
    try {
      reference = parseReference(trimmed);
    } catch {
      throw errors.notFound(`no image is called "${trimmed}"; "alto images list" shows them`);
    }
    const canonical = formatReference(reference);
    const digest = this.records.digestOfReference(canonical);
    if (digest) return { digest, reference: canonical };
    if (reference.digest) {
      // `repo@sha256:...` of an image pulled by tag, or of the index it came from.
      const byDigest = this.records.get(reference.digest) ?? this.records.list().find((record) => record.indexDigest === reference.digest);
      // Its repository, or another the same image was given a tag in (two apps built from the same source).
      const repository = repositoryName(reference);
      if (byDigest && (byDigest.repository === repository || byDigest.references.some((name) => repositoryOfName(name) === repository))) return { digest: byDigest.digest };
    }
    throw errors.notFound(`no image is called "${trimmed}" (${canonical}); pull it with "alto images pull ${trimmed}"`);
  }

  inspect(text: string): ImageDetails {
    return this.details(this.resolve(text).digest)!;
  }

  /**
   * Removes a reference; the image goes with its last reference (or at once when named by
   * digest), and its blobs with the last image made of them. An image in use is kept.
   */
  remove(text: string): Promise<RemoveResult> {
    return this.exclusive(async () => {
      const { digest, reference } = this.resolve(text);
      const record = this.records.get(digest)!;
      const untagged: string[] = [];
      if (reference) {
        const others = record.references.filter((other) => other !== reference);
        if (others.length > 0 || record.users.length > 0) {
          this.records.removeReference(reference);
          return { untagged: [reference], deleted: [], blobsDeleted: 0, freedBytes: 0 };
        }
      }
      if (record.users.length > 0) {
        throw errors.conflict(`the image ${digest} is in use by ${record.users.join(', ')}; remove those first`);
      }
      untagged.push(...record.references);
      const { blobsDeleted, freedBytes } = await this.deleteImage(digest);
      return { untagged, deleted: [digest], blobsDeleted, freedBytes };
    });
  }

  private async deleteImage(digest: string): Promise<{ blobsDeleted: number; freedBytes: number }> {
    const unreferenced = this.records.removeImage(digest);
    // A shared catalog's repositories are not in this node's records: the files they hold stay.
    const held = this.catalog.backend === 'sqlite' || unreferenced.length === 0 ? new Set<string>() : await this.catalog.held(unreferenced);
    let freedBytes = 0;
    let blobsDeleted = 0;
    for (const blob of unreferenced) {
      if (this.pending.has(blob) || held.has(blob)) continue;
      const freed = this.blobs.remove(blob);
      if (freed > 0) blobsDeleted++;
      freedBytes += freed;
    }
    return { blobsDeleted, freedBytes };
  }

  /**
   * Removes images no reference points at and no one uses (`all`: every image no one uses),
   * blobs no image is made of (nor `keep` names), and unfinished downloads left behind long ago.
   */
  prune(options: { all?: boolean; keep?: Set<string> } = {}): Promise<PruneResult> {
    return this.exclusive(async () => {
      const deleted: string[] = [];
      let blobsDeleted = 0;
      let freedBytes = 0;
      for (const record of this.records.list()) {
        if (record.users.length > 0) continue;
        if (record.references.length > 0 && !options.all) continue;
        const result = await this.deleteImage(record.digest);
        deleted.push(record.digest);
        blobsDeleted += result.blobsDeleted;
        freedBytes += result.freedBytes;
      }
      const referenced = this.records.referencedBlobs();
      for (const blob of this.blobs.list()) {
        if (referenced.has(blob) || this.pending.has(blob) || options.keep?.has(blob)) continue;
        const freed = this.blobs.remove(blob);
        if (freed > 0) blobsDeleted++;
        freedBytes += freed;
      }
      const stale = await this.blobs.removeStaleIngests(STALE_INGEST_MS);
      freedBytes += stale.bytes;
      return { deleted, blobsDeleted, freedBytes };
    });
  }

  /**
   * Imports the images of a `docker save` tarball or an OCI layout (folder or tarball) on this
   * machine. `reference` names the image when the archive does not (or renames its only image).
   */
  async import(path: string, options: { reference?: string; builtBy?: string } = {}): Promise<ImageDetails[]> {
    const absolute = resolve(path);
    const wanted = options.reference ? parseReference(options.reference) : undefined;
    const result = await importImageArchive(absolute, this.blobs, this.platform);
    const release = this.hold([...result.storedBlobs]);
    try {
      if (wanted && result.images.length > 1) {
        const named = result.images.filter((image) => image.names.some((name) => formatReference(parseReference(name)) === formatReference(wanted)));
        if (named.length !== 1) {
          throw errors.badRequest(`${absolute} holds ${result.images.length} images; the reference ${options.reference} must name exactly one of them`);
        }
        result.images = named;
      }
      const imported: ImageDetails[] = [];
      for (const image of result.images) {
        const references = wanted
          ? [formatReference(wanted)]
          : image.names.map((name) => formatReference(parseReference(name)));
        if (references.length === 0) {
          throw errors.badRequest(
            `${absolute} does not name its image${image.tags.length ? ` (only the tag ${image.tags.join(', ')})` : ''}; give it a name: alto images import ${path} --reference name:tag`,
          );
        }
        const manifestBytes = await this.blobs.read(image.digest);
        const parsed = parseManifest(manifestBytes, image.mediaType, absolute);
        const manifest = parsed.manifest!;
        this.checkLimits(manifest, absolute);
        const config = await this.readConfig(manifest.config, absolute);
        const firstReference = parseReference(references[0]);
        imported.push(
          await this.exclusive(() =>
            this.record({
              reference: firstReference,
              manifestDigest: image.digest,
              manifestMediaType: parsed.mediaType,
              manifestSize: manifestBytes.length,
              index: image.indexDigest ? { digest: image.indexDigest, size: this.blobs.sizeOf(image.indexDigest) ?? 0 } : undefined,
              manifest,
              config,
              source: 'import',
              references,
            }),
          ),
        );
        if (options.builtBy !== undefined) this.records.grant(imported.at(-1)!.digest, options.builtBy, 'built');
      }
      return imported;
    } finally {
      release();
      // Files of the archive that no image uses (docker save's per-layer json, VERSION) go.
      await this.exclusive(() => {
        for (const blob of result.storedBlobs) if (this.records.blobReferenceCount(blob) === 0 && !this.pending.has(blob)) this.blobs.remove(blob);
      });
    }
  }

  /**
   * Unpacks an image to `target` (which must not exist yet): into a temporary sibling folder
   * first, renamed into place only when every layer applied, so a refused layer leaves nothing.
   */
  async unpack(text: string, target: string): Promise<UnpackResult> {
    const { digest } = this.resolve(text);
    const details = this.details(digest)!;
    const destination = resolve(target);
    if (existsSync(destination) && readdirSync(destination).length > 0) {
      throw errors.conflict(`${destination} already exists and is not empty; unpack into a new folder`);
    }
    const layers = details.blobs
      .filter((blob) => blob.role === 'layer')
      .sort((a, b) => a.position - b.position)
      .map((blob) => {
        if (!this.blobs.has(blob.digest)) throw errors.conflict(`the layer ${blob.digest} of ${digest} is missing from the store; pull the image again`);
        return { digest: blob.digest, mediaType: blob.mediaType, path: this.blobs.pathOf(blob.digest), diffId: blob.diffId };
      });
    const temporary = join(dirname(destination), `.${basename(destination)}.unpacking-${randomBytes(4).toString('hex')}`);
    try {
      const stats = await unpackLayers(temporary, layers, { maxLayerBytes: this.maxLayerBytes, imageName: details.references[0] ?? digest });
      if (existsSync(destination)) rmSync(destination, { recursive: true });
      renameSync(temporary, destination);
      return { digest, spec: details.spec, stats };
    } catch (error) {
      await rm(temporary, { recursive: true, force: true });
      throw error;
    }
  }

  /** Whether `project` may run the image (public, or pulled, built or shared for it). */
  mayUse(digest: string, project: string): boolean {
    return this.records.mayUse(digest, project);
  }

  /** Lets `project` (EVERY_PROJECT: all of them) run an image the machine holds; the admin's decision. */
  share(text: string, project: string, how: ImageAccess = 'shared'): string {
    const { digest } = this.resolve(text);
    this.records.grant(digest, project, how);
    return digest;
  }

  /** Takes back what share gave; a project's own pulls and builds stay its own. */
  unshare(text: string, project: string): boolean {
    const { digest } = this.resolve(text);
    const granted = this.records.accessOf(digest).find((entry) => entry.project === project);
    if (!granted || granted.how !== 'shared') return false;
    return this.records.revoke(digest, project);
  }

  /** Marks an image as used (by an app, a sandbox): remove and prune keep it. */
  addUser(text: string, user: string): string {
    const { digest } = this.resolve(text);
    this.records.addUser(digest, user);
    return digest;
  }

  removeUser(digest: string, user: string): boolean {
    return this.records.removeUser(digest, user);
  }

  /** Checks credentials against the registry, then saves them (mode 0600). */
  async login(registryText: string, credentials: RegistryCredentials, options: { insecure?: boolean } = {}): Promise<string> {
    const registry = registryOf(registryText);
    const client = this.clientFor(registry, options.insecure);
    await client.checkCredentials(credentials);
    this.credentials.set(registry, credentials);
    for (const cached of this.clients.values()) if (cached.registry === registry) cached.forgetAuthorizations();
    return registry;
  }

  logout(registryText: string): { registry: string; removed: boolean } {
    const registry = registryOf(registryText);
    const removed = this.credentials.remove(registry);
    for (const cached of this.clients.values()) if (cached.registry === registry) cached.forgetAuthorizations();
    return { registry, removed };
  }

  close(): void {
    this.repositories.stopWatchingTags();
    this.clients.clear();
  }
}

/** A registry named alone (`ghcr.io`, `localhost:5000`, `docker.io`), or by an image reference. */
function registryOf(text: string): string {
  const trimmed = text.trim().replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (!trimmed) throw errors.badRequest('name the registry: docker.io, ghcr.io, localhost:5000');
  if (!/^[a-zA-Z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:.]+\](:\d{1,5})?$/.test(trimmed)) {
    throw errors.badRequest(`"${text}" is not a registry host; write it like ghcr.io or localhost:5000`);
  }
  return normalizeRegistry(trimmed);
}

async function forEachLimited<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length && failure === undefined) {
        const item = items[next++];
        try {
          await task(item);
        } catch (error) {
          failure ??= error;
        }
      }
    }),
  );
  if (failure !== undefined) throw failure;
}

/** The repository a stored reference names, or undefined when it does not parse. */
function repositoryOfName(name: string): string | undefined {
  try {
    return repositoryName(parseReference(name));
  } catch {
    return undefined;
  }
}
