/**
 * @module store/control
 * The port for Alto's control state: accounts, projects, API keys and the environments acted in. The platform layer speaks
 * only to this interface; `store/sqlite` implements it for one machine, and `store/postgres` for
 * several processes sharing one database; both pass `control.contract.ts`.
 */

export type KeyRole = 'admin' | 'owner' | 'project';
export type KeyStatus = 'active' | 'blocked' | 'revoked';

export interface AccountRecord {
  id: string;
  email: string | null;
  passwordHash: string | null;
  emailVerified: boolean;
  createdAt: number;
}

export interface ProjectRecord {
  id: string;
  accountId: string;
  name: string;
  createdAt: number;
}

export interface KeyRecord {
  id: string;
  accountId: string;
  projectId: string;
  environment: string;
  /** Service names the key may call, or `*` for all of them. */
  scopes: string[];
  description: string;
  /** `admin` manages the whole instance, `owner` one account, `project` only calls services. */
  role: KeyRole;
  status: KeyStatus;
  /** The first characters of the key, shown in listings so people can tell keys apart. */
  prefix: string;
  createdAt: number;
}

/** A key found by its hash, with the project it belongs to. */
export interface ResolvedKey extends KeyRecord {
  projectName: string;
}

export interface ControlStore {
  readonly kind: string;
  createAccount(account: AccountRecord): Promise<void>;
  getAccount(id: string): Promise<AccountRecord | undefined>;
  findAccountByEmail(email: string): Promise<AccountRecord | undefined>;
  markEmailVerified(accountId: string): Promise<void>;

  /** Fails with a `conflict` AltoError when the account already has a project of that name. */
  createProject(project: ProjectRecord): Promise<void>;
  findProject(accountId: string, name: string): Promise<ProjectRecord | undefined>;
  /** Projects of one account, or of every account when `accountId` is undefined. */
  listProjects(accountId: string | undefined): Promise<ProjectRecord[]>;
  /** Deletes the project, every key that belongs to it and its recorded environments, in one transaction. */
  deleteProject(projectId: string): Promise<void>;
  /**
   * Records that the project has `environment` (an admin or owner key acted in it with
   * X-Alto-Environment, or an import brought it), so exports and the console find the data there
   * though no key, app or function belongs to it. Recording one already there changes nothing.
   */
  noteEnvironment(projectId: string, environment: string): Promise<void>;
  /** The environments recorded for the project, sorted by name. */
  listEnvironments(projectId: string): Promise<string[]>;

  insertKey(key: KeyRecord, hash: string): Promise<void>;
  findKeyByHash(hash: string): Promise<ResolvedKey | undefined>;
  getKey(id: string): Promise<ResolvedKey | undefined>;
  /** Keys of one project, newest first, without their hashes. */
  listKeys(projectId: string): Promise<KeyRecord[]>;
  setKeyStatus(id: string, status: KeyStatus): Promise<void>;
  /**
   * A number that changes whenever a key's status changes or keys go with their project, through
   * this handle or any other on the same store (another process): the key cache in
   * platform/tenancy drops what it holds when it sees a new one. Cheap enough for every call: one
   * no query: another handle's change arrives as a notification (LISTEN/NOTIFY on PostgreSQL; a
   * file beside the SQLite database that writers rewrite, watched with inotify). A change made
   * through this handle shows before its promise resolves; one made elsewhere as soon as its
   * notification arrives (on PostgreSQL, a writer waits for its own before it returns).
   */
  keyGeneration(): number;

  /** A small named value (instance settings such as the node id). */
  getSetting(name: string): Promise<string | undefined>;
  setSetting(name: string, value: string): Promise<void>;
  /**
   * Records `value` under `name` unless a value is there already, and returns the recorded one:
   * of several processes starting together, the first one's value wins and all of them see it.
   */
  claimSetting(name: string, value: string): Promise<string>;
  /**
   * Runs `work` holding the lock `name`, which every handle on this store respects (every process
   * sharing the PostgreSQL database or the SQLite file): of several callers, one works at a time
   * and the others wait. For short steps that read then write, such as creating the admin account.
   */
  exclusively<T>(name: string, work: () => Promise<T>): Promise<T>;

  close(): Promise<void>;
}
