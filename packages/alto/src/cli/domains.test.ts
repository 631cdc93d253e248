/**
 * What `alto domains` and `alto status` print of custom domains and certificates: a failure
 * with its reason and next attempt, an active certificate with its expiry, pending DNS in words.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { httpsLines, statusText } from './domains.js';

test('a domain status reads as words, a failure with its reason', () => {
  assert.equal(statusText({ status: 'pending_dns' }), 'pending DNS');
  assert.equal(statusText({ status: 'issuing' }), 'issuing');
  assert.equal(statusText({ status: 'failed', error: 'Connection refused' }), 'failed: Connection refused');
});

test('alto status shows each certificate, and a failed one with why and when it is tried again', () => {
  const text = httpsLines({
    port: 443,
    acme_directory: 'https://acme.test/dir',
    certificates: [
      { host: 'alto.example.com', status: 'active', not_after: '2027-03-01T00:00:00.000Z' },
      { host: 'www.shop.com', status: 'failed', error: 'cannot reach the ACME directory at https://acme.test/dir (ECONNREFUSED)', next_attempt: '2026-12-06T23:00:00.000Z' },
    ],
  }).replace(/\x1b\[[0-9;]*m/g, '');
  assert.match(text, /https: {4}port 443 \(ACME: https:\/\/acme\.test\/dir\)/);
  assert.match(text, /alto\.example\.com: active until 2027-03-01T00:00:00\.000Z/);
  assert.match(text, /www\.shop\.com: failed: cannot reach the ACME directory at https:\/\/acme\.test\/dir \(ECONNREFUSED\) \(next attempt 2026-12-06T23:00:00\.000Z\)/);
  assert.equal(httpsLines(undefined), '');
});
