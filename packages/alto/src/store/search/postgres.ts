/**
 * @module store/search/postgres
 * The PostgreSQL adapter of the search port, for Alto running with `--store postgres://`:
 * documents as JSONB beside a generated tsvector (the 'simple' configuration: lower-cased
 * words, no stemming, like SQLite's unicode61) under a GIN index; ranked with ts_rank and
 * highlighted with ts_headline.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { highlightHtml, MARK_START, MARK_END, textTerms, type QueryNode, type SearchDocument, type SearchHit, type SearchPage, type SearchStore } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_search_indexes (
     id BIGSERIAL PRIMARY KEY,
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     UNIQUE (namespace, name))`,
  `CREATE TABLE IF NOT EXISTS alto_search_documents (
     seq BIGSERIAL PRIMARY KEY,
     index_id BIGINT NOT NULL REFERENCES alto_search_indexes (id) ON DELETE CASCADE,
     doc_id TEXT NOT NULL,
     data JSONB NOT NULL,
     body TEXT NOT NULL,
     tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
     UNIQUE (index_id, doc_id))`,
  `CREATE INDEX IF NOT EXISTS alto_search_documents_order ON alto_search_documents (index_id, seq)`,
  `CREATE INDEX IF NOT EXISTS alto_search_documents_tsv ON alto_search_documents USING GIN (tsv)`,
];

/** The words of a term as the 'simple' configuration sees them (lower-cased runs of letters and digits). */
function wordsOf(phrase: string): string[] {
  return phrase.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? [];
}

/** A tsquery text for a term: its words in sequence, each quoted as a literal lexeme; the last a prefix when asked. */
function tsqueryText(term: { phrase: string; prefix: boolean }): string {
  const words = wordsOf(term.phrase).map((word) => `'${word.replaceAll("'", "''").replaceAll('\\', '\\\\')}'`);
  if (words.length === 0) return "''";
  if (term.prefix) words[words.length - 1] += ':*';
  return words.join(' <-> ');
}

/** The number at a JSON path, or NULL when it holds anything else (AND does not guard a cast in SQL). */
function numericAt(path: string): string {
  return `(CASE WHEN jsonb_typeof(d.data #> ${path}::text[]) = 'number' THEN (d.data #> ${path}::text[])::numeric END)`;
}

export class PostgresSearchStore implements SearchStore {
  private constructor(private readonly pool: pg.Pool) {}

  static async open(pool: pg.Pool): Promise<PostgresSearchStore> {
    await migratePostgres(pool, 'search', MIGRATIONS);
    return new PostgresSearchStore(pool);
  }

  private async indexIdOf(namespace: string, index: string): Promise<string | undefined> {
    const result = await this.pool.query<{ id: string }>('SELECT id FROM alto_search_indexes WHERE namespace = $1 AND name = $2', [namespace, index]);
    return result.rows[0]?.id;
  }

  async createIndex(namespace: string, index: string): Promise<boolean> {
    const result = await this.pool.query(
      'INSERT INTO alto_search_indexes (namespace, name, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      [namespace, index, Date.now()],
    );
    return result.rowCount === 1;
  }

  async deleteIndex(namespace: string, index: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_search_indexes WHERE namespace = $1 AND name = $2', [namespace, index]);
    return result.rowCount === 1;
  }

  async upsert(namespace: string, index: string, document: SearchDocument): Promise<boolean> {
    const result = await this.pool.query(
      `INSERT INTO alto_search_documents (index_id, doc_id, data, body)
       SELECT id, $3, $4, $5 FROM alto_search_indexes WHERE namespace = $1 AND name = $2
       ON CONFLICT (index_id, doc_id) DO UPDATE SET data = excluded.data, body = excluded.body`,
      [namespace, index, document.id, JSON.stringify(document.data), document.text],
    );
    return result.rowCount === 1;
  }

  async delete(namespace: string, index: string, id: string): Promise<'deleted' | 'no-index' | 'no-document'> {
    const indexId = await this.indexIdOf(namespace, index);
    if (indexId === undefined) return 'no-index';
    const result = await this.pool.query('DELETE FROM alto_search_documents WHERE index_id = $1 AND doc_id = $2', [indexId, id]);
    return result.rowCount === 1 ? 'deleted' : 'no-document';
  }

  async listIndexes(namespace: string): Promise<string[]> {
    const result = await this.pool.query<{ name: string }>('SELECT name FROM alto_search_indexes WHERE namespace = $1 ORDER BY name', [namespace]);
    return result.rows.map((row) => row.name);
  }

  async search(namespace: string, index: string, query: QueryNode | undefined, page: SearchPage): Promise<SearchHit[] | undefined> {
    const indexId = await this.indexIdOf(namespace, index);
    if (indexId === undefined) return undefined;
    const parameters: unknown[] = [indexId];
    const bind = (value: unknown) => {
      parameters.push(value);
      return `$${parameters.length}`;
    };
    const compile = (node: QueryNode): string => {
      switch (node.kind) {
        case 'and':
        case 'or':
          return `(${compile(node.left)} ${node.kind.toUpperCase()} ${compile(node.right)})`;
        case 'text':
          return `d.tsv @@ to_tsquery('simple', ${bind(tsqueryText(node))})`;
        case 'range': {
          const path = bind(node.field);
          return `${numericAt(path)} ${node.operator} ${bind(node.value)}::numeric`;
        }
        case 'equals': {
          const path = bind(node.field);
          let test: string;
          if (typeof node.value === 'number') {
            test = `${numericAt(path)} = ${bind(node.value)}::numeric`;
          } else if (node.wildcard) {
            const pattern = node.value.replace(/[\\%_]/g, (char) => `\\${char}`).replaceAll('*', '%');
            test = `(jsonb_typeof(d.data #> ${path}::text[]) = 'string' AND (d.data #>> ${path}::text[]) LIKE ${bind(pattern)})`;
          } else {
            test = `(jsonb_typeof(d.data #> ${path}::text[]) = 'string' AND (d.data #>> ${path}::text[]) = ${bind(node.value)}::text)`;
          }
          return node.negated ? `NOT coalesce(${test}, FALSE)` : test;
        }
      }
    };
    const where = query ? compile(query) : 'TRUE';
    const terms = textTerms(query);
    let sql: string;
    if (terms.length > 0) {
      const ranking = `to_tsquery('simple', ${bind(terms.map((term) => `(${tsqueryText(term)})`).join(' | '))})`;
      sql = `SELECT d.doc_id, d.data,
               ts_headline('simple', d.body, ${ranking}, ${bind(`StartSel=${MARK_START}, StopSel=${MARK_END}, MaxWords=16, MinWords=5`)}) AS highlight
             FROM alto_search_documents d WHERE d.index_id = $1 AND ${where}
             ORDER BY ts_rank(d.tsv, ${ranking}) DESC, d.seq LIMIT ${bind(page.limit)} OFFSET ${bind(page.offset)}`;
    } else {
      sql = `SELECT d.doc_id, d.data, NULL AS highlight FROM alto_search_documents d
             WHERE d.index_id = $1 AND ${where} ORDER BY d.seq LIMIT ${bind(page.limit)} OFFSET ${bind(page.offset)}`;
    }
    const result = await this.pool.query<{ doc_id: string; data: Record<string, unknown>; highlight: string | null }>(sql, parameters);
    return result.rows.map((row) => ({
      id: row.doc_id,
      data: row.data,
      highlights: row.highlight && row.highlight.includes(MARK_START) ? [highlightHtml(row.highlight)] : [],
    }));
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    const result = await this.pool.query('DELETE FROM alto_search_indexes WHERE left(namespace, length($1)) = $1', [prefix]);
    return result.rowCount ?? 0;
  }
}
