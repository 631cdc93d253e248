import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from './logger.js';
import { startTracing, tracer, tracingWanted, type TracerLoader } from './tracing.js';

test('tracing is on only when an OTLP endpoint is given and not switched off', () => {
  assert.equal(tracingWanted({}), false);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), true);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }), true);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_TRACES_EXPORTER: 'none' }), false);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SDK_DISABLED: 'true' }), false);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }), false);
});

test('with tracing off nothing is loaded and no tracer is made', async () => {
  let loads = 0;
  const load: TracerLoader = async () => {
    loads++;
    return import('./otel/tracer.js');
  };
  for (const env of [{}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_TRACES_EXPORTER: 'none' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_SDK_DISABLED: 'true' }]) {
    assert.equal(await startTracing(env, silentLogger(), '0', load), undefined);
  }
  assert.equal(loads, 0, 'the tracer module was not loaded');
  assert.equal(tracer, undefined, 'the request path sees no tracer');
});

test('the module the edge imports does not load the tracer by itself', async () => {
  const { readFileSync } = await import('node:fs');
  const source = readFileSync(new URL('./tracing.ts', import.meta.url), 'utf8');
  // Only a type import and the one dynamic import: no static import of the tracer's code.
  assert.doesNotMatch(source, /^import (?!type ).*otel/m);
});
