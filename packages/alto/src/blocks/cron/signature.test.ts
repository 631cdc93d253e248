import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { signatureHeader, verifySignature } from './signature.js';

test('the header is t=<seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">', () => {
  const body = '{"id":"job"}';
  const header = signatureHeader('whsec_test', 1_700_000_000, body);
  const expected = createHmac('sha256', 'whsec_test').update(`1700000000.${body}`).digest('hex');
  assert.equal(header, `t=1700000000,v1=${expected}`);
});

test('verification refuses a changed body, another secret, a stale time and junk', () => {
  const now = 1_700_000_000_000;
  const body = '{"id":"job","scheduled":"2026-03-01T00:00:00.000Z"}';
  const header = signatureHeader('whsec_a', now / 1000, body);
  assert.equal(verifySignature('whsec_a', header, body, 300, now), true);
  assert.equal(verifySignature('whsec_a', header, body.replace('job', 'jab'), 300, now), false);
  assert.equal(verifySignature('whsec_b', header, body, 300, now), false);
  assert.equal(verifySignature('whsec_a', header, body, 300, now + 301_000), false);
  for (const junk of [undefined, '', 'v1=abc', 't=x,v1=00', `t=${now / 1000}`, `t=${now / 1000},v1=zz`]) {
    assert.equal(verifySignature('whsec_a', junk, body, 300, now), false, String(junk));
  }
});
