/**
 * Runs the apps store contract against every adapter, each opened twice on the same data as two
 * processes would: SQLite (a temporary file) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runAppStoreContract } from './contract.js';
import { PostgresAppStore } from './postgres.js';
import { SqliteAppStore } from './sqlite.js';

runAppStoreContract('sqlite', async () => twoSqliteStores('apps', (db) => new SqliteAppStore(db)));
runAppStoreContract('postgres', () => twoPostgresStores('apps', (pool) => PostgresAppStore.open(pool)));
