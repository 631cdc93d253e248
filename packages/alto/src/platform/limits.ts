/**
 * @module platform/limits
 * Quotas and limits per project and per key: requests per second (token bucket), requests per
 * month, spend per month, storage caps, and compute caps kept for the compute layer.
 *
 * Every limit must hold with several edge processes sharing one store, so the counts live in
 * the store (`QuotaStore`). Asking the store on every request would put a write transaction on
 * the hot path, so each process leases from the store in small batches instead:
 * - rate tokens: a process takes as many tokens as it used in its last lease (at least 1, at
 *   most a twentieth of the rate) and may spend them for 100 ms. A key at 5 requests per second
 *   therefore takes one token per call, exactly; a busy key costs about ten store transactions
 *   per second per process however many requests it makes. The limit can be exceeded only by
 *   tokens a lease holds when the bucket refills: at most a tenth of a second's worth.
 * - monthly counters (requests, spend): a process reserves units in chunks of about a second of
 *   its own demand (so a busy process asks the store about once a second per counter, not once
 *   per thousand calls) that shrink as the limit nears (down to one at a time), and gives back
 *   what it did not use after a second of idleness or at shutdown. The counter can never pass the limit; near the limit a call can be
 *   refused while another process still holds a few unused units, for at most a second.
 * A process that crashes loses its unused reservation (it counts as used until the month ends):
 * at most one chunk per counter (about a second of its calls), and never more than 1/64 of what
 * was left.
 *
 * The operator's admin key is never limited. `accounts`, `projects`, `keys` and `usage` calls
 * are rate limited but never refused for quota or spend, so an owner at a cap can always look
 * at their usage and raise the limit.
 */
import { errors, type AltoError } from '../kit/errors.js';
import type { Logger } from '../kit/logger.js';
import type { LimitValues, QuotaStore } from '../store/quota.js';
import type { KeyRole } from '../store/control.js';
import { KEY_LIMIT_NAMES, LIMIT_NAMES, type KeyLimitName, type LimitName, type LimitSet } from './limit-names.js';
import { formatMicros, type PriceList } from './prices.js';
import type { Tenant } from './service.js';


/** Whose storage a write adds to: a key's tenant, or a project known only by id (a presigned upload). */
export type StorageOwner = Pick<Tenant, 'projectId' | 'role'> & { projectName?: string };
/** Who a call is counted against: a key of a project, or a project alone (a signed URL; its keyId is empty). */
export type Payer = Pick<Tenant, 'projectId' | 'projectName' | 'keyId' | 'role'>;

export { LIMIT_NAMES, KEY_LIMIT_NAMES, type LimitName, type KeyLimitName, type LimitSet };

/** Services an owner needs to see and fix a cap: never refused for quota or spend. */
export const CONTROL_SERVICES: ReadonlySet<string> = new Set(['accounts', 'projects', 'keys', 'usage']);

/** How long limit settings are cached; a change made by another process applies within this. */
const SETTINGS_TTL_MS = 1000;
/** How long leased rate tokens may be spent. */
const RATE_LEASE_MS = 100;
/** A counter reservation unused this long goes back to the store. */
const COUNTER_IDLE_MS = 1000;
/** A refused counter is asked again after this long (unless its limit changes meanwhile). */
const COUNTER_REFUSAL_MS = 1000;
/**
 * The largest chunk, in calls: well above what one process serves in a second, so the chunk is
 * the process's demand. Each reservation is a write transaction on the event loop's thread;
 * chunks of a thousand calls made them about a hundred a second on a busy edge, and that cost
 * it more throughput than all the rest of the limits' work (bench/metering.bench.ts).
 */
const MAX_COUNTER_CHUNK = 100_000;
/** A subject nobody called for this long is forgotten by this process (its settings re-read). */
const SUBJECT_IDLE_MS = 60_000;
const TICK_MS = 1000;
const PURGE_EVERY_MS = 3_600_000;

export type KeyLimits = Record<KeyLimitName, number>;

/** What `admit` decided for one call: its price, the headers to send, and what it reserved. */
export interface Admission {
  priceMicros: number;
  /** `RateLimit-*` headers when a rate limit applies. */
  headers?: Record<string, string>;
  /** Spend reserved before the call, refunded when the call fails (see `settle`). */
  spend?: { lease: CounterLease; amount: number };
}

interface RateLease {
  /** The store's bucket: `rate:project:<id>` or `rate:key:<id>`. */
  bucket: string;
  /** Tokens leased and not yet spent. */
  leased: number;
  expiresAt: number;
  /** Tokens spent from the current lease, to size the next one. */
  spent: number;
  /** Tokens the bucket held after the last take. */
  bucketTokens: number;
  /** No token until then: refuse without asking the store. */
  refusedUntil: number;
}

export interface CounterLease {
  /** The store's counter: `requests:key:<id>`, `requests:project:<id>` or `spend:project:<id>`. */
  counter: string;
  period: string;
  /** Units reserved in the store and not yet used. */
  available: number;
  lastUsed: number;
  /** Units used since the last tick, and in the tick before: the demand a chunk should cover. */
  usedThisTick: number;
  usedLastTick: number;
  /** What the store had left after the last reservation. */
  remaining: number;
  refusedUntil: number;
  refusedLimit: number;
}

/**
 * What this process knows of one project or key: its settings (cached), and its leases. Looked
 * up once per call by id, so the hot path builds no strings and makes no other lookups.
 */
interface Subject {
  kind: 'project' | 'key';
  id: string;
  /** The store's name for its settings: `project:<id>` or `key:<id>`. */
  name: string;
  values?: LimitValues;
  fetchedAt: number;
  /** The limits in force and the free tier they were merged with (rebuilt when that changes). */
  merged?: LimitSet;
  mergedWith?: LimitSet;
  lastUsed: number;
  rate?: RateLease;
  requests?: CounterLease;
  spend?: CounterLease;
}

/** `YYYY-MM` in UTC. */
export function monthOf(at: number): string {
  return new Date(at).toISOString().slice(0, 7);
}

/** The first millisecond of the next UTC month. */
export function nextMonthStart(at: number): number {
  const date = new Date(at);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}

/**
 * `RateLimit-*` headers (IETF httpapi draft, the three-header form): the limit per one-second
 * window, the tokens left, and seconds until the bucket is full again.
 */
function rateHeaders(rate: number, lease: RateLease | undefined): Record<string, string> {
  const tokens = lease ? lease.bucketTokens : 0;
  const remaining = lease ? Math.floor(tokens) + lease.leased : 0;
  return {
    'ratelimit-limit': String(rate),
    'ratelimit-remaining': String(Math.max(0, remaining)),
    // Seconds until the bucket is full again; it holds one second's worth, so this is 0 or 1.
    'ratelimit-reset': String(Math.max(0, Math.ceil((rate - tokens) / rate - 1e-9))),
  };
}

/** The `RateLimit-*` headers of the tighter of a key's and its project's bucket (either may not apply). */
function tighterRateHeaders(keyLease: RateLease | undefined, keyRate: number, projectLease: RateLease | undefined, projectRate: number): Record<string, string> {
  if (!projectLease) return rateHeaders(keyRate, keyLease);
  if (!keyLease || Math.floor(projectLease.bucketTokens) + projectLease.leased < Math.floor(keyLease.bucketTokens) + keyLease.leased) {
    return rateHeaders(projectRate, projectLease);
  }
  return rateHeaders(keyRate, keyLease);
}

/** Whether a token of this process's lease can be spent now, without asking the store. */
function hasLeasedToken(lease: RateLease | undefined, now: number): boolean {
  return lease !== undefined && lease.leased > 0 && now < lease.expiresAt;
}

/** Whether `amount` units of this process's reservation can be used now, without asking the store. */
function hasReserved(lease: CounterLease | undefined, period: string, amount: number): boolean {
  return lease !== undefined && lease.period === period && lease.available >= amount;
}

export class Limits {
  private readonly projects = new Map<string, Subject>();
  private readonly keys = new Map<string, Subject>();
  private readonly pendingSettings = new Map<string, Promise<LimitValues>>();
  /** Spend already done (compute) waiting to be added to the store's counters. */
  private readonly pendingCharges = new Map<string, { period: string; amount: number }>();
  private timer: NodeJS.Timeout | undefined;
  private lastPurge = 0;
  private ticking: Promise<void> = Promise.resolve();
  private monthCache = { period: '', until: 0 };

  constructor(
    private readonly store: QuotaStore,
    private readonly prices: PriceList,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  // ---- settings ---------------------------------------------------------------------------

  private subject(kind: 'project' | 'key', id: string, now: number): Subject {
    const map = kind === 'project' ? this.projects : this.keys;
    let subject = map.get(id);
    if (!subject) {
      subject = { kind, id, name: `${kind}:${id}`, fetchedAt: 0, lastUsed: now };
      map.set(id, subject);
    }
    subject.lastUsed = now;
    return subject;
  }

  /** Whether the subject's settings are fresh; when not, `refresh` reads them. */
  private isFresh(subject: Subject, now: number): boolean {
    return subject.values !== undefined && now - subject.fetchedAt < SETTINGS_TTL_MS;
  }

  private async refresh(subject: Subject): Promise<void> {
    let pending = this.pendingSettings.get(subject.name);
    if (!pending) {
      pending = this.store.getLimits(subject.name).finally(() => this.pendingSettings.delete(subject.name));
      this.pendingSettings.set(subject.name, pending);
    }
    subject.values = await pending;
    subject.fetchedAt = this.clock();
    subject.merged = undefined;
  }

  /** The limits in force: a project's own where set, else the free tier's; a key's own, else 0. */
  private limitsOf(subject: Subject): LimitSet {
    const free = this.prices.freeTier.limits;
    if (subject.merged && subject.mergedWith === free) return subject.merged;
    const values = subject.values ?? {};
    const limits = {} as LimitSet;
    for (const name of LIMIT_NAMES) limits[name] = values[name] ?? (subject.kind === 'project' ? free[name] : 0);
    subject.merged = limits;
    subject.mergedWith = free;
    return limits;
  }

  private async freshLimits(kind: 'project' | 'key', id: string): Promise<LimitSet> {
    const now = this.clock();
    const subject = this.subject(kind, id, now);
    if (!this.isFresh(subject, now)) await this.refresh(subject);
    return this.limitsOf(subject);
  }

  /** A project's limits in force: its own where set, else the free tier's. 0 means none. */
  async projectLimits(projectId: string): Promise<LimitSet> {
    return { ...(await this.freshLimits('project', projectId)) };
  }

  /** A key's own limits (on top of its project's). 0 means none. */
  async keyLimits(keyId: string): Promise<KeyLimits> {
    const limits = await this.freshLimits('key', keyId);
    return { rate_limit: limits.rate_limit, monthly_quota: limits.monthly_quota };
  }

  /**
   * Sets (a number) or clears (null: back to the free tier) limits of a project. Anyone who
   * manages the project may tighten a limit; only the operator's admin key may set one looser
   * than both the free tier and the limit in force.
   */
  async updateProjectLimits(callerRole: KeyRole, projectId: string, changes: Partial<Record<LimitName, number | null>>): Promise<LimitSet> {
    this.assertMaySetProjectLimits(callerRole, changes, await this.projectLimits(projectId));
    await this.store.updateLimits(`project:${projectId}`, changes);
    this.forget(this.projects, projectId);
    return this.projectLimits(projectId);
  }

  /**
   * Throws 403 when a caller other than the admin key asks for a limit looser than both the
   * free tier and `current` (the limits in force; the free tier's for a new project).
   */
  assertMaySetProjectLimits(callerRole: KeyRole, changes: Partial<Record<LimitName, number | null>>, current?: LimitSet): void {
    if (callerRole === 'admin') return;
    const free = this.prices.freeTier.limits;
    for (const name of LIMIT_NAMES) {
      const value = changes[name];
      if (value === undefined || value === null) continue;
      const within = (ceiling: number) => ceiling === 0 || (value > 0 && value <= ceiling);
      const inForce = current?.[name] ?? free[name];
      if (!within(free[name]) && !within(inForce)) {
        throw errors.forbidden(
          `${name}: this instance's free tier allows at most ${free[name]}${inForce > free[name] ? ` and this project has ${inForce}` : ''}; ` +
            'only the operator (the admin key) can set a higher limit or none',
        );
      }
    }
  }

  async updateKeyLimits(keyId: string, changes: Partial<Record<KeyLimitName, number | null>>): Promise<KeyLimits> {
    await this.store.updateLimits(`key:${keyId}`, changes);
    this.forget(this.keys, keyId);
    return this.keyLimits(keyId);
  }

  /** Forgets a project's limit settings (after `projects/Delete`). */
  async deleteProjectLimits(projectId: string): Promise<void> {
    await this.store.deleteLimits(`project:${projectId}`);
    this.forget(this.projects, projectId);
  }

  /** After a change made here: re-read the settings and ask the store again before refusing. */
  private forget(map: Map<string, Subject>, id: string): void {
    const subject = map.get(id);
    if (!subject) return;
    subject.values = undefined;
    subject.merged = undefined;
    for (const lease of [subject.requests, subject.spend]) if (lease) lease.refusedUntil = 0;
    if (subject.rate) subject.rate.refusedUntil = 0;
  }

  // ---- admission (the hot path) -----------------------------------------------------------

  private period(now: number): string {
    if (now >= this.monthCache.until || now < this.monthCache.until - 32 * 86_400_000) {
      this.monthCache = { period: monthOf(now), until: nextMonthStart(now) };
    }
    return this.monthCache.period;
  }

  /**
   * Decides whether a call may go ahead, before its handler runs. Throws a 429 (rate, monthly
   * quota) or 402 (spend cap) AltoError that names the limit and carries its headers.
   *
   * The common case touches no store and awaits nothing: settings come from the cache and
   * tokens and units from this process's leases (`admitNow`). Only a stale cache or an empty
   * lease awaits.
   */
  async admit(tenant: Payer, service: string, endpoint: string): Promise<Admission> {
    const admitted = this.admitNow(tenant, service, endpoint);
    if (admitted) return admitted;
    const priceMicros = this.prices.requestPrice(service, endpoint);
    if (tenant.role === 'admin') return { priceMicros };
    const now = this.clock();
    const projectSubject = this.subject('project', tenant.projectId, now);
    const keySubject = this.subject('key', tenant.keyId, now);
    if (!this.isFresh(projectSubject, now)) await this.refresh(projectSubject);
    if (!this.isFresh(keySubject, now)) await this.refresh(keySubject);
    const project = this.limitsOf(projectSubject);
    const key = this.limitsOf(keySubject);

    // Rate: the key's bucket, then the project's; the headers describe the tighter one.
    let headers: Record<string, string> | undefined;
    if (key.rate_limit > 0 || project.rate_limit > 0) {
      const keyLease =
        key.rate_limit > 0
          ? (this.takeLeasedToken(keySubject, now) ?? (await this.takeTokens(keySubject, key.rate_limit, now, `key ${tenant.keyId}`)))
          : undefined;
      const projectLease =
        project.rate_limit > 0
          ? (this.takeLeasedToken(projectSubject, now) ??
            (await this.takeTokens(projectSubject, project.rate_limit, now, `project "${tenant.projectName}"`, keyLease && rateHeaders(key.rate_limit, keyLease))))
          : undefined;
      headers = tighterRateHeaders(keyLease, key.rate_limit, projectLease, project.rate_limit);
    }
    const spendCap = project.monthly_spend_cap_micros;
    if (CONTROL_SERVICES.has(service) || (key.monthly_quota === 0 && project.monthly_quota === 0 && (spendCap === 0 || priceMicros === 0))) {
      return { priceMicros, headers };
    }

    const period = this.period(now);
    let keyRequests: CounterLease | undefined;
    let projectRequests: CounterLease | undefined;
    try {
      if (key.monthly_quota > 0) {
        keyRequests =
          this.takeReserved(keySubject.requests, period, 1, now) ??
          (await this.reserve(keySubject, 'requests', period, 1, key.monthly_quota, now, () =>
            this.quotaError(`key ${tenant.keyId}`, key.monthly_quota, period, now, 'keys/Update'),
          ));
      }
      if (project.monthly_quota > 0) {
        projectRequests =
          this.takeReserved(projectSubject.requests, period, 1, now) ??
          (await this.reserve(projectSubject, 'requests', period, 1, project.monthly_quota, now, () =>
            this.quotaError(`project "${tenant.projectName}"`, project.monthly_quota, period, now, 'projects/Update'),
          ));
      }
      if (spendCap === 0 || priceMicros === 0) return { priceMicros, headers };
      // The cap is on what the project pays: the free credit comes on top of it.
      const credit = this.prices.freeTier.monthly_credit_micros;
      const spend =
        this.takeReserved(projectSubject.spend, period, priceMicros, now) ??
        (await this.reserve(projectSubject, 'spend', period, priceMicros, spendCap + credit, now, () =>
          errors.paymentRequired(
            `monthly spend cap reached: project "${tenant.projectName}" may spend ${formatMicros(spendCap)} ` +
              `${this.prices.currency} a month (monthly_spend_cap_micros ${spendCap}, after a free credit of ` +
              `${formatMicros(credit)}) and this call (${formatMicros(priceMicros)}) would pass it in ${period}; ` +
              'raise monthly_spend_cap_micros with projects/Update, or wait for next month. Your data is kept.',
          ),
        ));
      return { priceMicros, headers, spend: { lease: spend, amount: priceMicros } };
    } catch (error) {
      // Give back what this call reserved before the refusal; it was not used.
      if (keyRequests) keyRequests.available += 1;
      if (projectRequests) projectRequests.available += 1;
      if (headers) (error as AltoError).withHeaders?.(headers);
      throw error;
    }
  }

  /**
   * Admits a call at once when this process's cache and leases decide it alone: fresh settings,
   * a leased rate token for every bucket that applies, reserved units for every monthly counter.
   * Otherwise (the store must be asked, or the call may be refused) returns undefined and takes
   * nothing, and `admit` decides. The API's hot path calls this first, so a call that needs
   * nothing from the store is admitted without a promise.
   */
  admitNow(tenant: Payer, service: string, endpoint: string): Admission | undefined {
    const priceMicros = this.prices.requestPrice(service, endpoint);
    if (tenant.role === 'admin') return { priceMicros };
    const now = this.clock();
    const projectSubject = this.subject('project', tenant.projectId, now);
    const keySubject = this.subject('key', tenant.keyId, now);
    if (!this.isFresh(projectSubject, now) || !this.isFresh(keySubject, now)) return undefined;
    const project = this.limitsOf(projectSubject);
    const key = this.limitsOf(keySubject);
    if (key.rate_limit > 0 && !hasLeasedToken(keySubject.rate, now)) return undefined;
    if (project.rate_limit > 0 && !hasLeasedToken(projectSubject.rate, now)) return undefined;

    const spendCap = project.monthly_spend_cap_micros;
    const counted = !CONTROL_SERVICES.has(service) && (key.monthly_quota > 0 || project.monthly_quota > 0 || (spendCap > 0 && priceMicros > 0));
    const spent = counted && spendCap > 0 && priceMicros > 0;
    const period = this.period(now);
    if (counted) {
      if (key.monthly_quota > 0 && !hasReserved(keySubject.requests, period, 1)) return undefined;
      if (project.monthly_quota > 0 && !hasReserved(projectSubject.requests, period, 1)) return undefined;
      if (spent && !hasReserved(projectSubject.spend, period, priceMicros)) return undefined;
    }

    // Everything is at hand: take it, as `admit` would.
    let headers: Record<string, string> | undefined;
    if (key.rate_limit > 0 || project.rate_limit > 0) {
      const keyLease = key.rate_limit > 0 ? this.takeLeasedToken(keySubject, now) : undefined;
      const projectLease = project.rate_limit > 0 ? this.takeLeasedToken(projectSubject, now) : undefined;
      headers = tighterRateHeaders(keyLease, key.rate_limit, projectLease, project.rate_limit);
    }
    if (!counted) return { priceMicros, headers };
    if (key.monthly_quota > 0) this.takeReserved(keySubject.requests, period, 1, now);
    if (project.monthly_quota > 0) this.takeReserved(projectSubject.requests, period, 1, now);
    if (!spent) return { priceMicros, headers };
    const spend = this.takeReserved(projectSubject.spend, period, priceMicros, now)!;
    return { priceMicros, headers, spend: { lease: spend, amount: priceMicros } };
  }

  /** After the call: a failed call pays nothing, so its reserved spend goes back. */
  settle(admission: Admission | undefined, succeeded: boolean): void {
    if (!succeeded && admission?.spend) admission.spend.lease.available += admission.spend.amount;
  }

  /** Spends a token of this process's lease; undefined when the store must be asked. */
  private takeLeasedToken(subject: Subject, now: number): RateLease | undefined {
    const lease = subject.rate;
    if (!lease || lease.leased === 0 || now >= lease.expiresAt) return undefined;
    lease.leased -= 1;
    lease.spent += 1;
    return lease;
  }

  /** Leases tokens from the store's bucket and spends one, or throws the 429. */
  private async takeTokens(
    subject: Subject,
    rate: number,
    now: number,
    who: string,
    otherHeaders?: Record<string, string>,
  ): Promise<RateLease> {
    let lease = subject.rate;
    if (!lease) {
      lease = { bucket: `rate:${subject.name}`, leased: 0, expiresAt: 0, spent: 0, bucketTokens: rate, refusedUntil: 0 };
      subject.rate = lease;
    }
    if (now < lease.refusedUntil) throw this.rateError(who, rate, lease.refusedUntil - now, otherHeaders);

    // Size the lease by what the last one served, if it was recent: a quiet key takes one.
    const recent = now - lease.expiresAt < RATE_LEASE_MS;
    const want = Math.max(1, Math.min(Math.floor(rate / 20), recent ? lease.spent * 2 : 1));
    const grant = await this.store.takeTokens(lease.bucket, want, rate, rate, now);
    lease.bucketTokens = grant.tokens;
    if (grant.granted === 0) {
      const waitMs = Math.ceil(((1 - grant.tokens) * 1000) / rate);
      lease.refusedUntil = now + waitMs;
      lease.leased = 0;
      throw this.rateError(who, rate, waitMs, otherHeaders);
    }
    lease.leased = grant.granted - 1;
    lease.spent = 1;
    lease.expiresAt = now + RATE_LEASE_MS;
    return lease;
  }

  private rateError(who: string, rate: number, waitMs: number, otherHeaders?: Record<string, string>): AltoError {
    const seconds = Math.max(1, Math.ceil(waitMs / 1000));
    return errors
      .tooManyRequests(
        `rate limit reached: ${who} may make ${rate} request${rate === 1 ? '' : 's'} per second (rate_limit ${rate}); ` +
          `retry in ${seconds} s, as Retry-After says`,
      )
      .withHeaders({ ...otherHeaders, ...rateHeaders(rate, undefined), 'retry-after': String(seconds) });
  }

  private quotaError(who: string, quota: number, period: string, now: number, fix: string): AltoError {
    const resetAt = nextMonthStart(now);
    return errors
      .tooManyRequests(
        `monthly quota reached: ${who} may make ${quota} request${quota === 1 ? '' : 's'} a month (monthly_quota ${quota}) and ` +
          `made them all in ${period}; it resets at ${new Date(resetAt).toISOString()}, or raise monthly_quota with ${fix}. ` +
          'Your data is kept.',
      )
      .withHeaders({ 'retry-after': String(Math.max(1, Math.ceil((resetAt - now) / 1000))) });
  }

  /** Uses units of this process's reservation; undefined when the store must be asked. */
  private takeReserved(lease: CounterLease | undefined, period: string, amount: number, now: number): CounterLease | undefined {
    if (!lease || lease.period !== period || lease.available < amount) return undefined;
    lease.available -= amount;
    lease.usedThisTick += amount;
    lease.lastUsed = now;
    return lease;
  }

  /** Reserves units from the store's counter and uses `amount` of them, or throws `refusal()`. */
  private async reserve(
    subject: Subject,
    which: 'requests' | 'spend',
    period: string,
    amount: number,
    limit: number,
    now: number,
    refusal: () => AltoError,
  ): Promise<CounterLease> {
    let lease = subject[which];
    if (!lease || lease.period !== period) {
      // New, or a new month: last month's reservation belonged to last month's counter.
      lease = {
        counter: `${which}:${subject.name}`,
        period,
        available: 0,
        lastUsed: now,
        usedThisTick: 0,
        usedLastTick: 0,
        remaining: 0,
        refusedUntil: 0,
        refusedLimit: 0,
      };
      subject[which] = lease;
    }
    lease.lastUsed = now;
    if (now < lease.refusedUntil && lease.refusedLimit === limit) throw refusal();

    // A chunk covers about a second of this process's demand, and never more than 1/64 of
    // what the store had left: near the limit, units go one call at a time.
    const demand = Math.max(lease.usedThisTick, lease.usedLastTick, amount);
    const chunk = Math.max(1, Math.min(MAX_COUNTER_CHUNK * amount, demand, Math.floor(lease.remaining / 64)));
    const grant = await this.store.reserve(lease.counter, period, Math.max(amount - lease.available, chunk), limit);
    lease.available += grant.granted;
    lease.remaining = Math.max(0, limit - grant.value);
    if (lease.available >= amount) {
      lease.available -= amount;
      lease.usedThisTick += amount;
      return lease;
    }
    lease.refusedUntil = now + COUNTER_REFUSAL_MS;
    lease.refusedLimit = limit;
    throw refusal();
  }

  // ---- storage and compute ----------------------------------------------------------------

  /**
   * Refuses with 402 when storing `adding` more units would pass the project's cap. `current`
   * is asked only when a cap is set, so uncapped projects pay nothing. The check is not in the
   * same transaction as the write: calls running at the same moment can pass the cap by what
   * they add together (the block's own hard limit still holds).
   */
  async assertStorage(
    tenant: StorageOwner | undefined,
    name: 'db_rows' | 'space_bytes',
    adding: number,
    current: () => Promise<number>,
  ): Promise<void> {
    if (!tenant || tenant.role === 'admin' || adding <= 0) return;
    const cap = (await this.freshLimits('project', tenant.projectId))[name];
    if (cap === 0) return;
    const used = await current();
    if (used + adding > cap) {
      const unit = name === 'db_rows' ? 'records' : 'bytes';
      throw errors.paymentRequired(
        `storage cap reached: ${tenant.projectName ? `project "${tenant.projectName}"` : 'this project'} may keep ${cap} ${unit} (${name} ${cap}); it keeps ${used} and this call ` +
          `adds ${adding}. Delete some, or raise ${name} with projects/Update. Your data is kept.`,
      );
    }
  }

  /**
   * Adds spend already incurred (compute time) to the project's monthly spend counter, so the
   * spend cap covers it. Written to the store on the next tick.
   */
  charge(projectId: string, micros: number): void {
    if (micros <= 0) return;
    const counter = `spend:project:${projectId}`;
    const period = this.period(this.clock());
    const pending = this.pendingCharges.get(counter);
    if (pending && pending.period === period) pending.amount += micros;
    else this.pendingCharges.set(counter, { period, amount: micros });
  }

  /** Units counted against a monthly counter in the store (reserved, used or charged). */
  counterValue(counter: 'requests' | 'spend', subject: 'project' | 'key', id: string, at = this.clock()): Promise<number> {
    return this.store.counterValue(`${counter}:${subject}:${id}`, monthOf(at));
  }

  // ---- background -------------------------------------------------------------------------

  /** Gives back idle reservations, writes pending charges, forgets idle subjects, purges. */
  tick(final = false): Promise<void> {
    this.ticking = this.ticking.then(async () => {
      const now = this.clock();
      for (const map of [this.projects, this.keys]) {
        for (const [id, subject] of map) {
          for (const which of ['requests', 'spend'] as const) {
            const lease = subject[which];
            if (!lease) continue;
            lease.usedLastTick = lease.usedThisTick;
            lease.usedThisTick = 0;
            if (final || now - lease.lastUsed >= COUNTER_IDLE_MS) {
              const amount = lease.available;
              subject[which] = undefined;
              if (amount > 0) await this.safely(() => this.store.release(lease.counter, lease.period, amount), 'releasing a reservation');
            }
          }
          if (now - subject.lastUsed > SUBJECT_IDLE_MS && !subject.requests && !subject.spend) map.delete(id);
        }
      }
      const charges = [...this.pendingCharges.entries()];
      this.pendingCharges.clear();
      for (const [counter, { period, amount }] of charges) {
        const written = await this.safely(() => this.store.add(counter, period, amount), 'adding a charge');
        if (!written) this.charge(counter.slice('spend:project:'.length), amount);
      }
      if (now - this.lastPurge >= PURGE_EVERY_MS) {
        this.lastPurge = now;
        // Keep three months of counters; forget buckets nobody used for an hour.
        await this.safely(() => this.store.purge(monthOf(now - 62 * 86_400_000), now - 3_600_000), 'purging old counters');
      }
    });
    return this.ticking;
  }

  private async safely(write: () => Promise<void>, what: string): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      this.log.error({ err: error }, `limits: ${what} failed`);
      return false;
    }
  }

  /** Gives every unused reservation back and writes pending charges (clean shutdown). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.tick(true);
  }
}
