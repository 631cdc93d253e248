/**
 * @module compute/functions/records
 * What Alto remembers about functions, in the embedded SQLite database beside the apps: per
 * project and name, where the code came from (inline source, uploaded files, or repository,
 * branch and subfolder), the entrypoint, env_vars, the image of the last good build and that
 * build's log, and the project key it calls Alto with (`ALTO_KEY`: its id, to revoke it on
 * Delete, and its secret, to run the next version with; the secret is also in the app's env, so
 * this keeps nothing the project's apps cannot read already). A function runs as the app of the
 * same name; this record is what marks that app as a function.
 */
import type { SecretCipher } from '../../kit/master-key.js';
import { migrate, type SqliteDatabase } from '../../store/sqlite/database.js';

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
];

export interface FunctionRecord {
  id: string;
  projectId: string;
  name: string;
  runtime: string;
  /** The export called with the JSON body; empty for a default-export (Request -> Response) handler. */
  entrypoint: string;
  sourceKind: 'inline' | 'files' | 'repo';
  /** Inline source (M3O's `source`); empty for the other kinds. */
  source: string;
  repo: string;
  branch: string;
  subfolder: string;
  envVars: Record<string, string>;
  /** The image of the version that serves (`<repository>@sha256:...`). */
  image: string;
  /** The log of the last build, good or failed. */
  buildLog: string;
  /** The project key made for the function at deploy (`ALTO_KEY`); '' for functions deployed before keys. */
  keyId: string;
  keySecret: string;
  /** The environment of the key that deployed it: its key's and its secrets'. */
  environment: string;
  /** The secrets named at deploy, injected as env vars (names only). */
  secrets: string[];
  createdAt: number;
  updatedAt: number;
}

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
  created_at: number;
  updated_at: number;
}

/** Where a function's key is sealed: its row, so a sealed key copied to another row does not open. */
function keyField(id: string): string[] {
  return ['functions.key_secret', id];
}

function recordOf(row: Row, cipher: SecretCipher | undefined): FunctionRecord {
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
    // A key written before sealing comes back as it is (and is sealed at the next save).
    keySecret: cipher && row.key_secret ? cipher.openText(row.key_secret, keyField(row.id)) : row.key_secret,
    environment: row.environment,
    secrets: JSON.parse(row.secret_names ?? '[]') as string[],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class FunctionRecords {
  /** `cipher` seals each function's own API key at rest; without one it is kept as given. */
  constructor(
    private readonly db: SqliteDatabase,
    private readonly cipher?: SecretCipher,
  ) {
    migrate(db, 'compute.functions', MIGRATIONS);
  }

  find(projectId: string, name: string): FunctionRecord | undefined {
    const row = this.db.prepare('SELECT * FROM functions WHERE project_id = ? AND name = ?').get(projectId, name) as Row | undefined;
    return row ? recordOf(row, this.cipher) : undefined;
  }

  get(id: string): FunctionRecord | undefined {
    const row = this.db.prepare('SELECT * FROM functions WHERE id = ?').get(id) as Row | undefined;
    return row ? recordOf(row, this.cipher) : undefined;
  }

  listOfProject(projectId: string): FunctionRecord[] {
    return (this.db.prepare('SELECT * FROM functions WHERE project_id = ? ORDER BY name').all(projectId) as Row[]).map((row) => recordOf(row, this.cipher));
  }

  save(record: FunctionRecord): void {
    this.db
      .prepare(
        `INSERT INTO functions (id, project_id, name, runtime, entrypoint, source_kind, source, repo, branch, subfolder, env_vars, image, build_log, key_id, key_secret, environment, secret_names, created_at, updated_at)
         VALUES (@id, @projectId, @name, @runtime, @entrypoint, @sourceKind, @source, @repo, @branch, @subfolder, @envVars, @image, @buildLog, @keyId, @keySecret, @environment, @secretNames, @createdAt, @updatedAt)
         ON CONFLICT (id) DO UPDATE SET runtime = @runtime, entrypoint = @entrypoint, source_kind = @sourceKind, source = @source, repo = @repo, branch = @branch,
           subfolder = @subfolder, env_vars = @envVars, image = @image, build_log = @buildLog, key_id = @keyId, key_secret = @keySecret, environment = @environment, secret_names = @secretNames,
           updated_at = @updatedAt`,
      )
      .run({
        ...record,
        keySecret: this.cipher && record.keySecret ? this.cipher.sealText(record.keySecret, keyField(record.id)) : record.keySecret,
        envVars: JSON.stringify(record.envVars),
        secretNames: JSON.stringify(record.secrets ?? []),
      });
  }

  setBuildLog(id: string, log: string): void {
    this.db.prepare('UPDATE functions SET build_log = ? WHERE id = ?').run(log, id);
  }

  remove(id: string): void {
    this.db.prepare('DELETE FROM functions WHERE id = ?').run(id);
  }

  removeProject(projectId: string): void {
    this.db.prepare('DELETE FROM functions WHERE project_id = ?').run(projectId);
  }
}
