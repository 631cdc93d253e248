/**
 * @module store/images/port
 * The image records port: what a node knows about the images it holds. Each image (by manifest
 * digest) with its spec, the references (tags) that point at it, the blobs it is made of, who
 * uses it (an app, a sandbox), and which projects may run it. A blob's reference count is the
 * number of images made of it; when that reaches zero the blob may go. Images are per node, not
 * per tenant: one copy serves every app and project of the node.
 *
 * Only an embedded adapter (`sqlite.ts`), and no PostgreSQL one even with `--store postgres://`,
 * on purpose: images are a cache on each node's disk (the blobs and unpacked layers under
 * `<data>/images`), so each node keeps the records of the images it pulled or built beside them,
 * and a node without an image pulls or builds it again. Shared records would name blobs other
 * nodes do not have. The port is synchronous, as SQLite answers in
 * process and the image manager calls it so.
 *
 * It also keeps the repositories of Alto's own registry (compute/images/repositories.ts): per
 * repository (`<project id>/<name>`), the blobs pushed or mounted into it, its manifests (images
 * and indexes, with the digests each names) and its tags. Blobs a repository holds count as
 * referenced, as blobs images are made of do. The registry reaches these tables through the
 * registry catalog port (store/registry), whose embedded adapter wraps them and whose
 * PostgreSQL adapter keeps the same records shared by every node of a cloud.
 */

/** How a project came to be allowed to run an image. */
export type ImageAccess = 'public' | 'pulled' | 'built' | 'pushed' | 'shared';

/** The project value that stands for every project (a public image). */
export const EVERY_PROJECT = '*';

export type BlobRole = 'manifest' | 'index' | 'config' | 'layer';

export interface ImageBlob {
  digest: string;
  role: BlobRole;
  position: number;
  mediaType: string;
  size: number;
  /** For layers: the digest of the uncompressed tar, from the config. */
  diffId?: string;
}

export interface ImageRecord {
  digest: string;
  repository: string;
  mediaType: string;
  indexDigest?: string;
  configDigest: string;
  /** Sum of the layers' sizes as stored (compressed). */
  layersSize: number;
  /** The image's `ImageSpec` (compute/images/spec.ts) as the JSON text it was given. */
  spec: string;
  /** `pull` or `import`. */
  source: string;
  createdAt: number;
  updatedAt: number;
  references: string[];
  users: string[];
}

export interface NewImage {
  digest: string;
  repository: string;
  mediaType: string;
  indexDigest?: string;
  configDigest: string;
  /** The image's `ImageSpec` as JSON text. */
  spec: string;
  source: string;
  blobs: ImageBlob[];
  /** References to point at this image (moved from any image they pointed at before). */
  references: string[];
}

export interface ImageRecordStore {
  /** Records an image (again: its blobs are replaced) and points its references at it, at once. */
  save(image: NewImage): void;
  get(digest: string): ImageRecord | undefined;
  /** Every image, by repository then age. */
  list(): ImageRecord[];
  digestOfReference(reference: string): string | undefined;
  /** Image digests starting with `prefix` (for short ids such as `sha256:3f2a`). */
  digestsStartingWith(prefix: string): string[];
  /** The image's blobs by role, then position. */
  blobsOf(digest: string): ImageBlob[];
  /** Removes one reference; returns whether it existed. */
  removeReference(reference: string): boolean;
  /**
   * Deletes an image record (its references, blob rows, users and access go with it) and returns
   * the blobs no other image is made of any more, which the caller may delete from disk.
   */
  removeImage(digest: string): string[];
  /** How many images are made of a blob. */
  blobReferenceCount(blobDigest: string): number;
  /** Every blob some image is made of. */
  referencedBlobs(): Set<string>;
  /** Marks an image as used by `user` (an app, a sandbox): it cannot be removed or pruned. */
  addUser(digest: string, user: string): void;
  removeUser(digest: string, user: string): boolean;
  /** Lets `project` (or every project, EVERY_PROJECT) run the image; the first reason given is kept. */
  grant(digest: string, project: string, how: ImageAccess): void;
  revoke(digest: string, project: string): boolean;
  /** Whether `project` may run the image: it is public, or the project pulled, built or was given it. */
  mayUse(digest: string, project: string): boolean;
  /** Who may run the image, and why, by project. */
  accessOf(digest: string): { project: string; how: ImageAccess }[];

  // ---- the repositories of Alto's own registry ------------------------------------------------

  /** Puts a blob into a repository (pushed or mounted); again only refreshes when. */
  linkBlob(repository: string, digest: string, size: number): void;
  /** The size of a blob the repository holds, undefined when it holds none of that digest. */
  linkedBlobSize(repository: string, digest: string): number | undefined;
  /**
   * Records a manifest (image or index) in a repository with the digests it names (config,
   * layers, child manifests), and points `tag` at it when given, all at once.
   */
  putManifest(repository: string, manifest: RepositoryManifest, tag?: string): void;
  manifestOf(repository: string, digest: string): RepositoryManifest | undefined;
  digestOfTag(repository: string, tag: string): string | undefined;
  /** Tags of a repository in lexical order, after `last` when given, at most `limit`. */
  tagsOf(repository: string, limit: number, last?: string): string[];
  /** Every tag of a repository with its digest. */
  taggedOf(repository: string): { tag: string; digest: string }[];
  /** Tags of every repository written at `since` (ms) or later, oldest first. */
  tagsUpdatedSince(since: number): { repository: string; tag: string; digest: string; updatedAt: number }[];
  removeTag(repository: string, tag: string): boolean;
  /** Removes a manifest and the tags that point at it; returns those tags. */
  removeManifest(repository: string, digest: string): string[];
  /** Removes every repository whose name starts with `prefix`, with its tags, manifests and blob links. */
  removeRepositories(prefix: string): void;
  /** Repositories whose name starts with `prefix` (a project's: `<project id>/`), sorted. */
  repositories(prefix: string): string[];
  /** Bytes the repositories starting with `prefix` hold: each distinct blob and manifest once. */
  repositoryBytes(prefix: string): number;
  /**
   * Garbage collection of repositories starting with `prefix`: manifests no tag reaches (directly
   * or through a tagged index) go, then the blobs no remaining manifest of their repository
   * names; digests in `keep` (in use, or pushed moments ago) stay. Returns what went.
   */
  collectRepositories(prefix: string, keep: Set<string>): { manifests: string[]; blobs: number };
  /** Which of `digests` some repository holds, as a blob or a manifest. */
  heldByRepositories(digests: string[]): Set<string>;
}

/** A manifest as a repository of Alto's registry holds it. */
export interface RepositoryManifest {
  digest: string;
  mediaType: string;
  size: number;
  /** Digests the manifest names: its config and layers, or an index's manifests. */
  references: string[];
  /** When it was pushed (ms); set by the store when saving. */
  pushedAt?: number;
}
