/**
 * Runs the registry catalog contract against every adapter, each opened twice on the same data
 * as two nodes would: SQLite (a temporary file; through the image records store that owns its
 * tables) and PostgreSQL (a database of its own, created from ALTO_TEST_POSTGRES_URL and dropped
 * at the end).
 */
import { SqliteImageRecordStore } from '../images/sqlite.js';
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runRegistryCatalogContract } from './contract.js';
import { PostgresRegistryCatalog } from './postgres.js';
import { SqliteRegistryCatalog } from './sqlite.js';

runRegistryCatalogContract('sqlite', async () => twoSqliteStores('registry', (db) => new SqliteRegistryCatalog(new SqliteImageRecordStore(db))));
runRegistryCatalogContract('postgres', () => twoPostgresStores('registry', (pool) => PostgresRegistryCatalog.open(pool)));
