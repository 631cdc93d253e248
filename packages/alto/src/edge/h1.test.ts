/**
 * @module edge/h1.test
 * The strict HTTP/1.1 reading the connection forwarder relies on: what a request head must be
 * to be forwarded, how answers' bodies end, and chunk framing with its limits.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { framerFor, FramingError, headEnd, parseRequestHead, parseResponseHead, responseFraming, type ResponseHead } from './h1.js';

function request(text: string) {
  const buffer = Buffer.from(text, 'latin1');
  const end = headEnd(buffer);
  assert.ok(end > 0, 'a whole head');
  return parseRequestHead(buffer, end);
}

function response(text: string): ResponseHead {
  const buffer = Buffer.from(text, 'latin1');
  const head = parseResponseHead(buffer, headEnd(buffer));
  assert.ok(typeof head !== 'string', String(head));
  return head;
}

describe('request heads', () => {
  test('reads a plain HTTP/1.1 head with its framing, Connection tokens and upgrade', () => {
    const text = 'POST /a?b=1 HTTP/1.1\r\nHost: web.demo.localhost\r\nContent-Length: 5\r\nConnection: close, X-Hop\r\nx-v:  spaced  \r\n\r\nhello';
    const head = request(text);
    assert.ok(head);
    assert.equal(head.method, 'POST');
    assert.equal(head.target, '/a?b=1');
    assert.equal(head.host, 'web.demo.localhost');
    assert.deepEqual(head.framing, { kind: 'length', length: 5 });
    assert.equal(head.close, true);
    assert.deepEqual(head.connectionNamed, ['close', 'x-hop']);
    assert.deepEqual(head.headers.slice(-2), ['x-v', 'spaced']);
    assert.equal(head.length, text.length - 'hello'.length, 'the head, its blank line included');

    const upgrade = request('GET /ws HTTP/1.1\r\nHost: a.b.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    assert.equal(upgrade?.upgrade, 'websocket');
    assert.deepEqual(request('GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n')?.framing, { kind: 'chunked' });
    assert.deepEqual(request('GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')?.framing, { kind: 'none' });
    assert.deepEqual(request('GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n')?.framing, { kind: 'length', length: 7 });
  });

  test('declines anything but plain, unambiguous HTTP/1.1', () => {
    for (const [why, text] of [
      ['HTTP/1.0', 'GET / HTTP/1.0\r\nHost: h\r\n\r\n'],
      ['no host', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'],
      ['two hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
      ['length and chunks', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n'],
      ['another coding', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'],
      ['two codings headers', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n'],
      ['differing lengths', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n'],
      ['a length list', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n'],
      ['a signed length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n'],
      ['space before the colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n'],
      ['a folded line', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n'],
      ['a bare LF', 'GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n'],
      ['a bare CR', 'GET / HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n'],
      ['a NUL', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n'],
      ['CONNECT', 'CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n'],
      ['a space in the target', 'GET /a b HTTP/1.1\r\nHost: h\r\n\r\n'],
      ['a bad method', 'G(T / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ]) {
      assert.equal(request(text), undefined, why);
    }
  });
});

describe('answers', () => {
  test('reads the status, framing, Connection and the keep-alive timeout', () => {
    const head = response('HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n');
    assert.equal(head.status, 200);
    assert.equal(head.contentLength, 12);
    assert.equal(head.close, false);
    assert.equal(head.keepAliveMs, 5000);
    assert.equal(response('HTTP/1.0 200 OK\r\n\r\n').close, true, 'HTTP/1.0 closes unless it says keep-alive');
    assert.equal(response('HTTP/1.1 204 \r\n\r\n').reason, '');
  });

  test('says how a body ends (RFC 9112 section 6.3)', () => {
    const framing = (method: string, text: string) => responseFraming(method, response(text)).kind;
    assert.equal(framing('GET', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n'), 'length');
    assert.equal(framing('HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n'), 'none');
    assert.equal(framing('GET', 'HTTP/1.1 204 No Content\r\n\r\n'), 'none');
    assert.equal(framing('GET', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n'), 'none');
    assert.equal(framing('GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'), 'chunked');
    assert.equal(framing('GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n'), 'close');
    assert.equal(framing('GET', 'HTTP/1.1 200 OK\r\n\r\n'), 'close');
    assert.equal(framing('GET', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'), 'none');
  });

  test('names what is wrong with a broken answer head', () => {
    for (const text of ['HELLO\r\n\r\n', 'HTTP/2 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n', 'HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n']) {
      const buffer = Buffer.from(text, 'latin1');
      assert.equal(typeof parseResponseHead(buffer, headEnd(buffer)), 'string', JSON.stringify(text));
    }
  });
});

describe('chunk framing', () => {
  test('finds the end of a chunked body across any split, and stops there', () => {
    const body = Buffer.from('5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT');
    for (let split = 1; split < body.length; split++) {
      const framer = framerFor({ kind: 'chunked' });
      const first = framer.take(body.subarray(0, split), 0);
      const second = framer.done ? 0 : framer.take(body, split);
      assert.equal(framer.done, true, `split at ${split}`);
      assert.equal(first + second, body.length - 'NEXT'.length, `split at ${split}`);
    }
  });

  test('refuses malformed chunks', () => {
    for (const [why, text] of [
      ['no digits', '\r\n'],
      ['not hexadecimal', 'g\r\n'],
      ['too many digits', '1234567890abc\r\n'],
      ['a bare LF', '5\nhello\r\n'],
      ['data longer than its size', '2\r\nabc\r\n'],
      ['a control in an extension', '1;a\x01\r\n'],
      ['a space after the size', '1 \r\nx\r\n'],
    ]) {
      const framer = framerFor({ kind: 'chunked' });
      assert.throws(() => framer.take(Buffer.from(text, 'latin1'), 0), FramingError, why);
    }
  });

  test('counts a length, and a close-delimited body never ends by bytes', () => {
    const length = framerFor({ kind: 'length', length: 4 });
    assert.equal(length.take(Buffer.from('abcdef'), 1), 4);
    assert.equal(length.done, true);
    const untilClose = framerFor({ kind: 'close' });
    assert.equal(untilClose.take(Buffer.from('abc'), 0), 3);
    assert.equal(untilClose.done, false);
  });
});
