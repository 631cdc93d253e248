/**
 * @module store/postgres/transaction
 * Runs a function in one PostgreSQL transaction on one pooled client: committed when it returns,
 * rolled back when it throws, the client released either way.
 */
import type pg from 'pg';

export async function inTransaction<T>(pool: pg.Pool, run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await run(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** The SQLSTATE of a PostgreSQL error (`23505` is a unique violation), if it is one. */
export function postgresErrorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null ? (error as { code?: string }).code : undefined;
}

/**
 * Whether PostgreSQL refused text a client sent because it cannot hold it: a NUL character
 * (`22021` in a text column, `22P05` in jsonb) or half of a surrogate pair (`22P02` in jsonb).
 * SQLite keeps both; a request that reaches PostgreSQL with them is the caller's to fix.
 */
export function isTextPostgresCannotHold(error: unknown): boolean {
  const code = postgresErrorCode(error);
  if (code === '22021' || code === '22P05') return true;
  return code === '22P02' && /surrogate/i.test(String((error as { detail?: unknown }).detail ?? ''));
}
