/**
 * @module blocks/search
 * The `search` block: full-text and field search over JSON records. M3O-compatible
 * `CreateIndex`, `DeleteIndex`, `Index`, `Delete`, `Search`, plus relevance ranking, paging
 * and highlights. SQLite FTS5 when embedded, PostgreSQL full-text search with `--store`.
 */
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import { errors } from '../../kit/errors.js';
import {
  CreateIndexRequest,
  CreateIndexResponse,
  DeleteIndexRequest,
  DeleteIndexResponse,
  DeleteRequest,
  DeleteResponse,
  IndexRequest,
  IndexResponse,
  SearchRequest,
  SearchResponse,
} from './schema.js';
import { SearchIndexes } from './search-indexes.js';
import { searchSection } from './transfer.js';

const searchIndexes = component('search.indexes', (platform) => {
  return new SearchIndexes(platform.stores.search);
});

function namespaceOf(context: CallContext): string {
  return context.tenant.namespace;
}

export const searchService = defineService({
  name: 'search',
  description: 'Full-text and field search over JSON records, ranked by relevance, with highlights.',
  priceMicros: 10,
  components: [searchIndexes],
  endpoints: {
    CreateIndex: endpoint({
      description: 'Create an index by name; 409 when it exists.',
      request: CreateIndexRequest,
      response: CreateIndexResponse,
      example: { index: 'customers' },
      async handler(request, context) {
        await context.platform.use(searchIndexes).createIndex(namespaceOf(context), request.index);
        return {};
      },
    }),
    DeleteIndex: endpoint({
      description: 'Delete an index and every record in it.',
      request: DeleteIndexRequest,
      response: DeleteIndexResponse,
      example: { index: 'customers' },
      async handler(request, context) {
        await context.platform.use(searchIndexes).deleteIndex(namespaceOf(context), request.index);
        return {};
      },
    }),
    Index: endpoint({
      description: 'Index a record (a JSON object) so it can be searched; replaces the record with the same id. Searchable at once.',
      request: IndexRequest,
      response: IndexResponse,
      example: { index: 'customers', id: '1234', data: { name: 'John Doe', age: 37, starsign: 'Leo' } },
      async handler(request, context) {
        const record = await context.platform.use(searchIndexes).index(namespaceOf(context), request.index, request.id, request.data);
        return { record };
      },
    }),
    Delete: endpoint({
      description: 'Delete a record by id.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { index: 'customers', id: '1234' },
      async handler(request, context) {
        await context.platform.use(searchIndexes).delete(namespaceOf(context), request.index, request.id);
        return {};
      },
    }),
    Search: endpoint({
      description: 'Search an index with a query; records best match first when the query has text terms.',
      request: SearchRequest,
      response: SearchResponse,
      example: { index: 'customers', query: "name == 'John*' AND age >= 30" },
      async handler(request, context) {
        const hits = await context.platform
          .use(searchIndexes)
          .search(namespaceOf(context), request.index, request.query, request.limit, request.offset);
        return { records: hits };
      },
    }),
  },
  transfer: searchSection(searchIndexes),
  async deleteProjectData(projectId, platform) {
    await platform.use(searchIndexes).store.deleteProject(projectId);
  },
});
