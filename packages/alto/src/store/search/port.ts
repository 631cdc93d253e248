/**
 * @module store/search/port
 * The full-text search storage port. Every method takes the tenant namespace first. Queries
 * arrive already parsed (see blocks/search/query.ts), so adapters only compile a small tree to
 * SQL with every value bound as a parameter.
 */

/** A field path such as `address.city`, split on dots. */
export type FieldPath = string[];

export type Comparison =
  /** `field == 'value'` (exact, case-sensitive), or a wildcard pattern when `wildcard` is set. */
  | { kind: 'equals'; field: FieldPath; value: string | number; negated: boolean; wildcard: boolean }
  /** `field >= 3` and friends: numbers only, and only fields holding numbers match. */
  | { kind: 'range'; field: FieldPath; operator: '>' | '>=' | '<' | '<='; value: number };

export type QueryNode =
  | Comparison
  | { kind: 'and' | 'or'; left: QueryNode; right: QueryNode }
  /** Full-text match on the document's flattened text; `prefix` matches the last word as a prefix. */
  | { kind: 'text'; phrase: string; prefix: boolean };

export interface SearchDocument {
  id: string;
  /** The JSON object, returned as given. */
  data: Record<string, unknown>;
  /** Every string and number of `data`, joined by spaces: what full-text terms match. */
  text: string;
}

export interface SearchHit {
  id: string;
  data: Record<string, unknown>;
  /** Fragments of the text with the matched terms inside `<em>`…`</em>`; empty without text terms. */
  highlights: string[];
}

export interface SearchPage {
  limit: number;
  offset: number;
}

export interface SearchStore {
  /** Returns false when the index already exists. */
  createIndex(namespace: string, index: string): Promise<boolean>;
  /** Deletes the index and its documents; returns false when there was none. */
  deleteIndex(namespace: string, index: string): Promise<boolean>;
  /** Inserts or replaces the document (by id). Returns false, storing nothing, when the index does not exist. */
  upsert(namespace: string, index: string, document: SearchDocument): Promise<boolean>;
  /** Returns 'no-index' or 'no-document' when there was nothing to delete. */
  delete(namespace: string, index: string, id: string): Promise<'deleted' | 'no-index' | 'no-document'>;
  /**
   * The matching documents: by relevance (best first) when the query has text terms, else in
   * the order they were first indexed. Undefined when the index does not exist.
   */
  search(namespace: string, index: string, query: QueryNode | undefined, page: SearchPage): Promise<SearchHit[] | undefined>;
  /** The namespace's index names, sorted: for a project's export. */
  listIndexes(namespace: string): Promise<string[]>;
  /** Deletes the indexes of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<number>;
  close?(): Promise<void>;
}

/** The text terms of a query, which decide ranking and highlighting. */
export function textTerms(node: QueryNode | undefined): Array<{ phrase: string; prefix: boolean }> {
  if (!node) return [];
  if (node.kind === 'text') return [node];
  if (node.kind === 'and' || node.kind === 'or') return [...textTerms(node.left), ...textTerms(node.right)];
  return [];
}

/**
 * What the adapters ask their snippet functions to put around a matched term: control
 * characters, not `<em>`, so the snippet can be HTML-escaped whole and only these become marks.
 */
export const MARK_START = '\u0002';
export const MARK_END = '\u0003';

/**
 * A highlight as the wire shows it: the document's text HTML-escaped, the matched terms inside
 * `<em>…</em>`. The text is the tenant's: unescaped, a stored `<script>` would reach whatever
 * page shows the highlight.
 */
export function highlightHtml(snippet: string): string {
  return snippet
    .replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
    .replaceAll(MARK_START, '<em>')
    .replaceAll(MARK_END, '</em>');
}

