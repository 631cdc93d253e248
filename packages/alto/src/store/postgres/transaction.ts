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
