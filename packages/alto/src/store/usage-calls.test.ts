/** The rows call records are kept as: summed per second, caller, endpoint and status. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callRows, callRowsOfColumns, dailyCallTotals, recordsOfColumns, type CallColumns, type CallRecord } from './usage-calls.mjs';

test('call records are summed per second, caller, endpoint and status, and no sum is lost', () => {
  const second = Date.UTC(2026, 5, 1, 12);
  const call = (overrides: Partial<CallRecord>): CallRecord => ({
    at: second + 10,
    projectId: 'p',
    keyId: 'k',
    service: 'id',
    endpoint: 'Generate',
    status: 200,
    bytesIn: 2,
    bytesOut: 5,
    priceMicros: 1,
    ...overrides,
  });
  const rows = callRows([
    call({}),
    call({ at: second + 999 }),
    call({ at: second + 1000 }),
    call({ status: 429, priceMicros: 0 }),
    call({ keyId: 'k2' }),
    call({ endpoint: 'Parse', bytesIn: 7 }),
  ]);
  const base = { projectId: 'p', service: 'id' };
  assert.deepEqual(rows, [
    { ...base, at: second, keyId: 'k', endpoint: 'Generate', status: 200, calls: 2, bytesIn: 4, bytesOut: 10, priceMicros: 2 },
    { ...base, at: second + 1000, keyId: 'k', endpoint: 'Generate', status: 200, calls: 1, bytesIn: 2, bytesOut: 5, priceMicros: 1 },
    { ...base, at: second, keyId: 'k', endpoint: 'Generate', status: 429, calls: 1, bytesIn: 2, bytesOut: 5, priceMicros: 0 },
    { ...base, at: second, keyId: 'k2', endpoint: 'Generate', status: 200, calls: 1, bytesIn: 2, bytesOut: 5, priceMicros: 1 },
    { ...base, at: second, keyId: 'k', endpoint: 'Parse', status: 200, calls: 1, bytesIn: 7, bytesOut: 5, priceMicros: 1 },
  ]);
});

test('rows of a batch given as columns are the rows of its records, across seconds and callers', () => {
  const second = Date.UTC(2026, 5, 1, 23, 59, 58);
  const length = 600;
  const batch: CallColumns = {
    length,
    // Three seconds, the last one on the next day, and one call back in time (clocks step).
    at: new Float64Array(length).map((_, i) => (i === 7 ? second - 1500 : second + Math.floor(i / 200) * 1000 + (i % 200))),
    status: new Uint16Array(length).map((_, i) => [200, 404, 500][i % 3]),
    bytesIn: new Float64Array(length).map((_, i) => i),
    bytesOut: new Float64Array(length).fill(3),
    priceMicros: new Float64Array(length).map((_, i) => i % 2),
    caller: new Uint32Array(length).map((_, i) => i % 4),
    callers: ['a', 'b', 'c', 'd'].map((keyId) => ({ projectId: 'p', keyId, service: 'db', endpoint: 'Read' })),
  };
  const sorted = (rows: ReturnType<typeof callRows>) => [...rows].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
  assert.deepEqual(sorted(callRowsOfColumns(batch, 5, 590)), sorted(callRows(recordsOfColumns(batch, 5, 590))));
  const totals = dailyCallTotals(callRowsOfColumns(batch));
  assert.equal(totals.reduce((sum, t) => sum + t.calls, 0), length);
  assert.equal(totals.reduce((sum, t) => sum + t.errors, 0), 400, 'the 404s and 500s');
  assert.deepEqual([...new Set(totals.map((t) => t.day))], ['2026-06-01', '2026-06-02']);
});
