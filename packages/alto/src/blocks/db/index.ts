/**
 * @module blocks/db
 * The `db` block: schemaless JSON records in tables, wire-compatible with M3O's `db` service
 * (Create, Read, Update, Delete, Truncate, Count, ListTables, RenameTable, DropTable), plus
 * revisions for optimistic concurrency, field indexes and `Watch` (a websocket of changes).
 * Runs on PostgreSQL when Alto has `--store postgres://...`, else on the embedded SQLite.
 */
import { component, defineService, endpoint, streamEndpoint, type CallContext } from '../../platform/service.js';
import { projectOf, type DocumentStore } from '../../store/documents/port.js';
import { parseFieldPath } from '../../store/documents/query.js';
import { errors } from '../../kit/errors.js';
import {
  countRecords,
  createRecords,
  deleteRecord,
  parseOptionalQuery,
  readRecords,
  tableName,
  updateRecord,
  watchTable,
} from './records.js';
import {
  CountRequest,
  CountResponse,
  CreateRequest,
  CreateResponse,
  DeleteRequest,
  EmptyResponse,
  IndexRequest,
  ListIndexesRequest,
  ListIndexesResponse,
  ListTablesRequest,
  ListTablesResponse,
  ReadRequest,
  ReadResponse,
  RenameTableRequest,
  TableRequest,
  UpdateRequest,
  UpdateResponse,
  WatchMessage,
  WatchRequest,
} from './schema.js';
import { dbSection } from './transfer.js';

/** The store the factory opened, with the limits `ALTO_DB_*` set at start; the platform closes it at shutdown. */
const documents = component<DocumentStore>('db.documents', (platform) => platform.stores.documents);

function tenantOf(context: CallContext): { store: DocumentStore; namespace: string } {
  return { store: context.platform.use(documents), namespace: context.tenant.namespace };
}

export const dbService = defineService({
  name: 'db',
  description: 'A serverless JSON document database: tables of records, queries, indexes, revisions and live changes.',
  priceMicros: 1,
  components: [documents],
  endpoints: {
    Create: endpoint({
      description: 'Create a record (or an array of records). The id is the request\'s "id", else the record\'s, else a new uuid.',
      request: CreateRequest,
      response: CreateResponse,
      example: { table: 'example', record: { id: '1', name: 'Jane', age: 42, isActive: true } },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        // The project's db_rows cap (issue 10, platform/limits): refused before anything is written.
        const adding = Array.isArray(request.record) ? request.record.length : 1;
        await context.platform.limits.assertStorage(context.tenant, 'db_rows', adding, () => store.projectRowCount(projectOf(namespace)));
        return createRecords(store, namespace, request);
      },
    }),
    Read: endpoint({
      description: 'Read records by id or by query, with ordering and paging (limit 25 by default, at most 1000).',
      request: ReadRequest,
      response: ReadResponse,
      example: { table: 'example', query: 'age >= 18 and isActive == true', orderBy: 'age', order: 'desc', limit: 10 },
      handler(request, context) {
        const { store, namespace } = tenantOf(context);
        return readRecords(store, namespace, request);
      },
    }),
    Update: endpoint({
      description: 'Set fields of a record (other top-level fields are kept). Give "revision" to update only an unchanged record.',
      request: UpdateRequest,
      response: UpdateResponse,
      example: { table: 'example', record: { id: '1', age: 43 } },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        return { revision: await updateRecord(store, namespace, request) };
      },
    }),
    Delete: endpoint({
      description: 'Delete a record by id. Give "revision" to delete only an unchanged record.',
      request: DeleteRequest,
      response: EmptyResponse,
      example: { table: 'example', id: '1' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        await deleteRecord(store, namespace, request);
        return {};
      },
    }),
    Truncate: endpoint({
      description: 'Delete every record of a table, keeping the table and its indexes.',
      request: TableRequest,
      response: EmptyResponse,
      example: { table: 'example' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        await store.truncate(namespace, tableName(request.table));
        return {};
      },
    }),
    Count: endpoint({
      description: 'Count the records of a table, or those matching a query.',
      request: CountRequest,
      response: CountResponse,
      example: { table: 'example' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        return { count: await countRecords(store, namespace, request) };
      },
    }),
    ListTables: endpoint({
      description: 'List the tables.',
      request: ListTablesRequest,
      response: ListTablesResponse,
      example: {},
      async handler(_request, context) {
        const { store, namespace } = tenantOf(context);
        return { tables: await store.listTables(namespace) };
      },
    }),
    RenameTable: endpoint({
      description: 'Rename a table; its records and indexes follow.',
      request: RenameTableRequest,
      response: EmptyResponse,
      example: { from: 'example', to: 'examples' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        if (!request.from) throw errors.badRequest('from: give the current name of the table');
        if (!request.to) throw errors.badRequest('to: give the new name of the table');
        await store.renameTable(namespace, tableName(request.from, 'from'), tableName(request.to, 'to'));
        return {};
      },
    }),
    DropTable: endpoint({
      description: 'Delete a table, its records and its indexes.',
      request: TableRequest,
      response: EmptyResponse,
      example: { table: 'example' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        await store.dropTable(namespace, tableName(request.table));
        return {};
      },
    }),
    CreateIndex: endpoint({
      description: 'Index a field so queries and ordering on it do not read the whole table. Creates the table if needed.',
      request: IndexRequest,
      response: EmptyResponse,
      example: { table: 'example', field: 'age' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        await store.createIndex(namespace, tableName(request.table), parseFieldPath(request.field));
        return {};
      },
    }),
    DropIndex: endpoint({
      description: 'Remove the index on a field.',
      request: IndexRequest,
      response: EmptyResponse,
      example: { table: 'example', field: 'age' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        await store.dropIndex(namespace, tableName(request.table), parseFieldPath(request.field));
        return {};
      },
    }),
    ListIndexes: endpoint({
      description: 'List the indexed fields of a table, or of every table.',
      request: ListIndexesRequest,
      response: ListIndexesResponse,
      example: { table: 'example' },
      async handler(request, context) {
        const { store, namespace } = tenantOf(context);
        const table = request.table ? tableName(request.table) : undefined;
        return { indexes: await store.listIndexes(namespace, table) };
      },
    }),
    Watch: streamEndpoint({
      description: 'Stream the changes to a table (optionally only records matching a query), one message per change.',
      request: WatchRequest,
      response: WatchMessage,
      example: { table: 'example', query: 'age >= 18', ready: true },
      async *handler(request, context) {
        const { store, namespace } = tenantOf(context);
        const table = tableName(request.table);
        const filter = parseOptionalQuery(request.query);
        yield* watchTable(store, namespace, table, filter, request.ready ?? false, context.signal);
      },
    }),
  },
  transfer: dbSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(documents).dropProject(projectId);
  },
});
