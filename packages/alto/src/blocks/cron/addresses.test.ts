import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkCallbackUrl } from './addresses.js';

test('Schedule-time check: form, scheme, and private hosts unless allowed', async () => {
  await assert.rejects(checkCallbackUrl('not a url', false), /callback: "not a url" is not an absolute URL/);
  await assert.rejects(checkCallbackUrl('ftp://example.com/x', false), /only http and https/);
  await assert.rejects(checkCallbackUrl('http://127.0.0.1:8080/hook', false), /"127\.0\.0\.1" is \(or resolves to\) a loopback address/);
  await assert.rejects(checkCallbackUrl('http://[::1]/hook', false), /"::1" is \(or resolves to\) a loopback address/);
  await assert.rejects(checkCallbackUrl('http://localhost/hook', false), /"localhost" is \(or resolves to\)/);
  await assert.rejects(checkCallbackUrl('http://10.0.0.5/hook', false), /private/);
  await assert.rejects(checkCallbackUrl('http://[::ffff:127.0.0.1]/hook', false), /loopback address \(127\.0\.0\.1\) in an IPv6 mapped form/);
  await assert.rejects(checkCallbackUrl('http://2130706433/hook', false), /loopback/);
  assert.equal(await checkCallbackUrl('http://127.0.0.1:8080/hook', true), 'http://127.0.0.1:8080/hook');
  assert.equal(await checkCallbackUrl('https://93.184.216.34/hook', false), 'https://93.184.216.34/hook');
});
