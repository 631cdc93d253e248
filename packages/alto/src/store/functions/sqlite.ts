/**
 * @module store/functions/sqlite
 * The embedded adapter of the functions port: the `functions` table the functions manager
 * created before it had a port, with its migrations under the same module name, so existing
 * data folders keep their functions. env_vars and the secrets' names are JSON text.
 */
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import type { FunctionRecord, FunctionStore } from './port.js';

const MIGRATIONS = [
  `CREATE TABLE functions (
     id TEXT PRIMARY KEY,
     project_id TEXT NOT NULL,
     name TEXT NOT NULL,
     runtime TEXT NOT NULL,
     entrypoint TEXT NOT NULL,
     source_kind TEXT NOT NULL,
     source TEXT NOT NULL,
     repo TEXT NOT NULL,
     branch TEXT NOT NULL,
     subfolder TEXT NOT NULL,
     env_vars TEXT NOT NULL,
     image TEXT NOT NULL,
     build_log TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     UNIQUE (project_id, name));`,
  // The function's own API key and the environment whose secrets it gets.
  `ALTER TABLE functions ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
   ALTER TABLE functions ADD COLUMN key_secret TEXT NOT NULL DEFAULT '';
   ALTER TABLE functions ADD COLUMN environment TEXT NOT NULL DEFAULT '';`,
  // The secrets named at deploy (a JSON list): the only ones it gets.
  `ALTER TABLE functions ADD COLUMN secret_names TEXT NOT NULL DEFAULT '[]';`,
  // The object holding the source of the serving build, for processes that must build it again.
  `ALTER TABLE functions ADD COLUMN source_archive TEXT NOT NULL DEFAULT '';`,
  // Issue 27: a function belongs to its environment (those without one: the default, 'dev'), and
  // its name is unique per project and environment; SQLite cannot change a UNIQUE constraint, so
  // the table is made again.
  `CREATE TABLE functions_with_environment (
     id TEXT PRIMARY KEY,
     project_id TEXT NOT NULL,
     name TEXT NOT NULL,
     runtime TEXT NOT NULL,
     entrypoint TEXT NOT NULL,
     source_kind TEXT NOT NULL,
     source TEXT NOT NULL,
     repo TEXT NOT NULL,
     branch TEXT NOT NULL,
     subfolder TEXT NOT NULL,
     env_vars TEXT NOT NULL,
     image TEXT NOT NULL,
     build_log TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     key_id TEXT NOT NULL DEFAULT '',
     key_secret TEXT NOT NULL DEFAULT '',
     environment TEXT NOT NULL DEFAULT 'dev',
     secret_names TEXT NOT NULL DEFAULT '[]',
     source_archive TEXT NOT NULL DEFAULT '',
     UNIQUE (project_id, environment, name));
   INSERT INTO functions_with_environment (id, project_id, name, runtime, entrypoint, source_kind, source, repo, branch, subfolder, env_vars, image,
       build_log, created_at, updated_at, key_id, key_secret, environment, secret_names, source_archive)
     SELECT id, project_id, name, runtime, entrypoint, source_kind, source, repo, branch, subfolder, env_vars, image,
       build_log, created_at, updated_at, key_id, key_secret, CASE environment WHEN '' THEN 'dev' ELSE environment END, secret_names, source_archive FROM functions;
   DROP TABLE functions;
   ALTER TABLE functions_with_environment RENAME TO functions;`,
];

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
  env_vars: string;
  image: string;
  build_log: string;
  key_id: string;
  key_secret: string;
  environment: string;
  secret_names: string;
  source_archive: string;
  created_at: number;
  updated_at: number;
}

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
    envVars: JSON.parse(row.env_vars) as Record<string, string>,
    image: row.image,
    buildLog: row.build_log,
    keyId: row.key_id,
    keySecret: row.key_secret,
    environment: row.environment,
    secrets: JSON.parse(row.secret_names) as string[],
    sourceArchive: row.source_archive,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The named parameters of a record's row. */
function parametersOf(record: FunctionRecord) {
  return {
    ...record,
    envVars: JSON.stringify(record.envVars),
    secretNames: JSON.stringify(record.secrets),
  };
}

function prepareStatements(db: SqliteDatabase) {
  return {
    // No conflict target: an id or a (project, name) taken writes nothing.
    insert: db.prepare(
      `INSERT INTO functions (id, project_id, name, runtime, entrypoint, source_kind, source, repo, branch, subfolder, env_vars, image, build_log,
         key_id, key_secret, environment, secret_names, source_archive, created_at, updated_at)
       VALUES (@id, @projectId, @name, @runtime, @entrypoint, @sourceKind, @source, @repo, @branch, @subfolder, @envVars, @image, @buildLog,
         @keyId, @keySecret, @environment, @secretNames, @sourceArchive, @createdAt, @updatedAt)
       ON CONFLICT DO NOTHING`,
    ),
    update: db.prepare(
      `UPDATE functions SET runtime = @runtime, entrypoint = @entrypoint, source_kind = @sourceKind, source = @source, repo = @repo,
         branch = @branch, subfolder = @subfolder, env_vars = @envVars, image = @image, build_log = @buildLog, key_id = @keyId,
         key_secret = @keySecret, environment = @environment, secret_names = @secretNames, source_archive = @sourceArchive,
         updated_at = @updatedAt
       WHERE id = @id`,
    ),
    find: db.prepare('SELECT * FROM functions WHERE project_id = ? AND environment = ? AND name = ?'),
    get: db.prepare('SELECT * FROM functions WHERE id = ?'),
    listOfProject: db.prepare('SELECT * FROM functions WHERE project_id = ? ORDER BY name, environment'),
    listOfEnvironment: db.prepare('SELECT * FROM functions WHERE project_id = ? AND environment = ? ORDER BY name'),
    setBuildLog: db.prepare('UPDATE functions SET build_log = ? WHERE id = ?'),
    delete: db.prepare('DELETE FROM functions WHERE id = ?'),
    deleteProject: db.prepare('DELETE FROM functions WHERE project_id = ?'),
    allKeySecrets: db.prepare("SELECT id, key_secret FROM functions WHERE key_secret <> ''"),
    replaceKeySecret: db.prepare('UPDATE functions SET key_secret = ? WHERE id = ? AND key_secret = ?'),
  };
}

export class SqliteFunctionStore implements FunctionStore {
  readonly backend = 'sqlite';
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    migrate(db, 'compute.functions', MIGRATIONS);
    this.statements = prepareStatements(db);
  }

  async insert(record: FunctionRecord): Promise<boolean> {
    return this.statements.insert.run(parametersOf(record)).changes === 1;
  }

  async update(record: FunctionRecord): Promise<boolean> {
    return this.statements.update.run(parametersOf(record)).changes === 1;
  }

  async find(projectId: string, environment: string, name: string): Promise<FunctionRecord | undefined> {
    const row = this.statements.find.get(projectId, environment, name) as Row | undefined;
    return row && recordFromRow(row);
  }

  async get(id: string): Promise<FunctionRecord | undefined> {
    const row = this.statements.get.get(id) as Row | undefined;
    return row && recordFromRow(row);
  }

  async listOfProject(projectId: string, environment?: string): Promise<FunctionRecord[]> {
    const rows = environment === undefined ? this.statements.listOfProject.all(projectId) : this.statements.listOfEnvironment.all(projectId, environment);
    return (rows as Row[]).map(recordFromRow);
  }

  async setBuildLog(id: string, log: string): Promise<void> {
    this.statements.setBuildLog.run(log, id);
  }

  async delete(id: string): Promise<boolean> {
    return this.statements.delete.run(id).changes === 1;
  }

  async deleteProject(projectId: string): Promise<void> {
    this.statements.deleteProject.run(projectId);
  }

  async rewriteKeySecrets(rewrite: (id: string, stored: string) => string | undefined): Promise<number> {
    return this.db
      .transaction(() => {
        let replaced = 0;
        for (const row of this.statements.allKeySecrets.all() as Array<{ id: string; key_secret: string }>) {
          const replacement = rewrite(row.id, row.key_secret);
          if (replacement !== undefined) replaced += this.statements.replaceKeySecret.run(replacement, row.id, row.key_secret).changes;
        }
        return replaced;
      })
      .immediate();
  }
}
