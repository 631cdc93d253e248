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
 * `LogThrottle` is the rate an app's output is kept at: past it lines are dropped and counted,
 * so an app that floods stdout costs Alto neither memory nor disk bandwidth beyond that rate.
 */
import { appendFile, mkdir, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
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
  retentionMs?: number;
  log: Logger;
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

  constructor(private readonly options: LogStoreOptions) {
    this.maxBytesPerApp = Math.max(MIN_LOG_MAX_BYTES, options.maxBytesPerApp ?? DEFAULT_LOG_MAX_BYTES);
    this.retentionMs = options.retentionMs ?? DEFAULT_LOG_RETENTION_MS;
  }

  dirOf(appId: string): string {
    return join(this.options.dir, appId);
  }

  /** The writer of an app's log (one per app). */
  writer(appId: string): AppLogWriter {
    let writer = this.writers.get(appId);
    if (!writer) {
      writer = new AppLogWriter(this.dirOf(appId), this.options.node, this.maxBytesPerApp, this.retentionMs, this.options.log);
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

  /** Deletes an app's log (the app was deleted). */
  async remove(appId: string): Promise<void> {
    const writer = this.writers.get(appId);
    this.writers.delete(appId);
    await writer?.close();
    await rm(this.dirOf(appId), { recursive: true, force: true });
  }

  /** Writes what is buffered (Alto is stopping). */
  async close(): Promise<void> {
    await Promise.all([...this.writers.values()].map((writer) => writer.close()));
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
  private readonly segmentBytes: number;

  constructor(
    private readonly dir: string,
    private readonly node: string,
    private readonly maxBytes: number,
    private readonly retentionMs: number,
    private readonly log: Logger,
  ) {
    this.segmentBytes = segmentBytesFor(maxBytes);
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
    for (const text of batch) {
      const size = Buffer.byteLength(text);
      const current = this.segments.at(-1);
      if (!current || current.bytes + chunkBytes + size > this.segmentBytes) {
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
  }

  /** Deletes the oldest segments (never the one written to) until `adding` more bytes fit the cap, and those past the retention. */
  private async prune(adding: number): Promise<void> {
    const segments = this.segments!;
    const total = () => segments.reduce((sum, segment) => sum + segment.bytes, 0);
    const oldestKept = Date.now() - this.retentionMs;
    while (segments.length > 1) {
      const [oldest, next] = segments as [Segment, Segment];
      // A segment's last line is older than the next one's first.
      if (total() + adding <= this.maxBytes && next.start >= oldestKept) break;
      await unlink(join(this.dir, oldest.name)).catch(() => undefined);
      segments.shift();
    }
  }
}
