/**
 * @module store/leader/sqlite
 * Singletons on the embedded store: a lease row per role in the SQLite file, which the holder
 * renews every third of its length while it lives. One process alone always holds every role;
 * processes sharing one data folder take turns, and a role moves once its dead holder's lease
 * runs out. Taking a lease is one conditional upsert, so two processes never both win it.
 */
import { randomBytes } from 'node:crypto';
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { SingletonLock } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE singleton_leases (
     name TEXT PRIMARY KEY,
     holder TEXT NOT NULL,
     expires_at INTEGER NOT NULL) WITHOUT ROWID;`,
];

function prepareStatements(db: SqliteDatabase) {
  return {
    take: db.prepare(
      `INSERT INTO singleton_leases (name, holder, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE singleton_leases.holder = excluded.holder OR singleton_leases.expires_at <= ?`,
    ),
    holds: db.prepare('SELECT 1 FROM singleton_leases WHERE name = ? AND holder = ? AND expires_at > ?'),
    release: db.prepare('DELETE FROM singleton_leases WHERE name = ? AND holder = ?'),
  };
}

/** How long a role stays held without renewal: how long it takes to move after its holder died. */
export const SQLITE_LEASE_MS = 10_000;

export interface SqliteSingletonOptions {
  leaseMs?: number;
  now?: () => number;
}

export class SqliteSingletonLock implements SingletonLock {
  readonly backend = 'sqlite';
  private readonly holder = randomBytes(12).toString('hex');
  private readonly held = new Set<string>();
  private readonly leaseMs: number;
  private readonly now: () => number;
  private readonly renewal: NodeJS.Timeout;
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(
    private readonly db: SqliteDatabase,
    options: SqliteSingletonOptions = {},
  ) {
    migrate(db, 'singletons', MIGRATIONS);
    this.leaseMs = options.leaseMs ?? SQLITE_LEASE_MS;
    this.now = options.now ?? Date.now;
    this.statements = prepareStatements(db);
    this.renewal = setInterval(() => this.renew(), Math.max(1, Math.floor(this.leaseMs / 3)));
    this.renewal.unref();
  }

  /** Keeps this process's roles while it lives; a role it lost (or a closed file) is dropped. */
  private renew(): void {
    for (const name of this.held) {
      try {
        if (!this.take(name)) this.held.delete(name);
      } catch {
        this.held.delete(name);
      }
    }
  }

  private take(name: string): boolean {
    const now = this.now();
    return this.statements.take.run(name, this.holder, now + this.leaseMs, now).changes === 1;
  }

  async tryHold(name: string): Promise<boolean> {
    const taken = this.take(name);
    if (taken) this.held.add(name);
    else this.held.delete(name);
    return taken;
  }

  async holds(name: string): Promise<boolean> {
    try {
      return this.held.has(name) && this.statements.holds.get(name, this.holder, this.now()) !== undefined;
    } catch {
      return false;
    }
  }

  async release(name: string): Promise<void> {
    if (!this.held.delete(name)) return;
    this.statements.release.run(name, this.holder);
  }

  async close(): Promise<void> {
    clearInterval(this.renewal);
    for (const name of [...this.held]) {
      try {
        await this.release(name);
      } catch {
        // The file is closed already: the lease runs out on its own.
      }
    }
  }
}
