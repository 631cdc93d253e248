/**
 * @module store/documents/sqlite
 * The embedded adapter of the document store. A catalog table maps (namespace, table name) to a
 * number, and each user table is a physical table named by that number (`db_t12`), so user text
 * never reaches SQL identifiers, renaming is a catalog update, and dropping is a DROP TABLE.
 * Records are stored as JSONB; an index on a field is an expression index on
 * `json_extract(data, '$.path')`, which queries spell identically so the planner can use it.
 *
 * Durability: the database runs in WAL mode with synchronous=NORMAL (see store/sqlite/database).
 * A write is acknowledged after its transaction commits to the WAL, which survives a crash or
 * kill -9 of the process; only an operating-system crash or power failure can lose the last
 * transactions before the next checkpoint. That is the trade-off we accept for write speed.
 */
import type { Statement } from 'better-sqlite3';
import { errors } from '../../kit/errors.js';
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { ChangeBus, encodeRecord, limitErrors } from './changes.js';
import {
  DEFAULT_DOCUMENT_LIMITS,
  projectOf,
  type Change,
  type ChangeListener,
  type DocumentLimits,
  type DocumentStore,
  type FindOptions,
  type IndexInfo,
  type JsonObject,
  type NewRecord,
  type QueryPlan,
  type StoredRecord,
  type Watch,
} from './port.js';
import type { Filter, Scalar } from './query.js';

const MIGRATIONS = [
  `CREATE TABLE documents_tables (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     namespace TEXT NOT NULL,
     project TEXT NOT NULL,
     name TEXT NOT NULL,
     rows INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     UNIQUE (namespace, name));
   CREATE INDEX documents_tables_project ON documents_tables(project);
   CREATE TABLE documents_indexes (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     table_id INTEGER NOT NULL REFERENCES documents_tables(id) ON DELETE CASCADE,
     field TEXT NOT NULL,
     UNIQUE (table_id, field));`,
];

/** Prepared statements kept for dynamic SQL (one set per physical table). */
const STATEMENT_CACHE_SIZE = 2_000;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `'$.a.b'`: a JSON path literal. Parts are checked again here because they enter SQL text. */
function jsonPath(path: string[]): string {
  for (const part of path) {
    if (!NAME.test(part)) throw errors.badRequest(`field: "${path.join('.')}" is not a field path`);
  }
  return `'$.${path.join('.')}'`;
}

function isIdPath(path: string[]): boolean {
  return path.length === 1 && path[0] === 'id';
}

function physicalTable(id: number): string {
  return `"db_t${id}"`;
}

function physicalIndex(tableId: number, indexId: number): string {
  return `"db_t${tableId}_f${indexId}"`;
}

/** Compiles a filter to an SQLite expression; every value becomes a bound parameter. */
class SqliteFilterCompiler {
  readonly params: unknown[] = [];

  private bind(value: string | number): string {
    this.params.push(value);
    return '?';
  }

  compile(filter: Filter): string {
    switch (filter.kind) {
      case 'and':
      case 'or':
        return `(${filter.items.map((item) => this.compile(item)).join(filter.kind === 'and' ? ' AND ' : ' OR ')})`;
      case 'not':
        // A comparison with a missing field is NULL in SQL; COALESCE makes "not" its exact negation.
        return `(NOT COALESCE(${this.compile(filter.item)}, 0))`;
      case 'exists':
        return isIdPath(filter.path) ? '1' : `(json_type(data, ${jsonPath(filter.path)}) IS NOT NULL)`;
      case 'in':
        return this.compileIn(filter.path, filter.values);
      case 'compare': {
        if (filter.operator === '!=') return `(NOT COALESCE(${this.equals(filter.path, filter.value)}, 0))`;
        if (filter.operator === '==') return this.equals(filter.path, filter.value);
        return this.ordered(filter.path, filter.operator, filter.value);
      }
    }
  }

  private equals(path: string[], value: Scalar): string {
    if (isIdPath(path)) return typeof value === 'string' ? `(id = ${this.bind(value)})` : '0';
    const literal = jsonPath(path);
    const extract = `json_extract(data, ${literal})`;
    const type = `json_type(data, ${literal})`;
    if (value === null) return `(${type} IS NULL OR ${type} = 'null')`;
    // json_extract gives 1/0 for true/false, so the type check tells a boolean from a number.
    if (typeof value === 'boolean') return `(${extract} = ${value ? 1 : 0} AND ${type} = '${value}')`;
    if (typeof value === 'number') return `(${extract} = ${this.bind(value)} AND ${type} IN ('integer', 'real'))`;
    // json_extract gives objects and arrays as JSON text, so the type check is needed for strings too.
    return `(${extract} = ${this.bind(value)} AND ${type} = 'text')`;
  }

  private ordered(path: string[], operator: string, value: Scalar): string {
    if (typeof value !== 'number' && typeof value !== 'string') return '0';
    if (isIdPath(path)) return typeof value === 'string' ? `(id ${operator} ${this.bind(value)})` : '0';
    const literal = jsonPath(path);
    const types = typeof value === 'number' ? `IN ('integer', 'real')` : `= 'text'`;
    return `(json_extract(data, ${literal}) ${operator} ${this.bind(value)} AND json_type(data, ${literal}) ${types})`;
  }

  private compileIn(path: string[], values: Scalar[]): string {
    if (values.length === 0) return '0';
    if (isIdPath(path)) {
      const ids = values.filter((value): value is string => typeof value === 'string');
      return ids.length === 0 ? '0' : `(id IN (${ids.map((id) => this.bind(id)).join(', ')}))`;
    }
    const literal = jsonPath(path);
    const extract = `json_extract(data, ${literal})`;
    const type = `json_type(data, ${literal})`;
    const strings = values.filter((value): value is string => typeof value === 'string');
    const numbers = values.filter((value): value is number => typeof value === 'number');
    const parts: string[] = [];
    if (strings.length > 0) parts.push(`(${extract} IN (${strings.map((v) => this.bind(v)).join(', ')}) AND ${type} = 'text')`);
    if (numbers.length > 0) {
      parts.push(`(${extract} IN (${numbers.map((v) => this.bind(v)).join(', ')}) AND ${type} IN ('integer', 'real'))`);
    }
    for (const special of [true, false, null]) {
      if (values.includes(special)) parts.push(this.equals(path, special));
    }
    return parts.length === 1 ? parts[0] : `(${parts.join(' OR ')})`;
  }
}

interface TableRow {
  id: number;
  name: string;
}

interface RecordRow {
  id: string;
  rev: number;
  data: string;
}

function toRecord(row: RecordRow): StoredRecord {
  return { id: row.id, revision: row.rev, data: JSON.parse(row.data) as JsonObject };
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' || (error as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export class SqliteDocumentStore implements DocumentStore {
  readonly backend = 'sqlite' as const;
  private readonly bus = new ChangeBus();
  private readonly statements = new Map<string, Statement>();
  private readonly catalog;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS,
  ) {
    migrate(db, 'documents', MIGRATIONS);
    this.catalog = {
      find: db.prepare('SELECT id, name FROM documents_tables WHERE namespace = ? AND name = ?'),
      list: db.prepare('SELECT name FROM documents_tables WHERE namespace = ? ORDER BY name'),
      countInNamespace: db.prepare('SELECT count(*) AS n FROM documents_tables WHERE namespace = ?'),
      insert: db.prepare('INSERT INTO documents_tables (namespace, project, name, created_at) VALUES (?, ?, ?, ?)'),
      projectRows: db.prepare('SELECT coalesce(sum(rows), 0) AS n FROM documents_tables WHERE project = ?'),
      addRows: db.prepare('UPDATE documents_tables SET rows = rows + ? WHERE id = ?'),
      setRows: db.prepare('UPDATE documents_tables SET rows = ? WHERE id = ?'),
      rows: db.prepare('SELECT rows FROM documents_tables WHERE id = ?'),
      rename: db.prepare('UPDATE documents_tables SET name = ? WHERE id = ?'),
      remove: db.prepare('DELETE FROM documents_tables WHERE id = ?'),
      ofProject: db.prepare('SELECT id, name FROM documents_tables WHERE project = ?'),
      indexes: db.prepare('SELECT id, field FROM documents_indexes WHERE table_id = ? ORDER BY field'),
      namespaceIndexes: db.prepare(`SELECT t.name AS "table", i.field AS field FROM documents_indexes i
        JOIN documents_tables t ON t.id = i.table_id WHERE t.namespace = ? ORDER BY t.name, i.field`),
      findIndex: db.prepare('SELECT id FROM documents_indexes WHERE table_id = ? AND field = ?'),
      insertIndex: db.prepare('INSERT INTO documents_indexes (table_id, field) VALUES (?, ?)'),
      removeIndex: db.prepare('DELETE FROM documents_indexes WHERE id = ?'),
    };
  }

  /** Prepares (once) a statement whose text names a physical table. */
  private prepare(sql: string): Statement {
    let statement = this.statements.get(sql);
    if (statement) {
      // Map order is insertion order: re-inserting keeps recently used statements last.
      this.statements.delete(sql);
      this.statements.set(sql, statement);
      return statement;
    }
    statement = this.db.prepare(sql);
    this.statements.set(sql, statement);
    if (this.statements.size > STATEMENT_CACHE_SIZE) this.statements.delete(this.statements.keys().next().value!);
    return statement;
  }

  private forgetStatements(tableId: number): void {
    const name = physicalTable(tableId);
    for (const sql of this.statements.keys()) if (sql.includes(name)) this.statements.delete(sql);
  }

  private findTable(namespace: string, name: string): TableRow | undefined {
    return this.catalog.find.get(namespace, name) as TableRow | undefined;
  }

  private requireTable(namespace: string, name: string): TableRow {
    const table = this.findTable(namespace, name);
    if (!table) throw limitErrors.tableMissing(name);
    return table;
  }

  /** The table's catalog id, creating it on first write. Runs inside the caller's transaction. */
  private ensureTable(namespace: string, name: string): number {
    const existing = this.findTable(namespace, name);
    if (existing) return existing.id;
    const { n } = this.catalog.countInNamespace.get(namespace) as { n: number };
    if (n >= this.limits.maxTablesPerNamespace) throw limitErrors.tables(this.limits.maxTablesPerNamespace);
    const id = Number(this.catalog.insert.run(namespace, projectOf(namespace), name, Date.now()).lastInsertRowid);
    this.db.exec(`CREATE TABLE ${physicalTable(id)} (
      seq INTEGER PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      rev INTEGER NOT NULL,
      data BLOB NOT NULL)`);
    return id;
  }

  private publish(changes: Change[]): void {
    for (const change of changes) this.bus.publish(change);
  }

  async projectRowCount(project: string): Promise<number> {
    return (this.catalog.projectRows.get(project) as { n: number }).n;
  }

  async create(namespace: string, table: string, records: NewRecord[]): Promise<StoredRecord[]> {
    const encoded = records.map((record) => encodeRecord(record.data, this.limits.maxRecordBytes, record.id));
    const created = this.db
      .transaction(() => {
        const tableId = this.ensureTable(namespace, table);
        const { n } = this.catalog.projectRows.get(projectOf(namespace)) as { n: number };
        if (n + records.length > this.limits.maxRowsPerProject) throw limitErrors.rows(this.limits.maxRowsPerProject);
        const insert = this.prepare(`INSERT INTO ${physicalTable(tableId)} (id, rev, data) VALUES (?, 1, jsonb(?))`);
        records.forEach((record, i) => {
          try {
            insert.run(record.id, encoded[i]);
          } catch (error) {
            if (isUniqueViolation(error)) throw limitErrors.duplicate(table, record.id);
            throw error;
          }
        });
        this.catalog.addRows.run(records.length, tableId);
        return records.map((record) => ({ id: record.id, revision: 1, data: record.data }));
      })
      .immediate();
    if (this.bus.isWatched(namespace, table)) {
      this.publish(created.map((record) => ({ type: 'create', namespace, table, id: record.id, revision: 1, record: record.data })));
    }
    return created;
  }

  async get(namespace: string, table: string, id: string): Promise<StoredRecord | undefined> {
    const found = this.findTable(namespace, table);
    if (!found) return undefined;
    const row = this.prepare(`SELECT id, rev, json(data) AS data FROM ${physicalTable(found.id)} WHERE id = ?`).get(id) as
      | RecordRow
      | undefined;
    return row && toRecord(row);
  }

  private selectSql(tableId: number, options: FindOptions): { sql: string; params: unknown[] } {
    const compiler = new SqliteFilterCompiler();
    const where = options.filter ? compiler.compile(options.filter) : '1';
    const direction = options.order === 'desc' ? 'DESC' : 'ASC';
    const order = options.orderBy
      ? `${isIdPath(options.orderBy) ? 'id' : `json_extract(data, ${jsonPath(options.orderBy)})`} ${direction}, seq ${direction}`
      : `seq ${direction}`;
    return {
      sql: `SELECT id, rev, json(data) AS data FROM ${physicalTable(tableId)} WHERE ${where} ORDER BY ${order} LIMIT ? OFFSET ?`,
      params: [...compiler.params, options.limit, options.offset],
    };
  }

  async find(namespace: string, table: string, options: FindOptions): Promise<StoredRecord[]> {
    const found = this.findTable(namespace, table);
    if (!found) return [];
    const { sql, params } = this.selectSql(found.id, options);
    return (this.prepare(sql).all(...params) as RecordRow[]).map(toRecord);
  }

  async count(namespace: string, table: string, filter?: Filter): Promise<number> {
    const found = this.findTable(namespace, table);
    if (!found) return 0;
    if (!filter) return (this.catalog.rows.get(found.id) as { rows: number }).rows;
    const compiler = new SqliteFilterCompiler();
    const where = compiler.compile(filter);
    const row = this.prepare(`SELECT count(*) AS n FROM ${physicalTable(found.id)} WHERE ${where}`).get(...compiler.params) as { n: number };
    return row.n;
  }

  async update(namespace: string, table: string, id: string, patch: JsonObject, expectedRevision?: number): Promise<StoredRecord> {
    const updated = this.db
      .transaction(() => {
        const found = this.findTable(namespace, table);
        if (!found) throw limitErrors.recordMissing(table, id);
        const name = physicalTable(found.id);
        const row = this.prepare(`SELECT id, rev, json(data) AS data FROM ${name} WHERE id = ?`).get(id) as RecordRow | undefined;
        if (!row) throw limitErrors.recordMissing(table, id);
        if (expectedRevision !== undefined && row.rev !== expectedRevision) {
          throw limitErrors.revision(table, id, expectedRevision, row.rev);
        }
        const data = { ...(JSON.parse(row.data) as JsonObject), ...patch, id };
        const json = encodeRecord(data, this.limits.maxRecordBytes, id);
        this.prepare(`UPDATE ${name} SET data = jsonb(?), rev = ? WHERE id = ?`).run(json, row.rev + 1, id);
        return { id, revision: row.rev + 1, data };
      })
      .immediate();
    this.publish([{ type: 'update', namespace, table, id, revision: updated.revision, record: updated.data }]);
    return updated;
  }

  async delete(namespace: string, table: string, id: string, expectedRevision?: number): Promise<void> {
    const deleted = this.db
      .transaction(() => {
        const found = this.findTable(namespace, table);
        if (!found) throw limitErrors.recordMissing(table, id);
        const name = physicalTable(found.id);
        const row = this.prepare(`SELECT id, rev, json(data) AS data FROM ${name} WHERE id = ?`).get(id) as RecordRow | undefined;
        if (!row) throw limitErrors.recordMissing(table, id);
        if (expectedRevision !== undefined && row.rev !== expectedRevision) {
          throw limitErrors.revision(table, id, expectedRevision, row.rev);
        }
        this.prepare(`DELETE FROM ${name} WHERE id = ?`).run(id);
        this.catalog.addRows.run(-1, found.id);
        return toRecord(row);
      })
      .immediate();
    this.publish([{ type: 'delete', namespace, table, id, revision: deleted.revision, record: deleted.data }]);
  }

  async truncate(namespace: string, table: string): Promise<void> {
    this.db
      .transaction(() => {
        const found = this.requireTable(namespace, table);
        this.db.exec(`DELETE FROM ${physicalTable(found.id)}`);
        this.catalog.setRows.run(0, found.id);
      })
      .immediate();
  }

  async listTables(namespace: string): Promise<string[]> {
    return (this.catalog.list.all(namespace) as { name: string }[]).map((row) => row.name);
  }

  async renameTable(namespace: string, from: string, to: string): Promise<void> {
    this.db
      .transaction(() => {
        const found = this.requireTable(namespace, from);
        if (from === to) return;
        if (this.findTable(namespace, to)) throw limitErrors.tableExists(to);
        this.catalog.rename.run(to, found.id);
      })
      .immediate();
  }

  private dropPhysical(tableId: number): void {
    this.db.exec(`DROP TABLE IF EXISTS ${physicalTable(tableId)}`);
    this.catalog.remove.run(tableId);
    this.forgetStatements(tableId);
  }

  async dropTable(namespace: string, table: string): Promise<void> {
    this.db.transaction(() => this.dropPhysical(this.requireTable(namespace, table).id)).immediate();
  }

  async createIndex(namespace: string, table: string, field: string[]): Promise<void> {
    if (isIdPath(field)) return; // the id is always indexed
    const fieldText = field.join('.');
    const expression = `json_extract(data, ${jsonPath(field)})`;
    this.db
      .transaction(() => {
        const tableId = this.ensureTable(namespace, table);
        if (this.catalog.findIndex.get(tableId, fieldText)) return;
        if (this.catalog.indexes.all(tableId).length >= this.limits.maxIndexesPerTable) {
          throw limitErrors.indexes(table, this.limits.maxIndexesPerTable);
        }
        const indexId = Number(this.catalog.insertIndex.run(tableId, fieldText).lastInsertRowid);
        this.db.exec(`CREATE INDEX ${physicalIndex(tableId, indexId)} ON ${physicalTable(tableId)} (${expression})`);
      })
      .immediate();
  }

  async dropIndex(namespace: string, table: string, field: string[]): Promise<void> {
    const fieldText = field.join('.');
    this.db
      .transaction(() => {
        const found = this.findTable(namespace, table);
        const index = found && (this.catalog.findIndex.get(found.id, fieldText) as { id: number } | undefined);
        if (!found || !index) throw limitErrors.indexMissing(table, fieldText);
        this.db.exec(`DROP INDEX IF EXISTS ${physicalIndex(found.id, index.id)}`);
        this.catalog.removeIndex.run(index.id);
        this.forgetStatements(found.id);
      })
      .immediate();
  }

  async listIndexes(namespace: string, table?: string): Promise<IndexInfo[]> {
    if (table === undefined) return this.catalog.namespaceIndexes.all(namespace) as IndexInfo[];
    const found = this.findTable(namespace, table);
    if (!found) return [];
    return (this.catalog.indexes.all(found.id) as { field: string }[]).map((row) => ({ table, field: row.field }));
  }

  async explain(namespace: string, table: string, options: FindOptions): Promise<QueryPlan> {
    const found = this.requireTable(namespace, table);
    const { sql, params } = this.selectSql(found.id, options);
    const rows = this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
    const details = rows.map((row) => row.detail);
    const indexFields = new Map(
      (this.catalog.indexes.all(found.id) as { id: number; field: string }[]).map((row) => [`db_t${found.id}_f${row.id}`, row.field]),
    );
    const indexedFields = new Set<string>();
    for (const detail of details) {
      for (const [name, field] of indexFields) if (new RegExp(`\\bINDEX ${name}\\b`).test(detail)) indexedFields.add(field);
    }
    return { plan: details.join('\n'), indexedFields: [...indexedFields], fullScan: details.some((detail) => /^SCAN /.test(detail)) };
  }

  async watch(namespace: string, table: string, listener: ChangeListener, onEnd?: () => void): Promise<Watch> {
    return this.bus.subscribe(namespace, table, listener, onEnd);
  }

  async dropProject(projectId: string): Promise<void> {
    this.db
      .transaction(() => {
        for (const table of this.catalog.ofProject.all(projectId) as TableRow[]) this.dropPhysical(table.id);
      })
      .immediate();
  }

  async close(): Promise<void> {
    this.bus.close();
    this.statements.clear();
  }
}
