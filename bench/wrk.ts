/**
 * The benches' use of wrk: a Lua script that POSTs one JSON body with a key, and the figures
 * read back from wrk's `--latency` report.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface WrkFigures {
  requestsPerSecond: number;
  /** Requests completed in the run. */
  requests: number;
  p50: number;
  p99: number;
  /** Non-2xx/3xx answers plus socket errors. */
  errors: number;
}

/** Writes to `path` a wrk script that POSTs `body` (JSON text) with `Authorization: Bearer <key>`. */
export function writePostScript(path: string, body: string, key: string): string {
  writeFileSync(
    path,
    `wrk.method = "POST"\nwrk.body = '${body}'\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer ${key}"\n`,
  );
  return path;
}

/** `12.5ms`, `850.00us`, `1.20s` in milliseconds. */
function milliseconds(text: string): number {
  const match = /([\d.]+)(us|ms|s)/.exec(text)!;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

/** The figures of one wrk run with `--latency`, from its standard output. */
export function parseWrkOutput(output: string): WrkFigures {
  const latency = (percent: string) => milliseconds(new RegExp(`^\\s+${percent}%\\s+(\\S+)`, 'm').exec(output)![1]);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  return {
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)![1]),
    requests: Number(/(\d+) requests in/.exec(output)![1]),
    p50: latency('50'),
    p99: latency('99'),
    errors: non2xx + (socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0),
  };
}

/**
 * CPU time (user + system) a process has used so far, in microseconds (Linux /proc; NaN
 * elsewhere). On a machine shared with other work, requests/s swing with the neighbours' load;
 * a server's CPU time per request is the steadier figure.
 */
export function cpuMicros(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
    return (ticks * 1_000_000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

export const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
