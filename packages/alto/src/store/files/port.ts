/**
 * @module store/files/port
 * The file storage port of the `file` block: small text files addressed by (project, path)
 * inside a tenant namespace, each with string metadata and a public flag. A table rather than
 * the object store, because `List` answers every file's content at once: one indexed query,
 * not one object read per file. Adapters: `sqlite.ts` (embedded) and `postgres.ts` (with
 * `--store postgres://`). Paths sort and compare as UTF-8 bytes in both.
 */

export interface FileRecord {
  /** The caller's grouping of files (M3O's `project`), not the Alto project. */
  project: string;
  /** Starts with `/`, e.g. `/docs/readme.md`. */
  path: string;
  content: string;
  metadata: Record<string, string>;
  public: boolean;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
}

export interface FileToSave {
  project: string;
  path: string;
  content: string;
  metadata: Record<string, string>;
  public: boolean;
  /** When this save happens: the new `updatedAt`, and `createdAt` for a new file. */
  at: number;
}

export interface FileListOptions {
  /** Only paths starting with this text (a folder: `/`, `/docs/`). */
  pathPrefix: string;
  /** Only paths after this one, in byte order. */
  startAfter?: string;
  limit: number;
}

export interface FileStore {
  /** Creates or replaces a file; a replaced file keeps its `createdAt`. */
  save(namespace: string, file: FileToSave): Promise<FileRecord>;
  get(namespace: string, project: string, path: string): Promise<FileRecord | undefined>;
  /** The project's files under the prefix, sorted by path. */
  list(namespace: string, project: string, options: FileListOptions): Promise<FileRecord[]>;
  /** Returns false when there was no such file. */
  delete(namespace: string, project: string, path: string): Promise<boolean>;
  /** The caller's groupings (`project`s) that hold files in the namespace, sorted: for a project's export. */
  listProjects(namespace: string): Promise<string[]>;
  /** Deletes the files of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<number>;
  close?(): Promise<void>;
}
