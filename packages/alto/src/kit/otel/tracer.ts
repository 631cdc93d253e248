/**
 * @module kit/otel/tracer
 * The tracer behind kit/tracing.ts, loaded only when tracing is on. It reads the standard
 * OpenTelemetry variables, samples (OTEL_TRACES_SAMPLER), keeps the current span per async
 * context, and exports finished spans in batches over OTLP/HTTP (`/v1/traces`), JSON or
 * protobuf (OTEL_EXPORTER_OTLP_PROTOCOL). Ending a span only queues it: a timer (unref'd) sends
 * the queue in batches, one request at a time; a full queue drops spans and counts them. An
 * export that fails is logged at most once a minute and never touches a request.
 *
 * The SDK packages (@opentelemetry/sdk-trace-base and the OTLP exporters) would do the same
 * with a context manager, a span processor pipeline and generated protobuf code behind every
 * span; what the edge needs is a few spans per request, so this is ours, a few hundred lines.
 *
 * The export connection goes to the endpoint the operator configured (an environment variable of
 * the process), never to an address a tenant chose, so it does not pass the tenant outbound
 * guard (kit/outbound-guard.ts): a collector on localhost or a private network is the usual case.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomFillSync } from 'node:crypto';
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { Logger } from '../logger.js';
import type { AttributeValue, Span, SpanKind, Tracer } from '../tracing.js';
import { encodeJson, encodeProtobuf, type FinishedSpan, type Resource } from './otlp.js';

export interface TracerConfig {
  url: URL;
  protocol: 'http/json' | 'http/protobuf';
  headers: Record<string, string>;
  timeoutMs: number;
  resource: Resource;
  sampler: Sampler;
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduleDelayMs: number;
}

/** Whether a new span is sampled: from its trace id and its parent's decision (undefined for a root). */
export type Sampler = (traceId: string, parentSampled: boolean | undefined) => boolean;

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
/** Export failures are logged at most this often. */
const FAILURE_LOG_EVERY_MS = 60_000;

export function createTracer(env: NodeJS.ProcessEnv, log: Logger, serviceVersion = ''): Tracer {
  const config = tracerConfigFrom(env, serviceVersion);
  const tracer = new OtlpTracer(config, log.child({ component: 'tracing' }));
  log.info({ endpoint: config.url.origin + config.url.pathname, protocol: config.protocol }, 'traces are exported over OTLP');
  return tracer;
}

/** The tracer's settings from the standard variables (the traces-specific one of each pair wins). */
export function tracerConfigFrom(env: NodeJS.ProcessEnv, serviceVersion = ''): TracerConfig {
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url = new URL(tracesEndpoint || `${(base ?? '').replace(/\/+$/, '')}/v1/traces`);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`the OTLP endpoint ${url.origin} is not http or https`);
  const protocolName = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf').trim();
  if (protocolName !== 'http/json' && protocolName !== 'http/protobuf') {
    throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL=${protocolName} is not supported: use http/protobuf or http/json`);
  }
  const resourceAttributes = new Map<string, AttributeValue>(pairsOf(env.OTEL_RESOURCE_ATTRIBUTES));
  const serviceName = env.OTEL_SERVICE_NAME?.trim() || (resourceAttributes.get('service.name') as string | undefined) || 'alto';
  resourceAttributes.set('service.name', serviceName);
  if (serviceVersion && !resourceAttributes.has('service.version')) resourceAttributes.set('service.version', serviceVersion);
  resourceAttributes.set('telemetry.sdk.name', 'alto');
  resourceAttributes.set('telemetry.sdk.language', 'nodejs');
  return {
    url,
    protocol: protocolName,
    headers: Object.fromEntries([...pairsOf(env.OTEL_EXPORTER_OTLP_HEADERS), ...pairsOf(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS)]),
    timeoutMs: numberOf(env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? env.OTEL_EXPORTER_OTLP_TIMEOUT, 10_000),
    resource: { attributes: [...resourceAttributes], scopeName: 'alto', scopeVersion: serviceVersion },
    sampler: samplerFrom(env.OTEL_TRACES_SAMPLER, env.OTEL_TRACES_SAMPLER_ARG),
    maxQueueSize: numberOf(env.OTEL_BSP_MAX_QUEUE_SIZE, 2048),
    maxExportBatchSize: numberOf(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512),
    scheduleDelayMs: numberOf(env.OTEL_BSP_SCHEDULE_DELAY, 5000),
  };
}

/** `key=value,key=value` with percent-encoded values (W3C Baggage form, as OTEL_RESOURCE_ATTRIBUTES and the headers use). */
function pairsOf(text: string | undefined): [string, string][] {
  const pairs: [string, string][] = [];
  for (const item of (text ?? '').split(',')) {
    const at = item.indexOf('=');
    if (at <= 0) continue;
    const key = item.slice(0, at).trim();
    let value = item.slice(at + 1).trim();
    try {
      value = decodeURIComponent(value);
    } catch {
      // kept as written
    }
    if (key) pairs.push([key, value]);
  }
  return pairs;
}

function numberOf(text: string | undefined, fallback: number): number {
  const value = Number(text);
  return text !== undefined && text.trim() !== '' && Number.isFinite(value) && value > 0 ? value : fallback;
}

/** OTEL_TRACES_SAMPLER: always_on, always_off, traceidratio and their parentbased_ forms (the default: parentbased_always_on). */
export function samplerFrom(name: string | undefined, argument: string | undefined): Sampler {
  const chosen = (name?.trim() || 'parentbased_always_on').toLowerCase();
  const ratio = Math.min(1, Math.max(0, argument === undefined || argument.trim() === '' || !Number.isFinite(Number(argument)) ? 1 : Number(argument)));
  // The trace id's last 14 hex digits (56 bits, random in W3C trace ids) against the ratio.
  const bound = ratio * 2 ** 56;
  const byRatio = (traceId: string) => ratio >= 1 || parseInt(traceId.slice(18), 16) < bound;
  const root: Record<string, (traceId: string) => boolean> = {
    always_on: () => true,
    always_off: () => false,
    traceidratio: byRatio,
  };
  if (root[chosen]) {
    const decide = root[chosen];
    return (traceId) => decide(traceId);
  }
  const parentBased = chosen.startsWith('parentbased_') ? root[chosen.slice('parentbased_'.length)] : undefined;
  if (!parentBased) throw new Error(`OTEL_TRACES_SAMPLER=${name} is not supported: use always_on, always_off, traceidratio or parentbased_ with one of them`);
  return (traceId, parentSampled) => (parentSampled === undefined ? parentBased(traceId) : parentSampled);
}

/** Random hex ids from a pool filled a page at a time (one getrandom per 256 span ids). */
class IdSource {
  private pool = Buffer.alloc(4096);
  private at = this.pool.length;

  hex(bytes: number): string {
    if (this.at + bytes > this.pool.length) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    const id = this.pool.toString('hex', this.at, this.at + bytes);
    this.at += bytes;
    return id;
  }
}

class RecordedSpan implements Span {
  private readonly attributes: (string | AttributeValue)[] = [];
  private error: string | undefined;
  private ended = false;

  constructor(
    private readonly tracer: OtlpTracer,
    readonly traceId: string,
    readonly spanId: string,
    private readonly parentSpanId: string,
    private readonly remoteParent: boolean,
    private readonly name: string,
    private readonly kind: SpanKind,
    private readonly startMs: number,
  ) {}

  get sampled(): boolean {
    return true;
  }

  setAttribute(name: string, value: AttributeValue): void {
    if (!this.ended) this.attributes.push(name, value);
  }

  fail(message: string): void {
    this.error = message;
  }

  end(endMs: number = performance.now()): void {
    if (this.ended) return;
    this.ended = true;
    const origin = performance.timeOrigin;
    this.tracer.queue({
      traceId: this.traceId,
      spanId: this.spanId,
      parentSpanId: this.parentSpanId,
      name: this.name,
      kind: this.kind,
      startMs: origin + this.startMs,
      endMs: origin + Math.max(endMs, this.startMs),
      attributes: this.attributes,
      error: this.error,
      remoteParent: this.remoteParent,
    });
  }

  traceparent(): string {
    return `00-${this.traceId}-${this.spanId}-01`;
  }
}

/** A span the sampler left out: it carries its trace to children and to apps, and records nothing. */
class UnsampledSpan implements Span {
  constructor(
    readonly traceId: string,
    readonly spanId: string,
  ) {}

  get sampled(): boolean {
    return false;
  }

  setAttribute(): void {}
  fail(): void {}
  end(): void {}

  traceparent(): string {
    return `00-${this.traceId}-${this.spanId}-00`;
  }
}

export class OtlpTracer implements Tracer {
  private readonly current = new AsyncLocalStorage<Span>();
  private readonly ids = new IdSource();
  private pending: FinishedSpan[] = [];
  private readonly timer: NodeJS.Timeout;
  private exporting: Promise<void> | undefined;
  private stopped = false;
  /** Spans dropped because the queue was full, since the start. */
  dropped = 0;
  private droppedLogged = 0;
  private lastFailureLogAt = -Infinity;
  private readonly agent: HttpAgent;

  constructor(
    readonly config: TracerConfig,
    private readonly log: Logger,
  ) {
    this.agent = config.url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true, maxSockets: 1 }) : new HttpAgent({ keepAlive: true, maxSockets: 1 });
    this.timer = setInterval(() => this.exportNow(), config.scheduleDelayMs);
    this.timer.unref();
  }

  startSpan(name: string, kind: SpanKind, parent?: Span | string, startMs: number = performance.now()): Span {
    let traceId: string | undefined;
    let parentSpanId = '';
    let parentSampled: boolean | undefined;
    let remote = false;
    const given = parent === undefined ? this.current.getStore() : parent;
    if (typeof given === 'string') {
      const match = TRACEPARENT.exec(given.trim());
      if (match && match[1] !== 'ff' && match[2] !== ZERO_TRACE && match[3] !== ZERO_SPAN) {
        traceId = match[2];
        parentSpanId = match[3];
        parentSampled = (parseInt(match[4], 16) & 1) === 1;
        remote = true;
      }
    } else if (given) {
      traceId = given.traceId;
      parentSpanId = given.spanId;
      parentSampled = given.sampled;
    }
    traceId ??= this.ids.hex(16);
    const spanId = this.ids.hex(8);
    if (!this.config.sampler(traceId, parentSampled)) return new UnsampledSpan(traceId, spanId);
    return new RecordedSpan(this, traceId, spanId, parentSpanId, remote, name, kind, startMs);
  }

  active(): Span | undefined {
    return this.current.getStore();
  }

  withSpan<T>(span: Span, work: () => T): T {
    return this.current.run(span, work);
  }

  /** A finished span, queued for the next batch (or dropped and counted when the queue is full). */
  queue(span: FinishedSpan): void {
    if (this.stopped) return;
    if (this.pending.length >= this.config.maxQueueSize) {
      this.dropped++;
      return;
    }
    this.pending.push(span);
    if (this.pending.length >= this.config.maxExportBatchSize && !this.exporting) setImmediate(() => this.exportNow());
  }

  /** Sends the queue, a batch at a time, unless a send is under way. */
  private exportNow(): Promise<void> {
    if (this.dropped > this.droppedLogged) {
      this.log.warn({ dropped: this.dropped - this.droppedLogged, total_dropped: this.dropped }, 'the trace queue was full: spans were dropped');
      this.droppedLogged = this.dropped;
    }
    if (this.exporting || this.pending.length === 0) return this.exporting ?? Promise.resolve();
    const exporting = (this.exporting = this.drain().finally(() => {
      this.exporting = undefined;
    }));
    return exporting;
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.length <= this.config.maxExportBatchSize ? this.pending : this.pending.slice(0, this.config.maxExportBatchSize);
      this.pending = batch === this.pending ? [] : this.pending.slice(batch.length);
      try {
        await this.send(batch);
      } catch (error) {
        const now = performance.now();
        if (now - this.lastFailureLogAt >= FAILURE_LOG_EVERY_MS) {
          this.lastFailureLogAt = now;
          this.log.warn({ err: error, spans: batch.length }, 'exporting traces failed; the spans were dropped (logged at most once a minute)');
        }
        return;
      }
    }
  }

  private send(spans: FinishedSpan[]): Promise<void> {
    const { url, protocol, headers, timeoutMs, resource } = this.config;
    const body = protocol === 'http/json' ? Buffer.from(encodeJson(resource, spans)) : encodeProtobuf(resource, spans);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const outgoing = request(
        url,
        {
          method: 'POST',
          agent: this.agent,
          timeout: timeoutMs,
          headers: { ...headers, 'content-type': protocol === 'http/json' ? 'application/json' : 'application/x-protobuf', 'content-length': body.length },
        },
        (response) => {
          response.resume();
          response.on('error', reject);
          response.on('end', () => {
            const status = response.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else reject(new Error(`the collector answered ${status}`));
          });
        },
      );
      outgoing.on('timeout', () => outgoing.destroy(new Error(`the collector did not answer within ${timeoutMs} ms`)));
      outgoing.on('error', reject);
      outgoing.end(body);
    });
  }

  async shutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.exporting;
    await this.exportNow();
    this.stopped = true;
    this.agent.destroy();
  }
}
