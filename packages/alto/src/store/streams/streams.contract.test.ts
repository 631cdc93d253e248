/**
 * Runs the streams store contract against every adapter, each opened twice on the same data as two
 * processes would: SQLite (a temporary file) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runStreamStoreContract } from './contract.js';
import { PostgresStreamStore } from './postgres.js';
import { SqliteStreamStore } from './sqlite.js';

runStreamStoreContract('sqlite', async () => twoSqliteStores('streams', (db) => new SqliteStreamStore(db)));
runStreamStoreContract('postgres', () => twoPostgresStores('streams', (pool) => PostgresStreamStore.open(pool)));
