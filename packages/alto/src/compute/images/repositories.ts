/**
 * @module compute/images/repositories
 * The repositories of Alto's own registry: each project has its own (`<project>/<name>`),
 * recorded in the registry catalog (store/registry: the node's SQLite file, or PostgreSQL with
 * `--store`, shared by every node of the cloud). A repository holds the blobs pushed or mounted
 * into it, manifests (images and indexes, checked against what it holds before they are
 * recorded) and tags. A tag that names a linux/amd64 image, directly or through an index, is
 * also an image of the machine (`alto.local/<project id>/<name>:<tag>`) that its project may run;
 * the registry route (distribution.ts) and the Dockerfile builder both write through here.
 *
 * Blobs are shared on disk with every other image; a repository only lists which of them it
 * holds, so a project reads only blobs its own repositories hold. With `--objects s3://...` every
 * blob a repository takes in is also written to the objects store (blob-objects.ts) before the
 * push is acknowledged, and a node that lacks one on its disk reads it from there: a tag pushed
 * to one node is pulled from, or run on, any other (`runnable` brings the image's blobs in and
 * records it among the node's images). What a project's repositories hold counts toward its
 * space_bytes cap. `prune` drops manifests no tag reaches and blobs no manifest of their
 * repository names, then the files no image or repository uses, here and in the objects store.
 *
 * A push to another node that moves a tag reaches this node's listeners too (apps that follow the
 * tag): with a shared catalog and objects store, the tags written lately are read every
 * TAG_WATCH_MS while someone listens.
 *
 * A push in progress holds its blobs from prune in the process that receives it; a prune on
 * another node of the cloud at that moment may take blobs no manifest names yet, and the
 * manifest is then refused (MANIFEST_BLOB_UNKNOWN) and the client pushes again.
 */
import { AltoError, type ErrorCode } from '../../kit/errors.js';
import type { RepositoryManifest } from '../../store/images/port.js';
import type { RegistryCatalog } from '../../store/registry/port.js';
import type { BlobObjects } from './blob-objects.js';
import type { ImageDetails, ImageManager, PruneResult } from './manager.js';
import { DEFAULT_PLATFORM, digestOf, ImageIndex, ImageManifest, MAX_DOCUMENT_BYTES, MediaType } from './manifest.js';
import { isDigest, LOCAL_REGISTRY, normalizeRegistry, parseReference } from './reference.js';

/** The error codes of the distribution spec, each with the HTTP status it is answered with. */
export const REGISTRY_ERRORS = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  TAG_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  PAGINATION_NUMBER_INVALID: 400,
  RANGE_INVALID: 416,
} as const;
export type RegistryErrorCode = keyof typeof REGISTRY_ERRORS;

const ALTO_CODES: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  416: 'bad_request',
  429: 'too_many_requests',
};

/** An error the registry answers in the spec's shape (`{"errors":[{"code":"BLOB_UNKNOWN",...}]}`). */
export class RegistryError extends AltoError {
  constructor(
    readonly registryCode: RegistryErrorCode,
    detail: string,
    status: number = REGISTRY_ERRORS[registryCode],
  ) {
    super(ALTO_CODES[status] ?? 'bad_request', status, detail);
  }
}

/** Largest manifest or index accepted (read whole before it is parsed). */
export const MAX_MANIFEST_BYTES = MAX_DOCUMENT_BYTES;
/** How long a blob or untagged manifest pushed a moment ago is kept from prune, for a push in progress. */
export const PUSH_HOLD_MS = 15 * 60 * 1000;
/** How often a node of a shared registry reads the tags other nodes moved, while someone listens. */
const TAG_WATCH_MS = 3_000;
/** How far back each read of moved tags looks before the previous one: the nodes' clocks may differ this much. */
const CLOCK_SKEW_MS = 30_000;

const MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);
export const ACCEPTED_MANIFEST_TYPES = [...MANIFEST_TYPES, ...INDEX_TYPES];

const NAME_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** Repository names inside a project: at most this many components and characters. */
const MAX_NAME_COMPONENTS = 8;
const MAX_NAME_LENGTH = 128;

/** A project's repository: `name` as the project writes it, `key` as the store keeps it. */
export interface Repository {
  projectId: string;
  projectName: string;
  /** `web`, `team/api`. */
  name: string;
  /** `<project id>/<name>`. */
  key: string;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  size: number;
}

export interface PushedManifest {
  digest: string;
  /** The digest of the image it made runnable (itself, or an index's linux/amd64 manifest). */
  runnable?: string;
}

/** A tag moved to a new image Alto can run (apps that follow the tag update to it). */
export interface TagPushed {
  projectId: string;
  /** `alto.local/<project id>/<name>:<tag>`. */
  reference: string;
  /** The runnable image's digest. */
  digest: string;
}

/** One tag of a project's repositories, as `alto images` shows it. */
export interface RepositoryImage {
  /** `<project>/<name>:<tag>`. */
  reference: string;
  repository: string;
  tag: string;
  digest: string;
  mediaType: string;
  /** Bytes of the manifest and what it names (for an index, its manifests' too). */
  size: number;
  pushedAt: string;
}

export function checkRepositoryName(name: string): void {
  const components = name.split('/');
  if (name.length > MAX_NAME_LENGTH || components.length > MAX_NAME_COMPONENTS || !components.every((component) => NAME_COMPONENT.test(component))) {
    throw new RegistryError(
      'NAME_INVALID',
      `"${name.slice(0, 80)}" is not a repository name: lower-case letters and digits separated by . _ __ or -, in at most ${MAX_NAME_COMPONENTS} parts separated by /`,
    );
  }
}

export function isTag(text: string): boolean {
  return TAG.test(text);
}

export class Repositories {
  /** The registry hosts that are Alto itself (`localhost:4000`, its public name): references to them are resolved here. */
  private readonly ownHosts = new Set<string>();
  /** Digests pushed moments ago that no manifest names yet, with what lets them go. */
  private readonly pushHolds = new Map<string, () => void>();
  private readonly tagListeners = new Set<(pushed: TagPushed) => void>();
  /** Reads the tags other nodes moved, while there are listeners (a shared registry only). */
  private tagWatch?: NodeJS.Timeout;
  /** The digest each tag written lately had when this node last saw it: `<repository>:<tag>`. */
  private readonly seenTags = new Map<string, { digest: string; updatedAt: number }>();
  private watchedUntil = Date.now();
  private readingTags = false;

  constructor(private readonly images: ImageManager) {}

  /** Adds names this Alto answers to (`host` or `host:port`) as its own registry's. */
  answerAs(hosts: string[]): void {
    for (const host of hosts) this.ownHosts.add(normalizeRegistry(host));
  }

  /** Calls `listener` each time a push moves a tag to a new image Alto can run (apps register here). */
  onTagPushed(listener: (pushed: TagPushed) => void): () => void {
    this.tagListeners.add(listener);
    if (this.catalog.backend !== 'sqlite' && this.shared && !this.tagWatch) {
      this.watchedUntil = Date.now();
      this.tagWatch = setInterval(() => void this.readMovedTags(), TAG_WATCH_MS);
      this.tagWatch.unref();
    }
    return () => {
      this.tagListeners.delete(listener);
      if (this.tagListeners.size === 0) this.stopWatchingTags();
    };
  }

  /** Stops reading the tags other nodes move. */
  stopWatchingTags(): void {
    clearInterval(this.tagWatch);
    this.tagWatch = undefined;
  }

  /** Tells the listeners of the tags other nodes moved since the last read to images Alto can run. */
  private async readMovedTags(): Promise<void> {
    if (this.readingTags) return;
    this.readingTags = true;
    try {
      const now = Date.now();
      const written = await this.catalog.tagsUpdatedSince(this.watchedUntil - CLOCK_SKEW_MS);
      this.watchedUntil = now;
      for (const { repository, tag, digest, updatedAt } of written) {
        const key = `${repository}:${tag}`;
        const seen = this.seenTags.get(key);
        this.seenTags.set(key, { digest, updatedAt });
        if (seen?.digest === digest) continue;
        const runnable = await this.runnableDigest(repository, digest);
        if (runnable !== undefined) this.tagPushed({ projectId: repository.slice(0, repository.indexOf('/')), reference: `${LOCAL_REGISTRY}/${repository}:${tag}`, digest: runnable });
      }
      for (const [key, seen] of this.seenTags) if (seen.updatedAt < now - 2 * CLOCK_SKEW_MS) this.seenTags.delete(key);
    } catch (error) {
      this.images.log.warn({ err: error }, 'reading the tags other nodes pushed failed; trying again');
    } finally {
      this.readingTags = false;
    }
  }

  /** The image Alto would run for a manifest of a repository: itself, or an index's linux/amd64 image. */
  private async runnableDigest(repositoryKey: string, digest: string): Promise<string | undefined> {
    const stored = await this.catalog.manifestOf(repositoryKey, digest);
    if (!stored) return undefined;
    if (MANIFEST_TYPES.has(stored.mediaType)) return digest;
    if (!INDEX_TYPES.has(stored.mediaType) || !this.shared) return undefined;
    if (!this.images.blobs.has(digest)) await this.shared.fetch(digest, stored.size);
    return runnableChildOf(await this.images.blobs.read(digest));
  }

  /** Whether a registry name (`localhost:4000`) is Alto itself. */
  isOwnRegistry(registry: string): boolean {
    return this.ownHosts.has(normalizeRegistry(registry));
  }

  private get records() {
    return this.images.records;
  }

  private get catalog(): RegistryCatalog {
    return this.images.catalog;
  }

  /** The objects store's copy of the blobs, with `--objects s3://...`. */
  private get shared(): BlobObjects | undefined {
    return this.images.blobObjects;
  }

  /** Whether this node can read the blob: on its disk, or in the objects store every blob a repository holds is in. */
  private readable(digest: string): boolean {
    return this.shared !== undefined || this.images.blobs.has(digest);
  }

  /** The repository `name` of a project; throws NAME_INVALID for a name the spec does not allow. */
  repository(project: { projectId: string; projectName: string }, name: string): Repository {
    checkRepositoryName(name);
    return { projectId: project.projectId, projectName: project.projectName, name, key: `${project.projectId}/${name}` };
  }

  /** The reference of a tag among the machine's images: `alto.local/<project id>/<name>:<tag>`. */
  imageReference(repository: Repository, tag: string): string {
    return `${LOCAL_REGISTRY}/${repository.key}:${tag}`;
  }

  /** Whether the repository holds anything (blobs, manifests). */
  async exists(repository: Repository): Promise<boolean> {
    return (await this.catalog.repositories(`${repository.key}`)).includes(repository.key);
  }

  /** The size of a blob the repository holds; undefined when it holds none of that digest. */
  async blobSize(repository: Repository, digest: string): Promise<number | undefined> {
    const linked = await this.catalog.linkedBlobSize(repository.key, digest);
    if (linked !== undefined && this.readable(digest)) return linked;
    // A manifest is a blob too (clients may fetch one as a blob).
    const manifest = await this.catalog.manifestOf(repository.key, digest);
    return manifest && this.readable(digest) ? manifest.size : undefined;
  }

  /**
   * Puts a blob that is in the blob store into the repository (after an upload or a mount), and
   * keeps it from prune for a while, until a manifest names it. With `--objects`, the blob is in
   * the objects store once this returns.
   */
  async linkBlob(repository: Repository, digest: string, size: number): Promise<void> {
    this.holdPushed(digest);
    await this.catalog.linkBlob(repository.key, digest, size);
    // After the link, so a sweep of the objects store that ran meanwhile cannot have taken it.
    if (this.shared && this.images.blobs.has(digest)) await this.shared.keep(digest);
  }

  /** Keeps a digest just pushed from prune until a manifest names it, or PUSH_HOLD_MS at most. */
  private holdPushed(digest: string): void {
    if (this.pushHolds.has(digest)) return;
    const release = this.images.hold([digest]);
    const timer = setTimeout(() => this.releasePushed(digest), PUSH_HOLD_MS);
    timer.unref();
    this.pushHolds.set(digest, () => {
      clearTimeout(timer);
      release();
    });
  }

  private releasePushed(digest: string): void {
    this.pushHolds.get(digest)?.();
    this.pushHolds.delete(digest);
  }

  /**
   * Cross-repository mount: the blob `digest` of another repository of the same project, put
   * into this one without an upload. Returns its size, or undefined when `from` does not hold it.
   */
  async mount(repository: Repository, from: Repository, digest: string): Promise<number | undefined> {
    if (from.projectId !== repository.projectId) return undefined;
    const size = await this.blobSize(from, digest);
    if (size === undefined) return undefined;
    await this.linkBlob(repository, digest, size);
    return size;
  }

  /** Bytes a project's repositories hold (each blob once), for its space_bytes cap. */
  projectBytes(projectId: string): Promise<number> {
    return this.catalog.repositoryBytes(`${projectId}/`);
  }

  /** A manifest by tag or digest, with its bytes; MANIFEST_UNKNOWN when the repository has none. */
  async manifest(repository: Repository, reference: string): Promise<StoredManifest & { bytes: Buffer }> {
    const digest = isDigest(reference) ? reference : await this.catalog.digestOfTag(repository.key, reference);
    const manifest = digest === undefined ? undefined : await this.catalog.manifestOf(repository.key, digest);
    const unknown = (why = '') => new RegistryError('MANIFEST_UNKNOWN', `${repository.projectName}/${repository.name} has no manifest ${isDigest(reference) ? reference : `tagged "${reference}"`}${why}`);
    if (!manifest) throw unknown();
    if (!this.images.blobs.has(manifest.digest)) {
      // Pushed to another node of the cloud: on its disk, and in the objects store when there is one.
      if (!this.shared) throw unknown(' on this node (it was pushed to another node, whose disk holds it; run the cloud with --objects s3://... to share pushed images)');
      await this.shared.fetch(manifest.digest, manifest.size);
    }
    return { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.size, bytes: await this.images.blobs.read(manifest.digest) };
  }

  /**
   * Records a manifest or index pushed to `reference` (a tag, or the digest it must have): it
   * must be valid JSON of a known media type, and every blob (or manifest, for an index) it names
   * must be in the repository already. A tag that names a runnable image makes it an image of
   * the machine the project may run.
   */
  async putManifest(repository: Repository, reference: string, bytes: Buffer, contentType: string | undefined): Promise<PushedManifest> {
    if (bytes.length > MAX_MANIFEST_BYTES) throw new RegistryError('MANIFEST_INVALID', `the manifest is ${bytes.length} bytes; at most ${MAX_MANIFEST_BYTES} are accepted`, 413);
    const tag = isDigest(reference) ? undefined : reference;
    if (tag !== undefined && !isTag(tag)) {
      throw new RegistryError('TAG_INVALID', `"${tag.slice(0, 80)}" is not a tag: letters, digits, _ . -, at most 128, not starting with . or -`);
    }
    const digest = digestOf(bytes, tag === undefined ? reference.slice(0, reference.indexOf(':')) : 'sha256');
    if (tag === undefined && digest !== reference) {
      throw new RegistryError('DIGEST_INVALID', `the manifest pushed as ${reference} has the digest ${digest}`);
    }
    const { mediaType, references, runnableChild } = await this.checkManifest(repository, bytes, contentType);
    const release = this.images.hold([digest]);
    try {
      await this.images.blobs.putBuffer(bytes, { digest, size: bytes.length }, `${repository.projectName}/${repository.name}`);
      await this.catalog.putManifest(repository.key, { digest, mediaType, size: bytes.length, references }, tag);
      // This node tells its listeners itself (below): its reader of moved tags need not.
      if (tag !== undefined) this.seenTags.set(`${repository.key}:${tag}`, { digest, updatedAt: Date.now() });
      await this.shared?.keep(digest);
      // What the manifest names is kept by it now.
      for (const reference of references) this.releasePushed(reference);
      if (tag === undefined) {
        // Pushed by digest (an index's manifests come first): kept from prune while the push goes on.
        this.holdPushed(digest);
        return { digest };
      }
      const imageReference = this.imageReference(repository, tag);
      const runnable = INDEX_TYPES.has(mediaType) ? runnableChild : digest;
      const before = this.records.digestOfReference(imageReference);
      if (runnable === undefined || !(await this.recordImage(repository, runnable, imageReference, runnable === digest ? undefined : { digest, size: bytes.length }))) {
        // The tag names nothing Alto runs (another platform, an artifact): not an image of the machine.
        this.records.removeReference(imageReference);
        return { digest };
      }
      if (before !== runnable) this.tagPushed({ projectId: repository.projectId, reference: imageReference, digest: runnable });
      return { digest, runnable };
    } finally {
      release();
    }
  }

  private tagPushed(pushed: TagPushed): void {
    for (const listener of this.tagListeners) {
      try {
        listener(pushed);
      } catch {
        // A listener's failure is its own (it logs it); the push succeeded.
      }
    }
  }

  /** Records a pushed image among the machine's images; false when it is not one Alto can run. */
  private async recordImage(repository: Repository, digest: string, reference: string, index: { digest: string; size: number } | undefined): Promise<boolean> {
    try {
      if (this.shared) await this.bringIn(repository, digest, false);
      await this.images.recordStored({ digest, repository: `${LOCAL_REGISTRY}/${repository.key}`, references: [reference], source: 'push', project: repository.projectId, index });
      return true;
    } catch (error) {
      if (error instanceof AltoError && error.status === 400) return false;
      throw error;
    }
  }

  /**
   * Brings an image manifest of the repository, its config and (with `layers`) its layers onto
   * this node's disk from the objects store, where they are missing.
   */
  private async bringIn(repository: Repository, digest: string, layers: boolean): Promise<void> {
    const shared = this.shared;
    if (!shared) return;
    const stored = await this.catalog.manifestOf(repository.key, digest);
    if (!stored) return;
    const release = this.images.hold([digest, ...stored.references]);
    try {
      await shared.fetch(digest, stored.size);
      const parsed = ImageManifest.safeParse(JSON.parse((await this.images.blobs.read(digest)).toString('utf8')));
      if (!parsed.success) return;
      for (const descriptor of [parsed.data.config, ...(layers ? parsed.data.layers : [])]) await shared.fetch(descriptor.digest, descriptor.size);
    } finally {
      release();
    }
  }

  /**
   * The machine's image of a reference to the project's own repository (`alto.local/<project
   * id>/<name>:<tag>` or `@<digest>`, as `localReference` makes it), as the registry's records
   * say it is now: recorded here with its blobs on disk, brought from the objects store when it
   * was pushed to another node (or its tag moved there). Undefined when the repository has no such
   * tag or manifest, or nothing Alto runs.
   */
  async runnable(project: { projectId: string; projectName: string }, reference: string): Promise<ImageDetails | undefined> {
    const parsed = parseReference(reference);
    const repository = this.repository(project, parsed.repository.slice(project.projectId.length + 1));
    const tag = parsed.digest === undefined ? (parsed.tag ?? 'latest') : undefined;
    const digest = parsed.digest ?? (await this.catalog.digestOfTag(repository.key, tag!));
    const stored = digest === undefined ? undefined : await this.catalog.manifestOf(repository.key, digest);
    if (!stored) return undefined;
    const local = this.localImage(reference);
    if (local && (local.digest === stored.digest || local.indexDigest === stored.digest) && local.blobs.every((blob) => this.images.blobs.has(blob.digest))) return local;
    if (!this.shared) return local;
    let runnable = stored.digest;
    let index: { digest: string; size: number } | undefined;
    if (INDEX_TYPES.has(stored.mediaType)) {
      const bytes = (await this.manifest(repository, stored.digest)).bytes;
      const child = runnableChildOf(bytes);
      if (child === undefined) return undefined;
      runnable = child;
      index = { digest: stored.digest, size: stored.size };
    } else if (!MANIFEST_TYPES.has(stored.mediaType)) return undefined;
    await this.bringIn(repository, runnable, true);
    const references = tag === undefined ? [] : [this.imageReference(repository, tag)];
    await this.images.recordStored({ digest: runnable, repository: `${LOCAL_REGISTRY}/${repository.key}`, references, source: 'push', project: repository.projectId, index });
    return this.localImage(tag === undefined ? `${LOCAL_REGISTRY}/${repository.key}@${runnable}` : references[0]);
  }

  /** The machine's image of a reference, if it has one. */
  private localImage(reference: string): ImageDetails | undefined {
    try {
      return this.images.inspect(reference);
    } catch (error) {
      if (error instanceof AltoError && error.status === 404) return undefined;
      throw error;
    }
  }

  /** Parses a pushed manifest and checks that the repository holds all it names. */
  private async checkManifest(repository: Repository, bytes: Buffer, contentType: string | undefined): Promise<{ mediaType: string; references: string[]; runnableChild?: string }> {
    let document: unknown;
    try {
      document = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      throw new RegistryError('MANIFEST_INVALID', `the manifest is not JSON: ${(error as Error).message}`);
    }
    const declared = (document as { mediaType?: unknown } | null)?.mediaType;
    const header = (contentType ?? '').split(';')[0].trim();
    const mediaType = typeof declared === 'string' && declared ? declared : header;
    if (typeof declared === 'string' && declared && header && header !== declared && header !== 'application/json') {
      throw new RegistryError('MANIFEST_INVALID', `the manifest says its media type is ${declared.slice(0, 100)} but was sent as ${header.slice(0, 100)}`);
    }
    if (MANIFEST_TYPES.has(mediaType)) {
      const parsed = ImageManifest.safeParse(document);
      if (!parsed.success) throw new RegistryError('MANIFEST_INVALID', `the manifest is not valid: ${describe(parsed.error.issues)}`);
      const descriptors = [parsed.data.config, ...parsed.data.layers];
      for (const descriptor of descriptors) {
        const size = await this.blobSize(repository, descriptor.digest);
        if (size === undefined) throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `the manifest names the blob ${descriptor.digest}, which was not pushed to ${repository.projectName}/${repository.name}`);
        if (size !== descriptor.size) throw new RegistryError('SIZE_INVALID', `the manifest gives ${descriptor.digest} ${descriptor.size} bytes; it has ${size}`);
      }
      return { mediaType, references: [...new Set(descriptors.map((descriptor) => descriptor.digest))] };
    }
    if (INDEX_TYPES.has(mediaType)) {
      const parsed = ImageIndex.safeParse(document);
      if (!parsed.success) throw new RegistryError('MANIFEST_INVALID', `the index is not valid: ${describe(parsed.error.issues)}`);
      let runnableChild: string | undefined;
      for (const entry of parsed.data.manifests) {
        const child = await this.catalog.manifestOf(repository.key, entry.digest);
        if (!child) throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `the index names the manifest ${entry.digest}, which was not pushed to ${repository.projectName}/${repository.name}`);
        if (child.size !== entry.size) throw new RegistryError('SIZE_INVALID', `the index gives ${entry.digest} ${entry.size} bytes; it has ${child.size}`);
        const platform = entry.platform;
        if (runnableChild === undefined && MANIFEST_TYPES.has(child.mediaType) && platform?.os === DEFAULT_PLATFORM.os && platform.architecture === DEFAULT_PLATFORM.architecture) {
          runnableChild = entry.digest;
        }
      }
      return { mediaType, references: [...new Set(parsed.data.manifests.map((entry) => entry.digest))], runnableChild };
    }
    throw new RegistryError(
      'MANIFEST_INVALID',
      mediaType ? `manifests of type ${mediaType.slice(0, 100)} are not accepted; push ${ACCEPTED_MANIFEST_TYPES.join(', ')}` : 'the manifest has no media type: set Content-Type or mediaType',
    );
  }

  /** Tags of a repository in order, `limit` at most after `last`; NAME_UNKNOWN for a repository that holds nothing. */
  async tags(repository: Repository, limit: number, last?: string): Promise<string[]> {
    if (!(await this.exists(repository))) throw nameUnknown(repository);
    return this.catalog.tagsOf(repository.key, limit, last);
  }

  /**
   * Deletes a manifest by digest (with the tags naming it) or a tag; the machine's image of a
   * deleted tag loses that reference (prune frees what no image or repository uses any more).
   */
  async delete(repository: Repository, reference: string): Promise<void> {
    let tags: string[];
    if (isDigest(reference)) {
      if (!(await this.catalog.manifestOf(repository.key, reference))) throw new RegistryError('MANIFEST_UNKNOWN', `${repository.projectName}/${repository.name} has no manifest ${reference}`);
      tags = await this.catalog.removeManifest(repository.key, reference);
    } else {
      if (!(await this.catalog.removeTag(repository.key, reference))) throw new RegistryError('MANIFEST_UNKNOWN', `${repository.projectName}/${repository.name} has no tag "${reference}"`);
      tags = [reference];
    }
    for (const tag of tags) this.records.removeReference(this.imageReference(repository, tag));
  }

  /** Every tag of the project's repositories, by repository then tag. */
  async list(project: { projectId: string; projectName: string }): Promise<RepositoryImage[]> {
    const images: RepositoryImage[] = [];
    for (const key of await this.catalog.repositories(`${project.projectId}/`)) {
      const name = key.slice(project.projectId.length + 1);
      for (const { tag, digest } of await this.catalog.taggedOf(key)) {
        const manifest = await this.catalog.manifestOf(key, digest);
        if (!manifest) continue;
        images.push({
          reference: `${project.projectName}/${name}:${tag}`,
          repository: `${project.projectName}/${name}`,
          tag,
          digest,
          mediaType: manifest.mediaType,
          size: await this.sizeOf(key, manifest),
          pushedAt: new Date(manifest.pushedAt ?? 0).toISOString(),
        });
      }
    }
    return images;
  }

  private async sizeOf(key: string, manifest: RepositoryManifest, depth = 0): Promise<number> {
    let size = manifest.size;
    for (const reference of manifest.references) {
      const child = depth < 2 ? await this.catalog.manifestOf(key, reference) : undefined;
      size += child ? await this.sizeOf(key, child, depth + 1) : ((await this.catalog.linkedBlobSize(key, reference)) ?? 0);
    }
    return size;
  }

  /**
   * Garbage collection: in the project's repositories (every project's without one), manifests
   * no tag reaches and blobs no manifest names go, except what an app uses or a push in progress
   * holds; then every file no image or repository uses.
   */
  async prune(projectId?: string, options: { all?: boolean } = {}): Promise<PruneResult & { manifests: number }> {
    const keep = this.images.heldBlobs();
    for (const image of this.records.list()) if (image.users.length > 0) for (const blob of this.records.blobsOf(image.digest)) keep.add(blob.digest);
    const collected = await this.catalog.collectRepositories(projectId === undefined ? '' : `${projectId}/`, keep);
    // Files a repository of a shared catalog holds stay (the node's own records do not list them).
    const stillHeld = this.catalog.backend === 'sqlite' ? undefined : await this.catalog.held(this.images.blobs.list());
    const pruned = await this.images.prune({ ...options, keep: stillHeld });
    // The objects store's copies no repository of any project holds go, unless a push here holds them.
    if (this.shared) {
      await this.shared.sweep((digests, remove) => this.catalog.releaseUnheld(digests.filter((digest) => !keep.has(digest)), remove));
    }
    return { ...pruned, manifests: collected.manifests.length };
  }

  /**
   * Forgets a deleted project's repositories: their records, the machine's image references to
   * them (prune frees the files then), and the objects store's blobs no other repository holds.
   */
  async removeProject(projectId: string): Promise<void> {
    await this.catalog.removeRepositories(`${projectId}/`);
    const prefix = `${LOCAL_REGISTRY}/${projectId}/`;
    for (const image of this.records.list()) for (const reference of image.references) if (reference.startsWith(prefix)) this.records.removeReference(reference);
    if (this.shared) {
      const keep = this.images.heldBlobs();
      await this.shared.sweep((digests, remove) => this.catalog.releaseUnheld(digests.filter((digest) => !keep.has(digest)), remove));
    }
  }

  /**
   * The repository an image reference names when its registry is Alto itself (see `answerAs`):
   * `<host>/<project>/<name>:<tag>` as `alto.local/<project id>/<name>:<tag>`, for the project
   * that asks only. Undefined for references to other registries.
   */
  localReference(text: string, project: { projectId: string; projectName: string }): string | undefined {
    let reference;
    try {
      reference = parseReference(text);
    } catch {
      return undefined;
    }
    if (!this.isOwnRegistry(reference.registry)) return undefined;
    const slash = reference.repository.indexOf('/');
    const projectName = slash < 0 ? '' : reference.repository.slice(0, slash);
    if (projectName !== project.projectName) {
      throw new AltoError(
        'not_found',
        404,
        `${text.trim()} names ${projectName ? `project "${projectName}"'s repository` : 'no project'} in Alto's own registry; a project runs the images it pushed as ${reference.registry}/${project.projectName}/<name>:<tag>`,
      );
    }
    const repository = this.repository(project, reference.repository.slice(slash + 1));
    return `${LOCAL_REGISTRY}/${repository.key}${reference.tag ? `:${reference.tag}` : ''}${reference.digest ? `@${reference.digest}` : ''}`;
  }
}

/** The linux/amd64 image an index names, if any. */
function runnableChildOf(bytes: Buffer): string | undefined {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  const parsed = ImageIndex.safeParse(document);
  if (!parsed.success) return undefined;
  const entry = parsed.data.manifests.find(
    (candidate) => (candidate.mediaType === undefined || MANIFEST_TYPES.has(candidate.mediaType)) && candidate.platform?.os === DEFAULT_PLATFORM.os && candidate.platform.architecture === DEFAULT_PLATFORM.architecture,
  );
  return entry?.digest;
}

function nameUnknown(repository: Repository): RegistryError {
  return new RegistryError('NAME_UNKNOWN', `${repository.projectName}/${repository.name} holds nothing yet`);
}

function describe(issues: { path: PropertyKey[]; message: string }[]): string {
  return issues
    .slice(0, 3)
    .map((issue) => `${issue.path.map(String).join('.') || '(document)'}: ${issue.message}`)
    .join('; ');
}
