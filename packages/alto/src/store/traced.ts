/**
 * @module store/traced
 * Store calls as spans, when tracing is on (kit/tracing.ts): the ports the building blocks use
 * are wrapped so each method call made inside a traced request (a block's handler span is
 * current) is a CLIENT span, `{port}.{method}`, ending when its answer comes (the promise
 * settles, or at once for a synchronous SQLite call). The platform's own ports are wrapped the
 * same way: `control` (keys, projects, accounts) and `quota` (limits, counters), so a key looked
 * up, or a limit read, while an API call or stream is traced (the edge makes its span current for
 * the key check and admission) is a span of that call. Calls made outside a request (timers,
 * background work) are not traced. With tracing off nothing here runs: the ports are not wrapped.
 */
import type { Span, Tracer } from '../kit/tracing.js';
import type { Stores } from './index.js';

/** The building blocks' ports, traced per call. */
const BLOCK_PORTS = ['documents', 'cache', 'files', 'objects', 'secrets', 'urls', 'search', 'users', 'events', 'streams', 'otp'] as const;
/** The platform's ports (keys, projects, limits), traced per call too. */
const PLATFORM_PORTS = ['control', 'quota'] as const;

/** Wraps the building blocks' ports of `stores` in place so their calls are spans of the request that made them. */
export function traceStoreCalls(stores: Stores, tracer: Tracer): void {
  const sql = stores.postgres ? 'postgresql' : 'sqlite';
  const systems: Record<(typeof BLOCK_PORTS)[number], string> = {
    documents: sql,
    files: sql,
    secrets: sql,
    urls: sql,
    search: sql,
    users: sql,
    otp: sql,
    cache: stores.redis ? 'redis' : 'sqlite',
    events: stores.nats ? 'nats' : 'sqlite',
    streams: stores.nats ? 'nats' : sql,
    objects: 'objects',
  };
  for (const port of BLOCK_PORTS) (stores as unknown as Record<string, object>)[port] = tracedPort(stores[port], port, tracer, systems[port]);
  for (const port of PLATFORM_PORTS) (stores as unknown as Record<string, object>)[port] = tracedPort(stores[port], port, tracer, sql);
}

/** A port whose methods start a span when a traced request calls them. */
export function tracedPort<T extends object>(target: T, portName: string, tracer: Tracer, system: string): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(object, property, receiver) {
      const value: unknown = Reflect.get(object, property, receiver);
      if (typeof value !== 'function' || typeof property !== 'string' || property === 'constructor') return value;
      let method = wrapped.get(property) as ((...args: unknown[]) => unknown) | undefined;
      if (!method) {
        const original = value as (...args: unknown[]) => unknown;
        const name = `${portName}.${property}`;
        method = function tracedCall(this: unknown, ...args: unknown[]): unknown {
          const parent = tracer.active();
          const self = this === receiver ? object : this;
          if (parent === undefined || !parent.sampled) return original.apply(self, args);
          const span = tracer.startSpan(name, 'client', parent);
          span.setAttribute('db.system', system);
          span.setAttribute('db.operation', property);
          let result: unknown;
          try {
            result = original.apply(self, args);
          } catch (error) {
            endFailed(span, error);
            throw error;
          }
          if (result instanceof Promise) result.then(() => span.end(), (error: unknown) => endFailed(span, error));
          else span.end();
          return result;
        };
        wrapped.set(property, method);
      }
      return method;
    },
  });
}

function endFailed(span: Span, error: unknown): void {
  span.fail(error instanceof Error ? error.message : String(error));
  span.end();
}
