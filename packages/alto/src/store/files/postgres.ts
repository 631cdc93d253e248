/**
 * @module store/files/postgres
 * The PostgreSQL adapter of the file port, for Alto running with `--store postgres://`. Paths
 * use the "C" collation so that order and ranges are UTF-8 byte order, as in SQLite, whatever
 * the database's default collation. Metadata is JSON text: JSONB refuses `\u0000` escapes.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import type { FileListOptions, FileRecord, FileStore, FileToSave } from './port.js';

/** Applied in order, each idempotent; see `PostgresFileStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_files (
     namespace TEXT NOT NULL,
     project TEXT COLLATE "C" NOT NULL,
     path TEXT COLLATE "C" NOT NULL,
     content TEXT NOT NULL,
     metadata TEXT NOT NULL,
     public BOOLEAN NOT NULL,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     PRIMARY KEY (namespace, project, path))`,
];

interface Row {
  project: string;
  path: string;
  content: string;
  metadata: string;
  public: boolean;
  /** BIGINT arrives as a string from pg. */
  created_at: string;
  updated_at: string;
}

const COLUMNS = 'project, path, content, metadata, public, created_at, updated_at';

function recordFromRow(row: Row): FileRecord {
  return {
    project: row.project,
    path: row.path,
    content: row.content,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    public: row.public,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

export class PostgresFileStore implements FileStore {
  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresFileStore> {
    await migratePostgres(pool, 'files', MIGRATIONS);
    return new PostgresFileStore(pool);
  }

  async save(namespace: string, file: FileToSave): Promise<FileRecord> {
    const result = await this.pool.query<Row>(
      `INSERT INTO alto_files (namespace, ${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
       ON CONFLICT (namespace, project, path) DO UPDATE SET content = excluded.content, metadata = excluded.metadata,
         public = excluded.public, updated_at = excluded.updated_at
       RETURNING ${COLUMNS}`,
      [namespace, file.project, file.path, file.content, JSON.stringify(file.metadata), file.public, file.at],
    );
    return recordFromRow(result.rows[0]);
  }

  async get(namespace: string, project: string, path: string): Promise<FileRecord | undefined> {
    const result = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM alto_files WHERE namespace = $1 AND project = $2 AND path = $3`,
      [namespace, project, path],
    );
    return result.rows[0] && recordFromRow(result.rows[0]);
  }

  async listProjects(namespace: string): Promise<string[]> {
    const result = await this.pool.query<{ project: string }>('SELECT DISTINCT project FROM alto_files WHERE namespace = $1 ORDER BY project', [namespace]);
    return result.rows.map((row) => row.project);
  }

  async list(namespace: string, project: string, options: FileListOptions): Promise<FileRecord[]> {
    const result = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM alto_files
       WHERE namespace = $1 AND project = $2 AND path > $3 AND starts_with(path, $4)
       ORDER BY path LIMIT $5`,
      [namespace, project, options.startAfter ?? '', options.pathPrefix, options.limit],
    );
    return result.rows.map(recordFromRow);
  }

  async delete(namespace: string, project: string, path: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_files WHERE namespace = $1 AND project = $2 AND path = $3', [
      namespace,
      project,
      path,
    ]);
    return result.rowCount === 1;
  }

  async deleteProject(projectId: string): Promise<number> {
    const result = await this.pool.query('DELETE FROM alto_files WHERE starts_with(namespace, $1)', [`${projectId}/`]);
    return result.rowCount ?? 0;
  }
}
