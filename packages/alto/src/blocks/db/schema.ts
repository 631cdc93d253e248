/**
 * @module blocks/db/schema
 * The wire schema of the `db` block: M3O's `db` service (same fields, defaults and response
 * shapes), plus revisions, `Count` by query, indexes and `Watch`.
 */
import { z } from 'zod';

const JsonRecord = z.record(z.string(), z.unknown());

const Table = z
  .string()
  .optional()
  .describe("table name: letters, digits and _, starting with a letter or _, at most 63 characters; defaults to 'default'");

const Query = z
  .string()
  .optional()
  .describe(
    "filter, e.g. \"age >= 18 and (city == 'Paris' or tags in ['a','b']) and email exists\". Operators: ==, !=, <, <=, >, >=, " +
      'in [...], not in [...], exists, not exists; joined by and, or, not and parentheses; dot paths reach nested fields (user.age). ' +
      "Values: 'strings' or \"strings\", numbers, true, false, null. A value matches only its own JSON type.",
  );

const Revision = z
  .number()
  .int()
  .min(1)
  .optional()
  .describe('expected revision of the record: the call fails with 409 if the record changed since (optimistic concurrency)');

export const CreateRequest = z.object({
  table: Table,
  id: z.string().optional().describe('optional record id to use; else the record\'s "id" field; else a generated uuid'),
  record: z
    .union([JsonRecord, z.array(JsonRecord)])
    .optional()
    .describe('the record, a JSON object (or an array of up to 1000 records to create at once, each with its own id or none)'),
});
export const CreateResponse = z.object({
  id: z.string().describe('the id of the record (either specified or automatically created); the first one for an array'),
  ids: z.array(z.string()).optional().describe('the ids of all the records, when an array was created'),
  revision: z.number().describe('the revision of the new record(s): 1'),
});

export const ReadRequest = z.object({
  table: Table,
  id: z.string().optional().describe("read by id; equivalent to 'id == \"your-id\"'"),
  query: Query,
  orderBy: z.string().optional().describe('field (path) to order by; default: creation order'),
  order: z.string().optional().describe("'asc' (default) or 'desc'"),
  limit: z.number().int().optional().describe('maximum number of records to return: default 25, at most 1000'),
  offset: z.number().int().optional().describe('number of records to skip'),
});
export const ReadResponse = z.object({
  records: z.array(JsonRecord).describe('the records, as stored'),
  revisions: z.record(z.string(), z.number()).describe('the current revision of each record returned, by id'),
});

export const UpdateRequest = z.object({
  table: Table,
  id: z.string().optional().describe("the id of the record; if not given, the record's \"id\" field"),
  record: JsonRecord.optional().describe('the fields to set; other top-level fields of the record are kept'),
  revision: Revision,
});
export const UpdateResponse = z.object({ revision: z.number().describe('the new revision of the record') });

export const DeleteRequest = z.object({
  table: Table,
  id: z.string().optional().describe('id of the record'),
  revision: Revision,
});
export const EmptyResponse = z.object({});

export const TableRequest = z.object({ table: Table });

export const CountRequest = z.object({ table: Table, query: Query });
export const CountResponse = z.object({ count: z.number().describe('the number of records in the table (that match the query)') });

export const ListTablesRequest = z.object({});
export const ListTablesResponse = z.object({ tables: z.array(z.string()).describe('the tables, by name') });

export const RenameTableRequest = z.object({
  from: z.string().optional().describe('current table name'),
  to: z.string().optional().describe('new table name'),
});

export const IndexRequest = z.object({
  table: Table,
  field: z.string().describe('field (path) to index, e.g. "email" or "address.city"'),
});
export const ListIndexesRequest = z.object({
  table: z.string().optional().describe('only this table\'s indexes; all tables when left out'),
});
export const ListIndexesResponse = z.object({
  indexes: z.array(z.object({ table: z.string(), field: z.string() })),
});

export const WatchRequest = z.object({
  table: Table,
  query: Query.describe('only changes to records that match this query (after the change; for a delete, before it)'),
  ready: z.boolean().optional().describe('send {"type": "ready"} first, once every later change is sure to be sent'),
});
export const WatchMessage = z.object({
  type: z.enum(['create', 'update', 'delete', 'ready']).describe('what happened'),
  id: z.string().optional().describe('the id of the record'),
  revision: z.number().optional().describe('the revision after the change (for a delete, the last one)'),
  record: JsonRecord.optional().describe('the record after the change; for a delete, as it was'),
});
