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
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { SecretCipher } from '../../kit/master-key.js';
import type { Tenant } from '../../platform/service.js';
import type { SqliteDatabase } from '../../store/sqlite/database.js';
import type { AppManager, AppOwner, AppState } from '../apps/manager.js';
import type { AppLogLine } from '../apps/runtime.js';
import { holdsScopes, redactHidden, secretVariableName, type HiddenEnv } from '../apps/secrets.js';
import type { ImageManager } from '../images/manager.js';
import { BuildFailure, bundleFunction, findEntryFile, installDependencies, projectLayerFiles, startCommandOf } from './build.js';
import { writeImageLayout, writeLayer, type LayerBlob } from './layers.js';
import { FunctionRecords, type FunctionRecord } from './records.js';
import { NODE_PATH_IN_IMAGE, type NodeRuntime } from './runtime.js';
import { confineSource } from './confine.js';
import { fetchSource, type SourceInput } from './source.js';

/** The registry part of function image names: never pulled, only imported. */
const IMAGE_REGISTRY = 'functions.alto.internal';
export const FUNCTION_PORT = 8080;
const CALL_TIMEOUT_MS = 60_000;
const MAX_CALL_RESPONSE_BYTES = 16 * 1024 * 1024;

export interface FunctionManagerOptions {
  dataDir: string;
  db: SqliteDatabase;
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

export type UpdateInput = Partial<DeployInput> & { name: string };

/** A function with its app's state (undefined when its app is gone). */
export interface FunctionState {
  record: FunctionRecord;
  app: AppState | undefined;
  url: string;
}

interface BuiltImage {
  image: string;
  log: string;
}

export class FunctionManager {
  readonly records: FunctionRecords;
  /** One deploy or update of a function at a time. */
  private readonly busy = new Set<string>();

  constructor(private readonly options: FunctionManagerOptions) {
    this.records = new FunctionRecords(options.db, options.cipher);
  }

  private get apps(): AppManager {
    return this.options.apps;
  }

  // ---- building ------------------------------------------------------------------------------

  /** Builds the function's image and imports it; BuildFailure (400) when the code is at fault. */
  private async buildImage(owner: AppOwner, name: string, source: SourceInput, entrypoint: string | undefined): Promise<BuiltImage> {
    const started = Date.now();
    const buildsRoot = join(this.options.dataDir, 'functions', 'builds');
    mkdirSync(buildsRoot, { recursive: true });
    const buildDir = mkdtempSync(join(buildsRoot, `${name}-`));
    const log: string[] = [];
    try {
      const fetched = await fetchSource(source, buildDir, { allowLocalRepos: owner.admin });
      const sourceRoot = confineSource(fetched.folder, sourceTopOf(fetched.kind, buildDir), describeSource(fetched.kind));
      log.push(`source: ${fetched.kind}${source.repo ? ` ${source.repo}${source.branch ? `#${source.branch}` : ''}${source.subfolder ? ` /${source.subfolder}` : ''}${fetched.commit ? ` at ${fetched.commit.slice(0, 12)}` : ''}` : ''}`);
      const entryFile = findEntryFile(fetched.folder, sourceRoot);
      const nodeModules = await installDependencies(fetched.folder, join(this.options.dataDir, 'functions', 'deps'), log);
      const runtime = await this.options.runtime.layer();
      const bundle = await bundleFunction({ folder: fetched.folder, sourceRoot, entryFile, entrypoint, name, nodeModules, nodeVersion: runtime.nodeVersion });
      log.push(...bundle.log);
      const appLayer = await writeLayer(join(buildDir, 'app.tar'), [
        { type: 'dir', path: 'app/' },
        { type: 'file', path: 'app/index.mjs', content: bundle.code, mode: 0o644 },
      ]);
      const image = await this.importImage(owner, name, buildDir, appLayer, ['/app/index.mjs'], { 'dev.alto.function': name });
      log.push(`image ${image.digest} on node ${runtime.nodeVersion} (${this.options.runtime.description}), built in ${Date.now() - started} ms`);
      return { image: image.reference, log: log.join('\n') };
    } catch (error) {
      if (error instanceof BuildFailure) throw new BuildFailureWithLog(error.detail, [...log, error.detail].join('\n'));
      if (isAltoError(error) && error.status < 500) throw new BuildFailureWithLog(error.detail, [...log, error.detail].join('\n'), error);
      throw error;
    } finally {
      rmSync(buildDir, { recursive: true, force: true });
    }
  }

  /** An image of the runtime layer and `appLayer`, imported into the store; named by digest. */
  private async importImage(owner: AppOwner, name: string, buildDir: string, appLayer: LayerBlob, cmd: string[], labels: Record<string, string>): Promise<{ reference: string; digest: string }> {
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
    const repository = `${IMAGE_REGISTRY}/${owner.projectId.toLowerCase()}/${name}`;
    const [imported] = await this.options.images.import(layout, { reference: `${repository}:${appLayer.digest.slice('sha256:'.length, 'sha256:'.length + 16)}`, builtBy: owner.projectId });
    return { reference: `${repository}@${imported.digest}`, digest: imported.digest };
  }

  /**
   * Source deploys of apps (app/Run with repo or files): a Node.js project (package.json with a
   * `start` script that is a plain `node <file>` command, or a `main`) with its runtime
   * dependencies installed, as an image over the same runtime. Answers the image reference.
   */
  async buildApp(owner: AppOwner, name: string, source: SourceInput): Promise<string> {
    const started = Date.now();
    const buildsRoot = join(this.options.dataDir, 'functions', 'builds');
    mkdirSync(buildsRoot, { recursive: true });
    const buildDir = mkdtempSync(join(buildsRoot, `app-${name}-`));
    try {
      const fetched = await fetchSource(source, buildDir, { allowLocalRepos: owner.admin });
      confineSource(fetched.folder, sourceTopOf(fetched.kind, buildDir), describeSource(fetched.kind));
      const command = startCommandOf(fetched.folder);
      const log: string[] = [];
      const nodeModules = await installDependencies(fetched.folder, join(this.options.dataDir, 'functions', 'deps'), log);
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
    const key = `${owner.projectId}/${name}`;
    if (this.busy.has(key)) throw errors.conflict(`function "${name}" is being deployed; try again when that is done`);
    this.busy.add(key);
    try {
      return await task();
    } finally {
      this.busy.delete(key);
    }
  }

  // ---- the function service's operations -----------------------------------------------------

  private find(owner: AppOwner, name: string): FunctionRecord {
    const record = this.records.find(owner.projectId, name);
    if (!record) throw errors.notFound(`no function "${name}" in project "${owner.projectName}"; function/List shows them`);
    return record;
  }

  async deploy(owner: FunctionOwner, input: DeployInput): Promise<FunctionState> {
    assertRuntime(input.runtime);
    if (this.records.find(owner.projectId, input.name)) throw errors.conflict(`function "${input.name}" already exists in project "${owner.projectName}"; use function/Update to change it`);
    if (this.apps.hasApp(owner.projectId, input.name))
      throw errors.conflict(`an app called "${input.name}" exists in project "${owner.projectName}"; a function runs as the app of its name, so choose another name`);
    return this.exclusive(owner, input.name, async () => {
      const entrypoint = input.entrypoint?.trim() || undefined;
      const envVars = input.env_vars ?? {};
      const environment = owner.tenant?.environment ?? '';
      const secretNames = input.secrets ?? [];
      // Before the build: a key that may not read secrets hears so at once.
      const secretEnv = await this.readSecrets(owner, environment, secretNames);
      const built = await this.buildImage(owner, input.name, input, entrypoint);
      const key = await this.issueKey(owner, input.name, environment);
      try {
        const hidden = this.hiddenEnv(environment, secretNames, secretEnv, key.secret, owner.tenant?.scopes ?? []);
        await this.apps.run(owner, { name: input.name, image: built.image, port: FUNCTION_PORT, env_vars: envVars, ...hidden, min_instances: 0 });
      } catch (error) {
        await this.revokeKey(owner, input.name, key.id);
        throw error;
      }
      const now = Date.now();
      const record: FunctionRecord = {
        id: randomBytes(8).toString('hex'),
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
        createdAt: now,
        updatedAt: now,
      };
      this.records.save(record);
      this.options.log.info({ function: input.name, project: owner.projectName, image: built.image }, 'function deployed');
      return this.stateOf(owner, record);
    });
  }

  async update(owner: FunctionOwner, input: UpdateInput): Promise<FunctionState> {
    assertRuntime(input.runtime);
    const current = this.find(owner, input.name);
    return this.exclusive(owner, input.name, async () => {
      const given = input.source !== undefined || input.files !== undefined || input.repo !== undefined;
      let source: SourceInput;
      if (given) source = { source: input.source, files: input.files, repo: input.repo, branch: input.branch, subfolder: input.subfolder };
      else if (current.sourceKind === 'inline') source = { source: current.source };
      else if (current.sourceKind === 'repo') source = { repo: current.repo, branch: input.branch ?? current.branch ?? undefined, subfolder: input.subfolder ?? current.subfolder ?? undefined };
      else throw errors.badRequest(`function "${input.name}" was deployed from an uploaded folder: give its files again (alto fn deploy <folder> --name ${input.name})`);
      if (source.branch === '') delete source.branch;
      if (source.subfolder === '') delete source.subfolder;
      // Functions deployed before keys get theirs now.
      const environment = current.environment || owner.tenant?.environment || '';
      const secretNames = input.secrets ?? current.secrets ?? [];
      const secretEnv = await this.readSecrets(owner, environment, secretNames);
      const entrypoint = input.entrypoint !== undefined ? input.entrypoint.trim() || undefined : current.entrypoint || undefined;
      let built: BuiltImage;
      try {
        built = await this.buildImage(owner, input.name, source, entrypoint);
      } catch (error) {
        if (error instanceof BuildFailureWithLog) this.records.setBuildLog(current.id, `${error.log}\nthe build failed; the previous version keeps serving`);
        throw error;
      }
      const envVars = input.env_vars ? { ...current.envVars, ...input.env_vars } : current.envVars;
      // The key stays when the updater holds all its scopes; else the new code gets the updater's.
      const keyScopes = current.keyId ? await this.keyScopes(owner, current.keyId) : undefined;
      const keeps = current.keyId !== '' && keyScopes !== undefined && owner.tenant !== undefined && holdsScopes(owner.tenant, keyScopes);
      const key = keeps ? { id: current.keyId, secret: current.keySecret } : await this.issueKey(owner, input.name, environment);
      try {
        const hidden = this.hiddenEnv(environment, secretNames, secretEnv, key.secret, keeps ? keyScopes! : (owner.tenant?.scopes ?? []));
        if (this.apps.hasApp(owner.projectId, input.name))
          await this.apps.update(owner, { name: input.name, image: built.image, env_vars: envVars, replaceEnvVars: true, ...hidden });
        else await this.apps.run(owner, { name: input.name, image: built.image, port: FUNCTION_PORT, env_vars: envVars, ...hidden, min_instances: 0 });
      } catch (error) {
        if (key.id !== current.keyId) await this.revokeKey(owner, input.name, key.id);
        throw error;
      }
      if (key.id !== current.keyId) await this.revokeKey(owner, input.name, current.keyId);
      const next: FunctionRecord = {
        ...current,
        keyId: key.id,
        keySecret: key.secret,
        environment,
        secrets: secretNames,
        entrypoint: entrypoint ?? '',
        ...(given ? sourceFieldsOf(source) : {}),
        envVars,
        image: built.image,
        buildLog: built.log,
        updatedAt: Date.now(),
      };
      this.records.save(next);
      await this.removeImages(owner, input.name, built.image);
      this.options.log.info({ function: input.name, project: owner.projectName, image: built.image }, 'function updated');
      return this.stateOf(owner, next);
    });
  }

  /** POSTs `body` as JSON to the function and answers its JSON. */
  async call(owner: AppOwner, name: string, body: unknown): Promise<unknown> {
    this.find(owner, name);
    const endpoint = await this.apps.openApp(owner.projectId, name);
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

  describe(owner: AppOwner, name: string): FunctionState {
    return this.stateOf(owner, this.find(owner, name));
  }

  list(owner: AppOwner): FunctionState[] {
    return this.records.listOfProject(owner.projectId).map((record) => this.stateOf(owner, record));
  }

  async delete(owner: FunctionOwner, name: string): Promise<void> {
    const record = this.find(owner, name);
    await this.exclusive(owner, name, async () => {
      if (this.apps.hasApp(owner.projectId, name)) await this.apps.delete(owner, name);
      this.records.remove(record.id);
      await this.removeImages(owner, name);
      await this.revokeKey(owner, name, record.keyId);
    });
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

  /** The named secrets as env vars; 403 when the deploying key may not read secrets. */
  private async readSecrets(owner: FunctionOwner, environment: string, names: string[]): Promise<Record<string, string>> {
    if (names.length === 0) return {};
    if (!this.options.platform || !owner.tenant) throw errors.badRequest('secrets: this server hands no secrets to functions');
    return this.options.platform.secrets(owner.tenant, environment, names);
  }

  /** What the function's app runs with but never shows: its secrets and ALTO_KEY. */
  private hiddenEnv(environment: string, secretNames: string[], secretEnv: Record<string, string>, keySecret: string, keyScopes: string[]): { hidden_env?: HiddenEnv } {
    const env: Record<string, string> = { ...secretEnv };
    if (keySecret) env[FUNCTION_KEY_VARIABLE] = keySecret;
    return { hidden_env: { env, secrets: secretNames, environment, scopes: keySecret ? keyScopes : [] } };
  }

  /** The images built for the function, but for the one serving (`keep`); the image store keeps any still in use. */
  private async removeImages(owner: AppOwner, name: string, keep?: string): Promise<void> {
    const repository = `${IMAGE_REGISTRY}/${owner.projectId.toLowerCase()}/${name}`;
    const kept = keep?.slice(keep.indexOf('@') + 1);
    for (const image of this.options.images.list()) {
      if (image.digest === kept) continue;
      for (const reference of image.references.filter((candidate) => candidate.startsWith(`${repository}:`))) {
        await this.options.images.remove(reference).catch((error: Error) => this.options.log.warn({ err: error, reference }, 'removing a function image failed'));
      }
    }
  }

  /** Build logs, runtime logs (the app's output and Alto's lines about it), or both. */
  logs(owner: AppOwner, name: string, type: string | undefined, lines = 200): string {
    const record = this.find(owner, name);
    const runtime = (): string => {
      if (!this.apps.hasApp(owner.projectId, name)) return '';
      const hidden = this.apps.get(owner, name).record.settings.hidden_env;
      return this.apps
        .logs(owner, name, lines)
        .map((line: AppLogLine) => `${new Date(line.at).toISOString()} ${line.stream === 'system' ? 'alto:' : line.stream === 'stderr' ? 'err:' : ''}${line.stream === 'stdout' ? '' : ' '}${redactHidden(line.line, hidden)}`)
        .join('\n');
    };
    if (type === 'build') return record.buildLog;
    if (type === 'runtime') return runtime();
    return `--- build ---\n${record.buildLog}\n--- runtime ---\n${runtime()}`;
  }

  /** The function's URL on the edge, by id or name. */
  proxyUrl(owner: AppOwner, idOrName: string): string {
    const record = this.records.get(idOrName) ?? this.records.find(owner.projectId, idOrName);
    if (!record || record.projectId !== owner.projectId) throw errors.notFound(`no function "${idOrName}" in project "${owner.projectName}"`);
    return this.apps.appUrl({ name: record.name, projectName: owner.projectName });
  }

  deleteProject(projectId: string): void {
    this.records.removeProject(projectId);
  }

  private stateOf(owner: AppOwner, record: FunctionRecord): FunctionState {
    let app: AppState | undefined;
    if (this.apps.hasApp(owner.projectId, record.name)) app = this.apps.get(owner, record.name);
    return { record, app, url: this.apps.appUrl({ name: record.name, projectName: owner.projectName }) };
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
