/**
 * Reading a request's JSON: nesting past the limit, text that is not JSON, and text no store
 * keeps alike (a NUL character, half of a surrogate pair), refused with where it was.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../kit/errors.js';
import { MAX_JSON_DEPTH, parseJsonObject, refuseUnportableText, unportableTextPath } from './http.js';

function refusal(run: () => unknown): { status: number; detail: string } {
  try {
    run();
  } catch (error) {
    assert.ok(isAltoError(error), `expected an AltoError, got ${String(error)}`);
    return { status: error.status, detail: error.detail };
  }
  assert.fail('expected a refusal');
}

test('a NUL character or half of a surrogate pair is refused with its path; whole pairs and other escapes pass', () => {
  assert.deepEqual(parseJsonObject('{"name":"caf\\u00e9 \\ud83c\\udf89","tab":"a\\tb"}'), { name: 'café 🎉', tab: 'a\tb' });
  const cases: [string, RegExp][] = [
    ['{"name":"a\\u0000b"}', /^name: text may not hold a NUL character/],
    ['{"record":{"tags":["ok","x\\ud800"]}}', /^record\.tags\[1\]: text may not hold .* half of a surrogate pair/],
    ['{"record":{"tags":["\\udc00y"]}}', /^record\.tags\[0\]: /],
    ['{"lone":"\\udbff\\ud800"}', /^lone: /],
    ['{"record":{"k\\u0000":1}}', /^record: a field name: /],
  ];
  for (const [body, detail] of cases) {
    const refused = refusal(() => parseJsonObject(body));
    assert.equal(refused.status, 400);
    assert.match(refused.detail, detail, body);
    assert.match(refused.detail, /send binary data base64-encoded/);
  }
  // An escaped backslash before "u0000" is the text \u0000, not a NUL.
  assert.deepEqual(parseJsonObject('{"path":"C:\\\\u0000"}'), { path: 'C:\\u0000' });
});

test('values parsed from a query string are checked the same way', () => {
  assert.equal(unportableTextPath({ name: 'plain', n: 3, list: [true, null] }), undefined);
  assert.match(refusal(() => refuseUnportableText({ name: 'a\u0000' }, 'the query')).detail, /^name: text may not hold/);
  assert.match(refusal(() => refuseUnportableText('\ud800', 'the message')).detail, /^the message: /);
});

test('nesting past the limit is refused before parsing', () => {
  const deep = `{"a":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`;
  assert.match(refusal(() => parseJsonObject(deep)).detail, new RegExp(`more than ${MAX_JSON_DEPTH} levels deep`));
  assert.match(refusal(() => parseJsonObject('{"a":')).detail, /is not valid JSON/);
});
