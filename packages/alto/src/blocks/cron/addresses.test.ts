import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkCallbackUrl, isPrivateAddress } from './addresses.js';

test('loopback, private, link-local and unique-local addresses are private', () => {
  for (const address of ['127.0.0.1', '127.9.9.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0', '::1', '::', 'fc00::1', 'fd12::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1']) {
    assert.equal(isPrivateAddress(address), true, address);
  }
  for (const address of ['93.184.216.34', '172.32.0.1', '8.8.8.8', '2606:4700::1111', '::ffff:8.8.8.8']) {
    assert.equal(isPrivateAddress(address), false, address);
  }
});

test('Schedule-time check: form, scheme, and private hosts unless allowed', async () => {
  await assert.rejects(checkCallbackUrl('not a url', false), /callback: "not a url" is not an absolute URL/);
  await assert.rejects(checkCallbackUrl('ftp://example.com/x', false), /only http and https/);
  await assert.rejects(checkCallbackUrl('http://127.0.0.1:8080/hook', false), /127\.0\.0\.1, a loopback or private address/);
  await assert.rejects(checkCallbackUrl('http://[::1]/hook', false), /::1, a loopback or private address/);
  await assert.rejects(checkCallbackUrl('http://localhost/hook', false), /"localhost" is \(or resolves to\)/);
  await assert.rejects(checkCallbackUrl('http://10.0.0.5/hook', false), /private/);
  assert.equal(await checkCallbackUrl('http://127.0.0.1:8080/hook', true), 'http://127.0.0.1:8080/hook');
  assert.equal(await checkCallbackUrl('https://93.184.216.34/hook', false), 'https://93.184.216.34/hook');
});
