/**
 * @module store/usage
 * The port for usage records: one row per metered API call, written in batches by the edge.
 */

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

export interface UsageTotal {
  service: string;
  endpoint: string;
  calls: number;
  priceMicros: number;
}

export interface UsageStore {
  appendUsage(records: UsageRecord[]): Promise<void>;
  /** Call counts and cost per service and endpoint for one project since `since` (ms). */
  totalUsage(projectId: string, since: number): Promise<UsageTotal[]>;
}
