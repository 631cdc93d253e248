/**
 * @module kit/logger
 * Structured JSON logs (pino). Pretty and coloured when stdout is a terminal, one JSON object per
 * line otherwise; `ALTO_LOG_FORMAT=json|pretty` overrides, `ALTO_LOG_LEVEL` sets the level.
 */
import { pino, type Logger } from 'pino';
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
  const base = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'pretty') {
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  }
  // Asynchronous writes: while one write is in flight, later lines gather into the next one, so
  // a busy edge pays for one syscall per batch instead of one per request. pino flushes what is
  // pending when the process exits.
  return pino(base, pino.destination({ dest: 1, sync: false }));
}

/** A logger that writes nothing, for library use and unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
