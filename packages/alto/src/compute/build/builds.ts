/**
 * @module compute/build/builds
 * Builds of apps' images from their source. Dockerfile builds (app/Run and app/Update with
 * files or a repo holding a Dockerfile, or naming one with `dockerfile`): the source is written
 * to a build folder, built by the ImageBuilder, and the image reference handed back to the app
 * service; source builds of Node.js projects are another builder's, recorded here with
 * `record`. Each build's log is written to disk (build-log-store.ts), so app/BuildLogs answers
 * after a restart of Alto, and kept in memory while it runs and a while after (the last 200
 * builds of the node, 1 MiB each), so `alto deploy` can follow a build it started while app/Run
 * or app/Update waits for it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { Platform } from '../../platform/platform.js';
import { DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_RETENTION_MS, MIN_LOG_MAX_BYTES } from '../apps/log-store.js';
import { component } from '../../platform/service.js';
import { fetchSource } from '../functions/source.js';
import { imagesComponent } from '../images/service.js';
import { defaultSandboxCacheDir } from '../sandbox/index.js';
import { ImageBuilder, type BuildOwner } from './builder.js';
import { BuildLogStore, type BuildLogFile, type BuildLogLine, type StoredBuild } from './build-log-store.js';

export type { BuildLogLine } from './build-log-store.js';

export interface DockerfileSourceRequest {
  name: string;
  repo?: string;
  branch?: string;
  path?: string;
  files?: Record<string, string>;
  dockerfile?: string;
  build_args?: Record<string, string>;
  build_network?: boolean;
  build_id?: string;
}

/** Builds whose logs are kept on this node (all projects), the oldest forgotten first. */
const KEPT_BUILDS = 200;
/** Bytes of lines kept per build: past it, lines after the first ones give way to the latest. */
const KEPT_BYTES = 1024 * 1024;
const KEPT_FIRST_LINES = 100;
/** What a repository to clone looks like (as compute/functions/app-source.ts checks it). */
const GIT_URL = /^(https?|git|ssh|file):\/\/|^\//;
/** How long a follower waits for a build that has not begun yet. */
const WAIT_FOR_BUILD_MS = 60_000;
/** How often build logs past their retention are deleted. */
const SWEEP_EVERY_MS = 3600_000;

/** One build's lines, numbered, so a follower never skips one when old lines give way. */
class BuildLog {
  constructor(
    readonly app: string,
    private readonly file: BuildLogFile,
  ) {}

  private readonly lines: { number: number; line: BuildLogLine }[] = [];
  private bytes = 0;
  private written = 0;
  finished = false;
  private readonly waiters = new Set<() => void>();

  push(line: BuildLogLine): void {
    if (this.finished) return;
    this.file.append(line);
    this.lines.push({ number: this.written++, line });
    this.bytes += line.line.length;
    while (this.bytes > KEPT_BYTES && this.lines.length > KEPT_FIRST_LINES + 1) {
      const [dropped] = this.lines.splice(KEPT_FIRST_LINES, 1);
      this.bytes -= dropped.line.line.length;
    }
    if (line.done) this.finished = true;
    for (const wake of this.waiters) wake();
  }

  /** Resolves once the lines so far are on disk. */
  flush(): Promise<void> {
    return this.file.flush();
  }

  async *follow(signal?: AbortSignal): AsyncIterable<BuildLogLine> {
    let next = 0;
    for (;;) {
      for (const entry of this.lines) {
        if (entry.number < next) continue;
        next = entry.number + 1;
        yield entry.line;
      }
      if (this.finished || signal?.aborted) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake);
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.waiters.add(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }
}

export class DockerfileBuilds {
  /** By `<project id>/<build id>`, oldest first. */
  private readonly logs = new Map<string, BuildLog>();
  /** The build id of each app's latest build begun on this node, by `<project id>/<app>`. */
  private readonly latest = new Map<string, string>();
  private readonly appeared = new Set<() => void>();
  /** Builds whose file is being opened, by `<project id>/<build id>`. */
  private readonly beginning = new Set<string>();

  constructor(
    private readonly builder: Pick<ImageBuilder, 'build'>,
    private readonly dataDir: string,
    private readonly log: Logger,
    private readonly store: BuildLogStore,
  ) {}

  /** Whether a source deploy is a Dockerfile build without fetching it (an upload holding a Dockerfile, or `dockerfile` named). */
  static isDockerfileRequest(request: DockerfileSourceRequest): boolean {
    return request.dockerfile !== undefined || (request.files !== undefined && Object.hasOwn(request.files, 'Dockerfile'));
  }

  /**
   * Builds the app's image when its source has a Dockerfile; answers the reference to run, or
   * undefined when there is no Dockerfile (another builder's job).
   */
  async buildForApp(owner: BuildOwner, request: DockerfileSourceRequest): Promise<string | undefined> {
    if (request.files === undefined && request.repo === undefined) return undefined;
    // An upload shows whether it holds a Dockerfile; a repository is cloned first to see (one
    // that is not a git URL is the Node.js builder's to refuse, with its own advice).
    if (request.files !== undefined && !DockerfileBuilds.isDockerfileRequest(request)) return undefined;
    if (request.files === undefined && !DockerfileBuilds.isDockerfileRequest(request) && !GIT_URL.test(request.repo!.trim())) return undefined;
    const buildId = request.build_id ?? randomBytes(6).toString('hex');
    const root = join(this.dataDir, 'builds', 'sources');
    mkdirSync(root, { recursive: true, mode: 0o700 });
    const folder = mkdtempSync(join(root, `${request.name}-`));
    try {
      const fetched = await fetchSource(
        request.files !== undefined ? { files: request.files } : { repo: request.repo, branch: request.branch, subfolder: request.path },
        folder,
        { allowLocalRepos: owner.admin },
      );
      const dockerfile = request.dockerfile ?? 'Dockerfile';
      if (!DockerfileBuilds.isDockerfileRequest(request) && !existsSync(join(fetched.folder, dockerfile))) return undefined;
      const log = await this.begin(owner.projectId, request.name, buildId);
      const add = (line: string, end?: Partial<BuildLogLine>) => log.push({ at: new Date().toISOString(), line, ...end });
      try {
        const result = await this.builder.build({
          owner,
          app: request.name,
          buildId,
          context: fetched.folder,
          dockerfile,
          buildArgs: request.build_args ?? {},
          network: request.build_network ?? false,
          onLog: (line) => add(line),
        });
        add(`built ${result.reference}`, { done: 'succeeded', image: result.reference });
        await log.flush();
        this.log.info({ app: request.name, project: owner.projectName, build: buildId, image: result.digest, cached: result.cached, steps: result.steps }, 'app image built from its Dockerfile');
        return result.reference;
      } catch (error) {
        add(`build failed: ${(error as Error).message}`, { done: 'failed' });
        await log.flush();
        throw error;
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  }

  /**
   * Records the log of a build another builder runs (a Node.js project built from source): the
   * lines `build` hands to its `onLog`, then how it ended. Answers what `build` answers.
   */
  async record(owner: BuildOwner, app: string, buildId: string | undefined, build: (onLog: (line: string) => void) => Promise<string>): Promise<string> {
    const log = await this.begin(owner.projectId, app, buildId ?? randomBytes(6).toString('hex'));
    const add = (line: string, end?: Partial<BuildLogLine>) => log.push({ at: new Date().toISOString(), line, ...end });
    try {
      const image = await build((line) => add(line));
      add(`built ${image}`, { done: 'succeeded', image });
      return image;
    } catch (error) {
      add(`build failed: ${(error as Error).message}`, { done: 'failed' });
      throw error;
    } finally {
      await log.flush();
    }
  }

  private async begin(projectId: string, app: string, buildId: string): Promise<BuildLog> {
    const key = `${projectId}/${buildId}`;
    const taken = () => errors.conflict(`build ${buildId} exists already; give another build_id`);
    // Reserved before the disk is asked, so two requests with one build_id cannot both begin.
    if (this.logs.has(key) || this.beginning.has(key)) throw taken();
    this.beginning.add(key);
    let file: BuildLogFile;
    try {
      if (await this.store.find(projectId, buildId)) throw taken();
      file = await this.store.begin(projectId, app, buildId);
    } finally {
      this.beginning.delete(key);
    }
    const log = new BuildLog(app, file);
    this.logs.set(key, log);
    this.latest.set(`${projectId}/${app}`, buildId);
    while (this.logs.size > KEPT_BUILDS) this.logs.delete(this.logs.keys().next().value!);
    for (const wake of this.appeared) wake();
    return log;
  }

  /** The id of the app's last build (on this node), or undefined when it has none. */
  async lastBuildOf(projectId: string, app: string): Promise<string | undefined> {
    return this.latest.get(`${projectId}/${app}`) ?? (await this.store.last(projectId, app))?.buildId;
  }

  /** Deletes an app's build logs (the app was deleted). */
  async forget(projectId: string, app: string): Promise<void> {
    this.latest.delete(`${projectId}/${app}`);
    for (const [key, log] of this.logs) if (key.startsWith(`${projectId}/`) && log.app === app && log.finished) this.logs.delete(key);
    await this.store.remove(projectId, app);
  }

  /**
   * A build's lines, then each new one until it ends: from memory while it runs here, else from
   * disk (a build cut short by a stop of Alto ends with a line saying so); waits a while for a
   * build not begun yet.
   */
  async *follow(projectId: string, buildId: string, signal?: AbortSignal): AsyncIterable<BuildLogLine> {
    const deadline = Date.now() + WAIT_FOR_BUILD_MS;
    const key = `${projectId}/${buildId}`;
    let log = this.logs.get(key);
    while (!log) {
      const stored = await this.store.find(projectId, buildId);
      if (stored) {
        yield* linesOf(stored);
        return;
      }
      if (Date.now() > deadline || signal?.aborted) throw errors.notFound(`no build ${buildId} in this project (builds are followed on the node that runs them)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, Math.max(0, deadline - Date.now()));
        function wake() {
          clearTimeout(timer);
          appeared.delete(wake);
          resolve();
        }
        const appeared = this.appeared;
        appeared.add(wake);
      });
      log = this.logs.get(key);
    }
    yield* log.follow(signal);
  }
}

/** A stored build's lines; one that never ended (Alto stopped during it) gets a last line saying so. */
function linesOf(build: StoredBuild): BuildLogLine[] {
  if (build.finished) return build.lines;
  const at = build.lines.at(-1)?.at ?? new Date(build.startedAt).toISOString();
  return [...build.lines, { at, line: 'the build did not finish: Alto stopped while it ran', done: 'failed' }];
}

/** A whole number from the environment (the apps' log settings, checked when the apps start). */
function settingOf(name: string): number | undefined {
  const value = Number(process.env[name]);
  return process.env[name]?.trim() && Number.isInteger(value) && value >= 0 ? value : undefined;
}

export const buildsComponent = component('builds', (platform: Platform) => {
  const log = platform.log.child({ component: 'builds' });
  const builder = new ImageBuilder({
    dataDir: platform.config.dataDir,
    images: platform.use(imagesComponent),
    log,
    sandboxCacheDir: defaultSandboxCacheDir(),
    // The process sandboxes' state folder of the apps (compute/apps/placement.ts): one set of id ranges per node.
    sandboxStateDir: join(platform.config.dataDir, 'apps', 'sandbox', 'process'),
  });
  // An app's builds share the size cap and retention of its runtime log.
  const store = new BuildLogStore({
    dir: join(platform.config.dataDir, 'logs', 'builds'),
    maxBytesPerApp: Math.max(MIN_LOG_MAX_BYTES, settingOf('ALTO_LOG_MAX_BYTES_PER_APP') ?? DEFAULT_LOG_MAX_BYTES),
    retentionMs: (settingOf('ALTO_LOG_RETENTION_DAYS') ?? DEFAULT_LOG_RETENTION_MS / 86_400_000) * 86_400_000,
    log,
  });
  // Builds of apps deleted with their project or stack go with the retention.
  const sweep = () => void store.sweep().catch((error: unknown) => log.warn({ err: error }, 'deleting old build logs failed'));
  sweep();
  setInterval(sweep, SWEEP_EVERY_MS).unref();
  return new DockerfileBuilds(builder, platform.config.dataDir, log, store);
});
