/**
 * @module store/registry/postgres
 * The PostgreSQL adapter of the registry catalog port, for Alto running with `--store
 * postgres://`: every node of the cloud sees the same repositories, manifests and tags, and
 * counts the same bytes toward a project's cap. Tables and columns are those of the SQLite
 * adapter with the `alto_` prefix; names and tags sort in the "C" collation (byte order, as on
 * SQLite); sizes and times are BIGINT.
 *
 * Writers take a shared advisory lock and a collection (or a release of unheld blobs) the
 * exclusive one, each for its transaction, so a manifest or tag written on one node while another
 * collects is never judged unreachable half way: the collection runs before it or after it.
 */
import type pg from 'pg';
import type { RepositoryManifest } from '../images/port.js';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
import type { CollectedRepositories, RegistryCatalog, UpdatedTag } from './port.js';

/** Applied in order, each once; see `PostgresRegistryCatalog.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_registry_blobs (
     repository TEXT COLLATE "C" NOT NULL,
     digest TEXT COLLATE "C" NOT NULL,
     size BIGINT NOT NULL,
     linked_at BIGINT NOT NULL,
     PRIMARY KEY (repository, digest));
   CREATE INDEX IF NOT EXISTS alto_registry_blobs_digest ON alto_registry_blobs (digest);
   CREATE TABLE IF NOT EXISTS alto_registry_manifests (
     repository TEXT COLLATE "C" NOT NULL,
     digest TEXT COLLATE "C" NOT NULL,
     media_type TEXT NOT NULL,
     size BIGINT NOT NULL,
     pushed_at BIGINT NOT NULL,
     PRIMARY KEY (repository, digest));
   CREATE INDEX IF NOT EXISTS alto_registry_manifests_digest ON alto_registry_manifests (digest);
   CREATE TABLE IF NOT EXISTS alto_registry_manifest_references (
     repository TEXT COLLATE "C" NOT NULL,
     manifest_digest TEXT COLLATE "C" NOT NULL,
     reference TEXT COLLATE "C" NOT NULL,
     PRIMARY KEY (repository, manifest_digest, reference),
     FOREIGN KEY (repository, manifest_digest) REFERENCES alto_registry_manifests (repository, digest) ON DELETE CASCADE);
   CREATE TABLE IF NOT EXISTS alto_registry_tags (
     repository TEXT COLLATE "C" NOT NULL,
     tag TEXT COLLATE "C" NOT NULL,
     digest TEXT COLLATE "C" NOT NULL,
     updated_at BIGINT NOT NULL,
     PRIMARY KEY (repository, tag),
     FOREIGN KEY (repository, digest) REFERENCES alto_registry_manifests (repository, digest) ON DELETE CASCADE);
   CREATE INDEX IF NOT EXISTS alto_registry_tags_digest ON alto_registry_tags (repository, digest);`,
];

/** The advisory lock writers share and a collection takes alone. */
const COLLECTION_LOCK = 'alto.registry.collection';
/** `repository` starts with $1 (byte-wise, as the "C" collation compares). */
const IN_PREFIX = 'left(repository, length($1)) = $1';

export class PostgresRegistryCatalog implements RegistryCatalog {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresRegistryCatalog> {
    await migratePostgres(pool, 'registry', MIGRATIONS);
    return new PostgresRegistryCatalog(pool);
  }

  /** Runs a write in a transaction holding the collection lock shared. */
  private write<T>(run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock_shared(hashtext($1))', [COLLECTION_LOCK]);
      return run(client);
    });
  }

  async linkBlob(repository: string, digest: string, size: number): Promise<void> {
    await this.write((client) =>
      client.query(
        `INSERT INTO alto_registry_blobs (repository, digest, size, linked_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repository, digest) DO UPDATE SET linked_at = excluded.linked_at`,
        [repository, digest, size, Date.now()],
      ),
    );
  }

  async linkedBlobSize(repository: string, digest: string): Promise<number | undefined> {
    const { rows } = await this.pool.query<{ size: string }>('SELECT size FROM alto_registry_blobs WHERE repository = $1 AND digest = $2', [repository, digest]);
    return rows[0] ? Number(rows[0].size) : undefined;
  }

  async putManifest(repository: string, manifest: RepositoryManifest, tag?: string): Promise<void> {
    await this.write(async (client) => {
      const now = Date.now();
      await client.query(
        `INSERT INTO alto_registry_manifests (repository, digest, media_type, size, pushed_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (repository, digest) DO UPDATE SET pushed_at = excluded.pushed_at`,
        [repository, manifest.digest, manifest.mediaType, manifest.size, now],
      );
      if (manifest.references.length > 0) {
        await client.query(
          `INSERT INTO alto_registry_manifest_references (repository, manifest_digest, reference)
           SELECT $1, $2, reference FROM unnest($3::text[]) AS reference ON CONFLICT DO NOTHING`,
          [repository, manifest.digest, manifest.references],
        );
      }
      if (tag !== undefined) {
        await client.query(
          `INSERT INTO alto_registry_tags (repository, tag, digest, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
          [repository, tag, manifest.digest, now],
        );
      }
    });
  }

  async manifestOf(repository: string, digest: string): Promise<RepositoryManifest | undefined> {
    const { rows } = await this.pool.query<{ media_type: string; size: string; pushed_at: string; refs: string[] }>(
      `SELECT media_type, size, pushed_at, ARRAY(SELECT reference FROM alto_registry_manifest_references r
           WHERE r.repository = m.repository AND r.manifest_digest = m.digest ORDER BY reference) AS refs
         FROM alto_registry_manifests m WHERE repository = $1 AND digest = $2`,
      [repository, digest],
    );
    const row = rows[0];
    if (!row) return undefined;
    return { digest, mediaType: row.media_type, size: Number(row.size), references: row.refs, pushedAt: Number(row.pushed_at) };
  }

  async digestOfTag(repository: string, tag: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ digest: string }>('SELECT digest FROM alto_registry_tags WHERE repository = $1 AND tag = $2', [repository, tag]);
    return rows[0]?.digest;
  }

  async tagsOf(repository: string, limit: number, last?: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ tag: string }>('SELECT tag FROM alto_registry_tags WHERE repository = $1 AND tag > $2 ORDER BY tag LIMIT $3', [repository, last ?? '', limit]);
    return rows.map((row) => row.tag);
  }

  async taggedOf(repository: string): Promise<{ tag: string; digest: string }[]> {
    const { rows } = await this.pool.query<{ tag: string; digest: string }>('SELECT tag, digest FROM alto_registry_tags WHERE repository = $1 ORDER BY tag', [repository]);
    return rows;
  }

  async tagsUpdatedSince(since: number): Promise<UpdatedTag[]> {
    const { rows } = await this.pool.query<{ repository: string; tag: string; digest: string; updated_at: string }>(
      'SELECT repository, tag, digest, updated_at FROM alto_registry_tags WHERE updated_at >= $1 ORDER BY updated_at, repository, tag',
      [since],
    );
    return rows.map((row) => ({ repository: row.repository, tag: row.tag, digest: row.digest, updatedAt: Number(row.updated_at) }));
  }

  async removeTag(repository: string, tag: string): Promise<boolean> {
    const result = await this.write((client) => client.query('DELETE FROM alto_registry_tags WHERE repository = $1 AND tag = $2', [repository, tag]));
    return (result.rowCount ?? 0) > 0;
  }

  async removeManifest(repository: string, digest: string): Promise<string[]> {
    return this.write(async (client) => {
      const { rows } = await client.query<{ tag: string }>('DELETE FROM alto_registry_tags WHERE repository = $1 AND digest = $2 RETURNING tag', [repository, digest]);
      await client.query('DELETE FROM alto_registry_manifests WHERE repository = $1 AND digest = $2', [repository, digest]);
      return rows.map((row) => row.tag).sort(compareBytes);
    });
  }

  async removeRepositories(prefix: string): Promise<void> {
    await this.write(async (client) => {
      await client.query(`DELETE FROM alto_registry_tags WHERE ${IN_PREFIX}`, [prefix]);
      await client.query(`DELETE FROM alto_registry_manifests WHERE ${IN_PREFIX}`, [prefix]);
      await client.query(`DELETE FROM alto_registry_blobs WHERE ${IN_PREFIX}`, [prefix]);
    });
  }

  async repositories(prefix: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ repository: string }>(
      `SELECT repository FROM alto_registry_manifests WHERE ${IN_PREFIX}
       UNION SELECT repository FROM alto_registry_blobs WHERE ${IN_PREFIX} ORDER BY repository`,
      [prefix],
    );
    return rows.map((row) => row.repository);
  }

  async repositoryBytes(prefix: string): Promise<number> {
    const { rows } = await this.pool.query<{ bytes: string }>(
      `SELECT COALESCE(SUM(size), 0) AS bytes FROM (
         SELECT digest, MAX(size) AS size FROM (
           SELECT digest, size FROM alto_registry_blobs WHERE ${IN_PREFIX}
           UNION ALL SELECT digest, size FROM alto_registry_manifests WHERE ${IN_PREFIX}) AS held
         GROUP BY digest) AS distinct_held`,
      [prefix],
    );
    return Number(rows[0].bytes);
  }

  async collectRepositories(prefix: string, keep: Set<string>): Promise<CollectedRepositories> {
    return inTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [COLLECTION_LOCK]);
      const kept = [...keep];
      // Manifests no tag reaches: neither tagged nor named by a manifest of the repository that is.
      const removed = await client.query<{ digest: string }>(
        `WITH RECURSIVE reachable (repository, digest) AS (
           SELECT repository, digest FROM alto_registry_tags WHERE ${IN_PREFIX}
           UNION SELECT r.repository, r.reference FROM alto_registry_manifest_references r
             JOIN reachable ON r.repository = reachable.repository AND r.manifest_digest = reachable.digest)
         DELETE FROM alto_registry_manifests m
         WHERE ${IN_PREFIX.replace('repository', 'm.repository')}
           AND NOT (m.digest = ANY($2::text[]))
           AND NOT EXISTS (SELECT 1 FROM reachable WHERE reachable.repository = m.repository AND reachable.digest = m.digest)
         RETURNING m.digest`,
        [prefix, kept],
      );
      const unlinked = await client.query(
        `DELETE FROM alto_registry_blobs b WHERE ${IN_PREFIX.replace('repository', 'b.repository')}
           AND NOT (b.digest = ANY($2::text[]))
           AND NOT EXISTS (SELECT 1 FROM alto_registry_manifest_references r WHERE r.repository = b.repository AND r.reference = b.digest)`,
        [prefix, kept],
      );
      return { manifests: removed.rows.map((row) => row.digest), blobs: unlinked.rowCount ?? 0 };
    });
  }

  async releaseUnheld(digests: string[], release: (unheld: string[]) => Promise<void>): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [COLLECTION_LOCK]);
      const held = await this.held(digests, client);
      await release(digests.filter((digest) => !held.has(digest)));
    });
  }

  async held(digests: string[], client: pg.Pool | pg.PoolClient = this.pool): Promise<Set<string>> {
    if (digests.length === 0) return new Set();
    const { rows } = await client.query<{ digest: string }>(
      `SELECT digest FROM alto_registry_blobs WHERE digest = ANY($1::text[])
       UNION SELECT digest FROM alto_registry_manifests WHERE digest = ANY($1::text[])`,
      [digests],
    );
    return new Set(rows.map((row) => row.digest));
  }
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
