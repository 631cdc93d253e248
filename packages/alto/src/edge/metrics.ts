/**
 * @module edge/metrics
 * Prometheus metrics of one edge: API calls by service, endpoint and status, their latency,
 * open streams, and the process's own figures. Served as text at `GET /metrics`.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface EdgeMetrics {
  registry: Registry;
  requests: Counter<'service' | 'endpoint' | 'code'>;
  duration: Histogram<'service' | 'endpoint'>;
  streamsOpen: Gauge;
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
