/**
 * @module blocks/cron/scheduler
 * The cron block's logic: scheduling, listing and deleting jobs, and the scheduler that fires
 * them. Every TICK_MS the scheduler looks for due jobs, claims each due run in the store (only
 * one process sharing the store wins a claim), and POSTs the signed JSON body to the
 * callback, retrying failures with back-off. The claim lasts CLAIM_MS and is renewed while the
 * run is delivered, until the run is recorded: a run claimed by a process that died (or
 * stopped) before delivering it is taken over by another process once its claim runs out, and
 * delivered then, late rather than never. A process killed after the callback answered but
 * before the run was recorded has it delivered again: callbacks are at least once, and the
 * body's `scheduled` time names the run so a receiver can tell. A run missed while no server
 * was up fires once, late, then the job carries on from the current time. A callback is a public http(s) URL, or
 * `app://<name>/<path>`: one of the project's own apps, reached straight at a ready instance
 * (through the platform's app gateway, with the Host header the edge would give it).
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { OutboundRefused, pinnedLookup, resolveOutbound, type OutboundTarget } from '../../kit/outbound-guard.js';
import { randomString } from '../../kit/random.js';
import type { SecretCipher } from '../../kit/master-key.js';
import type { AppGateway } from '../../platform/app-gateway.js';
import { environmentOf, projectIdOf } from '../../platform/tenancy.js';
import { checkCallbackUrl, isAppCallback, parseAppCallback } from './addresses.js';
import { nextFireTime, parseCron } from './expression.js';
import { SIGNATURE_HEADER, signatureHeader } from './signature.js';
import type { AbandonedRun, CronStore, JobRecord, RunClaim, RunRecord } from '../../store/cron/port.js';
import { SigningSecrets } from './signing-secrets.js';

/** How often due jobs are looked for: a job fires well within a second of its time. */
export const TICK_MS = 200;
/** How long a claimed run stays claimed without renewal: how late a run whose claimer died may be. */
export const CLAIM_MS = 10_000;
/** How often the claims of the runs being delivered are renewed, and abandoned runs looked for. */
export const CLAIM_RENEW_MS = 2_000;
/** Waits before the 2nd, 3rd and 4th attempt of a failed callback. */
export const RETRY_DELAYS_MS = [1000, 2000, 4000];
const CALLBACK_TIMEOUT_MS = 10_000;
/** Due jobs claimed per tick at most; the rest wait for the next tick. */
const DUE_PER_TICK = 100;
const JOB_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$/;

export interface ScheduleInput {
  id?: string;
  name?: string;
  description?: string;
  interval?: string;
  callback?: string;
}

/** One attempt's outcome: the HTTP status (0 for a network error, -1 for a refused address). */
interface CallbackResult {
  code: number;
  error: string;
}

/** What the callback receives as its JSON body. */
export interface CallbackBody {
  id: string;
  name: string;
  description: string;
  interval: string;
  /** The time this run was due, RFC 3339 with milliseconds (unique per run of a job). */
  scheduled: string;
  attempt: number;
}

export interface SchedulerOptions {
  allowPrivateCallbacks: boolean;
  log: Logger;
  /** The projects' apps, for `app://` callbacks; undefined (or answering undefined) where none run. */
  apps?: () => AppGateway | undefined;
  /** Seals the signing secrets at rest (the platform's master key). */
  cipher?: SecretCipher;
  retryDelaysMs?: number[];
  now?: () => number;
  /** Names this scheduler's claims in the store; random when not given. */
  claimer?: string;
  /** How long a claim holds without renewal (CLAIM_MS); tests shorten it. */
  claimMs?: number;
}

export class CronScheduler {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The tick under way, if any: ticks never overlap, however slow the store answers. */
  private ticking: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly aborter = new AbortController();
  private readonly now: () => number;
  private readonly retryDelaysMs: number[];
  private readonly claimMs: number;
  /** When the claims were last renewed and abandoned runs last looked for. */
  private lastClaimCheck = 0;
  readonly claimer: string;
  readonly signingSecrets: SigningSecrets;

  constructor(
    readonly store: CronStore,
    private readonly options: SchedulerOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.retryDelaysMs = options.retryDelaysMs ?? RETRY_DELAYS_MS;
    this.claimMs = options.claimMs ?? CLAIM_MS;
    this.claimer = options.claimer ?? `cron-${randomString(16)}`;
    this.signingSecrets = new SigningSecrets(store, options.cipher);
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  async schedule(namespace: string, input: ScheduleInput): Promise<JobRecord> {
    const name = input.name?.trim() ?? '';
    if (!name) throw errors.badRequest('name: required: a name for the job, e.g. "nightly-report"');
    if (!input.interval?.trim()) throw errors.badRequest('interval: required: a cron expression in UTC, e.g. "*/5 * * * *"');
    if (!input.callback?.trim()) throw errors.badRequest('callback: required: the http(s) URL to POST to when the job fires');
    const id = input.id ? input.id : randomString(16);
    if (!JOB_ID_PATTERN.test(id)) {
      throw errors.badRequest(`id: ${JSON.stringify(id)} is not a valid job id; use 1 to 128 letters, digits, ".", "_", "~" or "-"`);
    }
    const schedule = parseCron(input.interval);
    const now = this.now();
    const nextRun = nextFireTime(schedule, now);
    if (nextRun === undefined) throw errors.badRequest(`interval: "${schedule.source}" never fires (no such date); check the day and month fields`);
    const callback = isAppCallback(input.callback)
      ? this.checkAppCallback(namespace, input.callback)
      : await checkCallbackUrl(input.callback, this.options.allowPrivateCallbacks);
    const job: JobRecord = { namespace, id, name, description: input.description ?? '', interval: schedule.source, callback, nextRun };
    await this.store.save(job, now);
    return job;
  }

  /** An app:// callback names an app of the job's own project and environment. */
  private checkAppCallback(namespace: string, callback: string): string {
    const { name, path } = parseAppCallback(callback);
    const apps = this.options.apps?.();
    if (!apps) throw errors.badRequest('callback: this instance runs no apps, so an app:// callback has nothing to call');
    if (!apps.hasApp(projectIdOf(namespace), name, environmentOf(namespace))) throw errors.badRequest(`callback: no app "${name}" in this project; deploy it first (app/Run)`);
    return `app://${name}${path}`;
  }

  async delete(namespace: string, id: string): Promise<void> {
    if (!id) throw errors.badRequest('id: required: the id of the job to delete, as Schedule or Jobs returned it');
    if (!(await this.store.delete(namespace, id))) throw errors.notFound(`no cron job with id "${id}" in this project; Jobs lists them`);
  }

  /**
   * Claims and fires every due run, and (every CLAIM_RENEW_MS) renews the claims of the runs
   * being delivered and takes over abandoned ones; resolves once the runs are claimed, while the callbacks go on in the background. A tick asked for while one is under
   * way waits for that one.
   */
  tick(): Promise<void> {
    if (!this.ticking) {
      this.ticking = (async () => {
        await this.claimDueRuns();
        if (this.now() - this.lastClaimCheck >= Math.min(CLAIM_RENEW_MS, this.claimMs / 4)) await this.checkClaims();
      })().finally(() => (this.ticking = undefined));
    }
    return this.ticking;
  }

  private claim(): RunClaim {
    return { owner: this.claimer, until: this.now() + this.claimMs };
  }

  /** Renews this scheduler's claims, then takes over and fires runs whose claimer stopped renewing. */
  private async checkClaims(): Promise<void> {
    if (this.closed) return;
    const now = this.now();
    this.lastClaimCheck = now;
    let abandoned: AbandonedRun[];
    try {
      if (this.inFlight.size > 0) await this.store.renewClaims(this.claimer, now + this.claimMs);
      abandoned = await this.store.abandonedRuns(now, DUE_PER_TICK);
    } catch (error) {
      this.options.log.warn({ err: error }, 'cron: could not renew claims or read abandoned runs');
      return;
    }
    for (const { job, scheduledAt } of abandoned) {
      let taken: boolean;
      try {
        taken = await this.store.reclaim(job.namespace, job.id, scheduledAt, now, this.claim());
      } catch (error) {
        this.options.log.warn({ err: error, job: job.id }, 'cron: could not take over an abandoned run');
        return;
      }
      if (!taken || this.closed) continue;
      this.options.log.info({ job: job.id, scheduled: new Date(scheduledAt).toISOString() }, 'cron: delivering a run its claimer abandoned');
      this.startDelivery(job, scheduledAt);
    }
  }

  private startDelivery(job: JobRecord, scheduledAt: number): void {
    const delivery = this.deliver(job, scheduledAt).finally(() => this.inFlight.delete(delivery));
    this.inFlight.add(delivery);
  }

  private async claimDueRuns(): Promise<void> {
    if (this.closed) return;
    const now = this.now();
    let due: JobRecord[];
    try {
      due = await this.store.due(now, DUE_PER_TICK);
    } catch (error) {
      this.options.log.warn({ err: error }, 'cron: could not read due jobs');
      return;
    }
    for (const job of due) {
      const scheduledAt = job.nextRun!;
      let next: number | null = null;
      try {
        next = nextFireTime(parseCron(job.interval), Math.max(scheduledAt, now)) ?? null;
      } catch {
        // An expression that no longer parses (older rules) stops the job instead of failing every tick.
      }
      let claimed: boolean;
      try {
        claimed = await this.store.claim(job, scheduledAt, next, this.claim());
      } catch (error) {
        this.options.log.warn({ err: error, job: job.id }, 'cron: could not claim a run');
        return;
      }
      if (!claimed || this.closed) continue;
      this.startDelivery(job, scheduledAt);
    }
  }

  private async deliver(job: JobRecord, scheduledAt: number): Promise<void> {
    let secret: string;
    try {
      secret = await this.signingSecrets.get(job.namespace);
    } catch (error) {
      this.options.log.warn({ err: error, job: job.id }, 'cron: could not read the signing secret');
      return;
    }
    let result: { code: number; error: string } = { code: 0, error: '' };
    let attempt = 0;
    let status: RunRecord['status'] = 'failed';
    for (; attempt <= this.retryDelaysMs.length; attempt++) {
      if (attempt > 0 && !(await this.pause(this.retryDelaysMs[attempt - 1]))) break;
      const body: CallbackBody = {
        id: job.id,
        name: job.name,
        description: job.description,
        interval: job.interval,
        scheduled: new Date(scheduledAt).toISOString(),
        attempt: attempt + 1,
      };
      result = await this.post(job, JSON.stringify(body), secret);
      if (result.code >= 200 && result.code < 300) {
        status = 'succeeded';
        break;
      }
      if (result.code === -1) {
        status = 'refused';
        break;
      }
    }
    // Stopping cut this run short: its claim is released on close, for another process to deliver.
    if (this.closed && status !== 'succeeded') return;
    const run: RunRecord = {
      scheduledAt,
      finishedAt: this.now(),
      status,
      httpCode: Math.max(result.code, 0),
      attempts: Math.min(attempt + 1, this.retryDelaysMs.length + 1),
      error: result.error,
    };
    try {
      await this.store.recordRun(job.namespace, job.id, run);
    } catch (error) {
      this.options.log.warn({ err: error, job: job.id }, 'cron: could not record a run');
    }
  }

  /** Resolves false when the scheduler closes before the pause ends. */
  private pause(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.closed) return resolve(false);
      const onAbort = () => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        this.aborter.signal.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      this.aborter.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** POSTs one attempt. code: the HTTP status; 0 for a network error; -1 when the address is refused. */
  private post(job: JobRecord, body: string, secret: string): Promise<CallbackResult> {
    return isAppCallback(job.callback) ? this.postToApp(job, body, secret) : this.postToUrl(job.callback, body, secret);
  }

  /** A URL callback goes through the outbound guard: resolved, checked, and sent to the checked address only. */
  private async postToUrl(callback: string, body: string, secret: string): Promise<CallbackResult> {
    const url = new URL(callback);
    let target: OutboundTarget;
    try {
      target = await resolveOutbound(url.hostname, { allowPrivate: this.options.allowPrivateCallbacks });
    } catch (error) {
      return { code: error instanceof OutboundRefused ? -1 : 0, error: (error as Error).message };
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return this.send(send, url, body, secret, {}, { lookup: pinnedLookup(target) });
  }

  /** An app callback goes to a ready instance of the project's app: the app was checked when scheduled, not its address. */
  private async postToApp(job: JobRecord, body: string, secret: string): Promise<CallbackResult> {
    const { name, path } = parseAppCallback(job.callback);
    const apps = this.options.apps?.();
    if (!apps) return { code: 0, error: 'this instance runs no apps' };
    let endpoint;
    try {
      endpoint = await apps.openApp(projectIdOf(job.namespace), name, environmentOf(job.namespace));
    } catch (error) {
      return { code: 0, error: error instanceof Error ? error.message : String(error) };
    }
    try {
      return await this.send(httpRequest, new URL(`http://${endpoint.host}:${endpoint.port}${path}`), body, secret, { host: endpoint.hostHeader });
    } finally {
      endpoint.release();
    }
  }

  private send(
    send: typeof httpRequest,
    url: URL,
    body: string,
    secret: string,
    headers: Record<string, string>,
    options: RequestOptions = {},
  ): Promise<CallbackResult> {
    return new Promise((resolve) => {
      const timestamp = Math.floor(this.now() / 1000);
      const request = send(url, {
        method: 'POST',
        headers: {
          ...headers,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': 'Alto-Cron/1',
          [SIGNATURE_HEADER]: signatureHeader(secret, timestamp, body),
        },
        timeout: CALLBACK_TIMEOUT_MS,
        signal: this.aborter.signal,
        ...options,
      });
      request.on('response', (response: IncomingMessage) => {
        response.resume();
        response.on('end', () => resolve({ code: response.statusCode ?? 0, error: '' }));
        response.on('error', () => resolve({ code: response.statusCode ?? 0, error: '' }));
      });
      request.on('timeout', () => request.destroy(new Error(`no answer within ${CALLBACK_TIMEOUT_MS / 1000} s`)));
      request.on('error', (error: Error) => {
        resolve({ code: 0, error: error.message });
      });
      request.end(body);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.aborter.abort();
    await this.ticking;
    await Promise.allSettled([...this.inFlight]);
    try {
      await this.store.releaseClaims(this.claimer);
    } catch (error) {
      this.options.log.warn({ err: error }, 'cron: could not release claims; other processes take them once they run out');
    }
  }
}
