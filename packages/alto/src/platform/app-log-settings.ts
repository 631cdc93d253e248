/**
 * @module platform/app-log-settings
 * How long, and how many bytes of, its apps' logs a project keeps: `log_days` and `log_bytes`,
 * project settings kept beside its limits in the quota store (as `request_log_days` is), set
 * through projects/Create and Update, each within the node's maximum. The apps' log store
 * (compute/apps/log-store.ts) reads them in its sweep and is told when one changes, so lowering a
 * bound deletes what it no longer allows at once.
 */
import { errors } from '../kit/errors.js';
import type { QuotaStore } from '../store/quota.js';

export const LOG_DAYS_SETTING = 'log_days';
export const LOG_BYTES_SETTING = 'log_bytes';

export const DEFAULT_LOG_DAYS = 7;
export const DEFAULT_LOG_MAX_DAYS = 30;
export const DEFAULT_LOG_BYTES_PER_PROJECT = 256 * 1024 ** 2;
export const DEFAULT_LOG_MAX_BYTES_PER_PROJECT = 1024 ** 3;
/** The smallest `log_bytes` (so each app's segments hold a useful number of lines). */
export const MIN_LOG_BYTES_PER_PROJECT = 256 * 1024;

/** How long a project's settings are trusted from memory. */
const LOOKUP_TTL_MS = 30_000;

export interface AppLogBounds {
  /** Lines older than this many days go. */
  days: number;
  /** The project's apps' logs together hold at most this many bytes on this node. */
  bytes: number;
}

export interface AppLogSettingsOptions {
  defaultDays?: number;
  maxDays?: number;
  defaultBytes?: number;
  maxBytes?: number;
}

export class AppLogSettings {
  readonly defaultDays: number;
  readonly maxDays: number;
  readonly defaultBytes: number;
  readonly maxBytes: number;
  private readonly known = new Map<string, { bounds: AppLogBounds; until: number }>();
  private readonly listeners: Array<(projectId: string) => void> = [];

  constructor(
    private readonly quota: QuotaStore,
    options: AppLogSettingsOptions = {},
  ) {
    this.maxDays = options.maxDays ?? DEFAULT_LOG_MAX_DAYS;
    this.defaultDays = Math.min(this.maxDays, options.defaultDays ?? DEFAULT_LOG_DAYS);
    this.maxBytes = Math.max(MIN_LOG_BYTES_PER_PROJECT, options.maxBytes ?? DEFAULT_LOG_MAX_BYTES_PER_PROJECT);
    this.defaultBytes = Math.min(this.maxBytes, Math.max(MIN_LOG_BYTES_PER_PROJECT, options.defaultBytes ?? DEFAULT_LOG_BYTES_PER_PROJECT));
  }

  /** Settings from the environment: ALTO_LOG_RETENTION_DAYS, ALTO_LOG_MAX_DAYS, ALTO_LOG_BYTES_PER_PROJECT, ALTO_LOG_MAX_BYTES_PER_PROJECT. */
  static fromEnvironment(quota: QuotaStore, environment: NodeJS.ProcessEnv = process.env): AppLogSettings {
    const maxDays = wholeNumber(environment, 'ALTO_LOG_MAX_DAYS', 1);
    const defaultDays = wholeNumber(environment, 'ALTO_LOG_RETENTION_DAYS', 1);
    return new AppLogSettings(quota, {
      // A default past the node's maximum raises the maximum: an operator who asked for 60 days gets them.
      maxDays: Math.max(maxDays ?? DEFAULT_LOG_MAX_DAYS, defaultDays ?? 0),
      defaultDays,
      defaultBytes: wholeNumber(environment, 'ALTO_LOG_BYTES_PER_PROJECT', MIN_LOG_BYTES_PER_PROJECT),
      maxBytes: wholeNumber(environment, 'ALTO_LOG_MAX_BYTES_PER_PROJECT', MIN_LOG_BYTES_PER_PROJECT),
    });
  }

  /** The project's bounds in force: its own settings, else the node's defaults, within the node's maximums. */
  async boundsOf(projectId: string, now = Date.now()): Promise<AppLogBounds> {
    const known = this.known.get(projectId);
    if (known && known.until > now) return known.bounds;
    const limits = await this.quota.getLimits(`project:${projectId}`);
    const bounds = {
      days: Math.min(this.maxDays, limits[LOG_DAYS_SETTING] ?? this.defaultDays),
      bytes: Math.min(this.maxBytes, limits[LOG_BYTES_SETTING] ?? this.defaultBytes),
    };
    if (this.known.size >= 10_000) this.known.clear();
    this.known.set(projectId, { bounds, until: now + LOOKUP_TTL_MS });
    return bounds;
  }

  /** Throws a 400 naming the field when a value is outside what this node allows (null: back to the default). */
  check(changes: { log_days?: number | null; log_bytes?: number | null }): void {
    const days = changes.log_days;
    if (days !== undefined && days !== null) {
      if (!Number.isInteger(days) || days < 1) throw errors.badRequest('log_days: must be a whole number of days, at least 1');
      if (days > this.maxDays) throw errors.badRequest(`log_days: this instance keeps apps' logs at most ${this.maxDays} days (ALTO_LOG_MAX_DAYS)`);
    }
    const bytes = changes.log_bytes;
    if (bytes !== undefined && bytes !== null) {
      if (!Number.isInteger(bytes) || bytes < MIN_LOG_BYTES_PER_PROJECT) throw errors.badRequest(`log_bytes: must be a whole number of bytes, at least ${MIN_LOG_BYTES_PER_PROJECT} (256 KiB)`);
      if (bytes > this.maxBytes) throw errors.badRequest(`log_bytes: this instance keeps at most ${this.maxBytes} bytes of a project's apps' logs (ALTO_LOG_MAX_BYTES_PER_PROJECT)`);
    }
  }

  /** Sets the project's bounds (a field left out keeps its value, null returns it to the default), then tells the log store. */
  async set(projectId: string, changes: { log_days?: number | null; log_bytes?: number | null }): Promise<void> {
    this.check(changes);
    const update: Record<string, number | null> = {};
    if (changes.log_days !== undefined) update[LOG_DAYS_SETTING] = changes.log_days;
    if (changes.log_bytes !== undefined) update[LOG_BYTES_SETTING] = changes.log_bytes;
    if (Object.keys(update).length === 0) return;
    await this.quota.updateLimits(`project:${projectId}`, update);
    this.known.delete(projectId);
    for (const listener of this.listeners) listener(projectId);
  }

  /** Calls `listener` with a project whose bounds changed (the apps' log store registers, to apply them at once). */
  onChange(listener: (projectId: string) => void): void {
    this.listeners.push(listener);
  }
}

function wholeNumber(environment: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const text = environment[name];
  if (text === undefined || text.trim() === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be a whole number of at least ${min}, not "${text}"`);
  return value;
}
