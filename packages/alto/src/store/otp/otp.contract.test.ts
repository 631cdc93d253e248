/**
 * Runs the otp store contract against every adapter, each opened twice on the same data as two
 * processes would: SQLite (a temporary file) and PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end).
 */
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runOtpStoreContract } from './contract.js';
import { PostgresOtpStore } from './postgres.js';
import { SqliteOtpStore } from './sqlite.js';

runOtpStoreContract('sqlite', async () => twoSqliteStores('otp', (db) => new SqliteOtpStore(db)));
runOtpStoreContract('postgres', () => twoPostgresStores('otp', (pool) => PostgresOtpStore.open(pool)));
