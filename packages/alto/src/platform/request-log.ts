/**
 * @module platform/request-log
 * The per-project request log's recorder: the edge tells it about every API call and app request
 * as its answer ends, and it writes them to the store (`store/request-log`) in batches, off the
 * request path. Recording a request costs a few stores into preallocated columns: no object, no
 * string building, no clock but one `performance.now()`, no promise. Everything else happens at
 * the flush, every `flushMs` or once `flushRows` are waiting: the time is worked out from the
 * monotonic clock, the query string cut off the path, an app request's project found from its
 * address, and each project's retention looked up (a project at 0 days keeps no log). Calls to
 * the log itself (`logs/*`) are left out, so that following it does not fill it.
 *
 * Memory is bounded: while a batch is being written, new requests go to the other of two column
 * sets; when that one is full, requests are dropped and counted (`dropped`, in /metrics), never
 * waited for. A periodic sweep deletes each project's rows past its retention, a few thousand
 * per statement.
 */
import type { Logger } from '../kit/logger.js';
import type { AppStore } from '../store/apps/port.js';
import type { ControlStore } from '../store/control.js';
import type { QuotaStore } from '../store/quota.js';
import { MAX_REQUEST_PATH_LENGTH, type RequestLogRow, type RequestLogStore } from '../store/request-log/port.js';
import { DEFAULT_ENVIRONMENT } from './tenancy.js';

/** The project setting (in the quota store, beside its limits) that says how many days its request log keeps. */
export const REQUEST_LOG_DAYS_SETTING = 'request_log_days';

export interface RequestLogOptions {
  /** Days a project's rows are kept when it sets none (`ALTO_REQUEST_LOG_DAYS`, default 7; 0 = off). */
  defaultDays?: number;
  /** The node-wide cap on any project's days (`ALTO_REQUEST_LOG_MAX_DAYS`, default 30). */
  maxDays?: number;
  /** How often waiting rows are written (ms, default 250). */
  flushMs?: number;
  /** Rows that start a write before the interval ends (default 2000). */
  flushRows?: number;
  /** Rows held in memory at most while a write is in progress; past it requests are dropped (default 20000). */
  maxBufferedRows?: number;
  /** How often old rows are swept (ms, default 10 minutes). */
  sweepEveryMs?: number;
  /** The wall clock of sweeps (ms); tests move it forward instead of waiting days. */
  clock?: () => number;
}

export interface RequestLogStores {
  requestLog: RequestLogStore;
  quota: QuotaStore;
  control: ControlStore;
  apps: AppStore;
}

export const DEFAULT_REQUEST_LOG_DAYS = 7;
export const DEFAULT_REQUEST_LOG_MAX_DAYS = 30;
const DAY_MS = 86_400_000;
/** How long a project's retention and an app address's project are trusted before being read again. */
const LOOKUP_TTL_MS = 5_000;
/** Rows deleted per statement by the sweep. */
const SWEEP_BATCH = 5_000;
/** API calls under this path (the logs service's) are not recorded. */
const LOGS_PATH = '/v1/logs/';
const KIND_API = 0;
const KIND_APP = 1;

/** One set of columns for waiting rows: typed arrays for numbers, plain arrays for strings. */
class Columns {
  count = 0;
  readonly kinds: Uint8Array;
  readonly statuses: Uint16Array;
  readonly started: Float64Array;
  readonly ended: Float64Array;
  readonly bytesIn: Float64Array;
  readonly bytesOut: Float64Array;
  /** A project id (API calls) or a project name (app requests, resolved at the flush). */
  readonly projects: (string | undefined)[];
  readonly apps: (string | undefined)[];
  /** The environment of an app request's app (undefined: the default one). */
  readonly environments: (string | undefined)[];
  readonly methods: (string | undefined)[];
  /** The request target as it came (an app's may hold a query string, cut at the flush). */
  readonly targets: (string | undefined)[];
  readonly keyPrefixes: (string | undefined)[];
  readonly clients: (string | undefined)[];
  readonly requestIds: (string | undefined)[];

  constructor(readonly capacity: number) {
    this.kinds = new Uint8Array(capacity);
    this.statuses = new Uint16Array(capacity);
    this.started = new Float64Array(capacity);
    this.ended = new Float64Array(capacity);
    this.bytesIn = new Float64Array(capacity);
    this.bytesOut = new Float64Array(capacity);
    this.projects = new Array(capacity).fill(undefined);
    this.apps = new Array(capacity).fill(undefined);
    this.environments = new Array(capacity).fill(undefined);
    this.methods = new Array(capacity).fill(undefined);
    this.targets = new Array(capacity).fill(undefined);
    this.keyPrefixes = new Array(capacity).fill(undefined);
    this.clients = new Array(capacity).fill(undefined);
    this.requestIds = new Array(capacity).fill(undefined);
  }

  /** Forgets the strings of the rows written, so they do not outlive their batch. */
  clear(): void {
    const count = this.count;
    this.projects.fill(undefined, 0, count);
    this.apps.fill(undefined, 0, count);
    this.environments.fill(undefined, 0, count);
    this.methods.fill(undefined, 0, count);
    this.targets.fill(undefined, 0, count);
    this.keyPrefixes.fill(undefined, 0, count);
    this.clients.fill(undefined, 0, count);
    this.requestIds.fill(undefined, 0, count);
    this.count = 0;
  }
}

/** What the edge calls as each request's answer ends. */
export interface RequestRecorder {
  /**
   * An API call of project `projectId` made with the key starting `keyPrefix`; `started` is
   * `performance.now()` when it arrived; `path` has no query string.
   */
  recordApi(projectId: string, keyPrefix: string | undefined, method: string, path: string, status: number, started: number, bytesIn: number, bytesOut: number, client: string | undefined, requestId: string): void;
  /** A request to app `app` at `<app>.<projectName>` (or `<app>.<environment>.<projectName>`); `target` as it came (its query string is cut before it is kept). */
  recordApp(projectName: string, app: string, method: string, target: string, status: number, started: number, bytesIn: number, bytesOut: number, client: string | undefined, requestId: string | undefined, environment?: string): void;
}

export class RequestLog implements RequestRecorder {
  /** Requests not recorded because the buffer was full. */
  dropped = 0;
  /** Rows lost because the store refused a batch (logged each time). */
  failed = 0;
  /** Rows written to the store. */
  written = 0;
  readonly defaultDays: number;
  readonly maxDays: number;
  private active: Columns;
  private spare: Columns;
  private flushing: Promise<void> | undefined;
  private flushQueued = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  private readonly flushMs: number;
  private readonly flushRows: number;
  private readonly sweepEveryMs: number;
  private readonly clock: () => number;
  /** Each project's days, by id, with when they were read. */
  private readonly days = new Map<string, { days: number; until: number }>();
  /** The project id of each app address seen (`app.project`), or '' for none, with when it was read. */
  private readonly addresses = new Map<string, { projectId: string; until: number }>();
  private closed = false;

  constructor(
    private readonly stores: RequestLogStores,
    private readonly log: Logger,
    options: RequestLogOptions = {},
  ) {
    this.defaultDays = options.defaultDays ?? DEFAULT_REQUEST_LOG_DAYS;
    this.maxDays = options.maxDays ?? DEFAULT_REQUEST_LOG_MAX_DAYS;
    this.flushMs = options.flushMs ?? 250;
    const capacity = Math.max(1, options.maxBufferedRows ?? 20_000);
    this.flushRows = Math.min(capacity, options.flushRows ?? 2_000);
    this.sweepEveryMs = options.sweepEveryMs ?? 600_000;
    this.clock = options.clock ?? Date.now;
    this.active = new Columns(capacity);
    this.spare = new Columns(capacity);
  }

  start(): void {
    this.flushTimer = setInterval(this.flushOnTimer, this.flushMs).unref();
    this.sweepTimer = setInterval(this.sweepOnTimer, this.sweepEveryMs).unref();
  }

  /** Rows waiting for the next write. */
  get buffered(): number {
    return this.active.count + (this.flushing ? this.spare.count : 0);
  }

  recordApi(projectId: string, keyPrefix: string | undefined, method: string, path: string, status: number, started: number, bytesIn: number, bytesOut: number, client: string | undefined, requestId: string): void {
    const columns = this.active;
    const at = columns.count;
    if (at === columns.capacity) {
      this.dropped++;
      return;
    }
    columns.kinds[at] = KIND_API;
    columns.projects[at] = projectId;
    columns.keyPrefixes[at] = keyPrefix;
    this.fill(columns, at, method, path, status, started, bytesIn, bytesOut, client, requestId);
  }

  recordApp(projectName: string, app: string, method: string, target: string, status: number, started: number, bytesIn: number, bytesOut: number, client: string | undefined, requestId: string | undefined, environment?: string): void {
    const columns = this.active;
    const at = columns.count;
    if (at === columns.capacity) {
      this.dropped++;
      return;
    }
    columns.kinds[at] = KIND_APP;
    columns.projects[at] = projectName;
    columns.apps[at] = app;
    columns.environments[at] = environment;
    this.fill(columns, at, method, target, status, started, bytesIn, bytesOut, client, requestId);
  }

  private fill(columns: Columns, at: number, method: string, target: string, status: number, started: number, bytesIn: number, bytesOut: number, client: string | undefined, requestId: string | undefined): void {
    columns.methods[at] = method;
    columns.targets[at] = target;
    columns.statuses[at] = status;
    columns.started[at] = started;
    columns.ended[at] = performance.now();
    columns.bytesIn[at] = bytesIn;
    columns.bytesOut[at] = bytesOut;
    columns.clients[at] = client;
    columns.requestIds[at] = requestId;
    columns.count = at + 1;
    if (at + 1 === this.flushRows && !this.flushQueued) {
      this.flushQueued = true;
      setImmediate(this.flushOnTimer);
    }
  }

  private readonly flushOnTimer = (): void => {
    this.flushQueued = false;
    if (!this.flushing && this.active.count > 0) void this.flush();
  };

  private readonly sweepOnTimer = (): void => {
    if (!this.sweeping) void this.sweep().catch((error) => this.log.warn({ err: error }, 'sweeping the request log failed'));
  };

  /** Writes every row recorded so far (after the write in progress, if any). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.active.count === 0) return;
    const batch = this.active;
    this.active = this.spare;
    this.spare = batch;
    this.flushing = this.write(batch).finally(() => {
      batch.clear();
      this.flushing = undefined;
    });
    await this.flushing;
  }

  private async write(batch: Columns): Promise<void> {
    // The wall-clock time of each row from the monotonic clock: now, minus how long ago it came.
    const wallNow = Date.now();
    const monotonicNow = performance.now();
    const rows: RequestLogRow[] = [];
    try {
      for (let index = 0; index < batch.count; index++) {
        const app = batch.kinds[index] === KIND_APP;
        // From memory for all but the first row of a project or address in a while.
        const environment = batch.environments[index] ?? DEFAULT_ENVIRONMENT;
        let projectId = app ? this.knownAddress(batch.projects[index]!, batch.apps[index]!, environment, wallNow) : batch.projects[index]!;
        if (projectId === undefined) projectId = await this.projectOfAddress(batch.projects[index]!, batch.apps[index]!, environment);
        if (projectId === '') continue;
        // Reads of the log itself are not kept: watching it (alto requests -f, the console) must not fill it.
        if (!app && batch.targets[index]!.startsWith(LOGS_PATH)) continue;
        const days = this.knownDays(projectId, wallNow) ?? (await this.retentionDays(projectId));
        if (days === 0) continue;
        const started = batch.started[index];
        rows.push({
          projectId,
          at: Math.round(wallNow - (monotonicNow - started)),
          kind: app ? 'app' : 'api',
          method: batch.methods[index]!,
          path: pathOf(batch.targets[index]!),
          status: batch.statuses[index],
          durationMs: Math.round((batch.ended[index] - started) * 1000) / 1000,
          bytesIn: batch.bytesIn[index],
          bytesOut: batch.bytesOut[index],
          keyPrefix: app ? null : (batch.keyPrefixes[index] ?? null),
          clientAddress: plainAddress(batch.clients[index]),
          requestId: batch.requestIds[index] ?? '',
          app: app ? batch.apps[index]! : null,
        });
      }
      if (rows.length > 0) await this.stores.requestLog.append(rows);
      this.written += rows.length;
    } catch (error) {
      this.failed += batch.count;
      this.log.error({ err: error, rows: batch.count }, 'writing the request log failed; these requests are not in it');
    }
  }

  /** The days a project's request log keeps: its own setting, else the default, never past the node's cap (0: no log). */
  async retentionDays(projectId: string): Promise<number> {
    const now = Date.now();
    const known = this.knownDays(projectId, now);
    if (known !== undefined) return known;
    const limits = await this.stores.quota.getLimits(`project:${projectId}`);
    const days = Math.min(this.maxDays, limits[REQUEST_LOG_DAYS_SETTING] ?? this.defaultDays);
    if (this.days.size >= 10_000) this.days.clear();
    this.days.set(projectId, { days, until: now + LOOKUP_TTL_MS });
    return days;
  }

  private knownDays(projectId: string, now: number): number | undefined {
    const known = this.days.get(projectId);
    return known && known.until > now ? known.days : undefined;
  }

  /** The project's own setting, or undefined when it follows the default. */
  async ownRetentionDays(projectId: string): Promise<number | undefined> {
    return (await this.stores.quota.getLimits(`project:${projectId}`))[REQUEST_LOG_DAYS_SETTING];
  }

  /** Sets how many days the project's log keeps (0: none), or with null returns it to the default. */
  async setRetentionDays(projectId: string, days: number | null): Promise<void> {
    await this.stores.quota.updateLimits(`project:${projectId}`, { [REQUEST_LOG_DAYS_SETTING]: days });
    this.days.delete(projectId);
  }

  /** The project id of an app address from memory ('' for none), or undefined when it must be read. */
  private knownAddress(projectName: string, app: string, environment: string, now: number): string | undefined {
    const known = this.addresses.get(`${app}.${environment}.${projectName}`);
    return known && known.until > now ? known.projectId : undefined;
  }

  private async projectOfAddress(projectName: string, app: string, environment: string): Promise<string> {
    const key = `${app}.${environment}.${projectName}`;
    const now = Date.now();
    const found = await this.stores.apps.findByAddress(projectName, environment, app);
    if (this.addresses.size >= 10_000) this.addresses.clear();
    this.addresses.set(key, { projectId: found?.projectId ?? '', until: now + LOOKUP_TTL_MS });
    return found?.projectId ?? '';
  }

  /**
   * Deletes every project's rows older than its retention, as of `now` (the clock's time by
   * default); returns how many went. A project at 0 days keeps none.
   */
  sweep(now = this.clock()): Promise<number> {
    if (this.sweeping) return this.sweeping;
    this.sweeping = this.sweepAll(now).finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepAll(now: number): Promise<number> {
    let deleted = 0;
    for (const project of await this.stores.control.listProjects(undefined)) {
      if (this.closed) break;
      this.days.delete(project.id);
      const days = await this.retentionDays(project.id);
      const before = days === 0 ? Number.MAX_SAFE_INTEGER : now - days * DAY_MS;
      for (;;) {
        const count = await this.stores.requestLog.deleteOlder(project.id, before, SWEEP_BATCH);
        deleted += count;
        if (count < SWEEP_BATCH || this.closed) break;
      }
    }
    if (deleted > 0) this.log.info({ deleted }, 'request log rows past their retention deleted');
    return deleted;
  }

  /** Deletes a deleted project's whole log. */
  async deleteProject(projectId: string): Promise<void> {
    await this.flush();
    await this.stores.requestLog.deleteProject(projectId);
    this.days.delete(projectId);
  }

  /** Writes what is waiting and stops the timers. */
  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    clearInterval(this.sweepTimer);
    await this.flush();
    this.closed = true;
    await this.sweeping?.catch(() => undefined);
  }
}

/** The path without its query string (it may carry secrets) or fragment, cut to MAX_REQUEST_PATH_LENGTH. */
export function pathOf(target: string): string {
  let end = target.length;
  const query = target.indexOf('?');
  if (query >= 0) end = query;
  const fragment = target.indexOf('#');
  if (fragment >= 0 && fragment < end) end = fragment;
  if (end > MAX_REQUEST_PATH_LENGTH) return target.slice(0, MAX_REQUEST_PATH_LENGTH - 1) + '…';
  return end === target.length ? target : target.slice(0, end);
}

/** The last address `plainAddress` was given and its answer: a batch mostly repeats a few clients. */
let lastAddress: string | undefined;
let lastPlainAddress: string | null = null;

/** `::ffff:127.0.0.1` is written `127.0.0.1`, so one client has one address. */
function plainAddress(address: string | undefined): string | null {
  if (address === undefined) return null;
  if (address === lastAddress) return lastPlainAddress;
  lastAddress = address;
  lastPlainAddress = address.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address;
  return lastPlainAddress;
}
