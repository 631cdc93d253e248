/**
 * @module store/urls/sqlite
 * The embedded adapter of the short-URL port: one SQLite table whose primary key is the short
 * id, so ids are unique across namespaces and the redirect finds them without a namespace.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { NewShortUrl, RedirectTarget, ShortUrlChanges, ShortUrlRecord, UrlStore } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE short_urls (
     id TEXT PRIMARY KEY,
     namespace TEXT NOT NULL,
     destination TEXT NOT NULL,
     permanent INTEGER NOT NULL,
     hit_count INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE INDEX short_urls_namespace ON short_urls(namespace, created_at, id);`,
];

interface Row {
  id: string;
  destination: string;
  permanent: number;
  hit_count: number;
  created_at: number;
  updated_at: number;
}

function recordFromRow(row: Row): ShortUrlRecord {
  return {
    id: row.id,
    destination: row.destination,
    permanent: row.permanent === 1,
    hitCount: row.hit_count,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const COLUMNS = 'id, destination, permanent, hit_count, created_at, updated_at';

function prepareStatements(db: SqliteDatabase) {
  return {
    insert: db.prepare(
      `INSERT INTO short_urls (id, namespace, destination, permanent, hit_count, created_at, updated_at)
       VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (id) DO NOTHING`,
    ),
    get: db.prepare(`SELECT ${COLUMNS} FROM short_urls WHERE namespace = ? AND id = ?`),
    list: db.prepare(`SELECT ${COLUMNS} FROM short_urls WHERE namespace = ? ORDER BY created_at, id`),
    update: db.prepare(
      `UPDATE short_urls SET destination = coalesce(?, destination), permanent = coalesce(?, permanent), updated_at = ?
       WHERE namespace = ? AND id = ? RETURNING ${COLUMNS}`,
    ),
    delete: db.prepare('DELETE FROM short_urls WHERE namespace = ? AND id = ?'),
    followCounting: db.prepare('UPDATE short_urls SET hit_count = hit_count + 1 WHERE id = ? RETURNING destination, permanent'),
    follow: db.prepare('SELECT destination, permanent FROM short_urls WHERE id = ?'),
    deleteProject: db.prepare('DELETE FROM short_urls WHERE substr(namespace, 1, ?) = ?'),
  };
}

export class SqliteUrlStore implements UrlStore {
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(db: SqliteDatabase) {
    migrate(db, 'urls', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  async insert(namespace: string, url: NewShortUrl): Promise<boolean> {
    const result = this.statements.insert.run(url.id, namespace, url.destination, url.permanent ? 1 : 0, url.createdAt, url.createdAt);
    return result.changes === 1;
  }

  async get(namespace: string, id: string): Promise<ShortUrlRecord | undefined> {
    const row = this.statements.get.get(namespace, id) as Row | undefined;
    return row && recordFromRow(row);
  }

  async list(namespace: string): Promise<ShortUrlRecord[]> {
    return (this.statements.list.all(namespace) as Row[]).map(recordFromRow);
  }

  async update(namespace: string, id: string, changes: ShortUrlChanges): Promise<ShortUrlRecord | undefined> {
    const permanent = changes.permanent === undefined ? null : changes.permanent ? 1 : 0;
    const row = this.statements.update.get(changes.destination ?? null, permanent, changes.updatedAt, namespace, id) as Row | undefined;
    return row && recordFromRow(row);
  }

  async delete(namespace: string, id: string): Promise<boolean> {
    return this.statements.delete.run(namespace, id).changes === 1;
  }

  async follow(id: string, countHit: boolean): Promise<RedirectTarget | undefined> {
    const statement = countHit ? this.statements.followCounting : this.statements.follow;
    const row = statement.get(id) as { destination: string; permanent: number } | undefined;
    return row && { destination: row.destination, permanent: row.permanent === 1 };
  }

  async deleteProject(projectId: string): Promise<number> {
    const prefix = `${projectId}/`;
    return this.statements.deleteProject.run(prefix.length, prefix).changes;
  }
}
