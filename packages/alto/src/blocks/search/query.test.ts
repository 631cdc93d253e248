/**
 * The search query parser: the trees it builds, precedence, and 400s that name the position.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { parseQuery } from './query.js';
import { flattenText } from './search-indexes.js';

function failure(query: string): string {
  try {
    parseQuery(query);
  } catch (error) {
    assert.ok(isAltoError(error), `an AltoError, not ${String(error)}`);
    assert.equal(error.status, 400);
    return error.message;
  }
  assert.fail(`expected ${JSON.stringify(query)} to be refused`);
}

test('comparisons, wildcards, nested fields and text terms', () => {
  assert.deepEqual(parseQuery("name == 'Joh*'"), { kind: 'equals', field: ['name'], value: 'Joh*', negated: false, wildcard: true });
  assert.deepEqual(parseQuery('address.zip != 12'), { kind: 'equals', field: ['address', 'zip'], value: 12, negated: true, wildcard: false });
  assert.deepEqual(parseQuery('age >= -1.5'), { kind: 'range', field: ['age'], operator: '>=', value: -1.5 });
  assert.deepEqual(parseQuery('"it\\"s" espres*'), {
    kind: 'and',
    left: { kind: 'text', phrase: 'it"s', prefix: false },
    right: { kind: 'text', phrase: 'espres', prefix: true },
  });
  assert.equal(parseQuery('   '), undefined);
});

test('AND binds tighter than OR, keywords in any case, parentheses regroup', () => {
  const tree = parseQuery("a == 1 or b == 2 AnD c == 3");
  assert.equal(tree?.kind, 'or');
  assert.equal(tree?.kind === 'or' && tree.right.kind, 'and');
  const grouped = parseQuery('(a == 1 OR b == 2) and c == 3');
  assert.equal(grouped?.kind, 'and');
});

test('malformed queries are 400s that name the position', () => {
  assert.match(failure("name == 'John"), /position 9, the string starting here has no closing '/);
  assert.match(failure('age >= '), /position 8, expected a value after >=/);
  assert.match(failure("age >= 'x'"), /position 8, >= compares numbers only/);
  assert.match(failure('(a == 1'), /position 8, expected "\)" to close the "\(" at position 1/);
  assert.match(failure('a == 1)'), /position 7, this "\)" has no matching "\("/);
  assert.match(failure('a = 1'), /position 3, "=" is not an operator/);
  assert.match(failure('a == 1 AND'), /position 11, expected a field comparison/);
  assert.match(failure('a..b == 1'), /position 1, "a..b" is not a field name/);
  assert.match(failure('a == 1; DROP'), /position 7, unexpected character ";"/);
  assert.match(failure('es*presso'), /position 1, .* may only end the term/);
});

test('flattenText keeps every string, number and boolean, nested or in arrays', () => {
  assert.equal(flattenText({ a: 'x', b: { c: 2, d: ['y', true, null] } }), 'x 2 y true');
});
