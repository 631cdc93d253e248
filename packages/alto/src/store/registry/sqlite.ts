/**
 * @module store/registry/sqlite
 * The embedded adapter of the registry catalog port: the `registry_*` tables of the node's
 * SQLite file, as the image records store (store/images/sqlite.ts) keeps and migrates them, so
 * existing data folders keep their repositories. Each call answers at once; the promise is the
 * port's shape, which the PostgreSQL adapter needs. Writes wait while this process releases
 * unheld blobs (`releaseUnheld`), as writers wait for the lock on PostgreSQL.
 */
import type { ImageRecordStore, RepositoryManifest } from '../images/port.js';
import type { CollectedRepositories, RegistryCatalog, UpdatedTag } from './port.js';

export class SqliteRegistryCatalog implements RegistryCatalog {
  readonly backend = 'sqlite';

  /** Settles when no release runs. */
  private releasing: Promise<void> = Promise.resolve();

  constructor(private readonly records: ImageRecordStore) {}

  private async writable(): Promise<void> {
    for (let current = this.releasing; ; current = this.releasing) {
      await current;
      if (current === this.releasing) return;
    }
  }

  async linkBlob(repository: string, digest: string, size: number): Promise<void> {
    await this.writable();
    this.records.linkBlob(repository, digest, size);
  }

  async linkedBlobSize(repository: string, digest: string): Promise<number | undefined> {
    return this.records.linkedBlobSize(repository, digest);
  }

  async putManifest(repository: string, manifest: RepositoryManifest, tag?: string): Promise<void> {
    await this.writable();
    this.records.putManifest(repository, manifest, tag);
  }

  async manifestOf(repository: string, digest: string): Promise<RepositoryManifest | undefined> {
    return this.records.manifestOf(repository, digest);
  }

  async digestOfTag(repository: string, tag: string): Promise<string | undefined> {
    return this.records.digestOfTag(repository, tag);
  }

  async tagsOf(repository: string, limit: number, last?: string): Promise<string[]> {
    return this.records.tagsOf(repository, limit, last);
  }

  async taggedOf(repository: string): Promise<{ tag: string; digest: string }[]> {
    return this.records.taggedOf(repository);
  }

  async tagsUpdatedSince(since: number): Promise<UpdatedTag[]> {
    return this.records.tagsUpdatedSince(since);
  }

  async removeTag(repository: string, tag: string): Promise<boolean> {
    return this.records.removeTag(repository, tag);
  }

  async removeManifest(repository: string, digest: string): Promise<string[]> {
    return this.records.removeManifest(repository, digest);
  }

  async removeRepositories(prefix: string): Promise<void> {
    this.records.removeRepositories(prefix);
  }

  async repositories(prefix: string): Promise<string[]> {
    return this.records.repositories(prefix);
  }

  async repositoryBytes(prefix: string): Promise<number> {
    return this.records.repositoryBytes(prefix);
  }

  async collectRepositories(prefix: string, keep: Set<string>): Promise<CollectedRepositories> {
    return this.records.collectRepositories(prefix, keep);
  }

  async held(digests: string[]): Promise<Set<string>> {
    return this.records.heldByRepositories(digests);
  }

  async releaseUnheld(digests: string[], release: (unheld: string[]) => Promise<void>): Promise<void> {
    const previous = this.releasing;
    const run = previous.then(async () => {
      const held = this.records.heldByRepositories(digests);
      await release(digests.filter((digest) => !held.has(digest)));
    });
    this.releasing = run.catch(() => undefined);
    await run;
  }
}
