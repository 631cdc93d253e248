/**
 * @module store/images/sqlite
 * The embedded adapter of the image records port, in the node's SQLite file: the tables compute
 * kept there before the port (same names and migrations, under the module name `images`, so
 * existing data folders keep their images).
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { EVERY_PROJECT, type BlobRole, type ImageAccess, type ImageBlob, type ImageRecord, type ImageRecordStore, type NewImage, type RepositoryManifest } from './port.js';

/** Applied in order, each once (exported for the test beside this file). */
export const MIGRATIONS = [
  `CREATE TABLE image_manifests (
     digest TEXT PRIMARY KEY,
     repository TEXT NOT NULL,
     media_type TEXT NOT NULL,
     index_digest TEXT,
     config_digest TEXT NOT NULL,
     layers_size INTEGER NOT NULL,
     spec TEXT NOT NULL,
     source TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL);
   CREATE TABLE image_tags (
     reference TEXT PRIMARY KEY,
     digest TEXT NOT NULL REFERENCES image_manifests(digest) ON DELETE CASCADE,
     updated_at INTEGER NOT NULL);
   CREATE INDEX image_tags_digest ON image_tags(digest);
   CREATE TABLE image_blobs (
     image_digest TEXT NOT NULL REFERENCES image_manifests(digest) ON DELETE CASCADE,
     blob_digest TEXT NOT NULL,
     role TEXT NOT NULL,
     position INTEGER NOT NULL,
     media_type TEXT NOT NULL,
     size INTEGER NOT NULL,
     diff_id TEXT,
     PRIMARY KEY (image_digest, role, position));
   CREATE INDEX image_blobs_blob ON image_blobs(blob_digest);
   CREATE TABLE image_users (
     image_digest TEXT NOT NULL REFERENCES image_manifests(digest) ON DELETE CASCADE,
     user TEXT NOT NULL,
     since INTEGER NOT NULL,
     PRIMARY KEY (image_digest, user));`,
  // Which projects may run an image: '*' (public: pulled anonymously), or one project that
  // pulled it, built it, or was given it by the admin.
  `CREATE TABLE image_access (
     image_digest TEXT NOT NULL REFERENCES image_manifests(digest) ON DELETE CASCADE,
     project TEXT NOT NULL,
     how TEXT NOT NULL,
     since INTEGER NOT NULL,
     PRIMARY KEY (image_digest, project));`,
  // The repositories of Alto's own registry (`<project id>/<name>`): blobs pushed or mounted
  // into each, its manifests with the digests they name, and its tags.
  `CREATE TABLE registry_blobs (
     repository TEXT NOT NULL,
     digest TEXT NOT NULL,
     size INTEGER NOT NULL,
     linked_at INTEGER NOT NULL,
     PRIMARY KEY (repository, digest));
   CREATE INDEX registry_blobs_digest ON registry_blobs(digest);
   CREATE TABLE registry_manifests (
     repository TEXT NOT NULL,
     digest TEXT NOT NULL,
     media_type TEXT NOT NULL,
     size INTEGER NOT NULL,
     pushed_at INTEGER NOT NULL,
     PRIMARY KEY (repository, digest));
   CREATE INDEX registry_manifests_digest ON registry_manifests(digest);
   CREATE TABLE registry_manifest_references (
     repository TEXT NOT NULL,
     manifest_digest TEXT NOT NULL,
     reference TEXT NOT NULL,
     PRIMARY KEY (repository, manifest_digest, reference),
     FOREIGN KEY (repository, manifest_digest) REFERENCES registry_manifests(repository, digest) ON DELETE CASCADE);
   CREATE TABLE registry_tags (
     repository TEXT NOT NULL,
     tag TEXT NOT NULL,
     digest TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (repository, tag),
     FOREIGN KEY (repository, digest) REFERENCES registry_manifests(repository, digest) ON DELETE CASCADE);`,
];

interface ManifestRow {
  digest: string;
  repository: string;
  media_type: string;
  index_digest: string | null;
  config_digest: string;
  layers_size: number;
  spec: string;
  source: string;
  created_at: number;
  updated_at: number;
}

interface BlobRow {
  blob_digest: string;
  role: BlobRole;
  position: number;
  media_type: string;
  size: number;
  diff_id: string | null;
}

export class SqliteImageRecordStore implements ImageRecordStore {
  private readonly statements;
  private readonly saveInTransaction: ReturnType<SqliteDatabase['transaction']>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'images', MIGRATIONS);
    this.statements = {
      upsertManifest: db.prepare(`INSERT INTO image_manifests
        (digest, repository, media_type, index_digest, config_digest, layers_size, spec, source, created_at, updated_at)
        VALUES (@digest, @repository, @media_type, @index_digest, @config_digest, @layers_size, @spec, @source, @now, @now)
        ON CONFLICT (digest) DO UPDATE SET updated_at = excluded.updated_at,
          index_digest = COALESCE(excluded.index_digest, image_manifests.index_digest)`),
      deleteBlobs: db.prepare('DELETE FROM image_blobs WHERE image_digest = ?'),
      insertBlob: db.prepare(`INSERT INTO image_blobs (image_digest, blob_digest, role, position, media_type, size, diff_id)
        VALUES (?, ?, ?, ?, ?, ?, ?)`),
      upsertTag: db.prepare(`INSERT INTO image_tags (reference, digest, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (reference) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`),
      manifest: db.prepare('SELECT * FROM image_manifests WHERE digest = ?'),
      manifests: db.prepare('SELECT * FROM image_manifests ORDER BY repository, created_at'),
      tagsOf: db.prepare('SELECT reference FROM image_tags WHERE digest = ? ORDER BY reference'),
      usersOf: db.prepare('SELECT user FROM image_users WHERE image_digest = ? ORDER BY user'),
      digestOfTag: db.prepare('SELECT digest FROM image_tags WHERE reference = ?'),
      digestsByPrefix: db.prepare(`SELECT digest FROM image_manifests WHERE substr(digest, 1, length(?)) = ?`),
      blobsOf: db.prepare('SELECT blob_digest, role, position, media_type, size, diff_id FROM image_blobs WHERE image_digest = ? ORDER BY role, position'),
      deleteTag: db.prepare('DELETE FROM image_tags WHERE reference = ?'),
      deleteManifest: db.prepare('DELETE FROM image_manifests WHERE digest = ?'),
      blobReferences: db.prepare(`SELECT (SELECT COUNT(*) FROM image_blobs WHERE blob_digest = @digest)
        + (SELECT COUNT(*) FROM registry_blobs WHERE digest = @digest)
        + (SELECT COUNT(*) FROM registry_manifests WHERE digest = @digest) AS count`),
      referencedBlobs: db.prepare(`SELECT blob_digest FROM image_blobs UNION SELECT digest FROM registry_blobs
        UNION SELECT digest FROM registry_manifests`),
      addUser: db.prepare('INSERT OR IGNORE INTO image_users (image_digest, user, since) VALUES (?, ?, ?)'),
      removeUser: db.prepare('DELETE FROM image_users WHERE image_digest = ? AND user = ?'),
      grant: db.prepare(`INSERT INTO image_access (image_digest, project, how, since) VALUES (?, ?, ?, ?)
        ON CONFLICT (image_digest, project) DO NOTHING`),
      revoke: db.prepare('DELETE FROM image_access WHERE image_digest = ? AND project = ?'),
      mayUse: db.prepare('SELECT 1 FROM image_access WHERE image_digest = ? AND project IN (?, ?) LIMIT 1'),
      accessOf: db.prepare('SELECT project, how FROM image_access WHERE image_digest = ? ORDER BY project'),
      linkBlob: db.prepare(`INSERT INTO registry_blobs (repository, digest, size, linked_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (repository, digest) DO UPDATE SET linked_at = excluded.linked_at`),
      linkedBlob: db.prepare('SELECT size FROM registry_blobs WHERE repository = ? AND digest = ?'),
      upsertRepositoryManifest: db.prepare(`INSERT INTO registry_manifests (repository, digest, media_type, size, pushed_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (repository, digest) DO UPDATE SET pushed_at = excluded.pushed_at`),
      insertManifestReference: db.prepare('INSERT OR IGNORE INTO registry_manifest_references (repository, manifest_digest, reference) VALUES (?, ?, ?)'),
      repositoryManifest: db.prepare('SELECT digest, media_type, size, pushed_at FROM registry_manifests WHERE repository = ? AND digest = ?'),
      manifestReferences: db.prepare('SELECT reference FROM registry_manifest_references WHERE repository = ? AND manifest_digest = ? ORDER BY reference'),
      upsertRepositoryTag: db.prepare(`INSERT INTO registry_tags (repository, tag, digest, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`),
      repositoryTag: db.prepare('SELECT digest FROM registry_tags WHERE repository = ? AND tag = ?'),
      repositoryTags: db.prepare('SELECT tag FROM registry_tags WHERE repository = ? AND tag > ? ORDER BY tag LIMIT ?'),
      repositoryTagged: db.prepare('SELECT tag, digest FROM registry_tags WHERE repository = ? ORDER BY tag'),
      tagsUpdatedSince: db.prepare('SELECT repository, tag, digest, updated_at FROM registry_tags WHERE updated_at >= ? ORDER BY updated_at, repository, tag'),
      deleteRepositoryTag: db.prepare('DELETE FROM registry_tags WHERE repository = ? AND tag = ?'),
      tagsOfManifest: db.prepare('SELECT tag FROM registry_tags WHERE repository = ? AND digest = ? ORDER BY tag'),
      deleteRepositoryManifest: db.prepare('DELETE FROM registry_manifests WHERE repository = ? AND digest = ?'),
      repositories: db.prepare(`SELECT repository FROM registry_manifests WHERE substr(repository, 1, length(@prefix)) = @prefix
        UNION SELECT repository FROM registry_blobs WHERE substr(repository, 1, length(@prefix)) = @prefix ORDER BY repository`),
      repositoryBytes: db.prepare(`SELECT COALESCE(SUM(size), 0) AS bytes FROM (
        SELECT digest, MAX(size) AS size FROM (
          SELECT digest, size FROM registry_blobs WHERE substr(repository, 1, length(@prefix)) = @prefix
          UNION ALL SELECT digest, size FROM registry_manifests WHERE substr(repository, 1, length(@prefix)) = @prefix)
        GROUP BY digest)`),
      // Manifests no tag reaches: neither tagged nor named by a manifest of the repository that is.
      unreachableManifests: db.prepare(`WITH RECURSIVE reachable(repository, digest) AS (
          SELECT repository, digest FROM registry_tags WHERE substr(repository, 1, length(@prefix)) = @prefix
          UNION SELECT r.repository, r.reference FROM registry_manifest_references r
            JOIN reachable ON r.repository = reachable.repository AND r.manifest_digest = reachable.digest)
        SELECT m.repository, m.digest FROM registry_manifests m
        WHERE substr(m.repository, 1, length(@prefix)) = @prefix
          AND NOT EXISTS (SELECT 1 FROM reachable WHERE reachable.repository = m.repository AND reachable.digest = m.digest)`),
      unusedLinks: db.prepare(`SELECT repository, digest FROM registry_blobs b WHERE substr(repository, 1, length(@prefix)) = @prefix
        AND NOT EXISTS (SELECT 1 FROM registry_manifest_references r WHERE r.repository = b.repository AND r.reference = b.digest)`),
      unlinkBlob: db.prepare('DELETE FROM registry_blobs WHERE repository = ? AND digest = ?'),
      deleteRepositoryTags: db.prepare('DELETE FROM registry_tags WHERE substr(repository, 1, length(@prefix)) = @prefix'),
      deleteRepositoryManifests: db.prepare('DELETE FROM registry_manifests WHERE substr(repository, 1, length(@prefix)) = @prefix'),
      deleteRepositoryBlobs: db.prepare('DELETE FROM registry_blobs WHERE substr(repository, 1, length(@prefix)) = @prefix'),
      heldByRepositories: db.prepare(`SELECT EXISTS (SELECT 1 FROM registry_blobs WHERE digest = @digest)
        OR EXISTS (SELECT 1 FROM registry_manifests WHERE digest = @digest) AS held`),
    };
    this.saveInTransaction = db.transaction((image: NewImage, now: number) => {
      const layersSize = image.blobs.filter((blob) => blob.role === 'layer').reduce((sum, blob) => sum + blob.size, 0);
      this.statements.upsertManifest.run({
        digest: image.digest,
        repository: image.repository,
        media_type: image.mediaType,
        index_digest: image.indexDigest ?? null,
        config_digest: image.configDigest,
        layers_size: layersSize,
        spec: image.spec,
        source: image.source,
        now,
      });
      this.statements.deleteBlobs.run(image.digest);
      for (const blob of image.blobs) {
        this.statements.insertBlob.run(image.digest, blob.digest, blob.role, blob.position, blob.mediaType, blob.size, blob.diffId ?? null);
      }
      for (const reference of image.references) this.statements.upsertTag.run(reference, image.digest, now);
    });
  }

  save(image: NewImage): void {
    this.saveInTransaction.immediate(image, Date.now());
  }

  private toRecord(row: ManifestRow): ImageRecord {
    return {
      digest: row.digest,
      repository: row.repository,
      mediaType: row.media_type,
      ...(row.index_digest ? { indexDigest: row.index_digest } : {}),
      configDigest: row.config_digest,
      layersSize: row.layers_size,
      spec: row.spec,
      source: row.source,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      references: (this.statements.tagsOf.all(row.digest) as { reference: string }[]).map((tag) => tag.reference),
      users: (this.statements.usersOf.all(row.digest) as { user: string }[]).map((user) => user.user),
    };
  }

  get(digest: string): ImageRecord | undefined {
    const row = this.statements.manifest.get(digest) as ManifestRow | undefined;
    return row ? this.toRecord(row) : undefined;
  }

  list(): ImageRecord[] {
    return (this.statements.manifests.all() as ManifestRow[]).map((row) => this.toRecord(row));
  }

  digestOfReference(reference: string): string | undefined {
    return (this.statements.digestOfTag.get(reference) as { digest: string } | undefined)?.digest;
  }

  digestsStartingWith(prefix: string): string[] {
    return (this.statements.digestsByPrefix.all(prefix, prefix) as { digest: string }[]).map((row) => row.digest);
  }

  blobsOf(digest: string): ImageBlob[] {
    return (this.statements.blobsOf.all(digest) as BlobRow[]).map((row) => ({
      digest: row.blob_digest,
      role: row.role,
      position: row.position,
      mediaType: row.media_type,
      size: row.size,
      ...(row.diff_id ? { diffId: row.diff_id } : {}),
    }));
  }

  removeReference(reference: string): boolean {
    return this.statements.deleteTag.run(reference).changes > 0;
  }

  removeImage(digest: string): string[] {
    return this.db
      .transaction(() => {
        const blobs = [...new Set(this.blobsOf(digest).map((blob) => blob.digest))];
        this.statements.deleteManifest.run(digest);
        return blobs.filter((blob) => this.blobReferenceCount(blob) === 0);
      })
      .immediate();
  }

  blobReferenceCount(blobDigest: string): number {
    return (this.statements.blobReferences.get({ digest: blobDigest }) as { count: number }).count;
  }

  referencedBlobs(): Set<string> {
    return new Set((this.statements.referencedBlobs.all() as { blob_digest: string }[]).map((row) => row.blob_digest));
  }

  addUser(digest: string, user: string): void {
    this.statements.addUser.run(digest, user, Date.now());
  }

  removeUser(digest: string, user: string): boolean {
    return this.statements.removeUser.run(digest, user).changes > 0;
  }

  grant(digest: string, project: string, how: ImageAccess): void {
    this.statements.grant.run(digest, project, how, Date.now());
  }

  revoke(digest: string, project: string): boolean {
    return this.statements.revoke.run(digest, project).changes > 0;
  }

  mayUse(digest: string, project: string): boolean {
    return this.statements.mayUse.get(digest, project, EVERY_PROJECT) !== undefined;
  }

  accessOf(digest: string): { project: string; how: ImageAccess }[] {
    return this.statements.accessOf.all(digest) as { project: string; how: ImageAccess }[];
  }

  linkBlob(repository: string, digest: string, size: number): void {
    this.statements.linkBlob.run(repository, digest, size, Date.now());
  }

  linkedBlobSize(repository: string, digest: string): number | undefined {
    return (this.statements.linkedBlob.get(repository, digest) as { size: number } | undefined)?.size;
  }

  putManifest(repository: string, manifest: RepositoryManifest, tag?: string): void {
    this.db
      .transaction(() => {
        const now = Date.now();
        this.statements.upsertRepositoryManifest.run(repository, manifest.digest, manifest.mediaType, manifest.size, now);
        for (const reference of manifest.references) this.statements.insertManifestReference.run(repository, manifest.digest, reference);
        if (tag !== undefined) this.statements.upsertRepositoryTag.run(repository, tag, manifest.digest, now);
      })
      .immediate();
  }

  manifestOf(repository: string, digest: string): RepositoryManifest | undefined {
    const row = this.statements.repositoryManifest.get(repository, digest) as { digest: string; media_type: string; size: number; pushed_at: number } | undefined;
    if (!row) return undefined;
    const references = (this.statements.manifestReferences.all(repository, digest) as { reference: string }[]).map((entry) => entry.reference);
    return { digest: row.digest, mediaType: row.media_type, size: row.size, references, pushedAt: row.pushed_at };
  }

  digestOfTag(repository: string, tag: string): string | undefined {
    return (this.statements.repositoryTag.get(repository, tag) as { digest: string } | undefined)?.digest;
  }

  tagsOf(repository: string, limit: number, last?: string): string[] {
    return (this.statements.repositoryTags.all(repository, last ?? '', limit) as { tag: string }[]).map((row) => row.tag);
  }

  taggedOf(repository: string): { tag: string; digest: string }[] {
    return this.statements.repositoryTagged.all(repository) as { tag: string; digest: string }[];
  }

  tagsUpdatedSince(since: number): { repository: string; tag: string; digest: string; updatedAt: number }[] {
    return (this.statements.tagsUpdatedSince.all(since) as { repository: string; tag: string; digest: string; updated_at: number }[]).map((row) => ({
      repository: row.repository,
      tag: row.tag,
      digest: row.digest,
      updatedAt: row.updated_at,
    }));
  }

  removeTag(repository: string, tag: string): boolean {
    return this.statements.deleteRepositoryTag.run(repository, tag).changes > 0;
  }

  removeManifest(repository: string, digest: string): string[] {
    return this.db
      .transaction(() => {
        const tags = (this.statements.tagsOfManifest.all(repository, digest) as { tag: string }[]).map((row) => row.tag);
        this.statements.deleteRepositoryManifest.run(repository, digest);
        return tags;
      })
      .immediate();
  }

  removeRepositories(prefix: string): void {
    this.db
      .transaction(() => {
        this.statements.deleteRepositoryTags.run({ prefix });
        this.statements.deleteRepositoryManifests.run({ prefix });
        this.statements.deleteRepositoryBlobs.run({ prefix });
      })
      .immediate();
  }

  repositories(prefix: string): string[] {
    return (this.statements.repositories.all({ prefix }) as { repository: string }[]).map((row) => row.repository);
  }

  repositoryBytes(prefix: string): number {
    return (this.statements.repositoryBytes.get({ prefix }) as { bytes: number }).bytes;
  }

  collectRepositories(prefix: string, keep: Set<string>): { manifests: string[]; blobs: number } {
    return this.db
      .transaction(() => {
        const manifests: string[] = [];
        for (const row of this.statements.unreachableManifests.all({ prefix }) as { repository: string; digest: string }[]) {
          if (keep.has(row.digest)) continue;
          this.statements.deleteRepositoryManifest.run(row.repository, row.digest);
          manifests.push(row.digest);
        }
        let blobs = 0;
        for (const row of this.statements.unusedLinks.all({ prefix }) as { repository: string; digest: string }[]) {
          if (keep.has(row.digest)) continue;
          blobs += this.statements.unlinkBlob.run(row.repository, row.digest).changes;
        }
        return { manifests, blobs };
      })
      .immediate();
  }

  heldByRepositories(digests: string[]): Set<string> {
    return new Set(digests.filter((digest) => (this.statements.heldByRepositories.get({ digest }) as { held: number }).held === 1));
  }
}
