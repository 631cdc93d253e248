/**
 * @module store/leader/port
 * The singleton port: a named role (a sweep, a renewal) that one process of a cloud holds at a
 * time, and that moves to another process when its holder dies. On PostgreSQL the role is a
 * session advisory lock on a connection of its own, so PostgreSQL frees it the moment the
 * holder's session ends; on SQLite it is a lease row the holder renews, so it moves once the
 * lease runs out (processes sharing one data folder each see it). Adapters: `sqlite.ts` and
 * `postgres.ts`; `singleton.ts` runs a periodic job on whichever process holds its role.
 */

export interface SingletonLock {
  readonly backend: 'sqlite' | 'postgres';
  /**
   * Takes the role `name` if no live process holds it; true when this handle holds it now
   * (also when it already did: asking again checks, and on SQLite renews, the hold).
   */
  tryHold(name: string): Promise<boolean>;
  /** Whether this handle still holds `name`, as the store sees it now. */
  holds(name: string): Promise<boolean>;
  /** Gives `name` up, so another process takes it at once. */
  release(name: string): Promise<void>;
  /** Gives up every role and closes what the handle opened. */
  close(): Promise<void>;
}
