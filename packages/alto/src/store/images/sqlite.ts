/**
 * @module store/images/sqlite
 * The embedded adapter of the image records port, in the node's SQLite file: the tables compute
 * kept there before the port (same names and migrations, under the module name `images`, so
 * existing data folders keep their images).
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { EVERY_PROJECT, type BlobRole, type ImageAccess, type ImageBlob, type ImageRecord, type ImageRecordStore, type NewImage } from './port.js';

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
      blobReferences: db.prepare('SELECT COUNT(*) AS count FROM image_blobs WHERE blob_digest = ?'),
      referencedBlobs: db.prepare('SELECT DISTINCT blob_digest FROM image_blobs'),
      addUser: db.prepare('INSERT OR IGNORE INTO image_users (image_digest, user, since) VALUES (?, ?, ?)'),
      removeUser: db.prepare('DELETE FROM image_users WHERE image_digest = ? AND user = ?'),
      grant: db.prepare(`INSERT INTO image_access (image_digest, project, how, since) VALUES (?, ?, ?, ?)
        ON CONFLICT (image_digest, project) DO NOTHING`),
      revoke: db.prepare('DELETE FROM image_access WHERE image_digest = ? AND project = ?'),
      mayUse: db.prepare('SELECT 1 FROM image_access WHERE image_digest = ? AND project IN (?, ?) LIMIT 1'),
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
    return (this.statements.blobReferences.get(blobDigest) as { count: number }).count;
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
}
