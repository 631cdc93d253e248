/**
 * @module store/functions/port
 * The functions storage port: per project and name, what Alto remembers about a function (where
 * its code came from, its entrypoint and env_vars, the image of the last good build and that
 * build's log, the project key it calls Alto with, the secrets named at deploy) and the name of
 * the archive of its source in the objects port. A function runs as the app of the same name;
 * this record is what marks that app as a function.
 *
 * The key's secret is kept as it is given: the manager seals it with the master key first
 * (`keySecretField` is where), so no adapter holds it in plain text. Names are unique per
 * project across every process sharing the store: `insert` answers false rather than a second
 * function of a name. Adapters: `sqlite.ts` (embedded) and `postgres.ts` (`--store postgres://`).
 */

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
  /** That key's secret: sealed by the manager before it reaches a store (plain only in records written before sealing). */
  keySecret: string;
  /** The environment of the key that deployed it: its key's and its secrets'. */
  environment: string;
  /** The secrets named at deploy, injected as env vars (names only). */
  secrets: string[];
  /** The object (in the functions' namespace of the objects port) holding the source that built `image`; '' when none is kept. */
  sourceArchive: string;
  createdAt: number;
  updatedAt: number;
}

/** Where a function's key secret is sealed: its row, so a sealed key copied to another row does not open. */
export function keySecretField(id: string): string[] {
  return ['functions.key_secret', id];
}

export interface FunctionStore {
  readonly backend: 'sqlite' | 'postgres';
  /** Stores a new function; false, writing nothing, when its project's environment has a function of that name already. */
  insert(record: FunctionRecord): Promise<boolean>;
  /** Replaces the function `record.id` but for its id, project, name and creation time; false when it is gone. */
  update(record: FunctionRecord): Promise<boolean>;
  find(projectId: string, environment: string, name: string): Promise<FunctionRecord | undefined>;
  get(id: string): Promise<FunctionRecord | undefined>;
  /** The functions of the project's environment (or, without one, of all its environments) by name (in byte order). */
  listOfProject(projectId: string, environment?: string): Promise<FunctionRecord[]>;
  /** Records the log of a build that failed, leaving the rest as it is. */
  setBuildLog(id: string, log: string): Promise<void>;
  /** False when there was no such function. */
  delete(id: string): Promise<boolean>;
  deleteProject(projectId: string): Promise<void>;
  /**
   * Offers every stored key secret to `rewrite`; where it answers a value, that value replaces
   * the secret unless the secret changed meanwhile. Returns how many were replaced (the manager
   * seals the keys written before sealing this way).
   */
  rewriteKeySecrets(rewrite: (id: string, stored: string) => string | undefined): Promise<number>;
}
