import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { seededRandom } from './contract.js';
import { MAX_QUERY_DEPTH, matches, parseFieldPath, parseQuery } from './query.js';

function detailOf(query: string): string {
  try {
    parseQuery(query);
  } catch (error) {
    assert.ok(isAltoError(error), String(error));
    assert.equal(error.status, 400);
    return error.detail;
  }
  assert.fail(`${JSON.stringify(query)} parsed`);
}

test('parses M3O queries and the extensions into an AST', () => {
  assert.deepEqual(parseQuery('age >= 18'), { kind: 'compare', path: ['age'], operator: '>=', value: 18 });
  assert.deepEqual(parseQuery("user.name == 'Jo' and verified == true"), {
    kind: 'and',
    items: [
      { kind: 'compare', path: ['user', 'name'], operator: '==', value: 'Jo' },
      { kind: 'compare', path: ['verified'], operator: '==', value: true },
    ],
  });
  assert.deepEqual(parseQuery("age >= 18 and (city == 'Paris' or tags in ['a','b']) and email exists"), {
    kind: 'and',
    items: [
      { kind: 'compare', path: ['age'], operator: '>=', value: 18 },
      {
        kind: 'or',
        items: [
          { kind: 'compare', path: ['city'], operator: '==', value: 'Paris' },
          { kind: 'in', path: ['tags'], values: ['a', 'b'] },
        ],
      },
      { kind: 'exists', path: ['email'] },
    ],
  });
  assert.deepEqual(parseQuery('a == 1 or b == 2 and c == 3'), {
    kind: 'or',
    items: [
      { kind: 'compare', path: ['a'], operator: '==', value: 1 },
      {
        kind: 'and',
        items: [
          { kind: 'compare', path: ['b'], operator: '==', value: 2 },
          { kind: 'compare', path: ['c'], operator: '==', value: 3 },
        ],
      },
    ],
  });
  assert.deepEqual(parseQuery('NOT x exists'), { kind: 'not', item: { kind: 'exists', path: ['x'] } });
  assert.deepEqual(parseQuery('x not in [null, -1.5e2, "q\\"uote", \'it\\\'s\', false]'), {
    kind: 'not',
    item: { kind: 'in', path: ['x'], values: [null, -150, 'q"uote', "it's", false] },
  });
  assert.deepEqual(parseQuery("s == '\\u00e9\\n'"), { kind: 'compare', path: ['s'], operator: '==', value: 'é\n' });
  assert.deepEqual(parseQuery('x in []'), { kind: 'in', path: ['x'], values: [] });
});

test('syntax errors say where and what was expected', () => {
  assert.equal(detailOf('name =='), 'query: at position 8: expected a value after "==", found end of query');
  assert.equal(detailOf('age >= 18 and'), 'query: at position 14: expected a condition after keyword "and", found end of query');
  assert.equal(detailOf("name = 'x'"), 'query: at position 6: "=" is not an operator; use "==" to compare');
  assert.equal(detailOf("name == 'x"), 'query: at position 9: the string starting here has no closing \'');
  assert.equal(detailOf('name == Jane'), `query: at position 9: expected a value after "==", found name "Jane"; quote strings: 'Jane'`);
  assert.equal(detailOf('(a == 1'), 'query: at position 8: expected ")" to close the "(" at position 1, found end of query');
  assert.equal(detailOf('a == 1 b == 2'), 'query: at position 8: expected "and", "or" or the end of the query after number 1, found name "b"');
  assert.equal(detailOf('a'), 'query: at position 2: expected an operator (==, !=, <, <=, >, >=), "in" or "exists" after name "a", found end of query');
  assert.equal(detailOf('a in [1 2]'), 'query: at position 9: expected "," or "]" in the list started at position 6, found number 2');
  assert.equal(detailOf('a < true'), 'query: at position 5: "<" compares numbers or strings, not booleans; use "==" or "!="');
  assert.equal(detailOf('and == 1'), 'query: at position 1: expected a field name, found keyword "and"');
  assert.equal(detailOf("x == '1'; DROP TABLE t"), 'query: at position 9: unexpected ";"; a query compares fields with values, e.g. age >= 18 and name == \'Jo\'');
  assert.match(detailOf(''), /query is empty/);
  assert.match(detailOf('a.b. == 1'), /position 6: expected a field name after "\."/);
  assert.match(detailOf('a == 01'), /position 7: unexpected "1" right after the number 0/);
  assert.match(detailOf('a == 1e999'), /too large/);
  assert.match(detailOf('('.repeat(MAX_QUERY_DEPTH + 1) + 'a == 1' + ')'.repeat(MAX_QUERY_DEPTH + 1)), /nests deeper than 32/);
  assert.match(detailOf('a == 1 and '.repeat(300) + 'a == 1'), /more than 256 comparisons/);
  assert.match(detailOf('x'.repeat(20_000)), /at most 10000/);
});

test('field paths outside queries follow the same rules', () => {
  assert.deepEqual(parseFieldPath('address.city'), ['address', 'city']);
  assert.deepEqual(parseFieldPath('_x.y1'), ['_x', 'y1']);
  for (const bad of ['', 'a..b', '1a', "a'b", 'a b', 'a-b', "a') --", 'a.'.repeat(20) + 'a']) {
    assert.throws(() => parseFieldPath(bad, 'orderBy'), (error: unknown) => isAltoError(error) && error.status === 400 && /^orderBy: /.test(error.detail));
  }
});

test('matches() follows the typed semantics', () => {
  const record = { n: 1, s: '1', b: true, z: null, o: { p: 2 } };
  assert.equal(matches(record, parseQuery('n == 1')), true);
  assert.equal(matches(record, parseQuery("n == '1'")), false);
  assert.equal(matches(record, parseQuery('b == 1')), false);
  assert.equal(matches(record, parseQuery('z == null and missing == null and z exists')), true);
  assert.equal(matches(record, parseQuery('missing exists')), false);
  assert.equal(matches(record, parseQuery("s > '0' and n > 0")), true);
  assert.equal(matches(record, parseQuery('s < 2')), false);
  assert.equal(matches(record, parseQuery('o.p >= 2 and not o.q exists')), true);
});

test('fuzz: 20000 random strings either parse or give a 400 naming the position', () => {
  const random = seededRandom(42);
  const alphabet = ` \t()[],.'"\\=!<>&|;-+*/0123456789eE.abnorxtuedsilNOTANDfuXYZ_$\u0000é🎉`;
  const words = ['and', 'or', 'not', 'in', 'exists', 'true', 'false', 'null', 'a', 'b.c', '==', '!=', '>=', "'s'", '"t"', '12', '-3.5'];
  let parsed = 0;
  for (let i = 0; i < 20_000; i++) {
    let query = '';
    const length = Math.floor(random() * 30);
    for (let j = 0; j < length; j++) {
      query += random() < 0.5 ? alphabet[Math.floor(random() * alphabet.length)] : ` ${words[Math.floor(random() * words.length)]} `;
    }
    try {
      parseQuery(query);
      parsed++;
    } catch (error) {
      assert.ok(isAltoError(error) && error.status === 400, `${JSON.stringify(query)}: ${String(error)}`);
      assert.match(error.detail, /^query: (at position \d+: |the query is empty)/, JSON.stringify(query));
    }
  }
  assert.ok(parsed > 0);
});
