/**
 * @module store/leader/postgres
 * Singletons on PostgreSQL: each role is a session-level advisory lock
 * (`pg_try_advisory_lock`) taken on one connection of this handle's own, never a pooled one, so
 * the lock lives exactly as long as that session. When the holder dies, or its connection
 * breaks, PostgreSQL ends the session and frees the lock, and the next process to ask takes it.
 * The lock key is the first 64 bits of SHA-256 of the role's name. A hold is checked with a
 * round trip on the session before it is trusted, so a holder whose connection broke knows it
 * before running its job again; a holder cut off from the server (not dead) can still overlap
 * a new holder until its TCP keepalive notices, so jobs run this way must stay harmless if run
 * twice.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { SingletonLock } from './port.js';

/** The advisory lock key of a role, as a decimal BIGINT. */
export function advisoryKey(name: string): string {
  return createHash('sha256').update(`alto-singleton:${name}`).digest().readBigInt64BE(0).toString();
}

export interface PostgresSingletonOptions {
  /** Shown in pg_stat_activity as the session's application_name. */
  applicationName?: string;
}

export class PostgresSingletonLock implements SingletonLock {
  readonly backend = 'postgres';
  private session: Promise<pg.Client> | undefined;
  /** Roles held on the current session; emptied when the session ends. */
  private readonly held = new Set<string>();
  private closed = false;

  constructor(
    private readonly connectionString: string,
    private readonly options: PostgresSingletonOptions = {},
  ) {}

  /** The session the locks live on, opened when first needed and again after it ended. */
  private connect(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(new Error('this singleton handle is closed'));
    if (!this.session) {
      const client = new pg.Client({
        connectionString: this.connectionString,
        keepAlive: true,
        application_name: this.options.applicationName ?? 'alto-singletons',
      });
      const ended = () => {
        if (this.session === opening) this.session = undefined;
        this.held.clear();
      };
      client.on('error', ended);
      client.on('end', ended);
      const opening: Promise<pg.Client> = client.connect().then(
        () => client,
        (error: unknown) => {
          ended();
          throw error;
        },
      );
      this.session = opening;
    }
    return this.session;
  }

  /** True when the session answers; a broken one is dropped (and its holds with it). */
  private async alive(client: pg.Client): Promise<boolean> {
    try {
      await client.query('SELECT 1');
      return true;
    } catch {
      this.held.clear();
      this.session = undefined;
      client.end().catch(() => undefined);
      return false;
    }
  }

  async tryHold(name: string): Promise<boolean> {
    const client = await this.connect();
    if (this.held.has(name)) return this.alive(client);
    const { rows } = await client.query<{ held: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS held', [advisoryKey(name)]);
    if (rows[0].held) this.held.add(name);
    return rows[0].held;
  }

  async holds(name: string): Promise<boolean> {
    if (!this.held.has(name) || !this.session) return false;
    return this.alive(await this.session);
  }

  async release(name: string): Promise<void> {
    if (!this.held.delete(name) || !this.session) return;
    const client = await this.session;
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [advisoryKey(name)]).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    const session = this.session;
    this.session = undefined;
    this.held.clear();
    if (!session) return;
    // Ending the session frees every advisory lock it holds.
    await session.then((client) => client.end()).catch(() => undefined);
  }
}
