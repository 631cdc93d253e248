/**
 * @module blocks/search/schema
 * The wire schema of the `search` block, compatible with M3O's `search` service, plus
 * `limit`, `offset` and per-record `highlights` in Search.
 */
import { z } from 'zod';

const IndexName = z
  .string({ error: 'required: the name of the index, e.g. customers' })
  .describe('the name of the index: letters, digits, _ and -, at most 64 characters, e.g. customers');

const JsonObject = z.record(z.string(), z.unknown());

export const SearchRecord = z
  .object({
    id: z.string().describe('the id of the record'),
    data: JsonObject.describe('the JSON contents of the record'),
  })
  .meta({ id: 'SearchRecord' });

export const CreateIndexRequest = z.object({ index: IndexName });
export const CreateIndexResponse = z.object({});

export const DeleteIndexRequest = z.object({ index: IndexName });
export const DeleteIndexResponse = z.object({});

export const IndexRequest = z.object({
  index: IndexName.describe('the index this record belongs to; created if it does not exist'),
  id: z.string().optional().describe('optional id for the record; a generated uuid when empty. An existing id is replaced'),
  data: JsonObject.describe('the JSON object to index; every field is searchable'),
});
export const IndexResponse = z.object({ record: SearchRecord });

export const DeleteRequest = z.object({
  index: IndexName.describe('the index the record belongs to'),
  id: z.string({ error: 'required: the id of the record to delete' }).describe('the id of the record to delete'),
});
export const DeleteResponse = z.object({});

export const SearchRequest = z.object({
  index: IndexName.describe('the index to search'),
  query: z
    .string()
    .optional()
    .describe(
      "the query, e.g. \"name == 'John' AND age >= 18\", \"name == 'Joh*'\", \"coffee OR 'flat white'\", \"espres*\". " +
        'Operators: ==, != (strings or numbers; * in a string is a wildcard), >, >=, <, <= (numbers); AND, OR (any case) and parentheses; ' +
        'dot paths reach nested fields (address.city). Bare or quoted terms match the text of every field, ranked by relevance. Empty: every record',
    ),
  limit: z.number().int().min(1).max(1000).optional().describe('the most records to return; default 100, at most 1000'),
  offset: z.number().int().min(0).optional().describe('records to skip, for paging; default 0'),
});
export const SearchResponse = z.object({
  records: z.array(
    SearchRecord.extend({
      highlights: z
        .array(z.string())
        .describe('fragments of the record text with the matched terms inside <em>…</em>; empty when the query has no text terms'),
    }),
  ),
});
