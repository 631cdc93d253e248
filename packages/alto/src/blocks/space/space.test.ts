import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { contentTypeOf, isContentType } from './content-types.js';
import { decodeBase64, inlineBodyLimit, DEFAULT_SPACE_LIMITS } from './space.js';

test('base64 decodes in either alphabet, padded or not, and refuses anything else', () => {
  const bytes = Buffer.from([0xfb, 0xff, 0xfe, 0x00, 0x41]);
  assert.deepEqual(decodeBase64(bytes.toString('base64')), bytes);
  assert.deepEqual(decodeBase64(bytes.toString('base64url')), bytes);
  assert.deepEqual(decodeBase64('aGVsbG8'), Buffer.from('hello'));
  assert.deepEqual(decodeBase64(''), Buffer.alloc(0));
  for (const invalid of ['not base64!', 'aGVs bG8=', 'a', 'aGVsbG8===', 'aGV=sbG8']) {
    assert.throws(() => decodeBase64(invalid), (error: unknown) => isAltoError(error) && error.status === 400, invalid);
  }
});

test('the inline body limit holds a 10 MiB object in base64 with room for the other fields', () => {
  const limit = inlineBodyLimit(DEFAULT_SPACE_LIMITS);
  const json = JSON.stringify({ name: 'n'.repeat(1024), object: Buffer.alloc(DEFAULT_SPACE_LIMITS.inlineObjectBytes).toString('base64'), visibility: 'private' });
  assert.ok(Buffer.byteLength(json) <= limit, `${Buffer.byteLength(json)} <= ${limit}`);
  assert.ok(limit < 15 * 1024 * 1024);
});

test('content types: guessed from the extension, and given ones checked', () => {
  assert.equal(contentTypeOf('images/cat.JPG'), 'image/jpeg');
  assert.equal(contentTypeOf('a/index.html'), 'text/html; charset=utf-8');
  assert.equal(contentTypeOf('archive.tar.gz'), 'application/gzip');
  assert.equal(contentTypeOf('.bashrc'), 'application/octet-stream');
  assert.equal(contentTypeOf('folder.d/README'), 'application/octet-stream');
  assert.ok(isContentType('image/png'));
  assert.ok(isContentType('text/plain; charset=utf-8'));
  assert.ok(isContentType('application/vnd.api+json'));
  assert.ok(!isContentType('text/html\r\nx-injected: 1'));
  assert.ok(!isContentType('nonsense'));
});
