/**
 * @module blocks/file/files
 * The file block's logic over the file storage port: paths made canonical (a leading `/`, no
 * empty, `.` or `..` parts), the limits of a small text file with a precise 4xx for each,
 * folder listing in pages that stay a sensible size, and the permalink of public files at
 * `/files/{projectId}/{environment}/{project}/{path}`.
 */
import { errors } from '../../kit/errors.js';
import { baseUrlOf, encodePathParts } from '../../kit/public-url.js';
import type { FileRecord, FileStore } from '../../store/files/port.js';
import { trimEnd } from '../../kit/text.js';

export const FILES_ROUTE_PREFIX = '/files/';

export interface FileLimits {
  maxContentBytes: number;
  maxPathBytes: number;
  maxProjectBytes: number;
  maxMetadataEntries: number;
  maxMetadataBytes: number;
  /** A List answer stops adding files once their contents pass this (at least one file is sent). */
  listContentBudgetBytes: number;
}

export const DEFAULT_FILE_LIMITS: FileLimits = {
  maxContentBytes: 1024 * 1024,
  maxPathBytes: 1024,
  maxProjectBytes: 256,
  maxMetadataEntries: 64,
  maxMetadataBytes: 16 * 1024,
  listContentBudgetBytes: 16 * 1024 * 1024,
};

/** Rows read per query while filling a List page. */
const LIST_BATCH = 50;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

export interface FileView {
  project: string;
  path: string;
  content: string;
  created: string;
  updated: string;
  metadata: Record<string, string>;
  public: boolean;
}

export interface FileToWrite {
  project: string;
  path: string;
  content: string;
  metadata: Record<string, string>;
}

export class Files {
  constructor(
    readonly store: FileStore,
    /** ALTO_PUBLIC_URL; undefined to use each caller's origin. */
    private readonly publicUrl: string | undefined,
    private readonly limits: FileLimits = DEFAULT_FILE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  async save(namespace: string, file: FileToWrite, isPublic: boolean): Promise<FileRecord> {
    const project = this.checkProject(file.project);
    const path = this.filePath(file.path);
    const contentBytes = Buffer.byteLength(file.content);
    if (contentBytes > this.limits.maxContentBytes) {
      throw errors.payloadTooLarge(
        `file.content: ${contentBytes} bytes is more than the ${this.limits.maxContentBytes} bytes of a file; store large or binary data with the space block`,
      );
    }
    if (file.content.includes('\u0000') || LONE_SURROGATE.test(file.content)) {
      throw errors.badRequest('file.content: not text (it holds NUL characters or invalid Unicode); store binary data with the space block');
    }
    this.checkMetadata(file.metadata);
    return this.store.save(namespace, { project, path, content: file.content, metadata: file.metadata, public: isPublic, at: this.now() });
  }

  async read(namespace: string, project: string, path: string): Promise<FileRecord> {
    const canonical = this.filePath(path);
    const record = await this.store.get(namespace, this.checkProject(project), canonical);
    if (!record) throw errors.notFound(`file "${canonical}" does not exist in project "${project}"; file/List shows the files there are`);
    return record;
  }

  /** The files under a folder, sorted by path, in a page bounded by count and by total content size. */
  async list(
    namespace: string,
    project: string,
    folder: string,
    limit: number,
    startAfter: string,
  ): Promise<{ files: FileRecord[]; nextStartAfter: string }> {
    const checkedProject = this.checkProject(project);
    const pathPrefix = this.folderPrefix(folder);
    const files: FileRecord[] = [];
    let contentBytes = 0;
    let cursor = startAfter || undefined;
    for (;;) {
      const wanted = Math.min(LIST_BATCH, limit - files.length + 1); // one more tells whether more follow
      const batch = await this.store.list(namespace, checkedProject, { pathPrefix, startAfter: cursor, limit: wanted });
      for (const record of batch) {
        const size = Buffer.byteLength(record.content);
        if (files.length >= limit || (files.length > 0 && contentBytes + size > this.limits.listContentBudgetBytes)) {
          return { files, nextStartAfter: files[files.length - 1].path };
        }
        files.push(record);
        contentBytes += size;
      }
      if (batch.length < wanted) return { files, nextStartAfter: '' };
      cursor = batch[batch.length - 1].path;
    }
  }

  async delete(namespace: string, project: string, path: string): Promise<void> {
    await this.store.delete(namespace, this.checkProject(project), this.filePath(path));
  }

  /** The permalink of a file: it answers without a key while the file is public. */
  permalink(namespace: string, record: Pick<FileRecord, 'project' | 'path'>, origin: string | undefined): string {
    return `${baseUrlOf(this.publicUrl, origin)}${FILES_ROUTE_PREFIX}${namespace}/${encodeURIComponent(record.project)}${encodePathParts(record.path)}`;
  }

  view(record: FileRecord): FileView {
    return {
      project: record.project,
      path: record.path,
      content: record.content,
      created: new Date(record.createdAt).toISOString(),
      updated: new Date(record.updatedAt).toISOString(),
      metadata: record.metadata,
      public: record.public,
    };
  }

  checkProject(project: string, field = 'project'): string {
    if (project === '') throw errors.badRequest(`${field}: missing; give the project the files belong to, e.g. "my-website"`);
    const bytes = Buffer.byteLength(project);
    if (bytes > this.limits.maxProjectBytes) throw errors.badRequest(`${field}: ${bytes} bytes is longer than the ${this.limits.maxProjectBytes}-byte limit`);
    if (project.includes('/') || CONTROL_CHARACTER.test(project) || LONE_SURROGATE.test(project)) {
      throw errors.badRequest(`${field}: "${project.slice(0, 60)}" may not contain "/" or control characters`);
    }
    return project;
  }

  /** A file path made canonical: `/` added in front when missing; empty, `.` and `..` parts refused. */
  filePath(path: string, field = 'path'): string {
    const canonical = path.startsWith('/') ? path : `/${path}`;
    if (canonical === '/') throw errors.badRequest(`${field}: missing; give the path of the file, e.g. "/docs/readme.md"`);
    if (canonical.endsWith('/')) throw errors.badRequest(`${field}: "${path}" ends with "/"; that is a folder, not a file`);
    const bytes = Buffer.byteLength(canonical);
    if (bytes > this.limits.maxPathBytes) throw errors.badRequest(`${field}: ${bytes} bytes is longer than the ${this.limits.maxPathBytes}-byte limit`);
    if (CONTROL_CHARACTER.test(canonical) || LONE_SURROGATE.test(canonical)) {
      throw errors.badRequest(`${field}: control characters and invalid Unicode are not allowed in a path`);
    }
    for (const part of canonical.slice(1).split('/')) {
      if (part === '') throw errors.badRequest(`${field}: "${path}" contains "//"; folders are separated by a single "/"`);
      if (part === '.' || part === '..') throw errors.badRequest(`${field}: "${path}" contains a "${part}" part; "." and ".." are not allowed`);
    }
    return canonical;
  }

  /** `/`, `/docs` and `/docs/` as the prefix of the paths inside: `/` and `/docs/`. */
  folderPrefix(folder: string): string {
    const trimmed = trimEnd(folder, '/');
    if (trimmed === '') return '/';
    return `${this.filePath(trimmed)}/`;
  }

  private checkMetadata(metadata: Record<string, string>): void {
    const entries = Object.entries(metadata);
    if (entries.length > this.limits.maxMetadataEntries) {
      throw errors.badRequest(`file.metadata: ${entries.length} entries is more than ${this.limits.maxMetadataEntries}`);
    }
    let bytes = 0;
    for (const [key, value] of entries) {
      if (key === '') throw errors.badRequest('file.metadata: a key is empty');
      if (`${key}${value}`.includes('\u0000') || LONE_SURROGATE.test(key + value)) {
        throw errors.badRequest(`file.metadata.${key.slice(0, 40)}: not text (NUL characters or invalid Unicode)`);
      }
      bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
    }
    if (bytes > this.limits.maxMetadataBytes) {
      throw errors.badRequest(`file.metadata: ${bytes} bytes of keys and values is more than ${this.limits.maxMetadataBytes}`);
    }
  }
}
