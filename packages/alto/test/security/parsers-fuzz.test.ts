/**
 * Property-based fuzzing (fast-check) of the parsers that read request text: the db query
 * language, the search query language and cron expressions. For arbitrary strings, and for
 * strings built from each language's own pieces (near-valid, the ones that reach deep), each
 * parser returns or throws an AltoError with a 4xx status, never another error, and finishes
 * quickly; cron's next fire time is computed for whatever parses. Then the same through the real
 * server: db/Read, search/Search and cron/Schedule answer 200 or 4xx, never 5xx.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { nextFireTime, parseCron } from '../../src/blocks/cron/expression.js';
import { parseQuery as parseSearchQuery } from '../../src/blocks/search/query.js';
import { isAltoError } from '../../src/kit/errors.js';
import { parseQuery as parseDbQuery } from '../../src/store/documents/query.js';
import { startInProcess } from '../harness.js';

/** Runs `parse`; a failure must be a 4xx AltoError, and no call may take long. */
function parsesOrRefuses(parse: (text: string) => unknown, text: string): void {
  const started = performance.now();
  try {
    parse(text);
  } catch (error) {
    if (!isAltoError(error) || error.status < 400 || error.status >= 500) {
      throw new Error(`${JSON.stringify(text).slice(0, 200)} threw ${String(error)}`);
    }
  }
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 1_000, `${JSON.stringify(text).slice(0, 200)} took ${elapsed.toFixed(0)} ms`);
}

/** Strings made of a language's pieces, joined by spaces or nothing: near-valid input. */
function sentences(pieces: string[], maxLength = 40) {
  return fc
    .array(fc.oneof(fc.constantFrom(...pieces), fc.string({ maxLength: 6 })), { maxLength })
    .chain((parts) => fc.constantFrom(parts.join(' '), parts.join('')));
}

const DB_PIECES = ['name', 'age', 'a.b.c', '==', '!=', '>', '>=', '<', '<=', 'and', 'or', 'not', 'AND', 'OR', 'NOT', '(', ')', "'x'", '"y"', "'", '"', '\\', '\\u00e9', '\\u', '1', '-1', '1.5e3', '1e999', '-', 'true', 'false', 'null', 'in', '[', ']', ',', '*', '_', '0x10', '00', '.'];
const SEARCH_PIECES = ['tea', 'espres*', '*', '**', "'flat white'", '"', "'", 'name', '==', '!=', '>=', '<=', '>', '<', 'AND', 'OR', 'NOT', 'and', 'or', '(', ')', '-', '1', '-2.5e3', 'a.b', 'a..b', '@', '#', '+', 'é', '中文'];
const CRON_PIECES = ['*', '*/5', '0', '59', '60', '1-5', '5-1', '1-5/2', '5/15', ',', '-', '/', '0/0', 'L', '?', 'MON', 'jan', '@hourly', '@daily', '@weekly', '@monthly', '@yearly', '@nope', '7', '31', '2', '12', '13', '99999999999999999999', ' ', '\t'];

describe('parsers, property-based', () => {
  test('db queries: any string parses or is refused with a 4xx', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (text) => parsesOrRefuses(parseDbQuery, text)), { numRuns: 2_000 });
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), (text) => parsesOrRefuses(parseDbQuery, text)), { numRuns: 500 });
    fc.assert(fc.property(sentences(DB_PIECES), (text) => parsesOrRefuses(parseDbQuery, text)), { numRuns: 3_000 });
    // Deep nesting and long inputs: refused, quickly.
    for (const text of ['('.repeat(10_000), 'not '.repeat(5_000) + 'a == 1', `a == '${'x'.repeat(20_000)}'`, 'a == 1 and '.repeat(2_000) + 'b == 2']) {
      parsesOrRefuses(parseDbQuery, text);
    }
  });

  test('search queries: any string parses or is refused with a 4xx', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (text) => parsesOrRefuses(parseSearchQuery, text)), { numRuns: 2_000 });
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), (text) => parsesOrRefuses(parseSearchQuery, text)), { numRuns: 500 });
    fc.assert(fc.property(sentences(SEARCH_PIECES), (text) => parsesOrRefuses(parseSearchQuery, text)), { numRuns: 3_000 });
    for (const text of ['('.repeat(4_000), 'NOT '.repeat(1_000) + 'tea', `${'*'.repeat(4_000)}a`, 'a OR '.repeat(800) + 'b', "'".repeat(4_000)]) {
      parsesOrRefuses(parseSearchQuery, text);
    }
  });

  test('cron expressions: any string parses or is refused with a 4xx; what parses has a next time or none', () => {
    const parseAndStep = (text: string) => {
      const schedule = parseCron(text);
      const next = nextFireTime(schedule, Date.UTC(2026, 0, 1));
      assert.ok(next === undefined || next > Date.UTC(2026, 0, 1));
    };
    fc.assert(fc.property(fc.string({ maxLength: 100 }), (text) => parsesOrRefuses(parseAndStep, text)), { numRuns: 2_000 });
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constantFrom(...CRON_PIECES), fc.string({ maxLength: 4 })), { minLength: 4, maxLength: 7 }), (fields) =>
        parsesOrRefuses(parseAndStep, fields.join(' ')),
      ),
      { numRuns: 3_000 },
    );
    for (const text of ['* '.repeat(10_000), '0-59/1,'.repeat(2_000) + '0 * * * *', '0 0 31 2 *', '0 0 30 2 *']) parsesOrRefuses(parseAndStep, text);
  });
});

describe('parsers through the real server', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let key: string;

  before(async () => {
    alto = await startInProcess();
    key = await alto.projectKey('fuzz', ['db', 'search', 'cron']);
    assert.equal((await alto.call('db', 'Create', { table: 'things', record: { id: 'a', name: 'x', age: 3 } }, key)).status, 200);
    assert.equal((await alto.call('search', 'CreateIndex', { index: 'things' }, key)).status, 200);
    assert.equal((await alto.call('search', 'Index', { index: 'things', id: 'a', data: { name: 'tea time' } }, key)).status, 200);
  });
  after(() => alto.close());

  test('db/Read, search/Search and cron/Schedule answer 200 or 4xx for hostile text, never 5xx', { timeout: 240_000 }, async () => {
    const expectOk = (label: string, text: string, status: number, body: unknown) =>
      assert.ok(status === 200 || (status >= 400 && status < 500), `${label} ${JSON.stringify(text).slice(0, 200)}: ${status} ${JSON.stringify(body).slice(0, 300)}`);
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 80 }), sentences(DB_PIECES, 12)), async (query) => {
        const answer = await alto.call('db', 'Read', { table: 'things', query }, key);
        expectOk('db/Read', query, answer.status, answer.body);
      }),
      { numRuns: 150 },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 80 }), sentences(SEARCH_PIECES, 12)), async (query) => {
        const answer = await alto.call('search', 'Search', { index: 'things', query }, key);
        expectOk('search/Search', query, answer.status, answer.body);
      }),
      { numRuns: 150 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.string({ maxLength: 40 }), fc.array(fc.constantFrom(...CRON_PIECES), { minLength: 5, maxLength: 6 }).map((fields) => fields.join(' '))),
        async (interval) => {
          const answer = await alto.call('cron', 'Schedule', { id: 'fuzz', name: 'fuzz', interval, callback: 'https://example.com/hook' }, key);
          expectOk('cron/Schedule', interval, answer.status, answer.body);
        },
      ),
      { numRuns: 150 },
    );
  });
});
