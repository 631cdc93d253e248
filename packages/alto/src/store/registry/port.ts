/**
 * @module store/registry/port
 * The registry catalog port: the repositories of Alto's own registry (compute/images/
 * repositories.ts), each `<project id>/<name>`, with the blobs pushed or mounted into it, its
 * manifests (images and indexes, with the digests each names) and its tags. It says what a
 * repository holds, not where the bytes are: those are on each node's disk, and with `--objects`
 * also in the objects store, where every node reads them.
 *
 * Adapters: `sqlite.ts` (embedded: the `registry_*` tables the image records kept before this
 * port, through the image records store) and `postgres.ts` (`--store postgres://`: the
 * `alto_registry_*` tables, so every node of a cloud sees every push, tag and deletion). Unlike
 * the image records (store/images/port.ts), which describe what one node's disk holds and stay
 * on it, these records describe what a project pushed, which is the same wherever it is asked.
 */
import type { RepositoryManifest } from '../images/port.js';

export type { RepositoryManifest } from '../images/port.js';

/**
 * The objects namespace of the registry's blobs with `--objects` (compute/images/blob-objects.ts):
 * no project id (a UUID) or environment name (lower case, digits, dashes) is `_registry`, so no
 * tenant reaches it.
 */
export const REGISTRY_BLOB_NAMESPACE = '_registry/blobs';

/** A blob's object name in that namespace: `sha256/<hex>`. */
export function registryBlobName(digest: string): string {
  const match = /^(sha256|sha512):([a-f0-9]+)$/.exec(digest);
  if (!match) throw new Error(`"${digest}" is not a digest`);
  return `${match[1]}/${match[2]}`;
}

/** What a garbage collection of repositories removed. */
export interface CollectedRepositories {
  /** Digests of the manifests removed. */
  manifests: string[];
  /** Blob links removed. */
  blobs: number;
}

/** A tag as it was last written. */
export interface UpdatedTag {
  repository: string;
  tag: string;
  digest: string;
  updatedAt: number;
}

export interface RegistryCatalog {
  readonly backend: 'sqlite' | 'postgres';
  /** Puts a blob into a repository (pushed or mounted); again only refreshes when. */
  linkBlob(repository: string, digest: string, size: number): Promise<void>;
  /** The size of a blob the repository holds, undefined when it holds none of that digest. */
  linkedBlobSize(repository: string, digest: string): Promise<number | undefined>;
  /**
   * Records a manifest (image or index) in a repository with the digests it names (config,
   * layers, child manifests), and points `tag` at it when given, all at once.
   */
  putManifest(repository: string, manifest: RepositoryManifest, tag?: string): Promise<void>;
  manifestOf(repository: string, digest: string): Promise<RepositoryManifest | undefined>;
  digestOfTag(repository: string, tag: string): Promise<string | undefined>;
  /** Tags of a repository in byte order, after `last` when given, at most `limit`. */
  tagsOf(repository: string, limit: number, last?: string): Promise<string[]>;
  /** Every tag of a repository with its digest, by tag. */
  taggedOf(repository: string): Promise<{ tag: string; digest: string }[]>;
  /** Tags of every repository written (pushed, moved) at `since` (ms) or later, oldest first. */
  tagsUpdatedSince(since: number): Promise<UpdatedTag[]>;
  removeTag(repository: string, tag: string): Promise<boolean>;
  /** Removes a manifest and the tags that point at it; returns those tags. */
  removeManifest(repository: string, digest: string): Promise<string[]>;
  /** Removes every repository whose name starts with `prefix` (a deleted project's: `<project id>/`), with all it holds. */
  removeRepositories(prefix: string): Promise<void>;
  /** Repositories whose name starts with `prefix` (a project's: `<project id>/`), sorted. */
  repositories(prefix: string): Promise<string[]>;
  /** Bytes the repositories starting with `prefix` hold: each distinct blob and manifest once. */
  repositoryBytes(prefix: string): Promise<number>;
  /**
   * Garbage collection of repositories starting with `prefix`: manifests no tag reaches (directly
   * or through a tagged index) go, then the blobs no remaining manifest of their repository
   * names; digests in `keep` (in use, or pushed moments ago) stay. Writers of the same store wait
   * while it runs, so a manifest pushed meanwhile is never taken for an unreachable one.
   */
  collectRepositories(prefix: string, keep: Set<string>): Promise<CollectedRepositories>;
  /**
   * Which of `digests` some repository, of any project, holds (as a blob or a manifest): the
   * others' bytes may go from the objects store.
   */
  held(digests: string[]): Promise<Set<string>>;
  /**
   * Calls `release` with those of `digests` no repository holds, while no writer of the catalog
   * (on any node sharing it) can put one into a repository: a blob linked during a release is
   * linked after it, so its pusher, which writes the bytes after linking, writes them again.
   */
  releaseUnheld(digests: string[], release: (unheld: string[]) => Promise<void>): Promise<void>;
}
