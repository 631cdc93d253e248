/**
 * @module store/postgres/test-database
 * A PostgreSQL database of its own for one test file or benchmark, on the server named by
 * ALTO_TEST_POSTGRES_URL (`. scripts/test-services.sh` starts one on loopback): created empty,
 * dropped by `drop()` (forced only when a connection was left open).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  /** The connection URL of the new database. */
  url: string;
  /** Its name, `alto_test_<prefix>_<random>`. */
  name: string;
  drop(): Promise<void>;
}

export function testPostgresUrl(): string {
  const adminUrl = process.env.ALTO_TEST_POSTGRES_URL;
  if (!adminUrl) {
    throw new Error('ALTO_TEST_POSTGRES_URL is not set: run `. scripts/test-services.sh` first to start the test PostgreSQL');
  }
  return adminUrl;
}

export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const adminUrl = testPostgresUrl();
  const name = `alto_test_${prefix}_${randomBytes(6).toString('hex')}`;
  await withAdmin(adminUrl, (admin) => admin.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    // A plain DROP first: forcing it would cut connections a test still closes in the background
    // (their errors then surface as uncaught). Forced only when something was left connected.
    drop: () =>
      withAdmin(adminUrl, async (admin) => {
        try {
          await admin.query(`DROP DATABASE IF EXISTS ${name}`);
        } catch (error) {
          if ((error as { code?: string }).code !== '55006') throw error; // object_in_use
          await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        }
      }),
  };
}

async function withAdmin(adminUrl: string, run: (admin: pg.Client) => Promise<unknown>): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await run(admin);
  } finally {
    await admin.end();
  }
}
