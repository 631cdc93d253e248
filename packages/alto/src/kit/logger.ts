/**
 * @module kit/logger
 * Structured JSON logs (pino). Pretty and coloured when stdout is a terminal, one JSON object per
 * line otherwise; `ALTO_LOG_FORMAT=json|pretty` overrides, `ALTO_LOG_LEVEL` sets the level.
 */
import { writeSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  format?: 'json' | 'pretty';
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.ALTO_LOG_LEVEL ?? 'info';
  const envFormat = process.env.ALTO_LOG_FORMAT;
  const format =
    options.format ?? (envFormat === 'json' || envFormat === 'pretty' ? envFormat : process.stdout.isTTY ? 'pretty' : 'json');
  const base = { level, base: undefined, timestamp: isoTimeOfThisMillisecond };
  if (format === 'pretty') {
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  }
  return pino(base, new LinesPerTurn(pino.destination({ dest: 1, sync: false }) as Destination));
}

let timeMs = 0;
let timeField = '';

/**
 * pino's `isoTime` field, made once per millisecond: formatting a date costs more than the rest
 * of a line, and a busy edge writes many lines in one millisecond.
 */
function isoTimeOfThisMillisecond(): string {
  const now = Date.now();
  if (now !== timeMs) {
    timeMs = now;
    timeField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return timeField;
}

/** pino's number for the info level. */
const INFO = 30;

/**
 * One kind of info line logged on a hot path (the edge writes one per API call). For a JSON
 * logger made by `createLogger`, the line is put together by hand in the very form pino writes
 * it (level, time, the logger's bindings, the fields, the message) and handed to the same
 * output, at a fraction of pino's cost; for any other logger (pretty output, a test's own) it
 * goes through pino. Field values are strings and numbers.
 */
export class InfoLine {
  private readonly output: LinesPerTurn | undefined;
  private readonly end: string;

  constructor(
    private readonly logger: Logger,
    private readonly message: string,
  ) {
    const output = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
    this.output = output instanceof LinesPerTurn ? output : undefined;
    this.end = `,"msg":${JSON.stringify(message)}}\n`;
  }

  write(fields: Record<string, string | number>): void {
    const logger = this.logger;
    if (!this.output) {
      logger.info(fields, this.message);
      return;
    }
    if (logger.levelVal > INFO) return;
    // The bindings as pino keeps them, already written: `,"service":"id",...`.
    let line = `{"level":${INFO}${isoTimeOfThisMillisecond()}${(logger as unknown as Record<symbol, string>)[pino.symbols.chindingsSym]}`;
    for (const name in fields) line += `,${JSON.stringify(name)}:${JSON.stringify(fields[name])}`;
    this.output.write(line + this.end);
  }
}

/** A logger that writes nothing, for library use and unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** pino's destination (sonic-boom), with the state its types leave out. */
type Destination = ReturnType<typeof pino.destination> & { readonly destroyed?: boolean; readonly fd: number };

/**
 * The JSON logs' output: the lines logged in one turn of the event loop are handed together, at
 * the end of the turn, to pino's asynchronous destination. A busy edge logs every call; its cost
 * per write (counting the bytes, appending to its buffer, and a write on the thread pool when
 * none is in flight) is then paid once per turn instead of once per line. The writes stay
 * asynchronous: a log reader that falls behind must never stall the server. No line waits
 * longer than its turn, and at exit, a crash included, what is pending is written synchronously.
 */
class LinesPerTurn implements DestinationStream {
  private lines = '';
  private scheduled = false;

  constructor(private readonly destination: Destination) {
    registerForExit(this);
  }

  write(line: string): boolean {
    this.lines += line;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.writePending);
    }
    return true;
  }

  /** pino's `logger.flush()`: hands over what is pending, then flushes the destination. */
  flush(callback?: (error?: Error) => void): void {
    this.writePending();
    this.destination.flush(callback);
  }

  /** Writes everything pending before the process goes: what the destination holds, then this turn's lines. */
  flushSync(): void {
    const destination = this.destination;
    if (destination.destroyed || destination.fd < 0) return;
    destination.flushSync();
    // Not through the destination: a write it started now would be left in flight at exit.
    const lines = this.lines;
    this.lines = '';
    if (lines !== '') writeAllSync(destination.fd, Buffer.from(lines));
  }

  private readonly writePending = (): void => {
    this.scheduled = false;
    if (this.lines === '' || this.destination.destroyed) return;
    const lines = this.lines;
    this.lines = '';
    this.destination.write(lines);
  };
}

/** Writes all of `bytes` now, waiting out a full pipe (EAGAIN) a millisecond at a time, for at most a few seconds. */
function writeAllSync(fd: number, bytes: Buffer): void {
  let offset = 0;
  for (let attempts = 0; offset < bytes.length && attempts < 5000; ) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      attempts++;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/** Batches to flush at exit, held weakly so a logger nobody uses any more can go. */
const pendingAtExit = new Set<WeakRef<LinesPerTurn>>();

function registerForExit(batch: LinesPerTurn): void {
  if (pendingAtExit.size === 0) {
    process.once('exit', () => {
      for (const reference of pendingAtExit) reference.deref()?.flushSync();
    });
  }
  pendingAtExit.add(new WeakRef(batch));
}
