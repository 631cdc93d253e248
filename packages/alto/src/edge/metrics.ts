/**
 * @module edge/metrics
 * Prometheus metrics of one edge: API calls by service, endpoint and status, their latency,
 * open streams, the apps' serverless lifecycle (activations, resume latency, instances by
 * state, requests held waiting for an instance), scheduled backups (results, last success, failing),
 * and the process's own figures. Served as text at `GET /metrics`.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface EdgeMetrics {
  registry: Registry;
  /** API calls by route and status, and their latency. */
  calls: ApiCallMetrics;
  streamsOpen: Gauge;
}

/** Upper bounds of the API latency histogram's buckets, in seconds. */
const API_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * One route's API calls in plain numbers: how many ended with each status, and a histogram of
 * how long they took. The hot path adds to these; prom-client reads them only when /metrics is
 * scraped. (Its own labelled children hash their labels on every call, which cost the edge more
 * than anything else it counts.)
 */
export class RouteCallMetrics {
  /** Calls by HTTP status. */
  readonly statuses = new Map<number, number>();
  /** Calls per latency bucket (not cumulative; the last is past the largest bound). */
  readonly buckets = new Float64Array(API_DURATION_BUCKETS.length + 1);
  count = 0;
  sum = 0;

  constructor(
    readonly service: string,
    readonly endpoint: string,
  ) {}

  reset(): void {
    this.statuses.clear();
    this.buckets.fill(0);
    this.count = 0;
    this.sum = 0;
  }

  record(status: number, seconds: number): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    let bucket = 0;
    while (bucket < API_DURATION_BUCKETS.length && seconds > API_DURATION_BUCKETS[bucket]) bucket++;
    this.buckets[bucket]++;
    this.count++;
    this.sum += seconds;
  }
}

/**
 * `alto_api_requests_total{service,endpoint,code}` and `alto_api_request_duration_seconds{service,endpoint}`,
 * read from each route's RouteCallMetrics.
 */
export class ApiCallMetrics {
  private readonly routes = new Map<string, RouteCallMetrics>();

  constructor(registry: Registry) {
    const routes = this.routes;
    new Counter({
      name: 'alto_api_requests_total',
      help: 'API calls by service, endpoint and HTTP status',
      labelNames: ['service', 'endpoint', 'code'],
      registers: [registry],
      collect() {
        this.reset();
        for (const route of routes.values()) {
          for (const [status, count] of route.statuses) this.inc({ service: route.service, endpoint: route.endpoint, code: String(status) }, count);
        }
      },
    });
    // prom-client's Histogram takes observations one at a time; this one is read as a whole.
    registry.registerMetric(new HistogramOfRoutes(routes) as unknown as Histogram);
  }

  /** The route's figures, made on first use and kept (the API asks once per route). */
  route(service: string, endpoint: string): RouteCallMetrics {
    const name = `${service}/${endpoint}`;
    let route = this.routes.get(name);
    if (!route) this.routes.set(name, (route = new RouteCallMetrics(service, endpoint)));
    return route;
  }
}

/** One line of a metric, as prom-client's registry prints it: `name{labels} value`. */
interface MetricLine {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/** The API latency histogram as prom-client's registry reads a metric: name, type and lines. */
class HistogramOfRoutes {
  readonly name = 'alto_api_request_duration_seconds';
  readonly help = 'Time to answer an API call, by service and endpoint';
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(private readonly routes: Map<string, RouteCallMetrics>) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: MetricLine[] }> {
    const values: MetricLine[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const route of this.routes.values()) {
      if (route.count === 0) continue; // a route nobody called has no series, as with prom-client's own
      const labels = { service: route.service, endpoint: route.endpoint };
      let cumulative = 0;
      API_DURATION_BUCKETS.forEach((bound, index) => {
        cumulative += route.buckets[index];
        values.push({ metricName: bucketName, labels: { le: bound, ...labels }, value: cumulative });
      });
      values.push({ metricName: bucketName, labels: { le: '+Inf', ...labels }, value: route.count });
      values.push({ metricName: `${this.name}_sum`, labels, value: route.sum });
      values.push({ metricName: `${this.name}_count`, labels, value: route.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Starts every route's figures again from zero (prom-client's `registry.resetMetrics()`). */
  reset(): void {
    for (const route of this.routes.values()) route.reset();
  }
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

/** What the backup metrics read: the scheduled backups' counts and times (store/backup/schedule). */
export interface BackupMetricsSource {
  status(): { successes: number; failures: number; last_success?: { seconds: number }; last_failure?: { at: string } };
  lastSuccessSeconds(): number | undefined;
}

/**
 * `alto_backups_total{result="ok"|"failed"}`, `alto_backup_last_success_timestamp_seconds`,
 * `alto_backup_last_duration_seconds` and `alto_backup_failing` (1 while the newest attempt
 * failed): alert on failing, or on the last success growing old.
 */
export function registerBackupMetrics(registry: Registry, source: BackupMetricsSource): void {
  new Counter({
    name: 'alto_backups_total',
    help: 'Scheduled backups attempted by this process, by result',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      const { successes, failures } = source.status();
      this.reset();
      this.inc({ result: 'ok' }, successes);
      this.inc({ result: 'failed' }, failures);
    },
  });
  new Gauge({
    name: 'alto_backup_last_success_timestamp_seconds',
    help: 'When the last scheduled backup of this process finished (0 when none has)',
    registers: [registry],
    collect() {
      this.set(source.lastSuccessSeconds() ?? 0);
    },
  });
  new Gauge({
    name: 'alto_backup_last_duration_seconds',
    help: 'How long the last successful scheduled backup took',
    registers: [registry],
    collect() {
      this.set(source.status().last_success?.seconds ?? 0);
    },
  });
  new Gauge({
    name: 'alto_backup_failing',
    help: '1 while the newest scheduled backup attempt failed, else 0',
    registers: [registry],
    collect() {
      const status = source.status();
      const failedAt = status.last_failure ? Date.parse(status.last_failure.at) / 1000 : undefined;
      this.set(failedAt !== undefined && failedAt >= (source.lastSuccessSeconds() ?? 0) ? 1 : 0);
    },
  });
}

/** What the request log metrics read (platform/request-log.ts). */
export interface RequestLogMetricsSource {
  readonly dropped: number;
  readonly failed: number;
  readonly written: number;
  readonly buffered: number;
}

/**
 * `alto_request_log_rows_total{result="written"|"dropped"|"failed"}` (dropped: the buffer was
 * full; failed: the store refused a batch) and `alto_request_log_buffered_rows`.
 */
export function registerRequestLogMetrics(registry: Registry, source: RequestLogMetricsSource): void {
  new Counter({
    name: 'alto_request_log_rows_total',
    help: 'Requests this process put in the request log (written), or could not (dropped: buffer full; failed: the store refused them)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: 'written' }, source.written);
      this.inc({ result: 'dropped' }, source.dropped);
      this.inc({ result: 'failed' }, source.failed);
    },
  });
  new Gauge({
    name: 'alto_request_log_buffered_rows',
    help: 'Requests waiting in memory to be written to the request log',
    registers: [registry],
    collect() {
      this.set(source.buffered);
    },
  });
}

export function createEdgeMetrics(): EdgeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'alto_' });
  return {
    registry,
    calls: new ApiCallMetrics(registry),
    streamsOpen: new Gauge({
      name: 'alto_api_streams_open',
      help: 'Websocket streams open now',
      registers: [registry],
    }),
  };
}
