/**
 * @module blocks/db/records
 * The logic of the `db` block between the wire and the document store: M3O's defaults (table
 * `default`, ids from the request, the record or a uuid, limit 25), validation of names, ids
 * and records with precise 400s, the limits read from the environment, and watches as queues.
 */
import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { errors } from '../../kit/errors.js';
import { DEFAULT_DOCUMENT_LIMITS, TABLE_NAME, type DocumentLimits, type DocumentStore, type JsonObject } from '../../store/documents/port.js';
import { matches, parseFieldPath, parseQuery, type Filter } from '../../store/documents/query.js';
import type {
  CountRequest,
  CreateRequest,
  CreateResponse,
  DeleteRequest,
  ReadRequest,
  ReadResponse,
  UpdateRequest,
  WatchMessage,
} from './schema.js';

export const DEFAULT_READ_LIMIT = 25;
export const MAX_READ_LIMIT = 1000;
export const MAX_RECORDS_PER_CREATE = 1000;
export const MAX_ID_LENGTH = 512;
/** Deepest nesting of objects and arrays in a record. */
export const MAX_RECORD_DEPTH = 64;
/** Changes a watcher may have waiting before it is dropped as too slow. */
export const MAX_WATCH_BACKLOG = 10_000;

const LIMIT_VARIABLES: Record<keyof DocumentLimits, string> = {
  maxRecordBytes: 'ALTO_DB_MAX_RECORD_BYTES',
  maxRowsPerProject: 'ALTO_DB_MAX_ROWS_PER_PROJECT',
  maxTablesPerNamespace: 'ALTO_DB_MAX_TABLES',
  maxIndexesPerTable: 'ALTO_DB_MAX_INDEXES_PER_TABLE',
};

/** The limits, each overridable by its environment variable (a positive whole number). */
export function limitsFromEnvironment(environment: NodeJS.ProcessEnv = process.env): DocumentLimits {
  const limits = { ...DEFAULT_DOCUMENT_LIMITS };
  for (const [key, variable] of Object.entries(LIMIT_VARIABLES) as [keyof DocumentLimits, string][]) {
    const text = environment[variable];
    if (text === undefined || text === '') continue;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${variable} must be a positive whole number, not "${text}"`);
    limits[key] = value;
  }
  return limits;
}

export function tableName(value: string | undefined, field = 'table'): string {
  if (value === undefined || value === '') return 'default';
  if (!TABLE_NAME.test(value)) {
    throw errors.badRequest(
      `${field}: "${value.slice(0, 80)}" is not a table name; use letters, digits and _, starting with a letter or _, at most 63 characters`,
    );
  }
  return value;
}

function recordId(value: unknown, field: string): string {
  if (typeof value !== 'string') throw errors.badRequest(`${field}: must be a string, not ${value === null ? 'null' : typeof value}`);
  if (value.length === 0) throw errors.badRequest(`${field}: is empty`);
  if (value.length > MAX_ID_LENGTH) throw errors.badRequest(`${field}: is ${value.length} characters long; at most ${MAX_ID_LENGTH}`);
  if (value.includes('\u0000')) throw errors.badRequest(`${field}: may not contain the NUL character`);
  return value;
}

/**
 * Checks what JSON alone does not: nesting depth, numbers JSON.parse turned into Infinity (they
 * would be stored as null), and NUL characters (PostgreSQL's jsonb cannot hold them).
 */
export function checkRecord(value: unknown, path = 'record', depth = 0): void {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw errors.badRequest(`${path}: the number is too large to store`);
    return;
  }
  if (typeof value === 'string') {
    if (value.includes('\u0000')) throw errors.badRequest(`${path}: strings may not contain the NUL character (\\u0000)`);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  if (depth >= MAX_RECORD_DEPTH) throw errors.badRequest(`${path}: nests deeper than ${MAX_RECORD_DEPTH} levels`);
  if (Array.isArray(value)) {
    value.forEach((item, i) => checkRecord(item, `${path}[${i}]`, depth + 1));
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    if (key.includes('\u0000')) throw errors.badRequest(`${path}: field names may not contain the NUL character`);
    checkRecord(item, `${path}.${key}`, depth + 1);
  }
}

export async function createRecords(
  store: DocumentStore,
  namespace: string,
  request: z.output<typeof CreateRequest>,
): Promise<z.input<typeof CreateResponse>> {
  const table = tableName(request.table);
  const { record } = request;
  if (record === undefined) throw errors.badRequest('record: is required; send the record as a JSON object, e.g. {"name": "Jane"}');
  if (Array.isArray(record)) {
    if (request.id) throw errors.badRequest('id: give ids inside each record when creating an array of records');
    if (record.length === 0) throw errors.badRequest('record: the array is empty');
    if (record.length > MAX_RECORDS_PER_CREATE) {
      throw errors.badRequest(`record: has ${record.length} records; create at most ${MAX_RECORDS_PER_CREATE} at once`);
    }
    const records = record.map((item, i) => {
      checkRecord(item, `record[${i}]`);
      const id = item.id === undefined ? randomUUID() : recordId(item.id, `record[${i}].id`);
      return { id, data: { ...item, id } };
    });
    const created = await store.create(namespace, table, records);
    return { id: created[0].id, ids: created.map((item) => item.id), revision: 1 };
  }
  checkRecord(record);
  // As M3O: the request's id wins, then the record's own, then a new uuid.
  const id = request.id
    ? recordId(request.id, 'id')
    : record.id !== undefined && record.id !== ''
      ? recordId(record.id, 'record.id')
      : randomUUID();
  const [created] = await store.create(namespace, table, [{ id, data: { ...record, id } }]);
  return { id: created.id, revision: created.revision };
}

function and(...filters: (Filter | undefined)[]): Filter | undefined {
  const present = filters.filter((filter): filter is Filter => filter !== undefined);
  return present.length === 0 ? undefined : present.length === 1 ? present[0] : { kind: 'and', items: present };
}

export function parseOptionalQuery(query: string | undefined): Filter | undefined {
  return query === undefined || query.trim() === '' ? undefined : parseQuery(query);
}

export async function readRecords(
  store: DocumentStore,
  namespace: string,
  request: z.output<typeof ReadRequest>,
): Promise<z.input<typeof ReadResponse>> {
  const table = tableName(request.table);
  const limit = request.limit === undefined || request.limit === 0 ? DEFAULT_READ_LIMIT : request.limit;
  if (limit < 0 || limit > MAX_READ_LIMIT) throw errors.badRequest(`limit: ${limit} is out of range; use 1 to ${MAX_READ_LIMIT} (default ${DEFAULT_READ_LIMIT})`);
  const offset = request.offset ?? 0;
  if (offset < 0) throw errors.badRequest(`offset: ${offset} is negative`);
  const order = (request.order ?? '').toLowerCase() || 'asc';
  if (order !== 'asc' && order !== 'desc') throw errors.badRequest(`order: "${request.order}" is not an order; use "asc" or "desc"`);
  const orderBy = request.orderBy ? parseFieldPath(request.orderBy, 'orderBy') : undefined;
  const query = parseOptionalQuery(request.query);
  let records;
  if (request.id && !query) {
    // The common read by id: one primary-key lookup.
    const record = offset === 0 ? await store.get(namespace, table, recordId(request.id, 'id')) : undefined;
    records = record ? [record] : [];
  } else {
    const byId: Filter | undefined = request.id ? { kind: 'compare', path: ['id'], operator: '==', value: request.id } : undefined;
    records = await store.find(namespace, table, { filter: and(byId, query), orderBy, order, limit, offset });
  }
  return {
    records: records.map((record) => record.data),
    revisions: Object.fromEntries(records.map((record) => [record.id, record.revision])),
  };
}

export async function updateRecord(
  store: DocumentStore,
  namespace: string,
  request: z.output<typeof UpdateRequest>,
): Promise<number> {
  const table = tableName(request.table);
  const record = request.record;
  if (record === undefined) throw errors.badRequest('record: is required; send the fields to set as a JSON object');
  checkRecord(record);
  const fromRecord = record.id !== undefined && record.id !== '' ? recordId(record.id, 'record.id') : undefined;
  const id = request.id ? recordId(request.id, 'id') : fromRecord;
  if (id === undefined) throw errors.badRequest('id: say which record to update, as "id" or as "id" inside the record');
  if (fromRecord !== undefined && fromRecord !== id) {
    throw errors.badRequest(`record.id: "${fromRecord}" differs from id "${id}"; a record's id cannot change`);
  }
  const { id: _id, ...patch } = record as JsonObject;
  return (await store.update(namespace, table, id, patch, request.revision)).revision;
}

export async function deleteRecord(store: DocumentStore, namespace: string, request: z.output<typeof DeleteRequest>): Promise<void> {
  const table = tableName(request.table);
  if (!request.id) throw errors.badRequest('id: say which record to delete');
  await store.delete(namespace, table, recordId(request.id, 'id'), request.revision);
}

export async function countRecords(store: DocumentStore, namespace: string, request: z.output<typeof CountRequest>): Promise<number> {
  return store.count(namespace, tableName(request.table), parseOptionalQuery(request.query));
}

type WatchMessageInput = z.input<typeof WatchMessage>;

/**
 * Yields the changes of one table (those matching `filter`) as they are committed, until the
 * caller goes away (`signal`) or the store closes.
 */
export async function* watchTable(
  store: DocumentStore,
  namespace: string,
  table: string,
  filter: Filter | undefined,
  sendReady: boolean,
  signal: AbortSignal,
): AsyncGenerator<WatchMessageInput> {
  const backlog: WatchMessageInput[] = [];
  let ended = false;
  let overflowed = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const watch = await store.watch(
    namespace,
    table,
    (change) => {
      if (filter && (change.record === undefined || !matches(change.record, filter))) return;
      if (backlog.length >= MAX_WATCH_BACKLOG) {
        overflowed = true;
      } else {
        backlog.push({ type: change.type, id: change.id, revision: change.revision, record: change.record });
      }
      notify();
    },
    () => {
      ended = true;
      notify();
    },
  );
  const onAbort = () => notify();
  signal.addEventListener('abort', onAbort);
  try {
    if (sendReady) yield { type: 'ready' };
    for (;;) {
      while (backlog.length > 0 && !signal.aborted) yield backlog.shift()!;
      if (signal.aborted) return;
      if (ended) throw errors.unavailable('watch: the server stopped watching (shutting down or lost its database connection); watch again');
      if (overflowed) {
        throw errors.tooManyRequests(
          `watch: more than ${MAX_WATCH_BACKLOG} changes waited to be sent; the client reads slower than the table changes, watch again`,
        );
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    watch.stop();
  }
}
