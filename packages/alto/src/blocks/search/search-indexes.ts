/**
 * @module blocks/search/search-indexes
 * The logic of the `search` block: checking index names and ids, flattening documents into the
 * text that full-text terms match, parsing queries, and calling the storage port.
 */
import { randomUUID } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import type { SearchHit, SearchStore } from '../../store/search/port.js';
import { parseQuery } from './query.js';

export const INDEX_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const MAX_ID_LENGTH = 256;
export const DEFAULT_LIMIT = 100;

export function checkIndexName(index: string): string {
  if (!INDEX_NAME_PATTERN.test(index)) {
    throw errors.badRequest(`index: ${JSON.stringify(index.slice(0, 100))} is not a valid index name; use 1 to 64 letters, digits, _ or -`);
  }
  return index;
}

/** Every string and number in the value, depth first, joined by spaces. */
export function flattenText(value: unknown): string {
  const parts: string[] = [];
  const visit = (item: unknown) => {
    if (typeof item === 'string') parts.push(item);
    else if (typeof item === 'number' || typeof item === 'boolean') parts.push(String(item));
    else if (Array.isArray(item)) item.forEach(visit);
    else if (item && typeof item === 'object') Object.values(item).forEach(visit);
  };
  visit(value);
  return parts.join(' ');
}

function missingIndex(index: string): never {
  throw errors.notFound(`index: ${JSON.stringify(index)} does not exist; create it with CreateIndex or by indexing a record into it`);
}

export class SearchIndexes {
  constructor(readonly store: SearchStore) {}

  async createIndex(namespace: string, index: string): Promise<void> {
    if (!(await this.store.createIndex(namespace, checkIndexName(index)))) {
      throw errors.conflict(`index: ${JSON.stringify(index)} already exists`);
    }
  }

  async deleteIndex(namespace: string, index: string): Promise<void> {
    if (!(await this.store.deleteIndex(namespace, checkIndexName(index)))) missingIndex(index);
  }

  async index(namespace: string, index: string, id: string | undefined, data: Record<string, unknown>) {
    checkIndexName(index);
    const recordId = id || randomUUID();
    if (recordId.length > MAX_ID_LENGTH) throw errors.badRequest(`id: is ${recordId.length} characters long; the most is ${MAX_ID_LENGTH}`);
    const document = { id: recordId, data, text: flattenText(data) };
    // M3O created the index on first use; a concurrent CreateIndex losing the race is harmless.
    if (!(await this.store.upsert(namespace, index, document))) {
      await this.store.createIndex(namespace, index);
      if (!(await this.store.upsert(namespace, index, document))) missingIndex(index);
    }
    return { id: recordId, data };
  }

  async delete(namespace: string, index: string, id: string): Promise<void> {
    const outcome = await this.store.delete(namespace, checkIndexName(index), id);
    if (outcome === 'no-index') missingIndex(index);
    if (outcome === 'no-document') throw errors.notFound(`id: index ${JSON.stringify(index)} has no record ${JSON.stringify(id)}`);
  }

  async search(namespace: string, index: string, query: string | undefined, limit?: number, offset?: number): Promise<SearchHit[]> {
    checkIndexName(index);
    const parsed = parseQuery(query ?? '');
    const hits = await this.store.search(namespace, index, parsed, { limit: limit ?? DEFAULT_LIMIT, offset: offset ?? 0 });
    if (!hits) missingIndex(index);
    return hits;
  }
}
