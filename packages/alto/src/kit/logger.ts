/**
 * @module kit/logger
 * Structured JSON logs (pino). Pretty and coloured when stdout is a terminal, one JSON object per
 * line otherwise; `ALTO_LOG_FORMAT=json|pretty` overrides, `ALTO_LOG_LEVEL` sets the level.
 */
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
  // Asynchronous writes: while one write is in flight, later lines gather into the next one. pino
  // flushes what is pending when the process exits. In front of it, the lines of one turn of the
  // event loop go over together (see LinesPerTurn).
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

/** A logger that writes nothing, for library use and unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** pino's asynchronous destination (sonic-boom), with the state its types leave out. */
type Destination = ReturnType<typeof pino.destination> & { readonly destroyed?: boolean; readonly fd: number };

/**
 * Gathers the lines written in one turn of the event loop and hands them to the destination as
 * one write at the end of the turn. A busy edge logs every call; the destination's cost per
 * write (counting the bytes, appending to its buffer, and a write on the thread pool when none
 * is in flight) is then paid once per turn, not once per call. Nothing waits longer than the
 * turn, and at exit (a crash included) what is pending is written synchronously.
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
      setImmediate(this.handOver);
    }
    return true;
  }

  /** pino's `logger.flush()`: hands over what is pending, then flushes the destination. */
  flush(callback?: (error?: Error) => void): void {
    this.handOver();
    this.destination.flush(callback);
  }

  /** Writes everything pending before the process goes. */
  flushSync(): void {
    this.handOver();
    // Before the destination opened its file there is nothing it could write.
    if (!this.destination.destroyed && this.destination.fd >= 0) this.destination.flushSync();
  }

  private readonly handOver = (): void => {
    this.scheduled = false;
    if (this.lines === '' || this.destination.destroyed) return;
    const lines = this.lines;
    this.lines = '';
    this.destination.write(lines);
  };
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
