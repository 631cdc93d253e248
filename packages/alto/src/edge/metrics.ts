/**
 * @module edge/metrics
 * Prometheus metrics of one edge: API calls by service, endpoint and status, their latency,
 * open streams, the apps' serverless lifecycle (activations, resume latency, instances by
 * state, requests held waiting for an instance), and the process's own figures. Served as text
 * at `GET /metrics`.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface EdgeMetrics {
  registry: Registry;
  requests: Counter<'service' | 'endpoint' | 'code'>;
  duration: Histogram<'service' | 'endpoint'>;
  streamsOpen: Gauge;
}

/** What the app manager tells the metrics (kept as an interface: the edge only reads it). */
export interface AppLifecycleSource {
  onActivation(listener: (activation: { from: 'suspended' | 'snapshotted'; ms: number }) => void): () => void;
  instanceStates(): Partial<Record<string, number>>;
  queueDepth(): number;
}

/** Every lifecycle state, so a state with no instance reads 0 rather than vanishing. */
const INSTANCE_STATES = ['starting', 'running', 'suspending', 'suspended', 'resuming', 'snapshotting', 'snapshotted', 'restoring', 'backoff', 'stopping', 'stopped'];

/**
 * The serverless lifecycle's metrics: `alto_app_activations_total{from}`,
 * `alto_app_resume_seconds{from}` (from a request finding the app asleep to its instance running
 * again), `alto_app_instances{state}` and `alto_app_queue_depth`.
 */
export function registerAppMetrics(registry: Registry, source: AppLifecycleSource): () => void {
  const activations = new Counter({
    name: 'alto_app_activations_total',
    help: 'Idle app instances woken by a request, by the state they were woken from',
    labelNames: ['from'],
    registers: [registry],
  });
  const resume = new Histogram({
    name: 'alto_app_resume_seconds',
    help: 'Time to bring a suspended (resume) or snapshotted (restore) instance back to running',
    labelNames: ['from'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  new Gauge({
    name: 'alto_app_instances',
    help: 'Instance positions of serving app versions, by lifecycle state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const counts = source.instanceStates();
      for (const state of INSTANCE_STATES) this.set({ state }, counts[state] ?? 0);
    },
  });
  new Gauge({
    name: 'alto_app_queue_depth',
    help: 'Requests held by the edge now, waiting for an app instance to wake, start or free up',
    registers: [registry],
    collect() {
      this.set(source.queueDepth());
    },
  });
  return source.onActivation((activation) => {
    activations.inc({ from: activation.from });
    resume.observe({ from: activation.from }, activation.ms / 1000);
  });
}

export function createEdgeMetrics(): EdgeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'alto_' });
  return {
    registry,
    requests: new Counter({
      name: 'alto_api_requests_total',
      help: 'API calls by service, endpoint and HTTP status',
      labelNames: ['service', 'endpoint', 'code'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'alto_api_request_duration_seconds',
      help: 'Time to answer an API call, by service and endpoint',
      labelNames: ['service', 'endpoint'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    streamsOpen: new Gauge({
      name: 'alto_api_streams_open',
      help: 'Websocket streams open now',
      registers: [registry],
    }),
  };
}
