/**
 * @module platform/limit-names
 * The limits a project (and, for the first two, a key) can have, by the names they carry on
 * the wire, in `prices.json`'s free tier and in the store. 0 always means "no limit".
 */
import { z } from 'zod';

export const LIMIT_NAMES = [
  /** Requests per second (token bucket; bursts up to one second's worth). */
  'rate_limit',
  /** Requests per calendar month (UTC) to the building blocks. */
  'monthly_quota',
  /** Cost per calendar month, in micro-units, after the free tier's credit. */
  'monthly_spend_cap_micros',
  /** Records in the db block, across tables and environments. */
  'db_rows',
  /** Bytes stored in the space block (when it is there) and in the project's repositories of Alto's registry. */
  'space_bytes',
  /** Apps, instances running at once, and GB-seconds of running time per month: for compute. */
  'compute_apps',
  'compute_instances',
  'compute_gb_seconds',
] as const;

export type LimitName = (typeof LIMIT_NAMES)[number];

/** The two limits a key can carry on top of its project's. */
export const KEY_LIMIT_NAMES = ['rate_limit', 'monthly_quota'] as const satisfies readonly LimitName[];
export type KeyLimitName = (typeof KEY_LIMIT_NAMES)[number];

export type LimitSet = Record<LimitName, number>;

/** The largest request rate a limit may name; beyond it one process could not count anyway. */
export const MAX_RATE_LIMIT = 1_000_000;

export const LIMIT_DESCRIPTIONS: Record<LimitName, string> = {
  rate_limit: 'requests per second (0 = no limit)',
  monthly_quota: 'requests per calendar month, UTC (0 = no limit)',
  monthly_spend_cap_micros: 'most cost per calendar month after the free credit, in micro-units (0 = no cap)',
  db_rows: 'most records stored in the db block (0 = no limit)',
  space_bytes: "most bytes stored in the space block and pushed to Alto's registry (0 = no limit)",
  compute_apps: 'most apps (0 = no limit)',
  compute_instances: 'most app instances running at once (0 = no limit)',
  compute_gb_seconds: 'most GB-seconds of running time per calendar month (0 = no limit)',
};

/** Wire schema of one limit value: a whole number, 0 for none. */
export function limitValue(name: LimitName): z.ZodNumber {
  const base = z.number().int(`${name}: must be a whole number`).min(0, `${name}: must be 0 (no limit) or more`);
  return (name === 'rate_limit' ? base.max(MAX_RATE_LIMIT, `rate_limit: at most ${MAX_RATE_LIMIT} per second`) : base.max(Number.MAX_SAFE_INTEGER)).describe(
    LIMIT_DESCRIPTIONS[name],
  );
}
