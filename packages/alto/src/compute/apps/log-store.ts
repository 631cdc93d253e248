/**
 * @module compute/apps/log-store
 * Apps' log lines on disk, so they outlast the memory of the runtime and a restart of Alto: per
 * app a folder `<data>/logs/apps/<app id>/` of append-only JSON-lines segments, each named by
 * the time of its first line, each line `{"time","stream","instance","node","version","text"}`.
 *
 * Writing never blocks the event loop: lines are buffered and appended asynchronously in
 * batches (one write in flight per app); a buffer past `MAX_PENDING_BYTES` (the disk cannot keep
 * up) drops lines and counts them in a "[… N lines dropped]" line. Before each append the oldest
 * segments go until the folder, with the append, fits the app's size cap, and segments whose
 * last line is older than the retention go too. Reading goes from the newest segment back and
 * stops once it has `limit` lines or passed `since`.
 *
 * A project bounds its apps' logs together (`log_days`, `log_bytes`: platform/app-log-settings.ts):
 * a sweep, at start, every few minutes, as soon as a project's appends pass its bytes and when a
 * project's settings change, deletes the segments past its days and then the oldest segments
 * across all its apps until they fit its bytes. Deletions go through each app's writer, in order
 * with its appends.
 *
 * `LogThrottle` is the rate an app's output is kept at: past it lines are dropped and counted,
 * so an app that floods stdout costs Alto neither memory nor disk bandwidth beyond that rate.
 */
import { appendFile, mkdir, open, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../kit/logger.js';
import type { AppLogLine, AppLogStream } from './runtime.js';

/** Defaults, per app: the size cap of its folder and how long lines are kept. */
export const DEFAULT_LOG_MAX_BYTES = 64 * 1024 ** 2;
export const DEFAULT_LOG_RETENTION_MS = 7 * 24 * 3600_000;
/** The smallest size cap (so a segment holds a useful number of lines). */
export const MIN_LOG_MAX_BYTES = 256 * 1024;
/** Lines an app's output is kept at per second, and bytes of them, before lines are dropped. */
export const DEFAULT_LOG_LINES_PER_SECOND = 1_000;
export const DEFAULT_LOG_BYTES_PER_SECOND = 1024 ** 2;
/** Bytes waiting for their append, per app; past it lines are dropped (and counted). */
const MAX_PENDING_BYTES = 2 * 1024 ** 2;
/** How long lines wait before they are appended. */
const FLUSH_MS = 200;
const SEGMENT = /^(\d{13})(?:-(\d+))?\.jsonl$/;

export interface LogStoreOptions {
  /** The folder of all apps' logs (`<data>/logs/apps`). */
  dir: string;
  /** This node's name, written on every line. */
  node: string;
  maxBytesPerApp?: number;
  /** How long lines are kept when a project's own bound is not known (yet). */
  retentionMs?: number;
  log: Logger;
  /** The project an app belongs to (undefined: unknown, its folder is left alone). */
  projectOf?: (appId: string) => Promise<string | undefined>;
  /** A project's bounds (`log_days`, `log_bytes`); without it only each app's cap and `retentionMs` apply. */
  boundsOf?: (projectId: string) => Promise<ProjectLogBounds>;
  /** The clock (ms), for tests. */
  now?: () => number;
  /** How often every project is swept (default 10 minutes). */
  sweepEveryMs?: number;
}

/** What a project's apps' logs may hold together on this node. */
export interface ProjectLogBounds {
  days: number;
  bytes: number;
}

/** A stored line as read back: an app's line with the node that wrote it. */
export interface StoredLogLine extends AppLogLine {
  node: string;
}

export interface LogQuery {
  /** At most this many lines, the newest. */
  limit: number;
  /** Lines at or after, before or at, these times (ms). */
  since?: number;
  until?: number;
  /** A plain substring the line's text (as `text` shows it) must hold. */
  grep?: string;
  instance?: string;
  stream?: AppLogStream;
  /** The most bytes of lines in one answer. */
  maxBytes?: number;
  /** The line as the reader may see it (hidden values redacted): grep matches this. */
  text?: (line: string) => string;
}

/** The text of the line saying how many lines were dropped. */
export function droppedMarker(count: number): string {
  return `[… ${count} line${count === 1 ? '' : 's'} dropped]`;
}

/**
 * The rate an app's output is kept at: per one-second window at most `linesPerSecond` lines and
 * `bytesPerSecond` bytes; the rest are counted, and `admit` reports the count of a window past
 * once (through `onDropped`), when the next line comes or the window's timer fires.
 */
export class LogThrottle {
  private windowStart = 0;
  private lines = 0;
  private bytes = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly onDropped: (count: number) => void,
    private readonly linesPerSecond = DEFAULT_LOG_LINES_PER_SECOND,
    private readonly bytesPerSecond = DEFAULT_LOG_BYTES_PER_SECOND,
  ) {}

  /** Whether a line of `size` bytes is kept. */
  admit(size: number, now = Date.now()): boolean {
    if (now - this.windowStart >= 1000) this.newWindow(now);
    if (this.lines + 1 > this.linesPerSecond || this.bytes + size > this.bytesPerSecond) {
      this.dropped += 1;
      this.timer ??= setTimeout(() => this.report(), Math.max(1, this.windowStart + 1000 - now)).unref();
      return false;
    }
    this.lines += 1;
    this.bytes += size;
    return true;
  }

  /** Reports drops not reported yet (the app ended). */
  stop(): void {
    this.report();
  }

  private newWindow(now: number): void {
    this.report();
    this.windowStart = now;
    this.lines = 0;
    this.bytes = 0;
  }

  private report(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dropped === 0) return;
    const count = this.dropped;
    this.dropped = 0;
    this.onDropped(count);
  }
}

/** One segment file: its name, the time of its first line, its size. */
interface Segment {
  name: string;
  start: number;
  bytes: number;
}

async function listSegments(dir: string): Promise<Segment[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const segments: Segment[] = [];
  for (const name of names) {
    const match = SEGMENT.exec(name);
    if (!match) continue;
    const size = await stat(join(dir, name)).then((info) => info.size, () => undefined);
    if (size !== undefined) segments.push({ name, start: Number(match[1]), bytes: size });
  }
  return segments.sort(compareSegments);
}

function compareSegments(a: Segment, b: Segment): number {
  return a.start - b.start || sequenceOf(a.name) - sequenceOf(b.name);
}

function sequenceOf(name: string): number {
  return Number(SEGMENT.exec(name)?.[2] ?? 0);
}

/** One line as written. */
function serialize(entry: AppLogLine, node: string): string {
  return `${JSON.stringify({ time: new Date(entry.at).toISOString(), stream: entry.stream, instance: entry.instance, node, version: entry.version, text: entry.line })}\n`;
}

/** A written line back; undefined for one that is not (a line cut short by a crash). */
function parse(text: string): StoredLogLine | undefined {
  try {
    const value = JSON.parse(text) as { time: string; stream: AppLogStream; instance: string; node: string; version: number; text: string };
    const at = Date.parse(value.time);
    if (!Number.isFinite(at) || typeof value.text !== 'string') return undefined;
    return { at, stream: value.stream, instance: value.instance ?? '', node: value.node ?? '', version: value.version ?? 0, line: value.text };
  } catch {
    return undefined;
  }
}

/** The segment size for a size cap: an eighth of it, within 16 KiB and 8 MiB. */
function segmentBytesFor(maxBytes: number): number {
  return Math.max(16 * 1024, Math.min(8 * 1024 ** 2, Math.floor(maxBytes / 8)));
}

/** The apps' logs of this node. */
export class AppLogStore {
  readonly maxBytesPerApp: number;
  readonly retentionMs: number;
  private readonly writers = new Map<string, AppLogWriter>();
  private readonly now: () => number;
  /** The project of each app seen. */
  private readonly projects = new Map<string, string>();
  /** Each project's bounds as last read. */
  private readonly bounds = new Map<string, ProjectLogBounds>();
  /** Bytes of each project's logs on disk, as of its last sweep plus the appends since. */
  private readonly projectBytes = new Map<string, number>();
  /** Projects whose sweep is due soon (their appends passed their bytes), and the sweeps running. */
  private readonly sweepsDue = new Set<string>();
  private sweeping: Promise<void> = Promise.resolve();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: LogStoreOptions) {
    this.maxBytesPerApp = Math.max(MIN_LOG_MAX_BYTES, options.maxBytesPerApp ?? DEFAULT_LOG_MAX_BYTES);
    this.retentionMs = options.retentionMs ?? DEFAULT_LOG_RETENTION_MS;
    this.now = options.now ?? Date.now;
  }

  dirOf(appId: string): string {
    return join(this.options.dir, appId);
  }

  /** Sweeps every project now and then every `sweepEveryMs`. */
  start(): void {
    void this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), this.options.sweepEveryMs ?? 600_000).unref();
  }

  /** The writer of an app's log (one per app); `projectId` is the app's project, for its bounds. */
  writer(appId: string, projectId?: string): AppLogWriter {
    if (projectId) this.noteProject(appId, projectId);
    let writer = this.writers.get(appId);
    if (!writer) {
      writer = new AppLogWriter(this.dirOf(appId), this.options.node, () => this.limitsOf(appId), this.options.log, this.now, (bytes) => this.written(appId, bytes));
      this.writers.set(appId, writer);
    }
    return writer;
  }

  /** The newest lines of an app's log that `query` accepts, oldest first (lines still buffered are written first). */
  async read(appId: string, query: LogQuery): Promise<StoredLogLine[]> {
    await this.writers.get(appId)?.flush();
    const dir = this.dirOf(appId);
    const segments = (await listSegments(dir)).reverse();
    const picked: StoredLogLine[] = [];
    const maxBytes = query.maxBytes ?? Infinity;
    let bytes = 0;
    const text = query.text ?? ((line: string) => line);
    for (const segment of segments) {
      if (query.until !== undefined && segment.start > query.until) continue;
      const content = await readFile(join(dir, segment.name), 'utf8').catch(() => '');
      const rows = content.split('\n');
      for (let index = rows.length - 1; index >= 0; index--) {
        if (!rows[index]) continue;
        const line = parse(rows[index]!);
        if (!line || !accepts(line, query, text)) continue;
        bytes += Buffer.byteLength(line.line) + 64;
        if (bytes > maxBytes || picked.length >= query.limit) return picked.reverse();
        picked.push(line);
      }
      // Older segments hold only older lines.
      if (query.since !== undefined && segment.start < query.since) break;
    }
    return picked.reverse();
  }

  /**
   * Applies projects' bounds (one project's, or every one's): segments whose last line is older
   * than the project's days go, then the oldest segments across its apps until they hold at most
   * its bytes. Sweeps run one at a time.
   */
  sweep(projectId?: string): Promise<void> {
    const run = this.sweeping.then(() => this.sweepNow(projectId)).catch((error: unknown) => this.options.log.warn({ err: error, project: projectId }, "sweeping apps' logs failed"));
    this.sweeping = run;
    return run;
  }

  /** Deletes an app's log (the app was deleted). */
  async remove(appId: string): Promise<void> {
    const writer = this.writers.get(appId);
    this.writers.delete(appId);
    await writer?.close();
    await rm(this.dirOf(appId), { recursive: true, force: true });
  }

  /** Writes what is buffered (Alto is stopping). */
  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await Promise.all([...this.writers.values()].map((writer) => writer.close()));
    await this.sweeping;
  }

  private noteProject(appId: string, projectId: string): void {
    if (this.projects.get(appId) === projectId) return;
    this.projects.set(appId, projectId);
    if (!this.bounds.has(projectId)) void this.refreshBounds(projectId).catch(() => undefined);
  }

  private async refreshBounds(projectId: string): Promise<ProjectLogBounds | undefined> {
    if (!this.options.boundsOf) return undefined;
    const bounds = await this.options.boundsOf(projectId);
    this.bounds.set(projectId, bounds);
    return bounds;
  }

  /** The cap and retention an app's writer keeps to: the app's cap within its project's bytes, its project's days. */
  private limitsOf(appId: string): { maxBytes: number; retentionMs: number } {
    const projectId = this.projects.get(appId);
    const bounds = projectId ? this.bounds.get(projectId) : undefined;
    if (!bounds) return { maxBytes: this.maxBytesPerApp, retentionMs: this.retentionMs };
    return { maxBytes: Math.max(MIN_LOG_MAX_BYTES, Math.min(this.maxBytesPerApp, bounds.bytes)), retentionMs: bounds.days * 86_400_000 };
  }

  /** An app's append reached the disk: past its project's bytes, the project is swept soon. */
  private written(appId: string, bytes: number): void {
    const projectId = this.projects.get(appId);
    if (!projectId) return;
    const total = (this.projectBytes.get(projectId) ?? 0) + bytes;
    this.projectBytes.set(projectId, total);
    const bounds = this.bounds.get(projectId);
    if (!bounds || total <= bounds.bytes || this.sweepsDue.has(projectId)) return;
    this.sweepsDue.add(projectId);
    setTimeout(() => {
      this.sweepsDue.delete(projectId);
      void this.sweep(projectId);
    }, 1000).unref();
  }

  private async sweepNow(only: string | undefined): Promise<void> {
    const appsOf = new Map<string, string[]>();
    let names: string[];
    try {
      names = await readdir(this.options.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const appId of names) {
      let projectId = this.projects.get(appId);
      if (!projectId && this.options.projectOf) {
        projectId = await this.options.projectOf(appId);
        if (projectId) this.projects.set(appId, projectId);
      }
      if (!projectId || (only !== undefined && projectId !== only)) continue;
      appsOf.set(projectId, [...(appsOf.get(projectId) ?? []), appId]);
    }
    for (const [projectId, appIds] of appsOf) await this.sweepProject(projectId, appIds);
  }

  private async sweepProject(projectId: string, appIds: string[]): Promise<void> {
    const bounds = (await this.refreshBounds(projectId)) ?? { days: this.retentionMs / 86_400_000, bytes: Infinity };
    const oldestKept = this.now() - bounds.days * 86_400_000;
    const kept: Array<Segment & { appId: string }> = [];
    const doomed = new Map<string, string[]>();
    const drop = (appId: string, name: string) => doomed.set(appId, [...(doomed.get(appId) ?? []), name]);
    for (const appId of appIds) {
      const dir = this.dirOf(appId);
      const segments = await listSegments(dir);
      for (let index = 0; index < segments.length; index++) {
        const segment = segments[index]!;
        const next = segments[index + 1];
        // A segment's last line is older than the next one's first, and not older than its own first: read it only between.
        const expired =
          (next !== undefined && next.start < oldestKept) ||
          (segment.start < oldestKept && (await lastLineAt(join(dir, segment.name), segment.bytes, segment.start)) < oldestKept);
        if (expired) drop(appId, segment.name);
        else kept.push({ ...segment, appId });
      }
    }
    kept.sort(compareSegments);
    let total = kept.reduce((sum, segment) => sum + segment.bytes, 0);
    for (const segment of kept) {
      if (total <= bounds.bytes) break;
      drop(segment.appId, segment.name);
      total -= segment.bytes;
    }
    this.projectBytes.set(projectId, total);
    for (const [appId, segmentNames] of doomed) await this.writer(appId).removeSegments(segmentNames);
  }
}

/** The time of the last whole line of a segment (read from its last 64 KiB), else `fallback`. */
async function lastLineAt(path: string, size: number, fallback: number): Promise<number> {
  const length = Math.min(size, 64 * 1024);
  if (length === 0) return fallback;
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return fallback;
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, size - length);
    const rows = buffer.subarray(0, bytesRead).toString('utf8').split('\n');
    for (let index = rows.length - 1; index >= 0; index--) {
      const line = rows[index] ? parse(rows[index]!) : undefined;
      if (line) return line.at;
    }
    return fallback;
  } finally {
    await handle.close();
  }
}

function accepts(line: StoredLogLine, query: LogQuery, text: (line: string) => string): boolean {
  if (query.since !== undefined && line.at < query.since) return false;
  if (query.until !== undefined && line.at > query.until) return false;
  if (query.stream && line.stream !== query.stream) return false;
  if (query.instance && line.instance !== query.instance) return false;
  if (query.grep && !text(line.line).includes(query.grep)) return false;
  return true;
}

/**
 * Appends one app's lines to its segments: `append` only buffers (constant time); a timer, or
 * `flush`, hands the buffer to the one chain of appends, so lines reach the disk in order.
 */
export class AppLogWriter {
  private pending: string[] = [];
  private pendingBytes = 0;
  private pendingFirstAt = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private segments: Segment[] | undefined;
  private closed = false;

  constructor(
    private readonly dir: string,
    private readonly node: string,
    /** The cap of this app's folder and how long its lines are kept, as they are now. */
    private readonly limits: () => { maxBytes: number; retentionMs: number },
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** Told of each append's bytes once they are on disk (and, negative, of segments its cap deleted). */
    private readonly onWritten: (bytes: number) => void = () => undefined,
  ) {}

  /** Deletes segments (a sweep chose them), in order with the appends. */
  removeSegments(names: string[]): Promise<void> {
    const doomed = new Set(names);
    this.chain = this.chain
      .then(async () => {
        for (const name of doomed) await unlink(join(this.dir, name)).catch(() => undefined);
        if (this.segments) this.segments = this.segments.filter((segment) => !doomed.has(segment.name));
      })
      .catch((error: unknown) => this.log.warn({ err: error, dir: this.dir }, 'deleting app log segments failed'));
    return this.chain;
  }

  /** Buffers a line; drops it (counted) when the buffer is full. */
  append(entry: AppLogLine): void {
    if (this.closed) return;
    const text = serialize(entry, this.node);
    if (this.pendingBytes + text.length > MAX_PENDING_BYTES) {
      this.dropped += 1;
      return;
    }
    if (this.dropped > 0) this.takeDropped(entry.at);
    if (this.pending.length === 0) this.pendingFirstAt = entry.at;
    this.pending.push(text);
    this.pendingBytes += text.length;
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS).unref();
  }

  /** Resolves once every line appended so far is on disk (or failed to be written, which is logged). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dropped > 0) this.takeDropped(Date.now());
    if (this.pending.length === 0) return this.chain;
    const batch = this.pending;
    const firstAt = this.pendingFirstAt;
    this.pending = [];
    this.pendingBytes = 0;
    this.chain = this.chain.then(() => this.write(batch, firstAt)).catch((error: unknown) => this.log.warn({ err: error, dir: this.dir }, 'writing app log lines failed'));
    return this.chain;
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  private takeDropped(at: number): void {
    const text = serialize({ at, stream: 'system', line: droppedMarker(this.dropped), instance: '', version: 0 }, this.node);
    this.dropped = 0;
    if (this.pending.length === 0) this.pendingFirstAt = at;
    this.pending.push(text);
    this.pendingBytes += text.length;
  }

  /** Appends a batch, rotating at the segment size and pruning before each append so the folder stays within its cap. */
  private async write(batch: string[], firstAt: number): Promise<void> {
    if (!this.segments) {
      await mkdir(this.dir, { recursive: true });
      this.segments = await listSegments(this.dir);
    }
    let chunk = '';
    let chunkBytes = 0;
    const { maxBytes, retentionMs } = this.limits();
    const segmentBytes = segmentBytesFor(maxBytes);
    // A segment spans at most an eighth of the retention (at least an hour), so a quiet app's old lines do not wait for its segment to fill.
    const stale = (segment: Segment) => firstAt - segment.start > Math.max(3600_000, retentionMs / 8);
    for (const text of batch) {
      const size = Buffer.byteLength(text);
      const current = this.segments.at(-1);
      if (!current || current.bytes + chunkBytes + size > segmentBytes || (chunkBytes === 0 && stale(current))) {
        if (current && chunk) await this.appendTo(current, chunk, chunkBytes);
        chunk = '';
        chunkBytes = 0;
        this.segments.push(this.newSegment(firstAt));
      }
      chunk += text;
      chunkBytes += size;
    }
    const current = this.segments.at(-1);
    if (current && chunk) await this.appendTo(current, chunk, chunkBytes);
  }

  private newSegment(at: number): Segment {
    const last = this.segments?.at(-1);
    const start = Math.max(at, last?.start ?? 0);
    const sequence = last && last.start === start ? sequenceOf(last.name) + 1 : 0;
    const stamp = String(start).padStart(13, '0');
    return { name: sequence ? `${stamp}-${sequence}.jsonl` : `${stamp}.jsonl`, start, bytes: 0 };
  }

  private async appendTo(segment: Segment, chunk: string, bytes: number): Promise<void> {
    await this.prune(bytes);
    await appendFile(join(this.dir, segment.name), chunk);
    segment.bytes += bytes;
    this.onWritten(bytes);
  }

  /** Deletes the oldest segments (never the one written to) until `adding` more bytes fit the cap, and those past the retention. */
  private async prune(adding: number): Promise<void> {
    const segments = this.segments!;
    const total = () => segments.reduce((sum, segment) => sum + segment.bytes, 0);
    const { maxBytes, retentionMs } = this.limits();
    const oldestKept = this.now() - retentionMs;
    while (segments.length > 1) {
      const [oldest, next] = segments as [Segment, Segment];
      // A segment's last line is older than the next one's first.
      if (total() + adding <= maxBytes && next.start >= oldestKept) break;
      await unlink(join(this.dir, oldest.name)).catch(() => undefined);
      segments.shift();
      this.onWritten(-oldest.bytes);
    }
  }
}
