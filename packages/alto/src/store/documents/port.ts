/**
 * @module store/documents/port
 * The document store port: schemaless JSON records in named tables, per tenant namespace, with
 * queries, field indexes, revisions for optimistic concurrency and change watches. Adapters:
 * `sqlite.ts` (embedded) and `postgres.ts` (scale-out). Every method takes the namespace first,
 * so one project can never name another's tables.
 */
import type { Filter } from './query.js';

export type JsonObject = { [key: string]: unknown };

export interface StoredRecord {
  id: string;
  /** 1 when created, +1 on every update. */
  revision: number;
  /** The record as the client sent it, `id` included. */
  data: JsonObject;
}

export interface NewRecord {
  id: string;
  data: JsonObject;
}

export interface FindOptions {
  filter?: Filter;
  /** Field path to order by; records without it come first in ascending order. Default: creation order. */
  orderBy?: string[];
  order: 'asc' | 'desc';
  limit: number;
  offset: number;
}

export interface IndexInfo {
  table: string;
  field: string;
}

export interface QueryPlan {
  /** The database's own plan text (EXPLAIN QUERY PLAN / EXPLAIN). */
  plan: string;
  /** Fields whose index the plan uses. */
  indexedFields: string[];
  /** The plan reads every row of the table. */
  fullScan: boolean;
}

export type ChangeType = 'create' | 'update' | 'delete';

export interface Change {
  type: ChangeType;
  namespace: string;
  table: string;
  id: string;
  revision: number;
  /** The record after the change; for a delete, the record as it was. */
  record: JsonObject | undefined;
}

export type ChangeListener = (change: Change) => void;

export interface Watch {
  stop(): void;
}

export interface DocumentLimits {
  /** Largest record, as JSON text in bytes (after an update's merge, too). */
  maxRecordBytes: number;
  /** Most records across all tables of a project (all its environments). */
  maxRowsPerProject: number;
  /** Most tables in one namespace. */
  maxTablesPerNamespace: number;
  /** Most indexes on one table. */
  maxIndexesPerTable: number;
}

export const DEFAULT_DOCUMENT_LIMITS: DocumentLimits = {
  maxRecordBytes: 1024 * 1024,
  maxRowsPerProject: 1_000_000,
  maxTablesPerNamespace: 1_000,
  maxIndexesPerTable: 16,
};

/**
 * Table names are validated by callers (see `TABLE_NAME`); adapters never put them in SQL text
 * (physical tables are named by a catalog number), but keeping them tidy keeps errors readable.
 */
export const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export interface DocumentStore {
  /** What backs this store, for logs. */
  readonly backend: 'sqlite' | 'postgres';

  /**
   * Inserts records (revision 1), creating the table on first write. All or none: an id that
   * already exists is a 409 and nothing is written.
   */
  create(namespace: string, table: string, records: NewRecord[]): Promise<StoredRecord[]>;
  get(namespace: string, table: string, id: string): Promise<StoredRecord | undefined>;
  /** Records matching the filter; a table that does not exist has none. */
  find(namespace: string, table: string, options: FindOptions): Promise<StoredRecord[]>;
  count(namespace: string, table: string, filter?: Filter): Promise<number>;
  /**
   * Sets the given top-level keys of a record (others are kept). 404 when the record does not
   * exist, 409 when `expectedRevision` is given and differs from the stored one.
   */
  update(namespace: string, table: string, id: string, patch: JsonObject, expectedRevision?: number): Promise<StoredRecord>;
  /** 404 when the record does not exist, 409 on a revision mismatch. */
  delete(namespace: string, table: string, id: string, expectedRevision?: number): Promise<void>;
  /** Removes every record, keeps the table and its indexes. 404 when the table does not exist. */
  truncate(namespace: string, table: string): Promise<void>;
  listTables(namespace: string): Promise<string[]>;
  /** 404 when `from` does not exist, 409 when `to` does. Indexes follow the table. */
  renameTable(namespace: string, from: string, to: string): Promise<void>;
  /** 404 when the table does not exist. */
  dropTable(namespace: string, table: string): Promise<void>;

  /** Indexes a field (creating the table if needed). Idempotent. */
  createIndex(namespace: string, table: string, field: string[]): Promise<void>;
  /** 404 when there is no such index. */
  dropIndex(namespace: string, table: string, field: string[]): Promise<void>;
  /** The indexes of one table, or of every table of the namespace. */
  listIndexes(namespace: string, table?: string): Promise<IndexInfo[]>;
  /** How the database would run `find` (for tests and diagnostics). */
  explain(namespace: string, table: string, options: FindOptions): Promise<QueryPlan>;

  /**
   * Calls `listener` after every committed change to the table, from this process and (on
   * PostgreSQL) from every other process sharing the database. Resolves once listening, so a
   * change made after it resolves is seen. `onEnd` is called if the store closes.
   */
  watch(namespace: string, table: string, listener: ChangeListener, onEnd?: () => void): Promise<Watch>;

  /** Records stored by a project across its tables and environments (for its `db_rows` cap). */
  projectRowCount(project: string): Promise<number>;

  /** Drops every table of every namespace of a project (`${projectId}/...`). */
  dropProject(projectId: string): Promise<void>;
  /** Stops watches and background work; leaves the shared database connection open. */
  close(): Promise<void>;
}

/** The project part of a namespace (`${projectId}/${environment}`), for per-project limits. */
export function projectOf(namespace: string): string {
  const slash = namespace.indexOf('/');
  return slash === -1 ? namespace : namespace.slice(0, slash);
}
