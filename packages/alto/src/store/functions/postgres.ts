/**
 * @module store/functions/postgres
 * The PostgreSQL adapter of the functions port, for Alto running with `--store postgres://`:
 * every process of one cloud sees the same functions, and a name is taken once across them (the
 * unique key on project and name). Columns are named as in the SQLite table, so `alto migrate`
 * copies rows as they are; env_vars and the secrets' names are JSONB, names sort in the "C"
 * collation as on SQLite, times are BIGINT milliseconds.
 */
import type pg from 'pg';
import { migratePostgres } from '../postgres/migrate.js';
import { inTransaction } from '../postgres/transaction.js';
import type { FunctionRecord, FunctionStore } from './port.js';

/** Applied in order, each once; see `PostgresFunctionStore.open`. */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alto_functions (
     id TEXT PRIMARY KEY,
     project_id TEXT NOT NULL,
     name TEXT COLLATE "C" NOT NULL,
     runtime TEXT NOT NULL,
     entrypoint TEXT NOT NULL,
     source_kind TEXT NOT NULL,
     source TEXT NOT NULL,
     repo TEXT NOT NULL,
     branch TEXT NOT NULL,
     subfolder TEXT NOT NULL,
     env_vars JSONB NOT NULL,
     image TEXT NOT NULL,
     build_log TEXT NOT NULL,
     key_id TEXT NOT NULL,
     key_secret TEXT NOT NULL,
     environment TEXT NOT NULL,
     secret_names JSONB NOT NULL,
     source_archive TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     UNIQUE (project_id, name));`,
  // Issue 27: a function's name is unique per project and environment (those without one: the default, 'dev').
  `UPDATE alto_functions SET environment = 'dev' WHERE environment = '';
   ALTER TABLE alto_functions DROP CONSTRAINT IF EXISTS alto_functions_project_id_name_key;
   ALTER TABLE alto_functions ADD CONSTRAINT alto_functions_name_in_environment UNIQUE (project_id, environment, name);`,
];

/** BIGINT arrives as a string from pg; JSONB as its value. */
interface Row {
  id: string;
  project_id: string;
  name: string;
  runtime: string;
  entrypoint: string;
  source_kind: FunctionRecord['sourceKind'];
  source: string;
  repo: string;
  branch: string;
  subfolder: string;
  env_vars: Record<string, string>;
  image: string;
  build_log: string;
  key_id: string;
  key_secret: string;
  environment: string;
  secret_names: string[];
  source_archive: string;
  created_at: string;
  updated_at: string;
}

const COLUMNS =
  'id, project_id, name, runtime, entrypoint, source_kind, source, repo, branch, subfolder, env_vars, image, build_log, ' +
  'key_id, key_secret, environment, secret_names, source_archive, created_at, updated_at';
const COLUMN_LIST = COLUMNS.split(', ');
/** What an update writes: all but the identity and the creation time. */
const UPDATED_COLUMNS = COLUMN_LIST.filter((column) => !['id', 'project_id', 'name', 'created_at'].includes(column));

function recordFromRow(row: Row): FunctionRecord {
  return {
    id: row.id,
    projectId: row.project_id,
    name: row.name,
    runtime: row.runtime,
    entrypoint: row.entrypoint,
    sourceKind: row.source_kind,
    source: row.source,
    repo: row.repo,
    branch: row.branch,
    subfolder: row.subfolder,
    envVars: row.env_vars,
    image: row.image,
    buildLog: row.build_log,
    keyId: row.key_id,
    keySecret: row.key_secret,
    environment: row.environment,
    secrets: row.secret_names,
    sourceArchive: row.source_archive,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** A record's values in COLUMNS order. */
function valuesOf(record: FunctionRecord): unknown[] {
  return [
    record.id,
    record.projectId,
    record.name,
    record.runtime,
    record.entrypoint,
    record.sourceKind,
    record.source,
    record.repo,
    record.branch,
    record.subfolder,
    JSON.stringify(record.envVars),
    record.image,
    record.buildLog,
    record.keyId,
    record.keySecret,
    record.environment,
    JSON.stringify(record.secrets),
    record.sourceArchive,
    record.createdAt,
    record.updatedAt,
  ];
}

export class PostgresFunctionStore implements FunctionStore {
  readonly backend = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Applies the migrations (once, even with several processes starting together). */
  static async open(pool: pg.Pool): Promise<PostgresFunctionStore> {
    await migratePostgres(pool, 'functions', MIGRATIONS);
    return new PostgresFunctionStore(pool);
  }

  async insert(record: FunctionRecord): Promise<boolean> {
    const values = valuesOf(record);
    const result = await this.pool.query(
      `INSERT INTO alto_functions (${COLUMNS}) VALUES (${values.map((_, index) => `$${index + 1}`).join(', ')}) ON CONFLICT DO NOTHING`,
      values,
    );
    return result.rowCount === 1;
  }

  async update(record: FunctionRecord): Promise<boolean> {
    // Every column but the identity (id, project, name) and the creation time, from valuesOf.
    const values = valuesOf(record);
    const kept = UPDATED_COLUMNS.map((column) => values[COLUMN_LIST.indexOf(column)]);
    const result = await this.pool.query(
      `UPDATE alto_functions SET (${UPDATED_COLUMNS.join(', ')}) = ROW(${kept.map((_, index) => `$${index + 2}`).join(', ')}) WHERE id = $1`,
      [record.id, ...kept],
    );
    return result.rowCount === 1;
  }

  async find(projectId: string, environment: string, name: string): Promise<FunctionRecord | undefined> {
    const result = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM alto_functions WHERE project_id = $1 AND environment = $2 AND name = $3`, [projectId, environment, name]);
    return result.rows[0] && recordFromRow(result.rows[0]);
  }

  async get(id: string): Promise<FunctionRecord | undefined> {
    const result = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM alto_functions WHERE id = $1`, [id]);
    return result.rows[0] && recordFromRow(result.rows[0]);
  }

  async listOfProject(projectId: string, environment?: string): Promise<FunctionRecord[]> {
    const result =
      environment === undefined
        ? await this.pool.query<Row>(`SELECT ${COLUMNS} FROM alto_functions WHERE project_id = $1 ORDER BY name, environment`, [projectId])
        : await this.pool.query<Row>(`SELECT ${COLUMNS} FROM alto_functions WHERE project_id = $1 AND environment = $2 ORDER BY name`, [projectId, environment]);
    return result.rows.map(recordFromRow);
  }

  async setBuildLog(id: string, log: string): Promise<void> {
    await this.pool.query('UPDATE alto_functions SET build_log = $1 WHERE id = $2', [log, id]);
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM alto_functions WHERE id = $1', [id]);
    return result.rowCount === 1;
  }

  async deleteProject(projectId: string): Promise<void> {
    await this.pool.query('DELETE FROM alto_functions WHERE project_id = $1', [projectId]);
  }

  async rewriteKeySecrets(rewrite: (id: string, stored: string) => string | undefined): Promise<number> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ id: string; key_secret: string }>("SELECT id, key_secret FROM alto_functions WHERE key_secret <> ''");
      let replaced = 0;
      for (const row of rows) {
        const replacement = rewrite(row.id, row.key_secret);
        if (replacement === undefined) continue;
        const result = await client.query('UPDATE alto_functions SET key_secret = $1 WHERE id = $2 AND key_secret = $3', [replacement, row.id, row.key_secret]);
        replaced += result.rowCount ?? 0;
      }
      return replaced;
    });
  }
}
