/**
 * Runs the cron store contract against every adapter, each opened twice on the same data as two
 * processes would: SQLite (a temporary file) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runCronStoreContract } from './contract.js';
import { PostgresCronStore } from './postgres.js';
import { SqliteCronStore } from './sqlite.js';

runCronStoreContract('sqlite', async () => twoSqliteStores('cron', (db) => new SqliteCronStore(db)));
runCronStoreContract('postgres', () => twoPostgresStores('cron', (pool) => PostgresCronStore.open(pool)));
