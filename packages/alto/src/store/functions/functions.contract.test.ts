/**
 * Runs the functions store contract against every adapter, each opened twice on the same data as
 * two processes would: SQLite (a temporary file) and PostgreSQL (a database of its own, created
 * from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runFunctionStoreContract } from './contract.js';
import { PostgresFunctionStore } from './postgres.js';
import { SqliteFunctionStore } from './sqlite.js';

runFunctionStoreContract('sqlite', async () => twoSqliteStores('functions', (db) => new SqliteFunctionStore(db)));
runFunctionStoreContract('postgres', () => twoPostgresStores('functions', (pool) => PostgresFunctionStore.open(pool)));
