/**
 * @module store/documents/postgres
 * The PostgreSQL adapter of the document store, for several Alto processes sharing one
 * database. Same layout as the SQLite adapter: a catalog (`alto_db.tables`) maps (namespace,
 * table name) to a number and each user table is a physical table `alto_db.t12` holding jsonb;
 * an index on a field is an expression index on `(data #> '{a,b}')`, which queries spell the
 * same way. Row counts live in a few counter rows per table (random shard per write) so
 * concurrent writers to one table do not queue on a single counter row.
 *
 * Every write and its change notification are one statement (writable CTEs + `pg_notify`), so
 * the notification is sent exactly when the write commits; each process LISTENs once and fans
 * notifications out to its watchers. Catalog ids are cached; every statement that uses a cached
 * id re-checks (namespace, name) -> id inside the same statement, so a table renamed or dropped
 * by another process is never written through a stale id.
 */
import type pg from 'pg';
import { errors, isAltoError } from '../../kit/errors.js';
import { ChangeBus, encodeRecord, limitErrors } from './changes.js';
import { migratePostgres } from '../postgres/migrate.js';
import {
  DEFAULT_DOCUMENT_LIMITS,
  projectOf,
  type Change,
  type ChangeListener,
  type ChangeType,
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

const SCHEMA = 'alto_db';
const CHANNEL = 'alto_db_changes';
/** Shards of a table's row counter. */
const COUNTER_SHARDS = 8;
/** NOTIFY payloads must stay under 8000 bytes: larger records are read back by the listener. */
const NOTIFY_RECORD_BYTES = 6_000;

const MIGRATIONS = [
  `CREATE TABLE ${SCHEMA}.tables (
     id bigserial PRIMARY KEY,
     namespace text NOT NULL,
     project text NOT NULL,
     name text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     UNIQUE (namespace, name));
   CREATE INDEX tables_project ON ${SCHEMA}.tables (project);
   CREATE TABLE ${SCHEMA}.row_counts (
     table_id bigint NOT NULL REFERENCES ${SCHEMA}.tables(id) ON DELETE CASCADE,
     shard int NOT NULL,
     rows bigint NOT NULL,
     PRIMARY KEY (table_id, shard));
   CREATE TABLE ${SCHEMA}.indexes (
     id bigserial PRIMARY KEY,
     table_id bigint NOT NULL REFERENCES ${SCHEMA}.tables(id) ON DELETE CASCADE,
     field text NOT NULL,
     UNIQUE (table_id, field));`,
];

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `(data #> '{"a","b"}')`. Parts are checked again here because they enter SQL text. */
function jsonPath(path: string[]): string {
  for (const part of path) {
    if (!NAME.test(part)) throw errors.badRequest(`field: "${path.join('.')}" is not a field path`);
  }
  // Each element quoted: an unquoted NULL in an array literal would mean SQL NULL.
  return `(data #> '{${path.map((part) => `"${part}"`).join(',')}}')`;
}

function isIdPath(path: string[]): boolean {
  return path.length === 1 && path[0] === 'id';
}

function physicalTable(id: number): string {
  return `${SCHEMA}.t${id}`;
}

/** The records table of a db table (also run by `alto migrate`, with `ifNotExists`). */
export function physicalTableDefinition(id: number, ifNotExists = false): string {
  return `CREATE TABLE ${ifNotExists ? 'IF NOT EXISTS ' : ''}${physicalTable(id)} (
    seq bigserial PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    rev bigint NOT NULL,
    data jsonb NOT NULL)`;
}

function physicalIndexName(tableId: number, indexId: number): string {
  return `t${tableId}_f${indexId}`;
}

/** Compiles a filter to a PostgreSQL expression; values become numbered parameters. */
class PostgresFilterCompiler {
  constructor(readonly params: unknown[]) {}

  private bind(value: unknown, cast = ''): string {
    this.params.push(value);
    return `$${this.params.length}${cast}`;
  }

  private bindJson(value: Scalar): string {
    return this.bind(JSON.stringify(value), '::jsonb');
  }

  compile(filter: Filter): string {
    switch (filter.kind) {
      case 'and':
      case 'or':
        return `(${filter.items.map((item) => this.compile(item)).join(filter.kind === 'and' ? ' AND ' : ' OR ')})`;
      case 'not':
        return `(NOT COALESCE(${this.compile(filter.item)}, false))`;
      case 'exists':
        return isIdPath(filter.path) ? 'true' : `(${jsonPath(filter.path)} IS NOT NULL)`;
      case 'in':
        return this.compileIn(filter.path, filter.values);
      case 'compare':
        if (filter.operator === '!=') return `(NOT COALESCE(${this.equals(filter.path, filter.value)}, false))`;
        if (filter.operator === '==') return this.equals(filter.path, filter.value);
        return this.ordered(filter.path, filter.operator, filter.value);
    }
  }

  private equals(path: string[], value: Scalar): string {
    if (isIdPath(path)) return typeof value === 'string' ? `(id = ${this.bind(value)})` : 'false';
    const expression = jsonPath(path);
    if (value === null) return `(${expression} IS NULL OR ${expression} = 'null'::jsonb)`;
    // jsonb equality is typed: 1 = "1" and 1 = true are false, 1 = 1.0 is true.
    return `(${expression} = ${this.bindJson(value)})`;
  }

  private ordered(path: string[], operator: string, value: Scalar): string {
    if (typeof value !== 'number' && typeof value !== 'string') return 'false';
    if (isIdPath(path)) return typeof value === 'string' ? `(id ${operator} ${this.bind(value)})` : 'false';
    const expression = jsonPath(path);
    // jsonb orders across types (strings < numbers < booleans); keep the comparison within one.
    const type = typeof value === 'number' ? 'number' : 'string';
    return `(${expression} ${operator} ${this.bindJson(value)} AND jsonb_typeof(${expression}) = '${type}')`;
  }

  private compileIn(path: string[], values: Scalar[]): string {
    if (values.length === 0) return 'false';
    if (isIdPath(path)) {
      const ids = values.filter((value): value is string => typeof value === 'string');
      return ids.length === 0 ? 'false' : `(id IN (${ids.map((id) => this.bind(id)).join(', ')}))`;
    }
    const expression = jsonPath(path);
    const present = values.filter((value) => value !== null);
    const parts: string[] = [];
    if (present.length > 0) parts.push(`(${expression} IN (${present.map((value) => this.bindJson(value)).join(', ')}))`);
    if (values.includes(null)) parts.push(this.equals(path, null));
    return parts.length === 1 ? parts[0] : `(${parts.join(' OR ')})`;
  }
}

interface RecordRow {
  id: string;
  rev: string | number;
  data: JsonObject;
}

function toRecord(row: RecordRow): StoredRecord {
  return { id: row.id, revision: Number(row.rev), data: row.data };
}

function pgCode(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

/** Turns the database errors a client can cause into 4xx; everything else stays a 500. */
function clientError(error: unknown, table: string): unknown {
  switch (pgCode(error)) {
    case '54000':
      return errors.badRequest(
        `record: a value of an indexed field of table "${table}" is too large to index (at most about 2,700 bytes); shorten it or drop the index`,
      );
    case '22P05':
      return errors.badRequest('record: strings may not contain the NUL character (\\u0000)');
    default:
      return error;
  }
}

/** A marker: the cached table id no longer names this table. */
const STALE = Symbol('stale table id');

export class PostgresDocumentStore implements DocumentStore {
  readonly backend = 'postgres' as const;
  private readonly bus = new ChangeBus();
  private readonly tableIds = new Map<string, number>();
  private listener: pg.PoolClient | undefined;
  private listening: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly limits: DocumentLimits,
  ) {}

  /** Applies migrations (once, even with several processes starting together) and opens the store. */
  static async open(pool: pg.Pool, limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS): Promise<PostgresDocumentStore> {
    await migratePostgres(pool, 'documents', [`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`, ...MIGRATIONS]);
    return new PostgresDocumentStore(pool, limits);
  }

  private static key(namespace: string, table: string): string {
    return `${namespace}\u0000${table}`;
  }

  /** The table's id from the catalog (not the cache), caching it. */
  private async lookup(namespace: string, table: string): Promise<number | undefined> {
    const { rows } = await this.pool.query<{ id: string }>(`SELECT id FROM ${SCHEMA}.tables WHERE namespace = $1 AND name = $2`, [
      namespace,
      table,
    ]);
    const key = PostgresDocumentStore.key(namespace, table);
    if (rows.length === 0) {
      this.tableIds.delete(key);
      return undefined;
    }
    const id = Number(rows[0].id);
    this.tableIds.set(key, id);
    return id;
  }

  /** SQL that is true only while the table id still names (namespace, table). */
  private guard(tableId: number, params: unknown[], namespace: string, table: string): string {
    params.push(namespace, table);
    return `EXISTS (SELECT 1 FROM ${SCHEMA}.tables WHERE id = ${tableId} AND namespace = $${params.length - 1} AND name = $${params.length})`;
  }

  /**
   * Runs `operation` with the table's id: first the cached one; when the statement reports the
   * id stale (or the physical table is gone), once more with a fresh catalog lookup.
   */
  private async withTable<T>(
    namespace: string,
    table: string,
    operation: (tableId: number) => Promise<T | typeof STALE>,
    missing: () => T | Promise<T>,
  ): Promise<T> {
    const cached = this.tableIds.get(PostgresDocumentStore.key(namespace, table));
    for (let attempt = 0; attempt < 3; attempt++) {
      const tableId = attempt === 0 && cached !== undefined ? cached : await this.lookup(namespace, table);
      if (tableId === undefined) return missing();
      try {
        const result = await operation(tableId);
        if (result !== STALE) return result;
      } catch (error) {
        if (pgCode(error) !== '42P01') throw clientError(error, table);
      }
      this.tableIds.delete(PostgresDocumentStore.key(namespace, table));
    }
    throw errors.unavailable(`table "${table}" changed during the call (renamed or dropped); retry`);
  }

  /** Creates the table (first write) in one transaction with its catalog row; returns its id. */
  private async createTable(namespace: string, table: string): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // Serializes table creation per namespace, so the table count limit holds.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`alto_db:${namespace}`]);
      const existing = await client.query<{ id: string }>(`SELECT id FROM ${SCHEMA}.tables WHERE namespace = $1 AND name = $2`, [
        namespace,
        table,
      ]);
      let id: number;
      if (existing.rows.length > 0) {
        id = Number(existing.rows[0].id);
      } else {
        const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${SCHEMA}.tables WHERE namespace = $1`, [namespace]);
        if (Number(rows[0].n) >= this.limits.maxTablesPerNamespace) throw limitErrors.tables(this.limits.maxTablesPerNamespace);
        const inserted = await client.query<{ id: string }>(
          `INSERT INTO ${SCHEMA}.tables (namespace, project, name) VALUES ($1, $2, $3) RETURNING id`,
          [namespace, projectOf(namespace), table],
        );
        id = Number(inserted.rows[0].id);
        await client.query(physicalTableDefinition(id));
      }
      await client.query('COMMIT');
      this.tableIds.set(PostgresDocumentStore.key(namespace, table), id);
      return id;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  private notifySql(kind: ChangeType, alias: string, namespaceParam: string, tableParam: string): string {
    return `pg_notify('${CHANNEL}', json_build_object(
      'n', ${namespaceParam}::text, 't', ${tableParam}::text, 'k', '${kind}', 'i', ${alias}.id, 'r', ${alias}.rev,
      'd', CASE WHEN octet_length(${alias}.data::text) <= ${NOTIFY_RECORD_BYTES} THEN ${alias}.data END)::text)`;
  }

  private counterSql(tableId: number, delta: string, params: unknown[]): string {
    params.push(Math.floor(Math.random() * COUNTER_SHARDS));
    return `INSERT INTO ${SCHEMA}.row_counts (table_id, shard, rows) SELECT ${tableId}, $${params.length}, ${delta}
      ON CONFLICT (table_id, shard) DO UPDATE SET rows = ${SCHEMA}.row_counts.rows + EXCLUDED.rows`;
  }

  projectRowCount(project: string): Promise<number> {
    return this.projectRows(project);
  }

  private async projectRows(project: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(
      `SELECT coalesce(sum(c.rows), 0) AS n FROM ${SCHEMA}.row_counts c JOIN ${SCHEMA}.tables t ON t.id = c.table_id WHERE t.project = $1`,
      [project],
    );
    return Number(rows[0].n);
  }

  async create(namespace: string, table: string, records: NewRecord[]): Promise<StoredRecord[]> {
    const encoded = records.map((record) => encodeRecord(record.data, this.limits.maxRecordBytes, record.id));
    const project = projectOf(namespace);
    const insert = async (tableId: number): Promise<StoredRecord[] | typeof STALE> => {
      const params: unknown[] = [records.map((record) => record.id), encoded, project, this.limits.maxRowsPerProject - records.length];
      const guard = this.guard(tableId, params, namespace, table);
      const counter = this.counterSql(tableId, 'count(*) FROM inserted', params);
      const sql = `WITH input AS (
          SELECT u.id, u.data, u.ordinal FROM unnest($1::text[], $2::jsonb[]) WITH ORDINALITY AS u(id, data, ordinal)
          WHERE ${guard}
            AND (SELECT coalesce(sum(c.rows), 0) FROM ${SCHEMA}.row_counts c JOIN ${SCHEMA}.tables t ON t.id = c.table_id
                 WHERE t.project = $3) <= $4),
        inserted AS (INSERT INTO ${physicalTable(tableId)} (id, rev, data) SELECT id, 1, data FROM input ORDER BY ordinal
          RETURNING id, rev, data),
        counted AS (${counter})
        SELECT inserted.id, ${this.notifySql('create', 'inserted', `$${params.length - 2}`, `$${params.length - 1}`)} FROM inserted`;
      try {
        const result = await this.pool.query(sql, params);
        if (result.rowCount === records.length) return records.map((record) => ({ id: record.id, revision: 1, data: record.data }));
      } catch (error) {
        if (pgCode(error) === '23505') {
          const duplicate = /Key \(id\)=\((.*)\) already exists/.exec((error as { detail?: string }).detail ?? '')?.[1];
          throw limitErrors.duplicate(table, duplicate ?? records[0].id);
        }
        throw error;
      }
      // Nothing was written: either the id is stale or the project is full.
      if ((await this.lookup(namespace, table)) !== tableId) return STALE;
      if ((await this.projectRows(project)) + records.length > this.limits.maxRowsPerProject) {
        throw limitErrors.rows(this.limits.maxRowsPerProject);
      }
      return STALE;
    };
    return this.withTable(namespace, table, insert, async () => {
      await this.createTable(namespace, table);
      return this.withTable(namespace, table, insert, () => {
        throw errors.unavailable(`table "${table}" was dropped while records were being created in it; retry`);
      });
    });
  }

  async get(namespace: string, table: string, id: string): Promise<StoredRecord | undefined> {
    const [record] = await this.readRows(namespace, table, (tableId, params) => {
      params.push(id);
      return `SELECT id, rev, data FROM ${physicalTable(tableId)} WHERE id = $${params.length} /*guard*/`;
    });
    return record;
  }

  /**
   * Runs a SELECT on the table with the stale-id guard put in place of its guard mark (a comment).
   * An empty result is confirmed with a fresh lookup, since it may mean the id was stale.
   */
  private async readRows(namespace: string, table: string, build: (tableId: number, params: unknown[]) => string): Promise<StoredRecord[]> {
    return this.withTable(
      namespace,
      table,
      async (tableId) => {
        const params: unknown[] = [];
        const select = build(tableId, params);
        const sql = select.replace('/*guard*/', `AND ${this.guard(tableId, params, namespace, table)}`);
        const { rows } = await this.pool.query<RecordRow>(sql, params);
        if (rows.length === 0 && (await this.lookup(namespace, table)) !== tableId) return STALE;
        return rows.map(toRecord);
      },
      () => [],
    );
  }

  private selectSql(tableId: number, options: FindOptions, params: unknown[]): string {
    const where = options.filter ? new PostgresFilterCompiler(params).compile(options.filter) : 'true';
    const direction = options.order === 'desc' ? 'DESC NULLS LAST' : 'ASC NULLS FIRST';
    const seqDirection = options.order === 'desc' ? 'DESC' : 'ASC';
    const order = options.orderBy
      ? `${isIdPath(options.orderBy) ? 'id' : jsonPath(options.orderBy)} ${direction}, seq ${seqDirection}`
      : `seq ${seqDirection}`;
    params.push(options.limit, options.offset);
    return `SELECT id, rev, data FROM ${physicalTable(tableId)} WHERE ${where} /*guard*/
      ORDER BY ${order} LIMIT $${params.length - 1} OFFSET $${params.length}`;
  }

  async find(namespace: string, table: string, options: FindOptions): Promise<StoredRecord[]> {
    return this.readRows(namespace, table, (tableId, params) => this.selectSql(tableId, options, params));
  }

  async count(namespace: string, table: string, filter?: Filter): Promise<number> {
    return this.withTable(
      namespace,
      table,
      async (tableId) => {
        const params: unknown[] = [];
        const sql = filter
          ? `SELECT count(*) AS n FROM ${physicalTable(tableId)} WHERE ${new PostgresFilterCompiler(params).compile(filter)}`
          : `SELECT coalesce(sum(rows), 0) AS n FROM ${SCHEMA}.row_counts WHERE table_id = ${tableId}`;
        const guard = this.guard(tableId, params, namespace, table);
        const { rows } = await this.pool.query<{ n: string; valid: boolean }>(`SELECT (${sql}) AS n, ${guard} AS valid`, params);
        return rows[0].valid ? Number(rows[0].n) : STALE;
      },
      () => 0,
    );
  }

  async update(namespace: string, table: string, id: string, patch: JsonObject, expectedRevision?: number): Promise<StoredRecord> {
    const patchJson = encodeRecord({ ...patch, id }, this.limits.maxRecordBytes, id);
    return this.withTable(
      namespace,
      table,
      async (tableId) => {
        const params: unknown[] = [id, patchJson, this.limits.maxRecordBytes];
        const revisionCheck = expectedRevision === undefined ? '' : `AND rev = $${params.push(expectedRevision)}`;
        const guard = this.guard(tableId, params, namespace, table);
        const { rows } = await this.pool.query<RecordRow>(
          `WITH updated AS (
             UPDATE ${physicalTable(tableId)} SET data = data || $2::jsonb, rev = rev + 1
             WHERE id = $1 ${revisionCheck} AND octet_length((data || $2::jsonb)::text) <= $3 AND ${guard}
             RETURNING id, rev, data)
           SELECT id, rev, data, ${this.notifySql('update', 'updated', `$${params.length - 1}`, `$${params.length}`)} FROM updated`,
          params,
        );
        if (rows.length === 1) return toRecord(rows[0]);
        if ((await this.lookup(namespace, table)) !== tableId) return STALE;
        const current = await this.pool.query<{ rev: string; size: number }>(
          `SELECT rev, octet_length((data || $2::jsonb)::text) AS size FROM ${physicalTable(tableId)} WHERE id = $1`,
          [id, patchJson],
        );
        if (current.rows.length === 0) throw limitErrors.recordMissing(table, id);
        const revision = Number(current.rows[0].rev);
        if (expectedRevision !== undefined && revision !== expectedRevision) throw limitErrors.revision(table, id, expectedRevision, revision);
        if (current.rows[0].size > this.limits.maxRecordBytes) {
          throw errors.payloadTooLarge(
            `record: "${id}" would be ${current.rows[0].size} bytes after this update, more than the ${this.limits.maxRecordBytes} a record may hold`,
          );
        }
        return STALE; // changed between the two statements: try again
      },
      () => {
        throw limitErrors.recordMissing(table, id);
      },
    );
  }

  async delete(namespace: string, table: string, id: string, expectedRevision?: number): Promise<void> {
    await this.withTable(
      namespace,
      table,
      async (tableId) => {
        const params: unknown[] = [id];
        const revisionCheck = expectedRevision === undefined ? '' : `AND rev = $${params.push(expectedRevision)}`;
        const guard = this.guard(tableId, params, namespace, table);
        const notify = this.notifySql('delete', 'deleted', `$${params.length - 1}`, `$${params.length}`);
        const counter = this.counterSql(tableId, '-count(*) FROM deleted', params);
        const { rowCount } = await this.pool.query(
          `WITH deleted AS (DELETE FROM ${physicalTable(tableId)} WHERE id = $1 ${revisionCheck} AND ${guard} RETURNING id, rev, data),
             counted AS (${counter})
           SELECT ${notify} FROM deleted`,
          params,
        );
        if (rowCount === 1) return true;
        if ((await this.lookup(namespace, table)) !== tableId) return STALE;
        const current = await this.pool.query<{ rev: string }>(`SELECT rev FROM ${physicalTable(tableId)} WHERE id = $1`, [id]);
        if (current.rows.length === 0) throw limitErrors.recordMissing(table, id);
        const revision = Number(current.rows[0].rev);
        if (expectedRevision !== undefined && revision !== expectedRevision) throw limitErrors.revision(table, id, expectedRevision, revision);
        return STALE;
      },
      () => {
        throw limitErrors.recordMissing(table, id);
      },
    );
  }

  /**
   * Runs `work` in a transaction holding the catalog row of the table locked.
   *
   * Lock order: a write locks its records table, then (its row count's foreign key) the catalog
   * row, FOR KEY SHARE. So the catalog row is held here FOR NO KEY UPDATE, which a foreign key's
   * share lock passes: with FOR UPDATE, a truncate or an index build holding the row and waiting
   * for the records table deadlocked with a write holding the table and waiting for the row, and
   * PostgreSQL ended it by failing the write (a 500). These still exclude each other, a rename and
   * a drop.
   */
  private async withLockedTable<T>(
    namespace: string,
    table: string,
    work: (client: pg.PoolClient, tableId: number) => Promise<T>,
    create = false,
  ): Promise<T> {
    if (create && (await this.lookup(namespace, table)) === undefined) await this.createTable(namespace, table);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string }>(
        `SELECT id FROM ${SCHEMA}.tables WHERE namespace = $1 AND name = $2 FOR NO KEY UPDATE`,
        [namespace, table],
      );
      if (rows.length === 0) throw limitErrors.tableMissing(table);
      const result = await work(client, Number(rows[0].id));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw isAltoError(error) ? error : clientError(error, table);
    } finally {
      client.release();
    }
  }

  async truncate(namespace: string, table: string): Promise<void> {
    await this.withLockedTable(namespace, table, async (client, tableId) => {
      await client.query(`TRUNCATE ${physicalTable(tableId)}`);
      await client.query(`DELETE FROM ${SCHEMA}.row_counts WHERE table_id = $1`, [tableId]);
    });
  }

  async listTables(namespace: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ name: string }>(
      `SELECT name FROM ${SCHEMA}.tables WHERE namespace = $1 ORDER BY name COLLATE "C"`,
      [namespace],
    );
    return rows.map((row) => row.name);
  }

  async renameTable(namespace: string, from: string, to: string): Promise<void> {
    try {
      const { rowCount } = await this.pool.query(`UPDATE ${SCHEMA}.tables SET name = $3 WHERE namespace = $1 AND name = $2`, [
        namespace,
        from,
        to,
      ]);
      if (rowCount === 0) throw limitErrors.tableMissing(from);
    } catch (error) {
      if (pgCode(error) === '23505') throw limitErrors.tableExists(to);
      throw error;
    } finally {
      this.tableIds.delete(PostgresDocumentStore.key(namespace, from));
      this.tableIds.delete(PostgresDocumentStore.key(namespace, to));
    }
  }

  /**
   * Drops the tables matching `condition`. Their records tables are locked first, in id order, as
   * a write locks them first (then the catalog row, through its row count's foreign key): deleting
   * the catalog row first and then waiting for the records table deadlocked with a write, which
   * PostgreSQL ended by failing the write. A write that comes after finds the table gone.
   */
  private async dropWhere(condition: string, params: unknown[]): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows: found } = await client.query<{ id: string }>(
        `SELECT id FROM ${SCHEMA}.tables WHERE ${condition} AND to_regclass('${SCHEMA}.t' || id) IS NOT NULL ORDER BY id`,
        params,
      );
      if (found.length > 0) await client.query(`LOCK TABLE ${found.map((row) => physicalTable(Number(row.id))).join(', ')} IN ACCESS EXCLUSIVE MODE`);
      const { rows } = await client.query<{ id: string }>(`DELETE FROM ${SCHEMA}.tables WHERE ${condition} RETURNING id`, params);
      for (const row of rows) await client.query(`DROP TABLE IF EXISTS ${physicalTable(Number(row.id))}`);
      await client.query('COMMIT');
      return rows.length;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async dropTable(namespace: string, table: string): Promise<void> {
    this.tableIds.delete(PostgresDocumentStore.key(namespace, table));
    if ((await this.dropWhere('namespace = $1 AND name = $2', [namespace, table])) === 0) throw limitErrors.tableMissing(table);
  }

  async createIndex(namespace: string, table: string, field: string[]): Promise<void> {
    if (isIdPath(field)) return; // the id is always indexed
    const fieldText = field.join('.');
    const expression = jsonPath(field);
    const tableId = await this.withLockedTable(
      namespace,
      table,
      async (client, tableId) => {
        const existing = await client.query(`SELECT 1 FROM ${SCHEMA}.indexes WHERE table_id = $1 AND field = $2`, [tableId, fieldText]);
        if (existing.rows.length > 0) return undefined;
        const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${SCHEMA}.indexes WHERE table_id = $1`, [tableId]);
        if (Number(rows[0].n) >= this.limits.maxIndexesPerTable) throw limitErrors.indexes(table, this.limits.maxIndexesPerTable);
        const inserted = await client.query<{ id: string }>(
          `INSERT INTO ${SCHEMA}.indexes (table_id, field) VALUES ($1, $2) RETURNING id`,
          [tableId, fieldText],
        );
        const indexId = Number(inserted.rows[0].id);
        await client.query(`CREATE INDEX ${physicalIndexName(tableId, indexId)} ON ${physicalTable(tableId)} (${expression})`);
        return tableId;
      },
      true,
    );
    // Statistics on the new expression let the planner estimate how selective it is.
    if (tableId !== undefined) await this.pool.query(`ANALYZE ${physicalTable(tableId)}`).catch(() => undefined);
  }

  async dropIndex(namespace: string, table: string, field: string[]): Promise<void> {
    const fieldText = field.join('.');
    try {
      await this.withLockedTable(namespace, table, async (client, tableId) => {
        const { rows } = await client.query<{ id: string }>(
          `DELETE FROM ${SCHEMA}.indexes WHERE table_id = $1 AND field = $2 RETURNING id`,
          [tableId, fieldText],
        );
        if (rows.length === 0) throw limitErrors.indexMissing(table, fieldText);
        await client.query(`DROP INDEX IF EXISTS ${SCHEMA}.${physicalIndexName(tableId, Number(rows[0].id))}`);
      });
    } catch (error) {
      if (isAltoError(error) && error.status === 404) throw limitErrors.indexMissing(table, fieldText);
      throw error;
    }
  }

  async listIndexes(namespace: string, table?: string): Promise<IndexInfo[]> {
    const params: unknown[] = [namespace];
    const tableCondition = table === undefined ? '' : `AND t.name = $${params.push(table)}`;
    const { rows } = await this.pool.query<IndexInfo>(
      `SELECT t.name AS "table", i.field FROM ${SCHEMA}.indexes i JOIN ${SCHEMA}.tables t ON t.id = i.table_id
       WHERE t.namespace = $1 ${tableCondition} ORDER BY t.name COLLATE "C", i.field COLLATE "C"`,
      params,
    );
    return rows;
  }

  async explain(namespace: string, table: string, options: FindOptions): Promise<QueryPlan> {
    const tableId = await this.lookup(namespace, table);
    if (tableId === undefined) throw limitErrors.tableMissing(table);
    const params: unknown[] = [];
    const sql = this.selectSql(tableId, options, params).replace('/*guard*/', '');
    const { rows } = await this.pool.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, params);
    const indexes = await this.pool.query<{ id: string; field: string }>(`SELECT id, field FROM ${SCHEMA}.indexes WHERE table_id = $1`, [
      tableId,
    ]);
    const fieldsByIndex = new Map(indexes.rows.map((row) => [physicalIndexName(tableId, Number(row.id)), row.field]));
    const indexedFields = new Set<string>();
    let fullScan = false;
    const walk = (node: Record<string, unknown>): void => {
      if (node['Node Type'] === 'Seq Scan') fullScan = true;
      const field = fieldsByIndex.get(String(node['Index Name'] ?? ''));
      if (field) indexedFields.add(field);
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
    };
    const document = rows[0]['QUERY PLAN'] as { Plan: Record<string, unknown> }[];
    walk(document[0].Plan);
    return { plan: JSON.stringify(document, null, 1), indexedFields: [...indexedFields], fullScan };
  }

  /** One LISTEN connection per process, opened with the first watch. */
  private ensureListening(): Promise<void> {
    this.listening ??= (async () => {
      const client = await this.pool.connect();
      const lost = () => {
        if (this.listener !== client) return;
        this.listener = undefined;
        this.listening = undefined;
        client.release(true);
        // Changes made while we were not listening are lost: end the watches so clients reconnect.
        this.bus.close();
      };
      client.on('error', lost);
      client.on('end', lost);
      client.on('notification', (message) => {
        if (message.channel === CHANNEL && message.payload) void this.deliver(message.payload);
      });
      await client.query(`LISTEN ${CHANNEL}`);
      this.listener = client;
    })().catch((error) => {
      this.listening = undefined;
      throw error;
    });
    return this.listening;
  }

  private async deliver(payload: string): Promise<void> {
    const message = JSON.parse(payload) as { n: string; t: string; k: ChangeType; i: string; r: number; d: JsonObject | null };
    if (!this.bus.isWatched(message.n, message.t)) return;
    let record = message.d ?? undefined;
    if (record === undefined && message.k !== 'delete') {
      record = (await this.get(message.n, message.t, message.i).catch(() => undefined))?.data;
    }
    const change: Change = { type: message.k, namespace: message.n, table: message.t, id: message.i, revision: Number(message.r), record };
    this.bus.publish(change);
  }

  async watch(namespace: string, table: string, listener: ChangeListener, onEnd?: () => void): Promise<Watch> {
    if (this.closed) throw errors.unavailable('the database is shutting down');
    await this.ensureListening();
    return this.bus.subscribe(namespace, table, listener, onEnd);
  }

  async dropProject(projectId: string): Promise<void> {
    for (const key of this.tableIds.keys()) if (projectOf(key.split('\u0000')[0]) === projectId) this.tableIds.delete(key);
    await this.dropWhere('project = $1', [projectId]);
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.listener;
    this.listener = undefined;
    this.listening = undefined;
    if (client) {
      await client.query(`UNLISTEN ${CHANNEL}`).catch(() => undefined);
      client.release();
    }
    this.bus.close();
  }
}
