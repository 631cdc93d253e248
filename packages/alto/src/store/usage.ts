/**
 * @module store/usage
 * The port for usage records: one row per second, caller, endpoint and status of metered API
 * calls (with how many calls it sums) and one per slice of compute time,
 * written in batches by the platform's meter. Each batch also updates daily totals in the same
 * transaction, so reports read a few rows per day instead of every call, and always agree with
 * the records they sum.
 */
import { dailyCallTotals as callTotals, dayOf as dayOfTime, sortedByKey } from './usage-calls.mjs';

export interface UsageRecord {
  /** Milliseconds since the epoch. */
  at: number;
  projectId: string;
  keyId: string;
  service: string;
  endpoint: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  /** Price in integer micro-units, never a float. */
  priceMicros: number;
}

/**
 * Running time of one app instance, reported by the compute layer (one record per instance per
 * reporting slice). Only running time is reported: suspended time is free, so it never appears.
 */
export interface ComputeUsageRecord {
  /** End of the slice, milliseconds since the epoch. */
  at: number;
  projectId: string;
  app: string;
  instance: string;
  /** Milliseconds the instance ran (vCPUs or processes not stopped) in this slice. */
  runningMs: number;
  /** Memory the instance had, in MiB; billed as running milliseconds × MiB. */
  memoryMiB: number;
  /** Requests the instance served in this slice. */
  requests: number;
  /** Price of the slice in integer micro-units. */
  priceMicros: number;
}

/** Days are UTC calendar days written `YYYY-MM-DD`; both bounds are included. */
export interface UsageQuery {
  projectId: string;
  fromDay: string;
  toDay: string;
  keyId?: string;
  service?: string;
  endpoint?: string;
}

/** API calls of one project, one day, one key, one endpoint. */
export interface UsageDay {
  day: string;
  keyId: string;
  service: string;
  endpoint: string;
  calls: number;
  /** Calls answered with a status of 400 or more. */
  errors: number;
  bytesIn: number;
  bytesOut: number;
  priceMicros: number;
}

export interface ComputeUsageQuery {
  projectId: string;
  fromDay: string;
  toDay: string;
  app?: string;
}

/** Compute of one project, one day, one app. */
export interface ComputeUsageDay {
  day: string;
  app: string;
  runningMs: number;
  /** Running milliseconds × MiB: 1024 × 1000 of them are one GB-second. */
  mibMs: number;
  requests: number;
  priceMicros: number;
}

export interface UsageStore {
  /** Appends API call records and adds them to the daily totals, all in one transaction. */
  appendUsage(records: UsageRecord[]): Promise<void>;
  /** Appends compute records and adds them to the daily totals, all in one transaction. */
  appendComputeUsage(records: ComputeUsageRecord[]): Promise<void>;
  /** Daily totals per key and endpoint, oldest day first. */
  readUsage(query: UsageQuery): Promise<UsageDay[]>;
  /** Daily compute totals per app, oldest day first. */
  readComputeUsage(query: ComputeUsageQuery): Promise<ComputeUsageDay[]>;
  /**
   * Deletes the per-call and per-slice records older than `before` (ms); the daily totals stay.
   * Returns how many records were deleted.
   */
  purgeRecords(before: number): Promise<number>;
  /**
   * Where a store can write call records off the event loop (the embedded one, in a worker
   * thread): appends a batch given as columns, like `appendUsage`. A failure rejects with a
   * `UsageWriteError` saying how many of the batch's rows were written.
   */
  appendCallColumns?(batch: CallColumns): Promise<void>;
  /** Waits for writes in flight and lets go of what the store holds (its writer thread). */
  close?(): Promise<void>;
}

import type { CallColumns, CallRow } from './usage-calls.mjs';

export type { CallColumns, CallRow };

/** A batch write that failed part way: the first `written` rows were written. */
export class UsageWriteError extends Error {
  constructor(
    message: string,
    readonly written: number,
  ) {
    super(message);
  }
}

export { dayOf } from './usage-calls.mjs';

/** One day's total of calls for one key and endpoint: a row of the daily table. */
export interface DailyCalls {
  projectId: string;
  day: string;
  keyId: string;
  service: string;
  endpoint: string;
  calls: number;
  errors: number;
  bytesIn: number;
  bytesOut: number;
  priceMicros: number;
}

/** One day's total of running time for one app: a row of the daily compute table. */
export interface DailyCompute {
  projectId: string;
  day: string;
  app: string;
  runningMs: number;
  mibMs: number;
  requests: number;
  priceMicros: number;
}

/** Rows of call records (`callRows`) summed into the daily rows they add to. */
export const dailyCallTotals: (rows: CallRow[]) => DailyCalls[] = callTotals;

/** A batch of compute slices summed into the daily rows it adds to. */
export function dailyComputeTotals(records: ComputeUsageRecord[]): DailyCompute[] {
  const days = new Map<string, DailyCompute>();
  for (const r of records) {
    const day = dayOfTime(r.at);
    const key = `${r.projectId}\n${day}\n${r.app}`;
    let total = days.get(key);
    if (!total) {
      total = { projectId: r.projectId, day, app: r.app, runningMs: 0, mibMs: 0, requests: 0, priceMicros: 0 };
      days.set(key, total);
    }
    total.runningMs += r.runningMs;
    total.mibMs += r.runningMs * r.memoryMiB;
    total.requests += r.requests;
    total.priceMicros += r.priceMicros;
  }
  return sortedByKey(days);
}
