/**
 * @module platform/metering
 * Usage records for every API call, kept in memory and written to the usage store in batches
 * (every second, or sooner when a batch fills), so metering costs the request path one array
 * push. A clean shutdown flushes everything; a crash loses at most the last second of records.
 */
import type { Logger } from '../kit/logger.js';
import type { UsageRecord, UsageStore } from '../store/usage.js';

export class Meter {
  private pending: UsageRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: UsageStore,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
    private readonly batchSize = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  record(record: UsageRecord): void {
    this.pending.push(record);
    if (this.pending.length >= this.batchSize) void this.flush();
  }

  /** Writes what is pending; batches are written one after another, never concurrently. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.length === 0) return;
      const batch = this.pending;
      this.pending = [];
      try {
        await this.store.appendUsage(batch);
      } catch (error) {
        // Keep the records for the next attempt rather than lose them.
        this.pending = batch.concat(this.pending);
        this.log.error({ err: error, records: batch.length }, 'writing usage records failed; will retry');
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}
