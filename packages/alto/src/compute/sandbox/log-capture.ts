/**
 * @module compute/sandbox/log-capture
 * Turning what a sandbox writes into log lines, and keeping them, within bounds a tenant cannot
 * move: each chunk is scanned once for newlines (the old splitter re-scanned everything pending
 * on every chunk, so 24 MB without a newline stalled the edge for seconds); a line longer than
 * `maxLineBytes` is cut there with a marker and the rest of it skipped until its newline; a kept
 * log is a ring bounded in lines and in bytes, so one app's output cannot grow Alto's memory;
 * `followLog` reads one back the way `Instance.logs` gives it.
 */
import type { EventEmitter } from 'node:events';

/** Longest line kept, in bytes; longer ones are cut with `CUT_MARKER`. */
export const MAX_LOG_LINE_BYTES = 16 * 1024;
/** Appended to a line that was cut. */
export const CUT_MARKER = ' [… line cut: longer than 16384 bytes]';

const NEWLINE = 0x0a;

/**
 * Splits a byte stream into lines, keeping a partial last line until its newline arrives. Work is
 * linear in the bytes pushed and memory is bounded by `maxLineBytes`, whatever the stream holds.
 */
export class LineSplitter {
  /** The start of the current line, at most `maxLineBytes` in all. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Set once the current line was cut: its bytes up to the next newline are dropped. */
  private skipping = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxLineBytes = MAX_LOG_LINE_BYTES,
  ) {}

  push(chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    while (start < bytes.length) {
      const newline = bytes.indexOf(NEWLINE, start);
      const end = newline === -1 ? bytes.length : newline;
      if (!this.skipping) this.append(bytes.subarray(start, end));
      if (newline === -1) return;
      if (this.skipping) this.skipping = false;
      else this.emit(true);
      start = newline + 1;
    }
  }

  /** Emits the partial last line, if any (the stream ended). */
  flush(): void {
    if (this.pendingBytes > 0) this.emit(false);
    this.skipping = false;
  }

  private append(piece: Buffer): void {
    if (piece.length === 0) return;
    const room = this.maxLineBytes - this.pendingBytes;
    if (piece.length <= room) {
      // Copied: a subarray would keep the whole chunk it came from alive.
      this.pending.push(Buffer.from(piece));
      this.pendingBytes += piece.length;
      return;
    }
    this.pending.push(Buffer.from(piece.subarray(0, room)));
    this.pendingBytes += room;
    const line = this.take();
    this.skipping = true;
    this.onLine(`${line}${CUT_MARKER}`);
  }

  private emit(endedByNewline: boolean): void {
    let line = this.take();
    if (endedByNewline && line.endsWith('\r')) line = line.slice(0, -1);
    this.onLine(line);
  }

  private take(): string {
    const joined = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    // A cut may fall inside a UTF-8 sequence: the decoder shows that as one replacement character.
    return joined.toString('utf8');
  }
}

/** The bytes a kept line costs: its text plus a fixed overhead for the entry around it. */
export function logEntryBytes(line: string): number {
  return Buffer.byteLength(line) + 64;
}

/**
 * A log kept for late readers: the newest entries, at most `maxLines` and `maxBytes` (each
 * entry costs `logEntryBytes` of its line), the oldest dropped first. A ring, so dropping is
 * constant time however fast lines come.
 */
export class BoundedLog<Entry extends { line: string }> {
  private entries: (Entry | undefined)[] = [];
  private head = 0;
  private count = 0;
  private bytes = 0;

  constructor(
    private readonly maxLines: number,
    private readonly maxBytes: number,
  ) {}

  get size(): number {
    return this.count;
  }

  push(entry: Entry): void {
    const cost = logEntryBytes(entry.line);
    while (this.count > 0 && (this.count >= this.maxLines || this.bytes + cost > this.maxBytes)) this.dropOldest();
    const index = (this.head + this.count) % this.maxLines;
    if (this.entries.length < this.maxLines && index === this.entries.length) this.entries.push(entry);
    else this.entries[index] = entry;
    this.count += 1;
    this.bytes += cost;
  }

  /**
   * The newest entries, oldest first: at most `count`, and no more than `maxBytes` of them (the
   * size of one answer), among those `include` accepts.
   */
  newest(count: number, maxBytes = Infinity, include: (entry: Entry) => boolean = () => true): Entry[] {
    const picked: Entry[] = [];
    let bytes = 0;
    for (let offset = this.count - 1; offset >= 0 && picked.length < count; offset--) {
      const entry = this.entries[(this.head + offset) % this.maxLines]!;
      if (!include(entry)) continue;
      bytes += logEntryBytes(entry.line);
      if (bytes > maxBytes) break;
      picked.push(entry);
    }
    return picked.reverse();
  }

  private dropOldest(): void {
    const oldest = this.entries[this.head]!;
    this.entries[this.head] = undefined;
    this.bytes -= logEntryBytes(oldest.line);
    this.head = (this.head + 1) % this.maxLines;
    this.count -= 1;
  }
}

/**
 * An instance's log as `Instance.logs` gives it: the lines `kept` so far, then, with `follow`,
 * every line `events` emits ('log') until `ended()` holds at an 'exit' or between lines.
 */
export async function* followLog<Line>(kept: Line[], events: EventEmitter, ended: () => boolean, follow = false): AsyncGenerator<Line> {
  const queue = kept;
  if (!follow) return yield* queue;
  let wake: (() => void) | undefined;
  const onLog = (line: Line) => {
    queue.push(line);
    wake?.();
  };
  const onExit = () => wake?.();
  events.on('log', onLog);
  events.on('exit', onExit);
  try {
    for (;;) {
      while (queue.length > 0) yield queue.shift()!;
      if (ended()) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    events.off('log', onLog);
    events.off('exit', onExit);
  }
}
