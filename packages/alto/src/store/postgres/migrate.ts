/**
 * @module store/postgres/migrate
 * Numbered migrations for the PostgreSQL adapters, the counterpart of `sqlite/database.ts`'s
 * `migrate`: each module's migrations not yet recorded are applied in one transaction with
 * their bookkeeping rows, under an advisory lock on the module's name, so several Alto
 * processes starting together on one database apply each migration exactly once.
 */
import type pg from 'pg';

export async function migratePostgres(pool: pg.Pool, module: string, migrations: string[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`alto.migrations.${module}`]);
    await client.query(`CREATE TABLE IF NOT EXISTS alto_migrations (
      module TEXT NOT NULL, version INTEGER NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (module, version))`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM alto_migrations WHERE module = $1', [module]);
    const applied = new Set(rows.map((row) => row.version));
    for (const [version, sql] of migrations.entries()) {
      if (applied.has(version)) continue;
      await client.query(sql);
      await client.query('INSERT INTO alto_migrations (module, version, applied_at) VALUES ($1, $2, $3)', [module, version, Date.now()]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
