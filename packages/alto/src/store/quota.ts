/**
 * @module store/quota
 * The port for limits that must hold across every edge process sharing one store: the limit
 * settings of projects and keys, token buckets for request rates, and monthly counters for
 * quotas and spend. Each operation is atomic in the store, so processes never count twice; the
 * platform calls it for batches of tokens or units (leases), not for every request.
 */

/** Named limits of one subject (`project:<id>` or `key:<id>`); a name that is absent is not set. */
export type LimitValues = Record<string, number>;

export interface TokenGrant {
  /** Tokens handed out, from 0 to the number asked for. */
  granted: number;
  /** Tokens left in the bucket after this take (may be fractional). */
  tokens: number;
}

export interface CounterGrant {
  /** Units reserved, from 0 to the number asked for. */
  granted: number;
  /** The counter after this reservation. */
  value: number;
}

export interface QuotaStore {
  /** The limits set on a subject; `{}` when none are. */
  getLimits(subject: string): Promise<LimitValues>;
  /** Sets the given limits of a subject, removes those given as `null`, keeps the others. */
  updateLimits(subject: string, changes: Record<string, number | null>): Promise<LimitValues>;
  deleteLimits(subject: string): Promise<void>;

  /**
   * Takes up to `want` whole tokens from a bucket that holds at most `capacity` tokens and
   * refills at `ratePerSecond`, as of `now` (ms). A bucket seen for the first time is full.
   */
  takeTokens(bucket: string, want: number, ratePerSecond: number, capacity: number, now: number): Promise<TokenGrant>;

  /** Adds up to `want` to a counter without passing `limit`, and says how much it added. */
  reserve(counter: string, period: string, want: number, limit: number): Promise<CounterGrant>;
  /** Gives back units reserved and not used (never below zero). */
  release(counter: string, period: string, amount: number): Promise<void>;
  /** Adds to a counter with no limit (usage already done, such as compute time). */
  add(counter: string, period: string, amount: number): Promise<void>;
  counterValue(counter: string, period: string): Promise<number>;

  /** Deletes counters of periods before `period` and buckets untouched since `before` (ms). */
  purge(period: string, before: number): Promise<void>;
}
