/**
 * @module compute/images/blob-objects
 * The registry's blobs in the objects store, when Alto runs with `--objects s3://...`: every
 * blob a repository takes in (layer, config, manifest bytes) is written there before the push is
 * acknowledged, so any node of the cloud serves it, and a node that lacks one on its disk brings
 * it into its blob store from there (a `BlobSource`, resumed from an offset as any download).
 *
 * As the functions' sources (compute/functions/source-archive.ts), the objects live in a
 * namespace no tenant reaches: `_registry/blobs` (a project id is a UUID and an environment name
 * is lower-case letters, digits and dashes, so neither is `_registry`), private and not counted
 * in a project's space (the registry counts its bytes itself). A blob is named by its digest,
 * `sha256/<hex>`, written once (`ifAbsent`: content-addressed, the same bytes whoever pushes
 * them) and checked on the way out: the store's SHA-256 of the object must be its name. A pusher
 * writes the bytes after linking the blob into its repository, and a sweep deletes only what no
 * repository holds while no link can be made (the catalog's `releaseUnheld`), so a blob pushed
 * during a sweep is written again rather than lost.
 */
import { errors, isAltoError } from '../../kit/errors.js';
import type { ObjectRead, ObjectStore, RangeRequest } from '../../store/objects/port.js';
import { REGISTRY_BLOB_NAMESPACE, registryBlobName } from '../../store/registry/port.js';
import type { BlobSource, BlobStore } from './blob-store.js';
import { NetworkError } from './http.js';

const CONTENT_TYPE = 'application/octet-stream';
const LIST_PAGE = 1000;

export class BlobObjects {
  constructor(
    private readonly objects: ObjectStore,
    private readonly blobs: BlobStore,
  ) {}

  private nameOf(digest: string): string {
    return registryBlobName(digest);
  }

  /** Writes the blob from this node's disk to the objects store, unless it is there already. */
  async keep(digest: string): Promise<void> {
    const name = this.nameOf(digest);
    // `ifAbsent` looks before the body is sent, and S3 refuses a second create: no HEAD of our own.
    try {
      await this.objects.put(REGISTRY_BLOB_NAMESPACE, name, this.blobs.openRead(digest), { contentType: CONTENT_TYPE, visibility: 'private', ifAbsent: true, expectedBytes: this.blobs.sizeOf(digest) });
    } catch (error) {
      // Another node wrote the same bytes first.
      if (isAltoError(error) && error.status === 409) return;
      throw error;
    }
  }

  /** Whether the objects store holds the blob. */
  async has(digest: string): Promise<boolean> {
    return (await this.objects.head(REGISTRY_BLOB_NAMESPACE, this.nameOf(digest))) !== undefined;
  }

  /** The blob (or a range of it) from the objects store; undefined when it is not there. */
  async read(digest: string, range?: RangeRequest): Promise<ObjectRead | undefined> {
    const read = await this.objects.get(REGISTRY_BLOB_NAMESPACE, this.nameOf(digest), range);
    if (read && digest.startsWith('sha256:') && read.info.sha256 !== digest.slice('sha256:'.length)) {
      read.body.destroy();
      throw new Error(`the objects store holds other bytes under ${digest} (their SHA-256 is ${read.info.sha256})`);
    }
    return read;
  }

  /** Where the blob store downloads the blob from: the objects store, from any offset. */
  source(digest: string): BlobSource {
    return {
      origin: 'the objects store',
      open: async (offset) => {
        let read: ObjectRead | undefined;
        try {
          read = await this.read(digest, offset > 0 ? { first: offset } : undefined);
        } catch (error) {
          if (isAltoError(error) && error.status < 500) throw error;
          throw new NetworkError(`the objects store: ${(error as Error).message}`, error);
        }
        if (!read) throw errors.unavailable(`the objects store has no blob ${digest}: it was pruned, or lost; push the image again`);
        return { stream: read.body, offset: read.range?.first ?? 0, length: read.range ? read.range.last - read.range.first + 1 : read.info.size };
      },
    };
  }

  /** Brings the blob into this node's blob store from the objects store (nothing when it is there). */
  async fetch(digest: string, size: number): Promise<void> {
    await this.blobs.fetch({ digest, size }, this.source(digest));
  }

  /**
   * Goes through every blob of the namespace, a page at a time, and deletes those `release`
   * gives back (the registry catalog's `releaseUnheld`); returns how many went.
   */
  async sweep(release: (digests: string[], remove: (unheld: string[]) => Promise<void>) => Promise<void>): Promise<number> {
    let removed = 0;
    let startAfter: string | undefined;
    do {
      const page = await this.objects.list(REGISTRY_BLOB_NAMESPACE, { startAfter, limit: LIST_PAGE });
      await release(
        page.objects.map((info) => info.name.replace('/', ':')),
        async (unheld) => {
          for (const digest of unheld) if (await this.objects.delete(REGISTRY_BLOB_NAMESPACE, this.nameOf(digest))) removed++;
        },
      );
      startAfter = page.nextStartAfter;
    } while (startAfter);
    return removed;
  }
}

