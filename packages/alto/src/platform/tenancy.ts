/**
 * @module platform/tenancy
 * Accounts own projects; every API key belongs to one project and environment and carries
 * scopes. Keys are 192 random bits, shown once, stored only as SHA-256 hashes (a fast hash is
 * right for secrets with this much entropy). A key found once is kept in memory by its hash, and
 * dropped the moment the store's key generation moves (a revocation, a block, a deleted project,
 * in this process or another sharing the store), so a revocation takes effect on the very next
 * call everywhere while the calls in between cost no database read.
 *
 * An environment an admin or owner key acts in with X-Alto-Environment is recorded in the store
 * before the call goes on, so the data it writes there is found by exports and the console even
 * when no key, app or function belongs to that environment.
 */
import { createHash, randomUUID } from 'node:crypto';
import { errors } from '../kit/errors.js';
import { randomBase62 } from '../kit/random.js';
import type { ControlStore, KeyRecord, KeyRole, ProjectRecord, ResolvedKey } from '../store/control.js';
import type { Tenant } from './service.js';

export const KEY_PREFIX = 'alto_';
export const DEFAULT_ENVIRONMENT = 'dev';
export const DEFAULT_PROJECT = 'default';
const ADMIN_ACCOUNT_SETTING = 'admin_account_id';
/** Keys kept in memory at most; past it the cache starts again empty. */
const KEY_CACHE_SIZE = 10_000;
/** Environments this process remembers having recorded at most; past it the set starts again empty. */
const RECORDED_ENVIRONMENTS_SIZE = 5_000;

/** Project and environment names: lower-case, digits and dashes, as they appear in host names. */
export const NAME_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const NAME_RULE = 'lower-case letters, digits and dashes, 1 to 63 characters, not starting or ending with a dash';

export function hashKey(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function generateKeySecret(): string {
  return KEY_PREFIX + randomBase62(24);
}

export function namespaceOf(projectId: string, environment: string): string {
  return `${projectId}/${environment}`;
}

/** The project id a namespace belongs to (the inverse of `namespaceOf`'s first half). */
export function projectIdOf(namespace: string): string {
  const slash = namespace.indexOf('/');
  return slash < 0 ? namespace : namespace.slice(0, slash);
}

/** The environment a namespace belongs to (the inverse of `namespaceOf`'s second half; the default one for a bare project id). */
export function environmentOf(namespace: string): string {
  const slash = namespace.indexOf('/');
  return slash < 0 ? DEFAULT_ENVIRONMENT : namespace.slice(slash + 1);
}

export function tenantOf(key: ResolvedKey): Tenant {
  return {
    accountId: key.accountId,
    projectId: key.projectId,
    projectName: key.projectName,
    environment: key.environment,
    keyId: key.id,
    keyPrefix: key.prefix,
    role: key.role,
    scopes: key.scopes,
    namespace: namespaceOf(key.projectId, key.environment),
  };
}

/** The header with which an admin or owner key names the environment of its project it acts in. */
export const ENVIRONMENT_HEADER = 'x-alto-environment';

/**
 * The tenant acting in another environment of its project: an admin or owner key may name any
 * (apps, functions and data are then that environment's); a project key only its own, since a
 * key of one environment must not reach another's.
 */
export function tenantInEnvironment(tenant: Tenant, environment: string): Tenant {
  if (environment === tenant.environment) return tenant;
  assertName('environment', environment);
  if (tenant.role === 'project') {
    throw errors.forbidden(`this key belongs to environment "${tenant.environment}" of its project, not "${environment}": use a key of that environment (or an owner key)`);
  }
  return { ...tenant, environment, namespace: namespaceOf(tenant.projectId, environment) };
}

export interface NewKey {
  projectName: string;
  environment?: string;
  scopes: string[];
  description?: string;
}

export interface GeneratedKey {
  /** The secret, returned once and never stored. */
  secret: string;
  record: KeyRecord;
}

export interface BootstrapResult {
  /** Set when this start generated the admin key: print it once. */
  generatedAdminKey?: string;
  adminAccountId: string;
}

/** A key as the cache keeps it: what `authenticate` answers for it, without a lookup. */
type CachedKey = { status: 'active'; tenant: Tenant } | { status: 'revoked' | 'blocked' };

function tenantOfCached(cached: CachedKey): Tenant {
  if (cached.status === 'active') return cached.tenant;
  throw cached.status === 'revoked'
    ? errors.unauthorized('the API key was revoked')
    : errors.forbidden('the API key is blocked; unblock it with keys/Unblock');
}

export class Tenancy {
  private readonly keys = new Map<string, CachedKey>();
  private keysGeneration = -1;
  /**
   * Hashes of keys found in the store, by key. A key's hash never changes, so this needs no
   * invalidation: a revoked key is still hashed from here, then refused by the cache above.
   * Keys not found are not kept, so guessing keys cannot crowd the real ones out.
   */
  private readonly hashes = new Map<string, string>();
  /**
   * Namespaces (`<projectId>/<env>`) of environments this process recorded in the store, so
   * acting in one again costs a lookup here, not a write. Forgetting one costs only a write that
   * changes nothing; the store keeps them for good.
   */
  private readonly recordedEnvironments = new Set<string>();

  constructor(
    private readonly store: ControlStore,
    /** Names of the services a scope may name. */
    private readonly serviceNames: () => string[],
  ) {}

  /**
   * First start: the operator's account, its `default` project and the admin key. Later starts
   * only make sure `configuredAdminKey` (ALTO_ADMIN_KEY), when given, is an admin key.
   */
  async bootstrap(configuredAdminKey?: string): Promise<BootstrapResult> {
    // Under the store's lock: two processes starting at once on an empty store must not both
    // find no admin account and each create one (or each generate an admin key).
    return this.store.exclusively('bootstrap', () => this.bootstrapAlone(configuredAdminKey));
  }

  private async bootstrapAlone(configuredAdminKey?: string): Promise<BootstrapResult> {
    let adminAccountId = await this.store.getSetting(ADMIN_ACCOUNT_SETTING);
    let project: ProjectRecord | undefined;
    if (!adminAccountId) {
      adminAccountId = randomUUID();
      await this.store.createAccount({
        id: adminAccountId,
        email: null,
        passwordHash: null,
        emailVerified: false,
        createdAt: Date.now(),
      });
      project = await this.createProject(adminAccountId, DEFAULT_PROJECT);
      await this.store.setSetting(ADMIN_ACCOUNT_SETTING, adminAccountId);
    } else {
      project = (await this.store.findProject(adminAccountId, DEFAULT_PROJECT)) ??
        (await this.createProject(adminAccountId, DEFAULT_PROJECT));
    }

    if (configuredAdminKey !== undefined) {
      if (configuredAdminKey.length < 24) {
        throw errors.badRequest('ALTO_ADMIN_KEY must be at least 24 characters long');
      }
      const existing = await this.store.findKeyByHash(hashKey(configuredAdminKey));
      if (!existing) {
        await this.insertKey(configuredAdminKey, adminAccountId, project, 'admin', ['*'], 'admin key (ALTO_ADMIN_KEY)', DEFAULT_ENVIRONMENT, {
          chosenByOperator: true,
        });
      } else if (existing.role !== 'admin' || existing.status !== 'active') {
        throw errors.conflict('ALTO_ADMIN_KEY names a key that is not an active admin key');
      }
      return { adminAccountId };
    }
    const admins = (await this.store.listKeys(project.id)).filter((key) => key.role === 'admin');
    if (admins.length > 0) return { adminAccountId };
    const secret = generateKeySecret();
    await this.insertKey(secret, adminAccountId, project, 'admin', ['*'], 'admin key');
    return { adminAccountId, generatedAdminKey: secret };
  }

  /** The tenant a key stands for, or a 401/403 that says why it cannot be used. */
  async authenticate(secret: string): Promise<Tenant> {
    const known = this.knownTenant(secret);
    if (known) return known;
    const hash = this.hashOf(secret);
    const generation = this.keysGeneration;
    const key = await this.store.findKeyByHash(hash);
    if (!key) throw errors.unauthorized('the API key is not valid');
    const cached: CachedKey = key.status === 'active' ? { status: 'active', tenant: Object.freeze(tenantOf(key)) } : { status: key.status };
    // Kept only if no change to keys was seen while it was looked up: the row may predate it.
    if (this.store.keyGeneration() === generation && this.keysGeneration === generation) {
      if (this.keys.size >= KEY_CACHE_SIZE) this.keys.clear();
      this.keys.set(hash, cached);
      if (this.hashes.size >= KEY_CACHE_SIZE) this.hashes.clear();
      this.hashes.set(secret, hash);
    }
    return tenantOfCached(cached);
  }

  /**
   * The tenant of a key this process already knows, at once (the hot path: no promise, no
   * hashing, no store), or undefined when the store must be asked (`authenticate` does). A key
   * known to be revoked or blocked throws its 401/403 here too.
   */
  knownTenant(secret: string): Tenant | undefined {
    const generation = this.store.keyGeneration();
    if (generation !== this.keysGeneration) {
      this.keys.clear();
      this.keysGeneration = generation;
    }
    const cached = this.keys.get(this.hashOf(secret));
    return cached && tenantOfCached(cached);
  }

  /**
   * The tenant acting in `environment` of its project (the X-Alto-Environment header), as
   * `tenantInEnvironment` allows it. Another environment than the key's is first recorded in the
   * control store (`noteEnvironment`), so what the call writes there is found by exports and the
   * console: at once, with no promise, when this process recorded it already; else a promise that
   * fails, failing the call, when the store cannot record it.
   */
  actInEnvironment(tenant: Tenant, environment: string): Tenant | Promise<Tenant> {
    const acting = tenantInEnvironment(tenant, environment);
    if (acting === tenant || this.recordedEnvironments.has(acting.namespace)) return acting;
    return this.store.noteEnvironment(acting.projectId, acting.environment).then(() => {
      if (this.recordedEnvironments.size >= RECORDED_ENVIRONMENTS_SIZE) this.recordedEnvironments.clear();
      this.recordedEnvironments.add(acting.namespace);
      return acting;
    });
  }

  /** A key's hash, remembered for keys found in the store, so a busy key is hashed once. */
  private hashOf(secret: string): string {
    return this.hashes.get(secret) ?? hashKey(secret);
  }

  async createAccount(email: string, passwordHash: string): Promise<{ accountId: string; project: ProjectRecord }> {
    const accountId = randomUUID();
    await this.store.createAccount({ id: accountId, email, passwordHash, emailVerified: false, createdAt: Date.now() });
    const project = await this.createProject(accountId, DEFAULT_PROJECT);
    return { accountId, project };
  }

  async createProject(accountId: string, name: string): Promise<ProjectRecord> {
    assertName('project', name);
    const project: ProjectRecord = { id: randomUUID(), accountId, name, createdAt: Date.now() };
    await this.store.createProject(project);
    return project;
  }

  listProjects(accountId: string): Promise<ProjectRecord[]> {
    return this.store.listProjects(accountId);
  }

  async findProject(accountId: string, name: string): Promise<ProjectRecord> {
    const project = await this.store.findProject(accountId, name);
    if (!project) throw errors.notFound(`project "${name}" does not exist; projects/List shows yours`);
    return project;
  }

  async deleteProject(caller: Tenant, name: string): Promise<ProjectRecord> {
    const project = await this.findProject(caller.accountId, name);
    if (project.id === caller.projectId) {
      throw errors.conflict(`project "${name}" holds the key making this call; use a key of another project to delete it`);
    }
    await this.store.deleteProject(project.id);
    return project;
  }

  async generateKey(caller: Tenant, request: NewKey): Promise<GeneratedKey> {
    const project = await this.findProject(caller.accountId, request.projectName);
    const environment = request.environment ?? DEFAULT_ENVIRONMENT;
    assertName('environment', environment);
    const scopes = this.checkScopes(request.scopes);
    const secret = generateKeySecret();
    const record = await this.insertKey(secret, caller.accountId, project, 'project', scopes, request.description ?? '', environment);
    return { secret, record };
  }

  /** A new owner key for an account (sign-up and login). */
  async generateOwnerKey(accountId: string, project: ProjectRecord, description: string): Promise<GeneratedKey> {
    const secret = generateKeySecret();
    const record = await this.insertKey(secret, accountId, project, 'owner', ['*'], description);
    return { secret, record };
  }

  async listKeys(caller: Tenant, projectName: string): Promise<KeyRecord[]> {
    const project = await this.findProject(caller.accountId, projectName);
    return this.store.listKeys(project.id);
  }

  /** A key of the caller's account, or 404. */
  async findKey(caller: Tenant, keyId: string): Promise<ResolvedKey> {
    const key = await this.store.getKey(keyId);
    if (!key || key.accountId !== caller.accountId) throw errors.notFound(`key "${keyId}" does not exist`);
    return key;
  }

  async setKeyStatus(caller: Tenant, keyId: string, status: 'active' | 'blocked' | 'revoked'): Promise<KeyRecord> {
    const key = await this.findKey(caller, keyId);
    if (key.status === 'revoked') throw errors.conflict(`key "${keyId}" is revoked; a revoked key stays revoked`);
    if (key.role === 'admin' && status !== 'active') {
      throw errors.conflict('the admin key cannot be revoked or blocked through the API');
    }
    await this.store.setKeyStatus(keyId, status);
    return { ...key, status };
  }

  private checkScopes(scopes: string[]): string[] {
    if (scopes.length === 0) throw errors.badRequest('scopes: give at least one service name, or "*" for all');
    const known = new Set(this.serviceNames());
    for (const scope of scopes) {
      if (scope !== '*' && !known.has(scope)) {
        throw errors.badRequest(`scopes: unknown service "${scope}"; known services are ${[...known].sort().join(', ')}`);
      }
    }
    return [...new Set(scopes)];
  }

  private async insertKey(
    secret: string,
    accountId: string,
    project: ProjectRecord,
    role: KeyRole,
    scopes: string[],
    description: string,
    environment = DEFAULT_ENVIRONMENT,
    options: { chosenByOperator?: boolean } = {},
  ): Promise<KeyRecord> {
    const record: KeyRecord = {
      id: randomUUID(),
      accountId,
      projectId: project.id,
      environment,
      scopes,
      description,
      role,
      status: 'active',
      // Only a generated key shows its first characters: they are random, not part of a secret someone chose.
      prefix: options.chosenByOperator ? '' : secret.slice(0, KEY_PREFIX.length + 6),
      createdAt: Date.now(),
    };
    await this.store.insertKey(record, hashKey(secret));
    return record;
  }
}

function assertName(what: string, name: string): void {
  if (!NAME_PATTERN.test(name)) throw errors.badRequest(`${what} name "${name}" is not valid: use ${NAME_RULE}`);
}

