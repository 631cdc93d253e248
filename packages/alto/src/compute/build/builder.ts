/**
 * @module compute/build/builder
 * Dockerfile builds with no Docker: the stages the last one needs are built in order; `FROM`
 * resolves through the image store (pulled as the project may, or an earlier stage, or
 * `scratch`), each RUN runs in a process sandbox of the project (run-step.ts) on top of the
 * layers so far and its changes become a layer (layer.ts), COPY and ADD write their files as a
 * layer (copy.ts) from the context (context.ts), another stage or a URL (remote.ts), and the
 * other instructions change the image config. The result is imported into the image store as an
 * image the project built (image.ts), `builds.alto.internal/<project>/<app>:<build id>`. A few
 * builds run at once on a node; the others wait their turn.
 *
 * Layer cache: every instruction extends a key (sha256 of the parent key, the instruction with
 * its words expanded, and for COPY and ADD the content it reads), starting from the base image's
 * digest and the project. A RUN, COPY or ADD whose key has a layer still in the blob store is
 * not run again. Keys are per project: one project never learns what another built.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, type Stats } from 'node:fs';
import { basename, join, posix } from 'node:path';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { ImageDetails, ImageManager } from '../images/manager.js';
import { RootfsWriter } from '../images/unpack.js';
import { resolveUser } from '../sandbox/common.js';
import type { ProcessDriver } from '../sandbox/index.js';
import { BuildContext } from './context.js';
import { expandWord, expandWords, keyValuePairs, parseDockerfile, type Instruction, type Stage } from './dockerfile.js';
import { contentDigest, copyEntries, parseMode, resolveInRoot, type CopyItem } from './copy.js';
import { configOf, emptyConfig, importBuiltImage, setEnv, type BuiltImage, type BuiltLayer, type RunConfig } from './image.js';
import { LAYER_MEDIA_TYPE, snapshotChanges, writeLayer } from './layer.js';
import { fetchForBuild, isUrl } from './remote.js';
import { buildSandboxDriver, runStep } from './run-step.js';

export const BUILD_REGISTRY = 'builds.alto.internal';

export interface BuildOwner {
  projectId: string;
  projectName: string;
  admin: boolean;
}

export interface BuildRequest {
  owner: BuildOwner;
  /** The app the image is for: its repository's last part. */
  app: string;
  buildId: string;
  /** The context folder (an upload or a clone), on this machine. */
  context: string;
  /** The Dockerfile, relative to the context. */
  dockerfile: string;
  buildArgs: Record<string, string>;
  /** RUN steps may reach the internet (through the outbound guard). */
  network: boolean;
  onLog(line: string): void;
}

export interface BuildResult {
  /** What to run: `builds.alto.internal/<project>/<app>@sha256:...`. */
  reference: string;
  digest: string;
  tag: string;
  steps: number;
  cached: number;
}

export interface ImageBuilderOptions {
  dataDir: string;
  images: ImageManager;
  log: Logger;
  /** The shared sandbox cache (tools, launcher). */
  sandboxCacheDir: string;
  /** The process driver's state folder of this node (its id ranges are shared with the apps'). */
  sandboxStateDir: string;
  /** Longest a RUN step may take. Default 10 minutes. */
  stepTimeoutMs?: number;
  /** Memory of a RUN step's sandbox. Default 1024 MiB. */
  stepMemoryMiB?: number;
  maxLayerBytes?: number;
  /** Builds running at once on this node; the others wait their turn. Default 2. */
  buildsAtOnce?: number;
}



interface StageState {
  stage: Stage;
  layers: BuiltLayer[];
  config: RunConfig;
  history: { created_by: string; empty_layer?: boolean }[];
  key: string;
  args: Map<string, string>;
  /** The stage's root folder, with `applied` of its layers in it. */
  root: string;
  applied: number;
  cmdSetHere: boolean;
}

const DEFAULT_SHELL = ['/bin/sh', '-c'];
const DEFAULT_STEP_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_MAX_LAYER_BYTES = 8 * 1024 ** 3;
const DEFAULT_BUILDS_AT_ONCE = 2;
const STALE_WORK_MS = 24 * 3600_000;
/** Build args Docker gives every build without an ARG line. */
const PREDEFINED_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

export class ImageBuilder {
  private readonly cacheDir: string;
  private readonly workRoot: string;
  private readonly buildsAtOnce: number;
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly options: ImageBuilderOptions) {
    this.cacheDir = join(options.dataDir, 'builds', 'cache');
    this.workRoot = join(options.dataDir, 'builds', 'work');
    mkdirSync(this.cacheDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.workRoot, { recursive: true, mode: 0o700 });
    this.buildsAtOnce = options.buildsAtOnce ?? DEFAULT_BUILDS_AT_ONCE;
    this.removeStaleWork();
  }

  private get images(): ImageManager {
    return this.options.images;
  }

  async build(request: BuildRequest): Promise<BuildResult> {
    if (this.running >= this.buildsAtOnce) request.onLog(`waiting: ${this.running} builds are running on this node`);
    await this.turn();
    const work = mkdtempSync(join(this.workRoot, `${request.buildId}-`));
    const session = new BuildSession(this, request, work);
    try {
      return await session.run();
    } finally {
      await session.close();
      rmSync(work, { recursive: true, force: true });
      this.running--;
      this.queue.shift()?.();
    }
  }

  /** Waits until fewer than `buildsAtOnce` builds run, then counts this one. */
  private async turn(): Promise<void> {
    if (this.running >= this.buildsAtOnce) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.running++;
  }

  /** Work folders of builds a process that ended left behind (a day old; never one still running). */
  private removeStaleWork(): void {
    for (const name of readdirSync(this.workRoot)) {
      const path = join(this.workRoot, name);
      try {
        if (Date.now() - statSync(path).mtimeMs > STALE_WORK_MS) rmSync(path, { recursive: true, force: true });
      } catch (error) {
        this.options.log.warn({ err: error, path }, 'a stale build folder could not be removed');
      }
    }
  }

  // ---- what a session uses --------------------------------------------------------------------

  /** The layer a cache key names, when its blob is still stored. */
  cached(projectId: string, key: string): BuiltLayer | undefined {
    const path = this.cachePath(projectId, key);
    try {
      const layer = JSON.parse(readFileSync(path, 'utf8')) as BuiltLayer;
      if (this.images.blobs.has(layer.digest)) return layer;
    } catch {
      // No entry, or a torn one: a miss.
    }
    return undefined;
  }

  remember(projectId: string, key: string, layer: BuiltLayer): void {
    const path = this.cachePath(projectId, key);
    const temporary = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(temporary, JSON.stringify(layer), { mode: 0o600 });
    linkOrRename(temporary, path);
  }

  private cachePath(projectId: string, key: string): string {
    return join(this.cacheDir, createHash('sha256').update(`${projectId}\n${key}`).digest('hex'));
  }

  get settings(): Required<Omit<ImageBuilderOptions, 'images' | 'log' | 'buildsAtOnce'>> {
    return {
      dataDir: this.options.dataDir,
      sandboxCacheDir: this.options.sandboxCacheDir,
      sandboxStateDir: this.options.sandboxStateDir,
      stepTimeoutMs: this.options.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS,
      stepMemoryMiB: this.options.stepMemoryMiB ?? 1024,
      maxLayerBytes: this.options.maxLayerBytes ?? DEFAULT_MAX_LAYER_BYTES,
    };
  }

  get imageStore(): ImageManager {
    return this.images;
  }

  get log(): Logger {
    return this.options.log;
  }
}

function linkOrRename(from: string, to: string): void {
  rmSync(to, { force: true });
  try {
    linkSync(from, to);
  } catch {
    // Another build wrote it meanwhile: same key, same layer.
  }
  rmSync(from, { force: true });
}

/** One build: its stages, its sandbox driver, its work folder. */
class BuildSession {
  private readonly context: BuildContext;
  private readonly states: StageState[] = [];
  private driver: Promise<ProcessDriver> | undefined;
  private stepNumber = 0;
  private totalSteps = 0;
  private cachedSteps = 0;
  private readonly globalArgs = new Map<string, string>();
  private readonly usedBuildArgs = new Set<string>();

  constructor(
    private readonly builder: ImageBuilder,
    private readonly request: BuildRequest,
    private readonly work: string,
  ) {
    this.context = new BuildContext(request.context);
  }

  private log(line: string): void {
    this.request.onLog(line);
  }

  async run(): Promise<BuildResult> {
    const parsed = parseDockerfile(this.readDockerfile());
    for (const instruction of parsed.globalArgs) {
      for (const arg of instruction.args) {
        const given = this.buildArg(arg.name);
        const value = given ?? (arg.value !== undefined ? expandWord(arg.value, this.globalArgs, instruction.line) : undefined);
        if (value !== undefined) this.globalArgs.set(arg.name, value);
      }
    }
    const needed = this.neededStages(parsed.stages);
    this.totalSteps = parsed.stages.filter((stage) => needed.has(stage.index)).reduce((sum, stage) => sum + 1 + stage.instructions.length, 0);
    const started = Date.now();
    for (const stage of parsed.stages) {
      if (!needed.has(stage.index)) continue;
      this.states[stage.index] = await this.buildStage(stage, parsed.stages);
    }
    const final = this.states[parsed.stages.length - 1];
    const unused = Object.keys(this.request.buildArgs).filter((name) => !this.usedBuildArgs.has(name));
    if (unused.length > 0) this.log(`warning: build args not used by any ARG: ${unused.join(', ')}`);
    const built = await importBuiltImage(this.builder.imageStore, join(this.work, 'layout'), final, {
      reference: `${this.repository()}:${this.request.buildId}`,
      project: this.request.owner.projectId,
    });
    const image = built.image;
    this.log(`image ${image.digest} built in ${seconds(Date.now() - started)} (${this.cachedSteps} of ${this.totalSteps} steps cached)`);
    const pushed = await this.putInRegistry(built);
    this.log(`in this project's registry as ${pushed}`);
    return { reference: `${this.repository()}@${image.digest}`, digest: image.digest, tag: this.request.buildId, steps: this.totalSteps, cached: this.cachedSteps };
  }

  async close(): Promise<void> {
    const driver = await this.driver?.catch(() => undefined);
    await driver?.close();
  }

  private readDockerfile(): string {
    const relative = posix.normalize(this.request.dockerfile.replace(/^\/+/, ''));
    if (relative === '..' || relative.startsWith('../')) throw errors.badRequest(`dockerfile "${this.request.dockerfile}" is outside the build context`);
    const path = join(this.request.context, relative);
    let info: Stats;
    try {
      info = lstatSync(path);
    } catch {
      throw errors.badRequest(`the build context has no ${relative}`);
    }
    if (!info.isFile()) throw errors.badRequest(`${relative} in the build context is not a file`);
    if (info.size > 256 * 1024) throw errors.payloadTooLarge(`${relative} is larger than 256 KiB`);
    return readFileSync(path, 'utf8');
  }

  private buildArg(name: string): string | undefined {
    if (Object.hasOwn(this.request.buildArgs, name)) {
      this.usedBuildArgs.add(name);
      return this.request.buildArgs[name];
    }
    return undefined;
  }

  private repository(): string {
    return `${BUILD_REGISTRY}/${this.request.owner.projectName.toLowerCase()}/${this.request.app}`;
  }

  /**
   * The image in the project's repository of Alto's registry, `<project>/<app>`, tagged with
   * the build id: pullable like a pushed one (compute/images/distribution.ts). Returns its name.
   */
  private async putInRegistry(built: BuiltImage): Promise<string> {
    const repositories = this.builder.imageStore.repositories;
    const { projectId, projectName } = this.request.owner;
    const repository = repositories.repository({ projectId, projectName }, this.request.app);
    for (const blob of built.blobs) await repositories.linkBlob(repository, blob.digest, blob.size);
    await repositories.putManifest(repository, this.request.buildId, built.manifest, 'application/vnd.oci.image.manifest.v1+json');
    return `${projectName.toLowerCase()}/${this.request.app}:${this.request.buildId}`;
  }

  /** The last stage and every stage it reads from (FROM <stage>, COPY --from=<stage>). */
  private neededStages(stages: Stage[]): Set<number> {
    const needed = new Set<number>();
    const visit = (index: number) => {
      if (needed.has(index)) return;
      needed.add(index);
      const stage = stages[index];
      const names = [stage.from.image, ...stage.instructions.flatMap((instruction) => (instruction.kind === 'COPY' && instruction.from ? [instruction.from] : []))];
      for (const name of names) {
        const found = this.stageNamed(stages.slice(0, index), name.toLowerCase());
        if (found !== undefined) visit(found);
      }
    };
    visit(stages.length - 1);
    return needed;
  }

  private stageNamed(earlier: Stage[], name: string): number | undefined {
    const byAlias = earlier.find((stage) => stage.alias === name);
    if (byAlias) return byAlias.index;
    if (/^\d+$/.test(name) && Number(name) < earlier.length) return Number(name);
    return undefined;
  }

  private header(stage: Stage, instruction: { line: number; text: string }): string {
    this.stepNumber++;
    return `[${stage.alias ?? `stage ${stage.index}`} ${this.stepNumber}/${this.totalSteps}] ${instruction.text} (line ${instruction.line})`;
  }

  // ---- stages ---------------------------------------------------------------------------------

  private async buildStage(stage: Stage, stages: Stage[]): Promise<StageState> {
    const from = stage.from;
    const imageName = expandWord(from.image, this.globalArgs, from.line);
    const began = Date.now();
    this.log(this.header(stage, from));
    const state = await this.baseOf(stage, imageName, stages);
    this.log(`  done in ${seconds(Date.now() - began)}`);
    for (const instruction of stage.instructions) {
      const started = Date.now();
      this.log(this.header(stage, instruction));
      const cached = await this.apply(state, instruction, stages);
      if (cached) {
        this.cachedSteps++;
        this.log('  cached');
      } else this.log(`  done in ${seconds(Date.now() - started)}`);
    }
    return state;
  }

  private async baseOf(stage: Stage, imageName: string, stages: Stage[]): Promise<StageState> {
    const root = join(this.work, `stage-${stage.index}`, 'root');
    mkdirSync(root, { recursive: true, mode: 0o755 });
    const earlier = this.stageNamed(stages.slice(0, stage.index), imageName.toLowerCase());
    const base = { stage, root, applied: 0, args: new Map<string, string>(), cmdSetHere: false };
    if (earlier !== undefined) {
      const parent = this.states[earlier];
      return { ...base, layers: [...parent.layers], config: structuredClone(parent.config), history: [...parent.history], key: hash('stage', parent.key) };
    }
    if (imageName.toLowerCase() === 'scratch') {
      return { ...base, layers: [], config: emptyConfig(), history: [], key: hash('scratch', this.request.owner.projectId) };
    }
    const details = await this.resolveImage(imageName, stage.from.line);
    const layers = details.blobs
      .filter((blob) => blob.role === 'layer')
      .sort((a, b) => a.position - b.position)
      .map((blob) => ({ digest: blob.digest, mediaType: blob.mediaType, size: blob.size, diffId: blob.diffId ?? blob.digest }));
    const config = configOf(await this.builder.imageStore.blobs.read(details.configDigest));
    return { ...base, layers, config: config.run, history: config.history, key: hash('image', this.request.owner.projectId, details.digest) };
  }

  /** The base image, from the store or pulled, as the project may use it. */
  private async resolveImage(name: string, line: number): Promise<ImageDetails> {
    const images = this.builder.imageStore;
    const owner = this.request.owner;
    let local: ImageDetails | undefined;
    try {
      local = images.inspect(name);
    } catch (error) {
      if (!isAltoError(error) || error.status !== 404) throw error;
    }
    if (local && (owner.admin || images.mayUse(local.digest, owner.projectId))) return local;
    try {
      return await images.pull(name, owner.admin ? {} : { project: owner.projectId });
    } catch (error) {
      if (isAltoError(error)) throw new AltoError(error.code, error.status, `Dockerfile line ${line}: FROM ${name}: ${error.detail}`);
      throw errors.badRequest(`Dockerfile line ${line}: FROM ${name}: ${(error as Error).message}`);
    }
  }


  // ---- instructions ---------------------------------------------------------------------------

  /** The variables words are expanded with: the stage's ARGs, then its ENV over them. */
  private variables(state: StageState): Map<string, string> {
    const variables = new Map(state.args);
    for (const [name, value] of state.config.Env) variables.set(name, value);
    return variables;
  }

  /** Applies one instruction; answers whether its layer came from the cache. */
  private async apply(state: StageState, instruction: Instruction, stages: Stage[]): Promise<boolean> {
    const line = instruction.line;
    const vars = this.variables(state);
    const metadata = (description: string, change: () => void) => {
      change();
      state.key = hash(state.key, description);
      state.history.push({ created_by: description, empty_layer: true });
      return false;
    };
    switch (instruction.kind) {
      case 'ARG': {
        const described: string[] = [];
        for (const arg of instruction.args) {
          const value = this.buildArg(arg.name) ?? (arg.value !== undefined ? expandWord(arg.value, vars, line) : this.globalArgs.get(arg.name));
          if (value !== undefined) state.args.set(arg.name, value);
          else if (PREDEFINED_ARGS.has(arg.name)) state.args.delete(arg.name);
          described.push(`${arg.name}=${value ?? ''}`);
        }
        state.key = hash(state.key, `ARG ${described.join(' ')}`);
        return false;
      }
      case 'ENV': {
        const pairs = keyValuePairs(instruction.raw, vars, line, 'ENV');
        return metadata(`ENV ${pairs.map(([key, value]) => `${key}=${value}`).join(' ')}`, () => {
          for (const [key, value] of pairs) setEnv(state.config, key, value);
        });
      }
      case 'LABEL': {
        const pairs = keyValuePairs(instruction.raw, vars, line, 'LABEL');
        return metadata(`LABEL ${JSON.stringify(pairs)}`, () => {
          for (const [key, value] of pairs) state.config.Labels[key] = value;
        });
      }
      case 'WORKDIR': {
        const path = expandWord(instruction.raw, vars, line);
        const absolute = posix.normalize(path.startsWith('/') ? path : posix.join('/', state.config.WorkingDir || '/', path));
        return metadata(`WORKDIR ${absolute}`, () => (state.config.WorkingDir = absolute));
      }
      case 'USER': {
        const user = expandWord(instruction.raw, vars, line);
        if (!user) throw refuse(line, 'USER needs a user');
        return metadata(`USER ${user}`, () => (state.config.User = user));
      }
      case 'STOPSIGNAL': {
        const signal = expandWord(instruction.raw, vars, line);
        if (!/^(SIG)?[A-Z0-9+-]+$|^\d+$/.test(signal)) throw refuse(line, `STOPSIGNAL ${signal} is not a signal`);
        return metadata(`STOPSIGNAL ${signal}`, () => (state.config.StopSignal = signal));
      }
      case 'EXPOSE': {
        const ports = expandWords(instruction.raw, vars, line).map((word) => {
          const match = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(word);
          if (!match || Number(match[1]) < 1 || Number(match[1]) > 65_535) throw refuse(line, `EXPOSE ${word} is not a port (8080 or 8080/tcp)`);
          return `${Number(match[1])}/${(match[2] ?? 'tcp').toLowerCase()}`;
        });
        return metadata(`EXPOSE ${ports.join(' ')}`, () => {
          for (const port of ports) state.config.ExposedPorts[port] = {};
        });
      }
      case 'VOLUME': {
        const raw = instruction.raw.trim();
        let paths: string[];
        if (raw.startsWith('[')) {
          try {
            paths = (JSON.parse(raw) as unknown[]).map((item) => expandWord(String(item), vars, line));
          } catch {
            throw refuse(line, 'VOLUME takes paths, or a JSON array of them');
          }
        } else paths = expandWords(raw, vars, line);
        for (const path of paths) if (!path.startsWith('/')) throw refuse(line, `VOLUME ${path} must be an absolute path`);
        return metadata(`VOLUME ${paths.join(' ')}`, () => {
          for (const path of paths) state.config.Volumes[path] = {};
        });
      }
      case 'ENTRYPOINT':
      case 'CMD': {
        const argv = 'exec' in instruction.command ? instruction.command.exec : [...(state.config.Shell ?? DEFAULT_SHELL), instruction.command.shell];
        return metadata(`${instruction.kind} ${JSON.stringify(argv)}`, () => {
          if (instruction.kind === 'CMD') {
            state.config.Cmd = argv;
            state.cmdSetHere = true;
          } else {
            state.config.Entrypoint = argv;
            // As Docker: an ENTRYPOINT drops the CMD inherited from the base image.
            if (!state.cmdSetHere) state.config.Cmd = undefined;
          }
        });
      }
      case 'SHELL':
        return metadata(`SHELL ${JSON.stringify(instruction.shell)}`, () => (state.config.Shell = instruction.shell));
      case 'HEALTHCHECK': {
        const healthcheck: Record<string, unknown> = { Test: instruction.test };
        for (const [name, value] of Object.entries(instruction.options)) {
          if (name === 'retries') {
            if (!/^\d+$/.test(value)) throw refuse(line, `HEALTHCHECK --retries=${value} is not a whole number`);
            healthcheck.Retries = Number(value);
          } else {
            const key = { interval: 'Interval', timeout: 'Timeout', 'start-period': 'StartPeriod', 'start-interval': 'StartInterval' }[name]!;
            healthcheck[key] = durationNanoseconds(value, () => refuse(line, `HEALTHCHECK --${name}=${value} is not a duration (30s, 1m30s)`));
          }
        }
        return metadata(`HEALTHCHECK ${JSON.stringify(healthcheck)}`, () => (state.config.Healthcheck = healthcheck));
      }
      case 'RUN':
        return this.runInstruction(state, instruction);
      case 'COPY':
      case 'ADD':
        return this.copyInstruction(state, instruction, stages);
      case 'FROM':
        throw refuse(line, 'FROM inside a stage');
    }
  }

  private async runInstruction(state: StageState, instruction: Extract<Instruction, { kind: 'RUN' }>): Promise<boolean> {
    const shell = state.config.Shell ?? DEFAULT_SHELL;
    let argv: string[];
    if ('exec' in instruction.command) argv = instruction.command.exec;
    else if (instruction.heredocs.length > 0 && /^<<-?\s*["']?[A-Za-z_]/.test(instruction.command.shell)) {
      // `RUN <<EOF ... EOF`: the here-document is the script.
      argv = [...shell, instruction.heredocs[0].content];
    } else argv = [...shell, instruction.command.shell];
    if (argv.length === 0) throw refuse(instruction.line, 'RUN needs a command');
    const network = this.request.network && instruction.network !== 'none';
    const description = `RUN ${JSON.stringify(argv)}${network ? ' (network)' : ''}`;
    const key = hash(state.key, description);
    const cached = this.builder.cached(this.request.owner.projectId, key);
    if (cached) {
      this.addLayer(state, cached, key, description);
      return true;
    }
    await this.materialize(state);
    const env: Record<string, string> = {};
    for (const [name, value] of state.args) env[name] = value;
    for (const [name, value] of state.config.Env) env[name] = value;
    env.PATH ??= '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
    const step = randomBytes(4).toString('hex');
    const keepDisk = join(this.work, `step-${step}.ext4`);
    // A root the process driver has not copied before: its copies are keyed by the folder's time.
    const stamp = new Date(1_000_000_000_000 + this.stepNumber * 1000);
    utimesSync(state.root, stamp, stamp);
    const settings = this.builder.settings;
    const driver = await this.sandboxDriver();
    const result = await this.withLine(instruction.line, () => runStep(
      driver,
      {
        root: state.root,
        argv,
        env,
        user: state.config.User,
        workdir: state.config.WorkingDir || '/',
        network,
        tenant: this.request.owner.projectId,
        name: `build-${this.request.app}-${step}`,
        memoryMiB: settings.stepMemoryMiB,
        timeoutMs: settings.stepTimeoutMs,
        keepDiskAt: keepDisk,
        onOutput: (_stream, text) => this.log(`  | ${text}`),
      },
      join(settings.sandboxStateDir),
    ));
    // The driver's id-shifted copy of this step's root is used once: it goes now, not with the build.
    rmSync(join(this.sandboxCacheDir(), 'process-roots'), { recursive: true, force: true });
    try {
      if (result.code !== 0) {
        const output = result.tail.length ? `; its last output:\n${result.tail.join('\n')}` : '';
        throw errors.badRequest(`Dockerfile line ${instruction.line}: RUN failed with exit code ${result.code ?? `none (${result.reason})`}${output}`);
      }
      const mounts = join(this.work, `mounts-${step}`);
      const written = await snapshotChanges(keepDisk, state.root, mounts, join(this.work, `layer-${step}.tar`));
      const layer = await this.storeLayer(written.path);
      rmSync(written.path, { force: true });
      rmSync(mounts, { recursive: true, force: true });
      this.builder.remember(this.request.owner.projectId, key, layer);
      this.addLayer(state, layer, key, description);
      return false;
    } finally {
      rmSync(keepDisk, { force: true });
    }
  }

  /** A 4xx from below (a USER the image lacks, a refused flag) names the Dockerfile's line. */
  private async withLine<T>(line: number, task: () => Promise<T>): Promise<T> {
    try {
      return await task();
    } catch (error) {
      if (isAltoError(error) && error.status < 500 && !error.detail.startsWith('Dockerfile line')) throw new AltoError(error.code, error.status, `Dockerfile line ${line}: ${error.detail}`);
      throw error;
    }
  }

  private sandboxDriver(): Promise<ProcessDriver> {
    const settings = this.builder.settings;
    this.driver ??= buildSandboxDriver(settings.sandboxCacheDir, this.sandboxCacheDir(), settings.sandboxStateDir);
    return this.driver;
  }

  /** The sandbox cache folder of this build: the driver's copies of its roots land there. */
  private sandboxCacheDir(): string {
    return join(this.work, 'sandbox-cache');
  }

  private async storeLayer(path: string): Promise<BuiltLayer> {
    const stored = await this.builder.imageStore.blobs.putStream(createReadStream(path, { highWaterMark: 1 << 20 }));
    return { digest: stored.digest, mediaType: LAYER_MEDIA_TYPE, size: stored.size, diffId: stored.digest };
  }

  private addLayer(state: StageState, layer: BuiltLayer, key: string, description: string): void {
    state.layers.push(layer);
    state.key = key;
    state.history.push({ created_by: description });
  }

  /** Brings the stage's root folder up to its layers. */
  private async materialize(state: StageState): Promise<void> {
    if (state.applied === state.layers.length) return;
    const writer = new RootfsWriter(state.root, { maxLayerBytes: this.builder.settings.maxLayerBytes, preserveOwnership: true });
    for (const layer of state.layers.slice(state.applied)) {
      await writer.applyLayer({ digest: layer.digest, mediaType: layer.mediaType, path: this.builder.imageStore.blobs.pathOf(layer.digest), diffId: layer.diffId });
    }
    await writer.finish();
    state.applied = state.layers.length;
  }

  private async copyInstruction(state: StageState, instruction: Extract<Instruction, { kind: 'COPY' | 'ADD' }>, stages: Stage[]): Promise<boolean> {
    const line = instruction.line;
    const vars = this.variables(state);
    const fail = (detail: string) => refuse(line, `${instruction.kind} ${detail}`);
    await this.materialize(state);
    const owner = instruction.chown !== undefined ? this.ownerOf(state, expandWord(instruction.chown, vars, line), fail) : { uid: 0, gid: 0 };
    const mode = instruction.chmod !== undefined ? parseMode(expandWord(instruction.chmod, vars, line), fail) : undefined;
    const fromName = instruction.from !== undefined ? expandWord(instruction.from, vars, line).toLowerCase() : undefined;
    const fromRoot = fromName !== undefined ? await this.rootToCopyFrom(state, fromName, stages, line) : undefined;
    const items = fromRoot !== undefined ? this.itemsOfRoot(instruction, fromRoot, fromName!, vars, fail) : await this.itemsOfContext(instruction, vars, fail);
    const { entries, destination } = await copyEntries({
      kind: instruction.kind,
      items,
      source: fromRoot !== undefined ? { kind: 'root', root: fromRoot } : { kind: 'context' },
      destinationWord: expandWord(instruction.destination, vars, line),
      workdir: state.config.WorkingDir,
      stageRoot: state.root,
      context: this.context,
      owner,
      mode,
      work: this.work,
      maxArchiveBytes: this.builder.settings.maxLayerBytes,
      fail,
    });
    const description = `${instruction.kind} ${JSON.stringify({ destination, owner, mode, content: contentDigest(entries) })}`;
    const history = `${instruction.kind} ${instruction.sources.join(' ')} ${instruction.destination}`;
    const key = hash(state.key, description);
    const cached = this.builder.cached(this.request.owner.projectId, key);
    if (cached) {
      this.addLayer(state, cached, key, history);
      return true;
    }
    const written = await writeLayer(join(this.work, `layer-${randomBytes(4).toString('hex')}.tar`), entries);
    const layer = await this.storeLayer(written.path);
    rmSync(written.path, { force: true });
    this.builder.remember(this.request.owner.projectId, key, layer);
    this.addLayer(state, layer, key, history);
    return false;
  }

  /** The root folder `COPY --from=<name>` reads: an earlier stage's, or an image's, unpacked for this build. */
  private async rootToCopyFrom(state: StageState, name: string, stages: Stage[], line: number): Promise<string> {
    const index = this.stageNamed(stages.slice(0, state.stage.index), name);
    if (index !== undefined) {
      const from = this.states[index];
      await this.materialize(from);
      return from.root;
    }
    const details = await this.resolveImage(name, line);
    const root = join(this.work, `from-${details.digest.slice(7, 23)}`);
    if (!existsSync(root)) await this.builder.imageStore.unpack(details.digest, root);
    return root;
  }

  private itemsOfRoot(instruction: Extract<Instruction, { kind: 'COPY' | 'ADD' }>, root: string, name: string, vars: Map<string, string>, fail: (detail: string) => Error): CopyItem[] {
    return instruction.sources.map((word) => {
      const path = expandWord(word, vars, instruction.line);
      const host = resolveInRoot(root, path);
      if (!host) throw fail(`--from=${name}: ${path} does not exist there`);
      return { name: basename(posix.normalize(`/${path}`)), host };
    });
  }

  /** Sources of the context, here-documents, and for ADD with the build network on, URLs. */
  private async itemsOfContext(instruction: Extract<Instruction, { kind: 'COPY' | 'ADD' }>, vars: Map<string, string>, fail: (detail: string) => Error): Promise<CopyItem[]> {
    const items: CopyItem[] = [];
    for (const word of instruction.sources) {
      if (word.startsWith('<<')) {
        const heredoc = instruction.heredocs.find((entry) => entry.name === word.replace(/^<<-?/, '').replace(/^["']|["']$/g, ''));
        if (!heredoc) throw fail(`${word} names no here-document`);
        items.push({ name: heredoc.name, content: Buffer.from(heredoc.content) });
        continue;
      }
      const path = expandWord(word, vars, instruction.line);
      if (isUrl(path)) {
        if (instruction.kind === 'COPY') throw fail(`${path}: COPY takes files of the context, not URLs (ADD fetches URLs when the build network is on)`);
        if (!this.request.network) throw fail(`${path}: ADD fetches URLs only when the build network is on (--build-network)`);
        const download = join(this.work, `download-${randomBytes(4).toString('hex')}`);
        const fetched = await fetchForBuild(path, download, this.builder.settings.maxLayerBytes, fail);
        items.push({ name: fetched.name, host: download, remote: true });
        continue;
      }
      for (const relative of this.context.resolveSource(path, fail)) items.push({ name: relative === '' ? '' : posix.basename(relative), contextPath: relative });
    }
    return items;
  }

  private ownerOf(state: StageState, chown: string, fail: (detail: string) => Error): { uid: number; gid: number } {
    try {
      return resolveUser(state.root, chown);
    } catch (error) {
      throw fail(`--chown=${chown}: ${(error as Error).message}`);
    }
  }

  // ---- the image --------------------------------------------------------------------------------

}

function refuse(line: number, detail: string): AltoError {
  return errors.badRequest(`Dockerfile line ${line}: ${detail}`);
}

function hash(...parts: string[]): string {
  return createHash('sha256').update(parts.join('\n')).digest('hex');
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}



function durationNanoseconds(text: string, fail: () => Error): number {
  const units: Record<string, number> = { ns: 1, us: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  let rest = text;
  while (rest) {
    const match = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)/.exec(rest);
    if (!match) throw fail();
    total += Number(match[1]) * units[match[2]];
    rest = rest.slice(match[0].length);
  }
  if (total <= 0) throw fail();
  return Math.round(total);
}
