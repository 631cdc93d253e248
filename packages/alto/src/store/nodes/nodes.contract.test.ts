/**
 * Runs the nodes store contract against every adapter, each opened twice on the same data as two
 * processes would: SQLite (a temporary file) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runNodesStoreContract } from './contract.js';
import { PostgresNodeStore } from './postgres.js';
import { SqliteNodeStore } from './sqlite.js';

runNodesStoreContract('sqlite', async () => twoSqliteStores('nodes', (db) => new SqliteNodeStore(db)));
runNodesStoreContract('postgres', () => twoPostgresStores('nodes', (pool) => PostgresNodeStore.open(pool)));
