/**
 * @module kit/tracing
 * The seam for optional OpenTelemetry traces. With tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED=true) `tracer`
 * stays undefined and the tracer itself (kit/otel/tracer.ts) is never loaded: the request path
 * pays one `tracer === undefined` test per request, makes no span, propagates no context. With it
 * on, `startTracing` loads the tracer and sets `tracer` before the server starts.
 */
import type { Logger } from './logger.js';

export type AttributeValue = string | number | boolean;

/** SERVER: a request received; CLIENT: one sent (an upstream exchange, a store round trip); INTERNAL: work inside. */
export type SpanKind = 'internal' | 'server' | 'client';

export interface Span {
  readonly traceId: string;
  readonly spanId: string;
  /** Whether the span is recorded and exported (the sampler's decision); an unsampled one still carries its trace. */
  readonly sampled: boolean;
  setAttribute(name: string, value: AttributeValue): void;
  /** Marks the span failed, with what went wrong. */
  fail(message: string): void;
  /** Ends the span, now or at `endMs` (a `performance.now()` reading); a second call does nothing. */
  end(endMs?: number): void;
  /** The W3C `traceparent` value naming this span as the parent. */
  traceparent(): string;
}

export interface Tracer {
  /**
   * Starts a span. `parent`: a span, or a W3C `traceparent` header value (invalid ones are ignored,
   * starting a new trace), or undefined for the span current in this async context.
   * `startMs`: a `performance.now()` reading when the work began (default now).
   */
  startSpan(name: string, kind: SpanKind, parent?: Span | string, startMs?: number): Span;
  /** The span current in this async context, if any. */
  active(): Span | undefined;
  /** Runs `work` with `span` current, so spans started inside (store calls) are its children. */
  withSpan<T>(span: Span, work: () => T): T;
  /** Sends what is queued and stops. */
  shutdown(): Promise<void>;
}

/** The tracer when tracing is on; undefined when off (then nothing of tracing is loaded). */
export let tracer: Tracer | undefined;

/** Whether the standard OpenTelemetry variables ask for traces. */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (exporter !== undefined && exporter !== '' && exporter !== 'otlp') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim());
}

/** How the tracer is loaded: a dynamic import, so a process with tracing off never reads its code. */
export type TracerLoader = () => Promise<{ createTracer(env: NodeJS.ProcessEnv, log: Logger, serviceVersion?: string): Tracer }>;

const loadTracer: TracerLoader = () => import('./otel/tracer.js');

/** Loads the tracer when the environment asks for traces; returns it, or undefined (tracing off). */
export async function startTracing(env: NodeJS.ProcessEnv, log: Logger, serviceVersion?: string, load: TracerLoader = loadTracer): Promise<Tracer | undefined> {
  if (tracer || !tracingWanted(env)) return tracer;
  const { createTracer } = await load();
  tracer = createTracer(env, log, serviceVersion);
  return tracer;
}

/** Sends what is queued and stops exporting (spans still in flight are then left out). */
export async function stopTracing(): Promise<void> {
  await tracer?.shutdown();
}
