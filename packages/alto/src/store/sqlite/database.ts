/**
 * @module store/sqlite/database
 * Opens an SQLite database the way every embedded adapter wants it: WAL journal (readers never
 * block the writer), a busy timeout instead of SQLITE_BUSY errors when several processes share
 * the file, foreign keys on, and numbered migrations applied once inside a transaction.
 */
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

export type SqliteDatabase = Database.Database;

/**
 * Opens (or creates) the database. A file on disk and its folder are the owner's alone (0600 and
 * 0700): they hold every project's data. SQLite creates the -wal and -shm files with the
 * database file's mode, and the existing ones are set here too.
 */
export function openSqlite(path: string): SqliteDatabase {
  if (path !== ':memory:') {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const folder = statSync(dirname(path));
    // Never a shared folder (sticky, like /tmp) or one someone else owns.
    if ((folder.mode & 0o1000) === 0 && folder.uid === process.getuid?.()) chmodSync(dirname(path), 0o700);
    closeSync(openSync(path, 'a', 0o600));
    for (const file of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(file)) chmodSync(file, 0o600);
  }
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  return db;
}

/**
 * Applies `migrations[i]` for every i not yet recorded for `module`. Each migration runs in its
 * own transaction together with its bookkeeping row, so a crash never leaves one half applied.
 */
export function migrate(db: SqliteDatabase, module: string, migrations: string[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS alto_migrations (
    module TEXT NOT NULL, version INTEGER NOT NULL, applied_at INTEGER NOT NULL,
    PRIMARY KEY (module, version))`);
  const isApplied = db.prepare('SELECT 1 FROM alto_migrations WHERE module = ? AND version = ?');
  const record = db.prepare('INSERT INTO alto_migrations (module, version, applied_at) VALUES (?, ?, ?)');
  migrations.forEach((sql, version) => {
    // Checked inside an IMMEDIATE transaction: two processes starting together apply it once.
    db.transaction(() => {
      if (isApplied.get(module, version)) return;
      db.exec(sql);
      record.run(module, version, Date.now());
    }).immediate();
  });
}
