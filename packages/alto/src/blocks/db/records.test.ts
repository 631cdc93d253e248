import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { DEFAULT_DOCUMENT_LIMITS } from '../../store/documents/port.js';
import { checkRecord, limitsFromEnvironment, tableName } from './records.js';

function badRequest(run: () => unknown, detail: RegExp): void {
  assert.throws(run, (error: unknown) => isAltoError(error) && error.status === 400 && detail.test(error.detail));
}

test('limits come from the environment, with defaults', () => {
  assert.deepEqual(limitsFromEnvironment({}), DEFAULT_DOCUMENT_LIMITS);
  assert.deepEqual(limitsFromEnvironment({ ALTO_DB_MAX_RECORD_BYTES: '2048', ALTO_DB_MAX_ROWS_PER_PROJECT: '10' }), {
    ...DEFAULT_DOCUMENT_LIMITS,
    maxRecordBytes: 2048,
    maxRowsPerProject: 10,
  });
  assert.throws(() => limitsFromEnvironment({ ALTO_DB_MAX_TABLES: 'lots' }), /ALTO_DB_MAX_TABLES must be a positive whole number, not "lots"/);
  assert.throws(() => limitsFromEnvironment({ ALTO_DB_MAX_INDEXES_PER_TABLE: '0' }), /positive/);
});

test('table names follow M3O defaults and the naming rule', () => {
  assert.equal(tableName(undefined), 'default');
  assert.equal(tableName(''), 'default');
  assert.equal(tableName('_Users2'), '_Users2');
  assert.equal(tableName('a'.repeat(63)), 'a'.repeat(63));
  for (const bad of ['a'.repeat(64), '2fast', 'has space', 'x;drop', 'é']) badRequest(() => tableName(bad), /^table: .* is not a table name/);
});

test('records: depth, numbers and NUL characters are checked', () => {
  checkRecord({ a: [1, { b: 'ok' }], c: null });
  let deep: unknown = 1;
  for (let i = 0; i < 70; i++) deep = { deep };
  badRequest(() => checkRecord(deep), /nests deeper than 64 levels/);
  badRequest(() => checkRecord({ x: [1, Infinity] }), /^record\.x\[1\]: the number is too large/);
  badRequest(() => checkRecord({ s: 'a\u0000' }), /^record\.s: strings may not contain the NUL/);
  badRequest(() => checkRecord({ 'k\u0000': 1 }), /field names may not contain/);
});
