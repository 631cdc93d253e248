/**
 * @module compute/build/build-log-store
 * Build logs on disk, so `app/BuildLogs` and `alto logs NAME --build` answer after a restart of
 * Alto: per app a folder `<data>/logs/builds/<project id>/<app>/` holding one JSON-lines file
 * per build, `<start ms>-<build id>.jsonl`, each line `{"time","text"}` and the last one with
 * `done` (and `image` when it succeeded).
 *
 * An app's builds share the size cap of its runtime log (ALTO_LOG_MAX_BYTES_PER_APP) and its
 * retention: one build's file holds about half the cap at most (past three quarters of that,
 * the lines in between are counted and the last ones kept in memory, written with the count
 * when the build ends, so the failing step's output is never the part lost), and a new build
 * first deletes the app's oldest builds until the others fit in the other half, and those
 * older than the retention; `sweep` deletes those of every app (run at start and hourly).
 */
import { appendFile, mkdir, readdir, readFile, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../kit/logger.js';
import { droppedMarker } from '../apps/log-store.js';

/** One line of a build's log, as app/BuildLogs answers it. */
export interface BuildLogLine {
  at: string;
  line: string;
  /** Set on the last line: how the build ended. */
  done?: 'succeeded' | 'failed';
  image?: string;
}

export interface BuildLogStoreOptions {
  /** The folder of all builds' logs (`<data>/logs/builds`). */
  dir: string;
  /** The size cap of one app's builds together (its runtime log has the same). */
  maxBytesPerApp: number;
  retentionMs: number;
  log: Logger;
}

/** A build as found on disk. */
export interface StoredBuild {
  app: string;
  buildId: string;
  startedAt: number;
  lines: BuildLogLine[];
  /** Whether its last line says how it ended (a build cut short by a stop of Alto has none). */
  finished: boolean;
}

/** Lines of a build past its cap kept to be written when it ends. */
const KEPT_LAST_LINES = 100;
/** How long lines wait before they are appended. */
const FLUSH_MS = 200;
/** Room left in an app's half for the count of lines left out and the last line of a build. */
const END_RESERVE_BYTES = 8 * 1024;
const BUILD_FILE = /^(\d{13})-([a-z0-9]{8,32})\.jsonl$/;

interface BuildFile {
  name: string;
  startedAt: number;
  buildId: string;
  bytes: number;
}

async function listBuilds(dir: string): Promise<BuildFile[]> {
  const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[];
    throw error;
  });
  const files: BuildFile[] = [];
  for (const name of names) {
    const match = BUILD_FILE.exec(name);
    if (!match) continue;
    const bytes = await stat(join(dir, name)).then((info) => info.size, () => undefined);
    if (bytes !== undefined) files.push({ name, startedAt: Number(match[1]), buildId: match[2]!, bytes });
  }
  return files.sort((a, b) => a.startedAt - b.startedAt || a.name.localeCompare(b.name));
}

function serialize(line: BuildLogLine): string {
  return `${JSON.stringify({ time: line.at, text: line.line, ...(line.done ? { done: line.done } : {}), ...(line.image ? { image: line.image } : {}) })}\n`;
}

function parse(text: string): BuildLogLine | undefined {
  try {
    const value = JSON.parse(text) as { time?: unknown; text?: unknown; done?: unknown; image?: unknown };
    if (typeof value.time !== 'string' || typeof value.text !== 'string') return undefined;
    const line: BuildLogLine = { at: value.time, line: value.text };
    if (value.done === 'succeeded' || value.done === 'failed') line.done = value.done;
    if (typeof value.image === 'string') line.image = value.image;
    return line;
  } catch {
    return undefined;
  }
}

/** The build logs of this node. */
export class BuildLogStore {
  constructor(private readonly options: BuildLogStoreOptions) {}

  private appDir(projectId: string, app: string): string {
    return join(this.options.dir, projectId, app);
  }

  /** Starts a build's file, first making room for it among the app's builds. */
  async begin(projectId: string, app: string, buildId: string, startedAt = Date.now()): Promise<BuildLogFile> {
    const dir = this.appDir(projectId, app);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const half = Math.floor(this.options.maxBytesPerApp / 2);
    const builds = await listBuilds(dir);
    const oldestKept = startedAt - this.options.retentionMs;
    let total = builds.reduce((sum, build) => sum + build.bytes, 0);
    for (const build of builds) {
      if (total <= half - END_RESERVE_BYTES && build.startedAt >= oldestKept) break;
      await unlink(join(dir, build.name)).catch(() => undefined);
      total -= build.bytes;
    }
    return new BuildLogFile(join(dir, `${String(startedAt).padStart(13, '0')}-${buildId}.jsonl`), half, this.options.log);
  }

  /** A build of the project by its id, or undefined. */
  async find(projectId: string, buildId: string): Promise<StoredBuild | undefined> {
    const apps = await readdir(join(this.options.dir, projectId)).catch(() => [] as string[]);
    for (const app of apps) {
      const build = (await listBuilds(this.appDir(projectId, app))).find((file) => file.buildId === buildId);
      if (build) return this.load(projectId, app, build);
    }
    return undefined;
  }

  /** The app's last build, or undefined when it has none on disk. */
  async last(projectId: string, app: string): Promise<StoredBuild | undefined> {
    const build = (await listBuilds(this.appDir(projectId, app))).at(-1);
    return build && this.load(projectId, app, build);
  }

  /**
   * Deletes the builds past the retention of every app, and the folders left empty: an app
   * deleted other than by app/Delete (with its project, or its stack) leaves its builds to this.
   */
  async sweep(now = Date.now()): Promise<void> {
    const oldestKept = now - this.options.retentionMs;
    for (const projectId of await readdir(this.options.dir).catch(() => [] as string[])) {
      for (const app of await readdir(join(this.options.dir, projectId)).catch(() => [] as string[])) {
        const dir = this.appDir(projectId, app);
        const builds = await listBuilds(dir);
        // A build's last line is older than the next build's start; the newest is judged by its file's time.
        for (const [index, build] of builds.entries()) {
          const endedBy = index + 1 < builds.length ? builds[index + 1]!.startedAt : await stat(join(dir, build.name)).then((info) => info.mtimeMs, () => now);
          if (endedBy < oldestKept) await unlink(join(dir, build.name)).catch(() => undefined);
        }
        await rmdir(dir).catch(() => undefined);
      }
      await rmdir(join(this.options.dir, projectId)).catch(() => undefined);
    }
  }

  /** Deletes an app's build logs (the app was deleted). */
  async remove(projectId: string, app: string): Promise<void> {
    await rm(this.appDir(projectId, app), { recursive: true, force: true });
  }

  private async load(projectId: string, app: string, build: BuildFile): Promise<StoredBuild> {
    const content = await readFile(join(this.appDir(projectId, app), build.name), 'utf8').catch(() => '');
    const lines = content.split('\n').flatMap((text) => (text ? (parse(text) ?? []) : []));
    return { app, buildId: build.buildId, startedAt: build.startedAt, lines, finished: Boolean(lines.at(-1)?.done) };
  }
}

/**
 * One build's file: `append` buffers, a timer (or `end`) hands the buffer to one chain of
 * appends. Past `maxBytes` lines are counted, the last ones kept, and written at the end.
 */
export class BuildLogFile {
  private pending = '';
  private written = 0;
  private dropped = 0;
  private readonly lastLines: string[] = [];
  private lastBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  append(line: BuildLogLine): void {
    const text = serialize(line.line.length > END_RESERVE_BYTES / 4 ? { ...line, line: `${line.line.slice(0, END_RESERVE_BYTES / 4)} […]` } : line);
    if (line.done) {
      if (this.dropped > 0) this.pending += serialize({ at: line.at, line: droppedMarker(this.dropped) });
      this.pending += this.lastLines.splice(0).join('') + text;
      this.dropped = 0;
      this.lastBytes = 0;
      void this.flush();
      return;
    }
    const size = Buffer.byteLength(text);
    if (this.dropped > 0 || this.lastLines.length > 0 || this.written + size > (this.maxBytes * 3) / 4) {
      this.lastLines.push(text);
      this.lastBytes += size;
      // The first lines take three quarters of the file's cap, the last ones kept at most the rest.
      while (this.lastLines.length > KEPT_LAST_LINES || (this.lastBytes > this.maxBytes / 4 && this.lastLines.length > 1)) {
        this.lastBytes -= Buffer.byteLength(this.lastLines.shift()!);
        this.dropped += 1;
      }
      return;
    }
    this.written += size;
    this.pending += text;
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS).unref();
  }

  /** Resolves once every line appended so far is on disk (a failure is logged: the build goes on). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pending) return this.chain;
    const chunk = this.pending;
    this.pending = '';
    this.chain = this.chain.then(() => appendFile(this.path, chunk, { mode: 0o600 })).catch((error: unknown) => this.log.warn({ err: error, path: this.path }, 'writing a build log failed'));
    return this.chain;
  }
}
