/**
 * @module compute/images/records
 * What Alto knows about the images it holds, in the embedded SQLite database beside the control
 * state: each image (by manifest digest) with its spec, the references (tags) that point at it,
 * the blobs it is made of, and who uses it. A blob's reference count is the number of images
 * made of it; when that reaches zero the blob may go. Images are per machine (their blobs are
 * on its disk), not per tenant: one copy serves every app and project.
 */
import { migrate, type SqliteDatabase } from '../../store/sqlite/database.js';
import type { ImageSpec } from './spec.js';

const MIGRATIONS = [
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
];

/** How a project came to may run an image. */
export type ImageAccess = 'public' | 'pulled' | 'built' | 'shared';

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
  spec: ImageSpec;
  /** `pull` or `import`. */
  source: string;
  createdAt: number;
  updatedAt: number;
  references: string[];
  users: string[];
}

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

export interface NewImage {
  digest: string;
  repository: string;
  mediaType: string;
  indexDigest?: string;
  configDigest: string;
  spec: ImageSpec;
  source: string;
  blobs: ImageBlob[];
  /** References to point at this image (moved from any image they pointed at before). */
  references: string[];
}

export class ImageRecords {
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
      blobReferences: db.prepare('SELECT COUNT(*) AS count FROM image_blobs WHERE blob_digest = ?'),
      referencedBlobs: db.prepare('SELECT DISTINCT blob_digest FROM image_blobs'),
      addUser: db.prepare('INSERT OR IGNORE INTO image_users (image_digest, user, since) VALUES (?, ?, ?)'),
      removeUser: db.prepare('DELETE FROM image_users WHERE image_digest = ? AND user = ?'),
      grant: db.prepare(`INSERT INTO image_access (image_digest, project, how, since) VALUES (?, ?, ?, ?)
        ON CONFLICT (image_digest, project) DO NOTHING`),
      revoke: db.prepare('DELETE FROM image_access WHERE image_digest = ? AND project = ?'),
      mayUse: db.prepare(`SELECT 1 FROM image_access WHERE image_digest = ? AND project IN (?, '*') LIMIT 1`),
      accessOf: db.prepare('SELECT project, how FROM image_access WHERE image_digest = ? ORDER BY project'),
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
        spec: JSON.stringify(image.spec),
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

  /** Records an image and points its references at it, in one transaction. */
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
      spec: JSON.parse(row.spec) as ImageSpec,
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

  /** Image digests starting with `prefix` (for short ids such as `sha256:3f2a`). */
  digestsStartingWith(prefix: string): string[] {
    return (this.statements.digestsByPrefix.all(prefix, prefix) as { digest: string }[]).map((row) => row.digest);
  }

  blobsOf(digest: string): ImageBlob[] {
    return (this.statements.blobsOf.all(digest) as { blob_digest: string; role: BlobRole; position: number; media_type: string; size: number; diff_id: string | null }[]).map(
      (row) => ({
        digest: row.blob_digest,
        role: row.role,
        position: row.position,
        mediaType: row.media_type,
        size: row.size,
        ...(row.diff_id ? { diffId: row.diff_id } : {}),
      }),
    );
  }

  /** Removes one reference; returns whether it existed. */
  removeReference(reference: string): boolean {
    return this.statements.deleteTag.run(reference).changes > 0;
  }

  /**
   * Deletes an image record (its references, blob rows and users go with it) and returns the
   * blobs no other image is made of any more, which the caller may delete from disk.
   */
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
    return (this.statements.blobReferences.get(blobDigest) as { count: number }).count;
  }

  referencedBlobs(): Set<string> {
    return new Set((this.statements.referencedBlobs.all() as { blob_digest: string }[]).map((row) => row.blob_digest));
  }

  /** Marks an image as used by `user` (an app, a sandbox): it cannot be removed or pruned. */
  addUser(digest: string, user: string): void {
    this.statements.addUser.run(digest, user, Date.now());
  }

  removeUser(digest: string, user: string): boolean {
    return this.statements.removeUser.run(digest, user).changes > 0;
  }

  /** Lets `project` (or every project, EVERY_PROJECT) run the image; the first reason given is kept. */
  grant(digest: string, project: string, how: ImageAccess): void {
    this.statements.grant.run(digest, project, how, Date.now());
  }

  revoke(digest: string, project: string): boolean {
    return this.statements.revoke.run(digest, project).changes > 0;
  }

  /** Whether `project` may run the image: it is public, or the project pulled, built or was given it. */
  mayUse(digest: string, project: string): boolean {
    return this.statements.mayUse.get(digest, project) !== undefined;
  }

  /** Who may run the image, and why. */
  accessOf(digest: string): { project: string; how: ImageAccess }[] {
    return this.statements.accessOf.all(digest) as { project: string; how: ImageAccess }[];
  }
}
