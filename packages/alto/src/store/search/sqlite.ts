/**
 * @module store/search/sqlite
 * The embedded adapter of the search port: documents as JSON in one table, and one FTS5 table
 * per index (named by the index's integer id), so bm25 statistics and match scans never mix
 * one index's documents with another's, and deleting an index drops its table.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { highlightHtml, textTerms, type QueryNode, type SearchDocument, type SearchHit, type SearchPage, type SearchStore } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE search_indexes (
     id INTEGER PRIMARY KEY,
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     UNIQUE (namespace, name));
   CREATE TABLE search_documents (
     seq INTEGER PRIMARY KEY,
     index_id INTEGER NOT NULL,
     doc_id TEXT NOT NULL,
     data TEXT NOT NULL,
     UNIQUE (index_id, doc_id));`,
  // Rows in an index in first-indexed order (seq is the rowid), so LIMIT stops the scan early.
  `CREATE INDEX search_documents_order ON search_documents (index_id);`,
];

/** `"a b" *`: FTS5's phrase syntax, with the term's quotes doubled so it is always a literal. */
function ftsPhrase(term: { phrase: string; prefix: boolean }): string {
  return `"${term.phrase.replaceAll('"', '""')}"${term.prefix ? ' *' : ''}`;
}

/** The JSON path of a field, each key quoted so any key name is a literal. */
function jsonPath(field: string[]): string {
  return '$' + field.map((key) => `."${key}"`).join('');
}

/** GLOB pattern for a wildcard value: `*` stays a wildcard, GLOB's other specials become literals. */
function globPattern(value: string): string {
  return value.replace(/[?[\]]/g, (char) => `[${char}]`);
}

export class SqliteSearchStore implements SearchStore {
  private readonly statements;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'search', MIGRATIONS);
    this.statements = {
      indexId: db.prepare('SELECT id FROM search_indexes WHERE namespace = ? AND name = ?').pluck(),
      createIndex: db.prepare(
        'INSERT INTO search_indexes (namespace, name, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING id',
      ).pluck(),
      deleteIndexRow: db.prepare('DELETE FROM search_indexes WHERE id = ?'),
      deleteIndexDocuments: db.prepare('DELETE FROM search_documents WHERE index_id = ?'),
      documentSeq: db.prepare('SELECT seq FROM search_documents WHERE index_id = ? AND doc_id = ?').pluck(),
      insertDocument: db.prepare('INSERT INTO search_documents (index_id, doc_id, data) VALUES (?, ?, ?) RETURNING seq').pluck(),
      updateDocument: db.prepare('UPDATE search_documents SET data = ? WHERE seq = ?'),
      deleteDocument: db.prepare('DELETE FROM search_documents WHERE seq = ?'),
      projectIndexes: db.prepare('SELECT id FROM search_indexes WHERE substr(namespace, 1, ?) = ?').pluck(),
    };
  }

  private ftsTable(indexId: number): string {
    return `search_fts_${Number(indexId)}`;
  }

  private indexIdOf(namespace: string, index: string): number | undefined {
    return this.statements.indexId.get(namespace, index) as number | undefined;
  }

  async createIndex(namespace: string, index: string): Promise<boolean> {
    return this.db.transaction(() => {
      const id = this.statements.createIndex.get(namespace, index, Date.now()) as number | undefined;
      if (id === undefined) return false;
      this.db.exec(`CREATE VIRTUAL TABLE ${this.ftsTable(id)} USING fts5(body, tokenize = 'unicode61')`);
      return true;
    }).immediate();
  }

  private dropIndex(id: number): void {
    this.statements.deleteIndexDocuments.run(id);
    this.statements.deleteIndexRow.run(id);
    this.db.exec(`DROP TABLE IF EXISTS ${this.ftsTable(id)}`);
  }

  async deleteIndex(namespace: string, index: string): Promise<boolean> {
    return this.db.transaction(() => {
      const id = this.indexIdOf(namespace, index);
      if (id === undefined) return false;
      this.dropIndex(id);
      return true;
    }).immediate();
  }

  async upsert(namespace: string, index: string, document: SearchDocument): Promise<boolean> {
    return this.db.transaction(() => {
      const id = this.indexIdOf(namespace, index);
      if (id === undefined) return false;
      const fts = this.ftsTable(id);
      const data = JSON.stringify(document.data);
      let seq = this.statements.documentSeq.get(id, document.id) as number | undefined;
      if (seq === undefined) {
        seq = this.statements.insertDocument.get(id, document.id, data) as number;
      } else {
        this.statements.updateDocument.run(data, seq);
        this.db.prepare(`DELETE FROM ${fts} WHERE rowid = ?`).run(seq);
      }
      this.db.prepare(`INSERT INTO ${fts} (rowid, body) VALUES (?, ?)`).run(seq, document.text);
      return true;
    }).immediate();
  }

  async delete(namespace: string, index: string, id: string): Promise<'deleted' | 'no-index' | 'no-document'> {
    return this.db.transaction(() => {
      const indexId = this.indexIdOf(namespace, index);
      if (indexId === undefined) return 'no-index' as const;
      const seq = this.statements.documentSeq.get(indexId, id) as number | undefined;
      if (seq === undefined) return 'no-document' as const;
      this.statements.deleteDocument.run(seq);
      this.db.prepare(`DELETE FROM ${this.ftsTable(indexId)} WHERE rowid = ?`).run(seq);
      return 'deleted' as const;
    }).immediate();
  }

  async listIndexes(namespace: string): Promise<string[]> {
    return this.db.prepare('SELECT name FROM search_indexes WHERE namespace = ? ORDER BY name').pluck().all(namespace) as string[];
  }

  async search(namespace: string, index: string, query: QueryNode | undefined, page: SearchPage): Promise<SearchHit[] | undefined> {
    const indexId = this.indexIdOf(namespace, index);
    if (indexId === undefined) return undefined;
    const fts = this.ftsTable(indexId);
    const parameters: unknown[] = [];
    const compile = (node: QueryNode): string => {
      switch (node.kind) {
        case 'and':
        case 'or':
          return `(${compile(node.left)} ${node.kind.toUpperCase()} ${compile(node.right)})`;
        case 'text':
          parameters.push(ftsPhrase(node));
          return `d.seq IN (SELECT rowid FROM ${fts} WHERE ${fts} MATCH ?)`;
        case 'range':
          parameters.push(jsonPath(node.field), jsonPath(node.field), node.value);
          return `(json_type(d.data, ?) IN ('integer', 'real') AND json_extract(d.data, ?) ${node.operator} ?)`;
        case 'equals': {
          const path = jsonPath(node.field);
          let test: string;
          if (typeof node.value === 'number') {
            parameters.push(path, path, node.value);
            test = `(json_type(d.data, ?) IN ('integer', 'real') AND json_extract(d.data, ?) = ?)`;
          } else {
            parameters.push(path, path, node.wildcard ? globPattern(node.value) : node.value);
            test = `(json_type(d.data, ?) = 'text' AND json_extract(d.data, ?) ${node.wildcard ? 'GLOB' : '='} ?)`;
          }
          return node.negated ? `NOT coalesce(${test}, FALSE)` : test;
        }
      }
    };
    const where = query ? compile(query) : '1';
    const terms = textTerms(query);
    if (terms.length === 0) {
      const rows = this.db
        .prepare(`SELECT d.doc_id, d.data FROM search_documents d WHERE d.index_id = ? AND ${where} ORDER BY d.seq LIMIT ? OFFSET ?`)
        .all(indexId, ...parameters, page.limit, page.offset) as Array<{ doc_id: string; data: string }>;
      return rows.map((row) => ({ id: row.doc_id, data: JSON.parse(row.data), highlights: [] }));
    }
    // One MATCH of every term OR'ed together ranks whatever the filter kept; materialized once
    // (SQLite would otherwise rerun the MATCH per document), and snippets only for the page.
    const ranking = terms.map(ftsPhrase).join(' OR ');
    const rows = this.db
      .prepare(
        `WITH m AS MATERIALIZED (SELECT rowid AS seq, bm25(${fts}) AS score FROM ${fts} WHERE ${fts} MATCH ?)
         SELECT d.seq, d.doc_id, d.data FROM search_documents d LEFT JOIN m ON m.seq = d.seq
         WHERE d.index_id = ? AND ${where}
         ORDER BY m.score IS NULL, m.score, d.seq LIMIT ? OFFSET ?`,
      )
      .all(ranking, indexId, ...parameters, page.limit, page.offset) as Array<{ seq: number; doc_id: string; data: string }>;
    const highlights = new Map<number, string>();
    if (rows.length > 0) {
      const snippets = this.db
        .prepare(
          `SELECT rowid AS seq, snippet(${fts}, 0, char(2), char(3), '…', 16) AS highlight FROM ${fts}
           WHERE ${fts} MATCH ? AND rowid IN (${rows.map(() => '?').join(', ')})`,
        )
        .all(ranking, ...rows.map((row) => row.seq)) as Array<{ seq: number; highlight: string }>;
      for (const snippet of snippets) highlights.set(snippet.seq, snippet.highlight);
    }
    return rows.map((row) => {
      const highlight = highlights.get(row.seq);
      return { id: row.doc_id, data: JSON.parse(row.data), highlights: highlight ? [highlightHtml(highlight)] : [] };
    });
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    return this.db.transaction(() => {
      const ids = this.statements.projectIndexes.all(prefix.length, prefix) as number[];
      for (const id of ids) this.dropIndex(id);
      return ids.length;
    }).immediate();
  }
}
