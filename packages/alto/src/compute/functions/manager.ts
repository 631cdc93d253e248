/**
 * @module compute/functions/manager
 * `FunctionManager`: a function is an app built for you. Deploy and Update fetch the code
 * (inline, uploaded folder or git repository), install its dependencies, bundle it with a small
 * HTTP server (build.ts), put the bundle as a layer over the Node.js runtime layer
 * (runtime.ts) into an OCI layout, import that into the image store and run it with
 * `AppManager.run`/`update` as the app of the same name. The build comes first, so a build error
 * is a 400 that leaves the serving version alone; a version that builds but never listens is
 * refused by the app's own rollout, the old one serving on.
 *
 * Names: a function and its app share the name (and so the address
 * `<fn>.<project>.<domain>`); a function record marks the app as a function. app/List shows
 * functions too; function/Deploy refuses a name an app already has.
 *
 * Calling Alto back: every app instance finds the edge in `ALTO_URL` (the sandbox opens that one
 * port of the host, compute/sandbox/platform-access.ts). A function also gets `ALTO_KEY`, a
 * project key made for it at deploy (the deploying key's scopes, so all the project's services
 * for an owner key or one scoped "*", never more than the deployer had; in the deploying key's
 * environment, described "function <name>"), kept in its record and revoked on Delete; an
 * Update by a key that does not hold all of its scopes gives it a new key with the updater's.
 * Secrets reach it only when named (`secrets: ["stripe-key"]` at Deploy or Update, read again at
 * each Update), and only for a key that may read secrets (compute/apps/secrets.ts): names
 * upper-cased, other characters than letters and digits turned to `_` (`stripe-key` ->
 * `STRIPE_KEY`). The key and the secrets are the app's hidden env: never shown by app/Status,
 * List or Logs. Explicit env_vars win over both. The function's view shows only its explicit
 * env_vars and the names of its secrets.
 *
 * Where it is kept: the records through the functions port (records.ts: PostgreSQL with
 * `--store`, so every node lists and describes every function), the source of the serving
 * version as an object (source-archive.ts: S3 with `--objects`), the images in each node's own
 * image store. The function's app runs on the node that deployed it, as apps do; that node, when
 * it lacks the image (started on a new data folder, or its images were lost), builds it again
 * from the stored source at the next Call, and any node does so and runs the function when no
 * node runs its app any more (`serveHere`).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { SecretCipher } from '../../kit/master-key.js';
import type { Tenant } from '../../platform/service.js';
import type { FunctionStore } from '../../store/functions/port.js';
import type { ObjectStore } from '../../store/objects/port.js';
import type { AppManager, AppOwner, AppState } from '../apps/manager.js';
import { MAX_LOG_ANSWER_BYTES, type AppLogLine } from '../apps/runtime.js';
import { holdsScopes, redactHidden, secretVariableName, type HiddenEnv } from '../apps/secrets.js';
import type { ImageManager } from '../images/manager.js';
import { BuildFailure, bundleFunction, findEntryFile, installDependencies, projectLayerFiles, startCommandOf } from './build.js';
import { writeImageLayout, writeLayer, type LayerBlob } from './layers.js';
import { FunctionRecords, type FunctionRecord } from './records.js';
import { NODE_PATH_IN_IMAGE, type NodeRuntime } from './runtime.js';
import { confineSource } from './confine.js';
import { SourceArchives } from './source-archive.js';
import { fetchSource, projectFolderOf, type FetchedSource, type SourceInput } from './source.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';

/** The registry part of function image names: never pulled, only imported. */
const IMAGE_REGISTRY = 'functions.alto.internal';
export const FUNCTION_PORT = 8080;
const CALL_TIMEOUT_MS = 60_000;
const MAX_CALL_RESPONSE_BYTES = 16 * 1024 * 1024;

export interface FunctionManagerOptions {
  dataDir: string;
  /** The functions' records (the store factory's `functions` port). */
  store: FunctionStore;
  /** Where the functions' sources are kept (the store factory's `objects` port). */
  objects: ObjectStore;
  /** Seals each function's own API key at rest. */
  cipher?: SecretCipher;
  log: Logger;
  apps: AppManager;
  images: ImageManager;
  runtime: NodeRuntime;
  /** Keys and secrets; without it functions get neither (ALTO_URL still comes from the sandbox). */
  platform?: FunctionPlatform;
}

/** What a function gets from the platform besides its code. */
export interface FunctionPlatform {
  /** A new key of the caller's project in `environment`, with the caller's scopes. */
  issueKey(caller: Tenant, environment: string, description: string): Promise<{ id: string; secret: string }>;
  /** Revokes a key made by `issueKey` (a key revoked already is not an error). */
  revokeKey(caller: Tenant, id: string): Promise<void>;
  /** The scopes of a key made by `issueKey`; undefined when it is not the caller's to see. */
  keyScopes(caller: Tenant, id: string): Promise<string[] | undefined>;
  /** The named secrets of the project's `environment` as env vars; 403 when the caller may not read secrets. */
  secrets(caller: Tenant, environment: string, names: string[]): Promise<Record<string, string>>;
  /** The tenant a key made by `issueKey` acts as (401 when it is revoked). */
  tenantOfKey(secret: string): Promise<Tenant>;
}

/** Who deploys: the app owner, and the tenant whose account the function's key is made in. */
export interface FunctionOwner extends AppOwner {
  tenant?: Tenant;
}

export { secretVariableName };

export const FUNCTION_KEY_VARIABLE = 'ALTO_KEY';

export interface DeployInput extends SourceInput {
  name: string;
  entrypoint?: string;
  env_vars?: Record<string, string>;
  runtime?: string;
  /** Secrets to hand the function (names); Update: replaces the list, [] drops them. */
  secrets?: string[];
}

export type UpdateInput = Partial<DeployInput> & {
  name: string;
  /** The env vars given replace the function's instead of adding to them (function/Copy). */
  replaceEnvVars?: boolean;
};

/** A function with its app's state (undefined when its app is gone). */
export interface FunctionState {
  record: FunctionRecord;
  app: AppState | undefined;
  url: string;
}

interface BuiltImage {
  image: string;
  log: string;
  /** The object the build's source was kept in (`keepSourceFor`); undefined when none was written. */
  archive?: string;
}

/** The code a build reads: given now, or the stored source of a function's serving version. */
type BuildCode = { given: SourceInput } | { stored: FunctionRecord };

interface BuildRequest {
  code: BuildCode;
  entrypoint: string | undefined;
  /** Keep the source, once built, under this function id. */
  keepSourceFor?: string;
  /** The image's tag in its repository; by default, from the app layer's digest. */
  tag?: string;
}

export class FunctionManager {
  readonly records: FunctionRecords;
  private readonly archives: SourceArchives;
  /** One deploy or update of a function at a time. */
  private readonly busy = new Set<string>();
  /** Functions being made to serve on this process (`serveHere`), shared by concurrent calls. */
  private readonly preparing = new Map<string, Promise<void>>();

  constructor(private readonly options: FunctionManagerOptions) {
    this.records = new FunctionRecords(options.store, options.cipher);
    this.archives = new SourceArchives(options.objects);
    void this.records
      .sealLegacyKeys()
      .then((sealed) => sealed > 0 && options.log.info({ sealed }, 'sealed the function keys stored before sealing'))
      .catch((error: Error) => options.log.warn({ err: error }, 'sealing the function keys stored before sealing failed'));
  }

  private get apps(): AppManager {
    return this.options.apps;
  }

  // ---- building ------------------------------------------------------------------------------

  /**
   * Builds the function's image and imports it; BuildFailure (400) when the code is at fault.
   * With `keepSourceFor`, the source read is kept as an object once the build succeeded.
   */
  private async buildImage(owner: AppOwner, name: string, request: BuildRequest): Promise<BuiltImage> {
    const started = Date.now();
    const buildsRoot = join(this.options.dataDir, 'functions', 'builds');
    mkdirSync(buildsRoot, { recursive: true });
    const buildDir = mkdtempSync(join(buildsRoot, `${name}-`));
    const log: string[] = [];
    try {
      const { code, entrypoint } = request;
      const fetched = 'given' in code ? await fetchSource(code.given, buildDir, { allowLocalRepos: owner.admin }) : await this.restoreSource(code.stored, buildDir);
      const sourceTop = sourceTopOf(fetched.kind, buildDir);
      const sourceRoot = confineSource(fetched.folder, sourceTop, describeSource(fetched.kind));
      log.push('given' in code ? describeGivenSource(code.given, fetched) : `source: the ${fetched.kind} source kept at the last deploy`);
      const entryFile = findEntryFile(fetched.folder, sourceRoot);
      const nodeModules = await installDependencies(fetched.folder, join(this.options.dataDir, 'functions', 'deps'), log);
      const runtime = await this.options.runtime.layer();
      const bundle = await bundleFunction({ folder: fetched.folder, sourceRoot, entryFile, entrypoint, name, nodeModules, nodeVersion: runtime.nodeVersion });
      log.push(...bundle.log);
      const appLayer = await writeLayer(join(buildDir, 'app.tar'), [
        { type: 'dir', path: 'app/' },
        { type: 'file', path: 'app/index.mjs', content: bundle.code, mode: 0o644 },
      ]);
      const image = await this.importImage(owner, name, buildDir, appLayer, ['/app/index.mjs'], { 'dev.alto.function': name }, request.tag);
      log.push(`image ${image.digest} on node ${runtime.nodeVersion} (${this.options.runtime.description}), built in ${Date.now() - started} ms`);
      let archive: string | undefined;
      if (request.keepSourceFor) {
        const kept = await this.archives.keep(owner.projectId, request.keepSourceFor, sourceTop, fetched.kind === 'repo' ? ['.git'] : []);
        if (kept.kept) archive = kept.name;
        log.push(
          kept.kept
            ? `source kept for the other processes of this cloud: ${kept.files} files, ${kept.bytes} bytes`
            : `source not kept: ${kept.reason}, so a process without this image cannot build it again`,
        );
      }
      return { image: image.reference, log: log.join('\n'), archive };
    } catch (error) {
      if (error instanceof BuildFailure) throw new BuildFailureWithLog(error.detail, [...log, error.detail].join('\n'));
      if (isAltoError(error) && error.status < 500) throw new BuildFailureWithLog(error.detail, [...log, error.detail].join('\n'), error);
      throw error;
    } finally {
      rmSync(buildDir, { recursive: true, force: true });
    }
  }

  /**
   * Writes the stored source of the function's serving version into `buildDir` as `fetchSource`
   * lays out a fresh one. Inline functions deployed before sources were kept build from their
   * record; other kinds need a deploy that keeps one (503 saying so).
   */
  private async restoreSource(record: FunctionRecord, buildDir: string): Promise<FetchedSource> {
    if (!record.sourceArchive) {
      if (record.sourceKind === 'inline') return fetchSource({ source: record.source }, buildDir, { allowLocalRepos: false });
      throw errors.unavailable(
        `function "${record.name}" has no stored source (it was deployed before Alto kept sources, or its source was too large) and its image is not on this process; deploy it again with function/Update`,
      );
    }
    const top = sourceTopOf(record.sourceKind, buildDir);
    mkdirSync(top, { recursive: true });
    await this.archives.restore(record.projectId, record.sourceArchive, top);
    const folder = record.sourceKind === 'repo' ? projectFolderOf(top, record.subfolder, record.repo) : top;
    return { folder, kind: record.sourceKind };
  }

  /** An image of the runtime layer and `appLayer`, imported into the store; named by digest. */
  private async importImage(
    owner: AppOwner,
    name: string,
    buildDir: string,
    appLayer: LayerBlob,
    cmd: string[],
    labels: Record<string, string>,
    tag = appLayer.digest.slice('sha256:'.length, 'sha256:'.length + 16),
  ): Promise<{ reference: string; digest: string }> {
    const runtime = await this.options.runtime.layer();
    const layout = join(buildDir, 'layout');
    writeImageLayout(layout, [runtime, appLayer], {
      Env: ['PATH=/usr/local/bin:/usr/bin:/bin', `PORT=${FUNCTION_PORT}`, 'NODE_ENV=production', ...(labels['dev.alto.function'] ? [`ALTO_FUNCTION=${name}`] : [])],
      Entrypoint: [NODE_PATH_IN_IMAGE],
      Cmd: cmd,
      WorkingDir: '/app',
      ExposedPorts: { [`${FUNCTION_PORT}/tcp`]: {} },
      Labels: { ...labels, 'dev.alto.node': runtime.nodeVersion },
    });
    const repository = imageRepositoryOf(owner.projectId, name);
    const [imported] = await this.options.images.import(layout, { reference: `${repository}:${tag}`, builtBy: owner.projectId });
    return { reference: `${repository}@${imported.digest}`, digest: imported.digest };
  }

  /**
   * Source deploys of apps (app/Run with repo or files): a Node.js project (package.json with a
   * `start` script that is a plain `node <file>` command, or a `main`) with its runtime
   * dependencies installed, as an image over the same runtime. Answers the image reference.
   */
  async buildApp(owner: AppOwner, name: string, source: SourceInput, onLog?: (line: string) => void): Promise<string> {
    const started = Date.now();
    const buildsRoot = join(this.options.dataDir, 'functions', 'builds');
    mkdirSync(buildsRoot, { recursive: true });
    const buildDir = mkdtempSync(join(buildsRoot, `app-${name}-`));
    try {
      const fetched = await fetchSource(source, buildDir, { allowLocalRepos: owner.admin });
      confineSource(fetched.folder, sourceTopOf(fetched.kind, buildDir), describeSource(fetched.kind));
      const command = startCommandOf(fetched.folder);
      onLog?.(`a Node.js project, started with: ${command.join(' ')}`);
      const log: string[] = [];
      const nodeModules = await installDependencies(fetched.folder, join(this.options.dataDir, 'functions', 'deps'), log);
      for (const line of log) onLog?.(line);
      const files = projectLayerFiles(fetched.folder, nodeModules);
      const appLayer = await writeLayer(join(buildDir, 'app.tar'), files);
      const image = await this.importImage(owner, name, buildDir, appLayer, command, { 'dev.alto.app-source': source.repo ?? 'upload' });
      this.options.log.info({ app: name, project: owner.projectName, image: image.reference, ms: Date.now() - started, log }, 'app built from source');
      return image.reference;
    } finally {
      rmSync(buildDir, { recursive: true, force: true });
    }
  }

  private async exclusive<T>(owner: AppOwner, name: string, task: () => Promise<T>): Promise<T> {
    const key = `${owner.projectId}/${owner.environment ?? ''}/${name}`;
    if (this.busy.has(key)) throw errors.conflict(`function "${name}" is being deployed; try again when that is done`);
    this.busy.add(key);
    try {
      return await task();
    } finally {
      this.busy.delete(key);
    }
  }

  // ---- the function service's operations -----------------------------------------------------

  private async find(owner: AppOwner, name: string): Promise<FunctionRecord> {
    const record = await this.records.find(owner.projectId, name, owner.environment);
    if (!record) throw errors.notFound(`no function "${name}" in project "${owner.projectName}"; function/List shows them`);
    return record;
  }

  async deploy(owner: FunctionOwner, input: DeployInput): Promise<FunctionState> {
    assertRuntime(input.runtime);
    if (await this.records.find(owner.projectId, input.name, owner.environment)) throw errors.conflict(`function "${input.name}" already exists in project "${owner.projectName}"; use function/Update to change it`);
    if (await this.appOf(owner, input.name))
      throw errors.conflict(`an app called "${input.name}" exists in project "${owner.projectName}"; a function runs as the app of its name, so choose another name`);
    return this.exclusive(owner, input.name, async () => {
      const id = randomBytes(8).toString('hex');
      const entrypoint = input.entrypoint?.trim() || undefined;
      const envVars = input.env_vars ?? {};
      const environment = owner.environment ?? owner.tenant?.environment ?? DEFAULT_ENVIRONMENT;
      const secretNames = input.secrets ?? [];
      // Before the build: a key that may not read secrets hears so at once.
      const secretEnv = await this.readSecrets(owner.tenant, environment, secretNames);
      const built = await this.buildImage(owner, input.name, { code: { given: input }, entrypoint, keepSourceFor: id });
      let key: { id: string; secret: string } = { id: '', secret: '' };
      let app: AppState;
      try {
        key = await this.issueKey(owner, input.name, environment);
        const hidden = this.hiddenEnv(environment, secretNames, secretEnv, key.secret, owner.tenant?.scopes ?? []);
        app = await this.apps.run(owner, { name: input.name, image: built.image, port: FUNCTION_PORT, env_vars: envVars, ...hidden, min_instances: 0 });
      } catch (error) {
        await this.revokeKey(owner, input.name, key.id);
        await this.removeArchive(owner.projectId, built.archive);
        throw error;
      }
      const now = Date.now();
      const record: FunctionRecord = {
        id,
        projectId: owner.projectId,
        name: input.name,
        runtime: 'nodejs',
        entrypoint: entrypoint ?? '',
        ...sourceFieldsOf(input),
        envVars,
        image: built.image,
        buildLog: built.log,
        keyId: key.id,
        keySecret: key.secret,
        environment,
        secrets: secretNames,
        sourceArchive: built.archive ?? '',
        createdAt: now,
        updatedAt: now,
      };
      if (!(await this.records.insert(record))) {
        // Deployed meanwhile by another process of this cloud: its function stays, this one goes.
        await this.apps.delete(owner, input.name).catch((error: Error) => this.options.log.warn({ err: error, function: input.name }, 'removing the app of a function deployed twice failed'));
        await this.revokeKey(owner, input.name, key.id);
        await this.removeArchive(owner.projectId, built.archive);
        await this.removeImages(owner, input.name);
        throw errors.conflict(`function "${input.name}" was deployed meanwhile by another request; use function/Update to change it`);
      }
      this.options.log.info({ function: input.name, project: owner.projectName, image: built.image }, 'function deployed');
      return this.stateOf(owner, record, app);
    });
  }

  async update(owner: FunctionOwner, input: UpdateInput): Promise<FunctionState> {
    assertRuntime(input.runtime);
    const current = await this.find(owner, input.name);
    return this.exclusive(owner, input.name, async () => {
      // Before the build: another node's app is updated through that node (503 naming it).
      const runsHere = await this.runsHere(owner, input.name);
      const given = input.source !== undefined || input.files !== undefined || input.repo !== undefined;
      let code: BuildCode;
      if (given) code = { given: { source: input.source, files: input.files, repo: input.repo, branch: input.branch, subfolder: input.subfolder } };
      else if (current.sourceKind === 'inline') code = { given: { source: current.source } };
      else if (current.sourceKind === 'repo')
        code = { given: { repo: current.repo, branch: input.branch ?? current.branch ?? undefined, subfolder: input.subfolder ?? current.subfolder ?? undefined } };
      // An uploaded folder is built again from its stored copy.
      else if (current.sourceArchive) code = { stored: current };
      else throw errors.badRequest(`function "${input.name}" was deployed from an uploaded folder: give its files again (alto fn deploy <folder> --name ${input.name})`);
      if ('given' in code && code.given.branch === '') delete code.given.branch;
      if ('given' in code && code.given.subfolder === '') delete code.given.subfolder;
      // Functions deployed before keys get theirs now.
      const environment = current.environment || owner.environment || owner.tenant?.environment || DEFAULT_ENVIRONMENT;
      const secretNames = input.secrets ?? current.secrets ?? [];
      const secretEnv = await this.readSecrets(owner.tenant, environment, secretNames);
      const entrypoint = input.entrypoint !== undefined ? input.entrypoint.trim() || undefined : current.entrypoint || undefined;
      let built: BuiltImage;
      try {
        // A build from the stored copy keeps using it.
        built = await this.buildImage(owner, input.name, { code, entrypoint, keepSourceFor: 'given' in code ? current.id : undefined });
      } catch (error) {
        if (error instanceof BuildFailureWithLog) await this.records.setBuildLog(current.id, `${error.log}\nthe build failed; the previous version keeps serving`);
        throw error;
      }
      const archive = built.archive ?? ('stored' in code ? current.sourceArchive : '');
      const envVars = input.env_vars ? (input.replaceEnvVars ? input.env_vars : { ...current.envVars, ...input.env_vars }) : current.envVars;
      // The key stays when the updater holds all its scopes; else the new code gets the updater's.
      const keyScopes = current.keyId ? await this.keyScopes(owner, current.keyId) : undefined;
      const keeps = current.keyId !== '' && keyScopes !== undefined && owner.tenant !== undefined && holdsScopes(owner.tenant, keyScopes);
      let key = { id: current.keyId, secret: current.keySecret };
      let app: AppState;
      try {
        if (!keeps) key = await this.issueKey(owner, input.name, environment);
        const hidden = this.hiddenEnv(environment, secretNames, secretEnv, key.secret, keeps ? keyScopes! : (owner.tenant?.scopes ?? []));
        if (runsHere) app = await this.apps.update(owner, { name: input.name, image: built.image, env_vars: envVars, replaceEnvVars: true, ...hidden });
        else app = await this.apps.run(owner, { name: input.name, image: built.image, port: FUNCTION_PORT, env_vars: envVars, ...hidden, min_instances: 0 });
      } catch (error) {
        if (key.id !== current.keyId) await this.revokeKey(owner, input.name, key.id);
        await this.removeArchive(owner.projectId, built.archive);
        throw error;
      }
      const next: FunctionRecord = {
        ...current,
        keyId: key.id,
        keySecret: key.secret,
        environment,
        secrets: secretNames,
        entrypoint: entrypoint ?? '',
        ...('given' in code && given ? sourceFieldsOf(code.given) : {}),
        envVars,
        image: built.image,
        buildLog: built.log,
        sourceArchive: archive,
        updatedAt: Date.now(),
      };
      if (!(await this.records.update(next))) {
        await this.removeArchive(owner.projectId, built.archive);
        throw errors.notFound(`function "${input.name}" was deleted while it was being updated`);
      }
      if (key.id !== current.keyId) await this.revokeKey(owner, input.name, current.keyId);
      if (archive !== current.sourceArchive) await this.removeArchive(owner.projectId, current.sourceArchive);
      await this.removeImages(owner, input.name, built.image);
      this.options.log.info({ function: input.name, project: owner.projectName, image: built.image }, 'function updated');
      return this.stateOf(owner, next, app);
    });
  }

  /** POSTs `body` as JSON to the function and answers its JSON. */
  async call(owner: FunctionOwner, name: string, body: unknown): Promise<unknown> {
    await this.serveHere(owner, await this.find(owner, name));
    const endpoint = await this.apps.openApp(owner.projectId, name, owner.environment);
    try {
      const { status, text } = await postJson(endpoint.host, endpoint.port, endpoint.hostHeader, body);
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : {};
      } catch {
        // Not JSON: given back as text.
      }
      if (status >= 400) {
        const reason = typeof parsed === 'object' && parsed && 'error' in parsed ? String((parsed as { error: unknown }).error) : text.slice(0, 500);
        throw new AltoError('bad_request', 400, `function "${name}" answered ${status}: ${reason}; function/Logs has its output`);
      }
      return parsed;
    } finally {
      endpoint.release();
    }
  }

  async describe(owner: AppOwner, name: string): Promise<FunctionState> {
    const record = await this.find(owner, name);
    return this.stateOf(owner, record, await this.appOf(owner, name));
  }

  async list(owner: AppOwner): Promise<FunctionState[]> {
    const apps = new Map((await this.apps.list(owner)).map((app) => [app.record.name, app]));
    return (await this.records.listOfProject(owner.projectId, owner.environment)).map((record) => this.stateOf(owner, record, apps.get(record.name)));
  }

  async delete(owner: FunctionOwner, name: string): Promise<void> {
    const record = await this.find(owner, name);
    await this.exclusive(owner, name, async () => {
      // Another node's app is deleted through that node (503 naming it), before the record goes.
      if (await this.runsHere(owner, name)) await this.apps.delete(owner, name);
      await this.records.delete(record.id);
      await this.archives.removeFunction(owner.projectId, record.id);
      await this.removeImages(owner, name);
      await this.revokeKey(owner, name, record.keyId);
    });
  }

  // ---- serving on any process of the cloud ----------------------------------------------------

  /**
   * Makes the function serve before a call, on the node that runs its app (another node's app
   * answers 503 naming that node, as apps do). That node builds the image again from the stored
   * source when its image store lacks it (a node started on a new data folder, or one whose
   * images were lost: its app failed to start again) and rolls the app onto it; when no node runs
   * the function's app any more, this node builds it if need be and runs it. Concurrent calls
   * share one preparation; a deploy or update under way here is left alone.
   */
  private serveHere(owner: FunctionOwner, record: FunctionRecord): Promise<void> {
    const key = `${owner.projectId}/${record.name}`;
    if (this.busy.has(key)) return Promise.resolve();
    let preparing = this.preparing.get(key);
    if (!preparing) {
      preparing = this.prepareHere(owner, record).finally(() => this.preparing.delete(key));
      this.preparing.set(key, preparing);
    }
    return preparing;
  }

  private async prepareHere(owner: FunctionOwner, record: FunctionRecord): Promise<void> {
    const runsHere = await this.runsHere(owner, record.name);
    const { image, built } = this.hasImage(record.image) ? { image: record.image, built: false } : await this.rebuiltImageOf(owner, record);
    // Read after the build: the app's start after a restart (which fails without the image) is over by then.
    const app = runsHere ? this.apps.get(owner, record.name) : undefined;
    if (app && !built && runsVersionOf(app, image, record)) return;
    const hidden = await this.hiddenEnvOf(owner, record);
    if (app) await this.apps.update(owner, { name: record.name, image, env_vars: record.envVars, replaceEnvVars: true, ...hidden });
    else await this.apps.run(owner, { name: record.name, image, port: FUNCTION_PORT, env_vars: record.envVars, ...hidden, min_instances: 0 });
    await this.removeImages(owner, record.name, image);
    this.options.log.info({ function: record.name, project: owner.projectName, image }, 'function made to serve on this node');
  }

  /** Whether this node runs the function's app: false when no node does; 503 naming the node that does. */
  private async runsHere(owner: AppOwner, name: string): Promise<boolean> {
    if (this.apps.hasApp(owner.projectId, name, owner.environment)) return true;
    try {
      await this.apps.runningHere(owner, name);
      return true;
    } catch (error) {
      if (isAltoError(error) && error.status === 404) return false;
      throw error;
    }
  }

  /** The project's app of this name, wherever it runs. */
  private async appOf(owner: AppOwner, name: string): Promise<AppState | undefined> {
    if (this.apps.hasApp(owner.projectId, name, owner.environment)) return this.apps.get(owner, name);
    try {
      return await this.apps.describe(owner, name);
    } catch (error) {
      if (isAltoError(error) && error.status === 404) return undefined;
      throw error;
    }
  }

  private hasImage(reference: string): boolean {
    try {
      this.options.images.inspect(reference);
      return true;
    } catch (error) {
      if (isAltoError(error) && error.status === 404) return false;
      throw error;
    }
  }

  /**
   * The image built here from the stored source of the record's version: found by its tag when
   * built before, else built now. It is the record's image (same digest) when the runtime and the
   * dependencies resolve as they did for the first build.
   */
  private async rebuiltImageOf(owner: AppOwner, record: FunctionRecord): Promise<{ image: string; built: boolean }> {
    const repository = imageRepositoryOf(record.projectId, record.name);
    const tag = `rebuilt-${record.image.slice(record.image.lastIndexOf(':') + 1, record.image.lastIndexOf(':') + 17)}`;
    if (this.hasImage(`${repository}:${tag}`)) return { image: `${repository}@${this.options.images.inspect(`${repository}:${tag}`).digest}`, built: false };
    const built = await this.buildImage(owner, record.name, { code: { stored: record }, entrypoint: record.entrypoint || undefined, tag });
    this.options.log.info({ function: record.name, project: owner.projectName, image: built.image, recorded: record.image, log: built.log }, 'function built again from its stored source');
    return { image: built.image, built: true };
  }

  /** The hidden env of the record's version, its secrets read with the function's own key (the caller's for functions without one). */
  private async hiddenEnvOf(owner: FunctionOwner, record: FunctionRecord): Promise<{ hidden_env?: HiddenEnv }> {
    const functionTenant = record.keySecret && this.options.platform ? await this.options.platform.tenantOfKey(record.keySecret) : undefined;
    const secretEnv = await this.readSecrets(functionTenant ?? owner.tenant, record.environment, record.secrets);
    return this.hiddenEnv(record.environment, record.secrets, secretEnv, record.keySecret, functionTenant?.scopes ?? owner.tenant?.scopes ?? []);
  }

  /** Removes a source archive no record points to; a failure is logged (the object is an orphan, not an error of the caller's). */
  private async removeArchive(projectId: string, name: string | undefined): Promise<void> {
    if (!name) return;
    await this.archives.remove(projectId, name).catch((error: Error) => this.options.log.warn({ err: error, archive: name }, 'removing a function source failed'));
  }

  // ---- keys and secrets ----------------------------------------------------------------------

  /** The function's own key; none (id '') without a platform or a tenant to make it for. */
  private async issueKey(owner: FunctionOwner, name: string, environment: string): Promise<{ id: string; secret: string }> {
    if (!this.options.platform || !owner.tenant) return { id: '', secret: '' };
    return this.options.platform.issueKey(owner.tenant, environment, `function ${name}`);
  }

  /** Revokes the function's key; a failure is logged, not thrown (the function is gone either way). */
  private async revokeKey(owner: FunctionOwner, name: string, keyId: string): Promise<void> {
    if (!keyId || !this.options.platform || !owner.tenant) return;
    await this.options.platform
      .revokeKey(owner.tenant, keyId)
      .catch((error: Error) => this.options.log.warn({ err: error, function: name, key: keyId }, 'revoking a function key failed'));
  }

  /** The scopes of the function's key; undefined when unknown (then it is replaced). */
  private async keyScopes(owner: FunctionOwner, keyId: string): Promise<string[] | undefined> {
    if (!this.options.platform || !owner.tenant) return undefined;
    return this.options.platform.keyScopes(owner.tenant, keyId).catch(() => undefined);
  }

  /** The named secrets as env vars; 403 when the key may not read secrets. */
  private async readSecrets(tenant: Tenant | undefined, environment: string, names: string[]): Promise<Record<string, string>> {
    if (names.length === 0) return {};
    if (!this.options.platform || !tenant) throw errors.badRequest('secrets: this server hands no secrets to functions');
    return this.options.platform.secrets(tenant, environment, names);
  }

  /** What the function's app runs with but never shows: its secrets and ALTO_KEY. */
  private hiddenEnv(environment: string, secretNames: string[], secretEnv: Record<string, string>, keySecret: string, keyScopes: string[]): { hidden_env?: HiddenEnv } {
    const env: Record<string, string> = { ...secretEnv };
    if (keySecret) env[FUNCTION_KEY_VARIABLE] = keySecret;
    return { hidden_env: { env, secrets: secretNames, environment, scopes: keySecret ? keyScopes : [] } };
  }

  /** The images built for the function, but for the one serving (`keep`); the image store keeps any still in use. */
  private async removeImages(owner: AppOwner, name: string, keep?: string): Promise<void> {
    const repository = imageRepositoryOf(owner.projectId, name);
    const kept = keep?.slice(keep.indexOf('@') + 1);
    for (const image of this.options.images.list()) {
      if (image.digest === kept) continue;
      for (const reference of image.references.filter((candidate) => candidate.startsWith(`${repository}:`))) {
        await this.options.images.remove(reference).catch((error: Error) => this.options.log.warn({ err: error, reference }, 'removing a function image failed'));
      }
    }
  }

  /** Build logs, runtime logs (the app's output and Alto's lines about it), or both. */
  async logs(owner: AppOwner, name: string, type: string | undefined, lines = 200): Promise<string> {
    const record = await this.find(owner, name);
    const runtime = async (): Promise<string> => {
      if (!this.apps.hasApp(owner.projectId, name, owner.environment)) return '';
      const hidden = this.apps.get(owner, name).record.settings.hidden_env;
      return (await this.apps.logs(owner, name, { limit: lines, maxBytes: MAX_LOG_ANSWER_BYTES }))
        .map((line: AppLogLine) => `${new Date(line.at).toISOString()} ${line.stream === 'system' ? 'alto:' : line.stream === 'stderr' ? 'err:' : ''}${line.stream === 'stdout' ? '' : ' '}${redactHidden(line.line, hidden)}`)
        .join('\n');
    };
    if (type === 'build') return record.buildLog;
    if (type === 'runtime') return runtime();
    return `--- build ---\n${record.buildLog}\n--- runtime ---\n${await runtime()}`;
  }

  /** The function's URL on the edge, by id or name. */
  async proxyUrl(owner: AppOwner, idOrName: string): Promise<string> {
    const environment = owner.environment ?? DEFAULT_ENVIRONMENT;
    const record = (await this.records.get(idOrName)) ?? (await this.records.find(owner.projectId, idOrName, environment));
    if (!record || record.projectId !== owner.projectId || record.environment !== environment) throw errors.notFound(`no function "${idOrName}" in project "${owner.projectName}"`);
    return this.apps.appUrl({ name: record.name, projectName: owner.projectName, environment });
  }

  /** Forgets the project's functions and their stored sources (the app service stops their apps). */
  async deleteProject(projectId: string): Promise<void> {
    await this.records.deleteProject(projectId);
    await this.archives.removeProject(projectId);
  }

  /** The function with its app's state (`app`: wherever it runs; undefined when none does). */
  private stateOf(owner: AppOwner, record: FunctionRecord, app: AppState | undefined): FunctionState {
    return { record, app, url: this.apps.appUrl({ name: record.name, projectName: owner.projectName, environment: owner.environment }) };
  }
}

/** A build failure with the log of the build up to it (kept as the function's build log). */
export class BuildFailureWithLog extends AltoError {
  constructor(
    detail: string,
    readonly log: string,
    cause?: AltoError,
  ) {
    super(cause?.code ?? 'bad_request', cause?.status ?? 400, detail);
  }
}

/** The folder the tenant's files were written to (fetchSource's layout): a clone is in src/repo. */
function sourceTopOf(kind: 'inline' | 'files' | 'repo', buildDir: string): string {
  return kind === 'repo' ? join(buildDir, 'src', 'repo') : join(buildDir, 'src');
}

/** The source as a 400 names it. */
function describeSource(kind: 'inline' | 'files' | 'repo'): string {
  return kind === 'repo' ? 'the repository' : kind === 'files' ? 'the uploaded folder' : 'the source';
}

/**
 * Whether the app runs the record's version: its image, env_vars, key and secrets (by name:
 * values changed since reach it with the record's next change).
 */
function runsVersionOf(app: AppState, image: string, record: FunctionRecord): boolean {
  const { env_vars: envVars, hidden_env: hidden } = app.record.settings;
  // The app leaves out of env_vars what its hidden env sets.
  const visible = (variables: Record<string, string>) =>
    JSON.stringify(Object.entries(variables).filter(([name]) => !(hidden && name in hidden.env)).sort(([a], [b]) => (a < b ? -1 : 1)));
  return (
    app.record.image === image &&
    visible(envVars) === visible(record.envVars) &&
    (hidden?.env[FUNCTION_KEY_VARIABLE] ?? '') === record.keySecret &&
    JSON.stringify(hidden?.secrets ?? []) === JSON.stringify(record.secrets)
  );
}

/** Where a project's builds of the function (or source-built app) `name` are named. */
function imageRepositoryOf(projectId: string, name: string): string {
  return `${IMAGE_REGISTRY}/${projectId.toLowerCase()}/${name}`;
}

/** The build log's line about the code given. */
function describeGivenSource(source: SourceInput, fetched: FetchedSource): string {
  if (!source.repo) return `source: ${fetched.kind}`;
  const branch = source.branch ? `#${source.branch}` : '';
  const subfolder = source.subfolder ? ` /${source.subfolder}` : '';
  const commit = fetched.commit ? ` at ${fetched.commit.slice(0, 12)}` : '';
  return `source: ${fetched.kind} ${source.repo}${branch}${subfolder}${commit}`;
}

function assertRuntime(runtime: string | undefined): void {
  if (runtime && !/^nodejs\d*$/.test(runtime) && runtime !== 'node' && runtime !== 'typescript')
    throw errors.badRequest(`runtime "${runtime}" is not available; function/Runtimes lists them (nodejs: JavaScript and TypeScript)`);
}

function sourceFieldsOf(input: SourceInput): Pick<FunctionRecord, 'sourceKind' | 'source' | 'repo' | 'branch' | 'subfolder'> {
  if (input.source !== undefined) return { sourceKind: 'inline', source: input.source, repo: '', branch: '', subfolder: '' };
  if (input.files !== undefined) return { sourceKind: 'files', source: '', repo: '', branch: '', subfolder: '' };
  return { sourceKind: 'repo', source: '', repo: input.repo ?? '', branch: input.branch ?? '', subfolder: input.subfolder ?? '' };
}

function postJson(host: string, port: number, hostHeader: string, body: unknown): Promise<{ status: number; text: string }> {
  const payload = Buffer.from(JSON.stringify(body ?? {}));
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host, port, path: '/', method: 'POST', headers: { host: hostHeader, 'content-type': 'application/json', 'content-length': payload.length }, agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_CALL_RESPONSE_BYTES) {
            request.destroy(errors.badRequest(`the function's answer is larger than ${MAX_CALL_RESPONSE_BYTES} bytes; fetch its URL directly for large answers`));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      },
    );
    request.setTimeout(CALL_TIMEOUT_MS, () => request.destroy(errors.unavailable(`the function did not answer within ${CALL_TIMEOUT_MS / 1000} s`)));
    request.on('error', reject);
    request.end(payload);
  });
}
