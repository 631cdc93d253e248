/**
 * @module platform/metering
 * Usage records for every API call and every slice of compute time, kept in memory and written
 * to the usage store in batches (every second by default, or sooner when a batch fills), so
 * metering costs the request path a few array writes. A clean shutdown flushes everything; a
 * crash loses what was not yet written: at most one interval's records (1 s by default).
 */
import type { Logger } from '../kit/logger.js';
import { recordsOfColumns } from '../store/usage-calls.mjs';
import { UsageWriteError, type CallColumns, type ComputeUsageRecord, type UsageRecord, type UsageStore } from '../store/usage.js';

/** A slice of compute time as the compute layer reports it; the meter prices it. */
export type ComputeUsage = Omit<ComputeUsageRecord, 'priceMicros' | 'at'> & { at?: number };

export interface MeterOptions {
  /** How often pending records are written (ms). A crash loses at most this much. */
  intervalMs?: number;
  /** Records that trigger a write before the interval ends. */
  batchSize?: number;
  /** Per-call records older than this many days are deleted (daily totals stay); 0 keeps all. */
  retentionDays?: number;
  /** Prices a compute slice in micro-units. */
  computePrice?: (runningMs: number, memoryMiB: number, requests: number) => number;
  /** Told of every priced compute slice, so spend caps count compute too. */
  onComputeCharge?: (projectId: string, priceMicros: number) => void;
}

const DEFAULT_RETENTION_DAYS = 62;
const PURGE_EVERY_MS = 3_600_000;

interface Caller {
  projectId: string;
  keyId: string;
  service: string;
  endpoint: string;
}

/**
 * Calls waiting to be written, column by column: numbers in typed arrays, and who called what
 * as an index into a small table. A second of traffic is then a few arrays instead of thousands
 * of objects that live long enough for the garbage collector to move them to its old generation
 * and sweep them there, which costs the edge more than writing them does.
 */
class CallBatch {
  length = 0;
  private readonly at: Float64Array;
  private readonly status: Uint16Array;
  private readonly bytesIn: Float64Array;
  private readonly bytesOut: Float64Array;
  private readonly priceMicros: Float64Array;
  private readonly caller: Uint32Array;
  private readonly callerIndex = new Map<string, number>();
  private readonly callers: Caller[] = [];

  constructor(readonly capacity: number) {
    this.at = new Float64Array(capacity);
    this.status = new Uint16Array(capacity);
    this.bytesIn = new Float64Array(capacity);
    this.bytesOut = new Float64Array(capacity);
    this.priceMicros = new Float64Array(capacity);
    this.caller = new Uint32Array(capacity);
  }

  get isFull(): boolean {
    return this.length >= this.capacity;
  }

  push(record: UsageRecord): void {
    // A key belongs to one project, so key, service and endpoint name the caller.
    const name = `${record.keyId}/${record.service}/${record.endpoint}`;
    let index = this.callerIndex.get(name);
    if (index === undefined) {
      index = this.callers.length;
      this.callers.push({ projectId: record.projectId, keyId: record.keyId, service: record.service, endpoint: record.endpoint });
      this.callerIndex.set(name, index);
    }
    const i = this.length++;
    this.at[i] = record.at;
    this.status[i] = record.status;
    this.bytesIn[i] = record.bytesIn;
    this.bytesOut[i] = record.bytesOut;
    this.priceMicros[i] = record.priceMicros;
    this.caller[i] = index;
  }

  /** The batch as the store's columns (views of this batch's arrays). */
  columns(): CallColumns {
    const n = this.length;
    return {
      length: n,
      at: this.at.subarray(0, n),
      status: this.status.subarray(0, n),
      bytesIn: this.bytesIn.subarray(0, n),
      bytesOut: this.bytesOut.subarray(0, n),
      priceMicros: this.priceMicros.subarray(0, n),
      caller: this.caller.subarray(0, n),
      callers: this.callers,
    };
  }

  records(): UsageRecord[] {
    return recordsOfColumns(this.columns());
  }
}

export class Meter {
  private calls: CallBatch;
  /** Records whose write failed, for the next flush. */
  private retry: UsageRecord[] = [];
  private pendingCompute: ComputeUsageRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private lastPurge = 0;
  readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly retentionDays: number;

  constructor(
    private readonly store: UsageStore,
    private readonly log: Logger,
    private readonly options: MeterOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.batchSize = options.batchSize ?? 1000;
    this.retentionDays = options.retentionDays ?? DEFAULT_RETENTION_DAYS;
    this.calls = new CallBatch(this.batchSize);
  }

  start(): void {
    this.timer = setInterval(() => void this.flush().then(() => this.purgeOld()), this.intervalMs);
    this.timer.unref();
  }

  record(record: UsageRecord): void {
    this.calls.push(record);
    if (this.calls.isFull) void this.flush();
  }

  /**
   * The hook for the compute layer: records running time of one instance (suspended time is
   * never reported, so it is free), priced at the price list's GB-second and request prices.
   */
  recordCompute(usage: ComputeUsage): ComputeUsageRecord {
    const priceMicros = this.options.computePrice?.(usage.runningMs, usage.memoryMiB, usage.requests) ?? 0;
    const record: ComputeUsageRecord = { ...usage, at: usage.at ?? Date.now(), priceMicros };
    this.pendingCompute.push(record);
    this.options.onComputeCharge?.(record.projectId, priceMicros);
    if (this.pendingCompute.length >= this.batchSize) void this.flush();
    return record;
  }

  /** Records waiting to be written (for tests and status). */
  get pendingCount(): number {
    return this.calls.length + this.retry.length + this.pendingCompute.length;
  }

  /** Writes what is pending; batches are written one after another, never concurrently. */
  flush(): Promise<void> {
    // Take the batch now, so calls recorded while it is written go to the next one.
    const calls = this.calls;
    if (calls.length > 0) this.calls = new CallBatch(this.batchSize);
    this.flushing = this.flushing.then(async () => {
      const retry = this.retry;
      this.retry = [];
      if (retry.length > 0) await this.appendRecords(retry);
      if (calls.length > 0) {
        if (this.store.appendCallColumns) await this.appendColumns(calls);
        else await this.appendRecords(calls.records());
      }
      if (this.pendingCompute.length > 0) {
        const batch = this.pendingCompute;
        this.pendingCompute = [];
        try {
          await this.store.appendComputeUsage(batch);
        } catch (error) {
          this.pendingCompute = batch.concat(this.pendingCompute);
          this.log.error({ err: error, records: batch.length }, 'writing compute usage records failed; will retry');
        }
      }
    });
    return this.flushing;
  }

  /** Writes records; those not written are kept for the next flush rather than lost. */
  private async appendRecords(records: UsageRecord[]): Promise<void> {
    try {
      await this.store.appendUsage(records);
    } catch (error) {
      this.retry = records.concat(this.retry);
      this.log.error({ err: error, records: records.length }, 'writing usage records failed; will retry');
    }
  }

  /** Writes a batch as columns (off the event loop where the store can); rows not written are kept for the next flush. */
  private async appendColumns(calls: CallBatch): Promise<void> {
    try {
      await this.store.appendCallColumns!(calls.columns());
    } catch (error) {
      const written = error instanceof UsageWriteError ? error.written : 0;
      this.retry = this.retry.concat(calls.records().slice(written));
      this.log.error({ err: error, records: calls.length - written }, 'writing usage records failed; will retry');
    }
  }

  private async purgeOld(): Promise<void> {
    const now = Date.now();
    if (this.retentionDays === 0 || now - this.lastPurge < PURGE_EVERY_MS) return;
    this.lastPurge = now;
    try {
      const deleted = await this.store.purgeRecords(now - this.retentionDays * 86_400_000);
      if (deleted > 0) this.log.info({ deleted, retention_days: this.retentionDays }, 'old per-call usage records deleted; daily totals kept');
    } catch (error) {
      this.log.error({ err: error }, 'deleting old usage records failed');
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}
