/**
 * @module store/files/sqlite
 * The embedded adapter of the file port: one table in the shared SQLite file, unique on
 * (namespace, project, path). SQLite's default BINARY collation compares UTF-8 bytes, so the
 * path order is byte order. Rows keep a rowid: contents run to a megabyte, too big for a
 * WITHOUT ROWID table's B-tree pages.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { FileListOptions, FileRecord, FileStore, FileToSave } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE file_records (
     namespace TEXT NOT NULL,
     project TEXT NOT NULL,
     path TEXT NOT NULL,
     content TEXT NOT NULL,
     metadata TEXT NOT NULL,
     public INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL);
   CREATE UNIQUE INDEX file_records_address ON file_records(namespace, project, path);`,
];

interface Row {
  project: string;
  path: string;
  content: string;
  metadata: string;
  public: number;
  created_at: number;
  updated_at: number;
}

const COLUMNS = 'project, path, content, metadata, public, created_at, updated_at';

function recordFromRow(row: Row): FileRecord {
  return {
    project: row.project,
    path: row.path,
    content: row.content,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    public: row.public === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class SqliteFileStore implements FileStore {
  private readonly statements;

  constructor(db: SqliteDatabase) {
    migrate(db, 'files', MIGRATIONS);
    this.statements = {
      save: db.prepare(`INSERT INTO file_records (namespace, ${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (namespace, project, path) DO UPDATE SET content = excluded.content, metadata = excluded.metadata,
          public = excluded.public, updated_at = excluded.updated_at
        RETURNING ${COLUMNS}`),
      get: db.prepare(`SELECT ${COLUMNS} FROM file_records WHERE namespace = ? AND project = ? AND path = ?`),
      list: db.prepare(`SELECT ${COLUMNS} FROM file_records
        WHERE namespace = ? AND project = ? AND path > ? AND substr(path, 1, length(?)) = ?
        ORDER BY path LIMIT ?`),
      delete: db.prepare('DELETE FROM file_records WHERE namespace = ? AND project = ? AND path = ?'),
      listProjects: db.prepare('SELECT DISTINCT project FROM file_records WHERE namespace = ? ORDER BY project').pluck(),
      deleteProject: db.prepare('DELETE FROM file_records WHERE substr(namespace, 1, length(?)) = ?'),
    };
  }

  async save(namespace: string, file: FileToSave): Promise<FileRecord> {
    const row = this.statements.save.get(
      namespace,
      file.project,
      file.path,
      file.content,
      JSON.stringify(file.metadata),
      file.public ? 1 : 0,
      file.at,
      file.at,
    ) as Row;
    return recordFromRow(row);
  }

  async get(namespace: string, project: string, path: string): Promise<FileRecord | undefined> {
    const row = this.statements.get.get(namespace, project, path) as Row | undefined;
    return row && recordFromRow(row);
  }

  async listProjects(namespace: string): Promise<string[]> {
    return this.statements.listProjects.all(namespace) as string[];
  }

  async list(namespace: string, project: string, options: FileListOptions): Promise<FileRecord[]> {
    const rows = this.statements.list.all(
      namespace,
      project,
      options.startAfter ?? '',
      options.pathPrefix,
      options.pathPrefix,
      options.limit,
    ) as Row[];
    return rows.map(recordFromRow);
  }

  async delete(namespace: string, project: string, path: string): Promise<boolean> {
    return this.statements.delete.run(namespace, project, path).changes > 0;
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    return this.statements.deleteProject.run(prefix, prefix).changes;
  }
}
