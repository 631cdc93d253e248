/**
 * Runs the HTTPS names store contract against every adapter, each opened twice on the same data
 * as two nodes would: SQLite (a temporary file) and PostgreSQL (a database of its own, created
 * from ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runDomainStoreContract } from './contract.js';
import { PostgresDomainStore } from './postgres.js';
import { SqliteDomainStore } from './sqlite.js';

runDomainStoreContract('sqlite', async () => twoSqliteStores('domains', (db) => new SqliteDomainStore(db)));
runDomainStoreContract('postgres', () => twoPostgresStores('domains', (pool) => PostgresDomainStore.open(pool)));
