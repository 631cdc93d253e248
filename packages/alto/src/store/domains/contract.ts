/**
 * @module store/domains/contract
 * The behaviour every adapter of the HTTPS names port must have, as one node:test suite, run by
 * `domains.contract.test.ts` on two stores over the same data (as two nodes see it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TwoStores } from '../two-processes.js';
import type { DomainStore } from './port.js';

export function runDomainStoreContract(name: string, open: () => Promise<TwoStores<DomainStore>>): void {
  describe(`domain store contract: ${name}`, () => {
    let stores: TwoStores<DomainStore>;
    before(async () => {
      stores = await open();
    });
    after(async () => {
      await stores.dispose();
    });

    test('one account per directory: the first claim stands, its URL is kept', async () => {
      const { store, other } = stores;
      const first = await store.claimAccount({ directory: 'https://acme.test/dir', email: 'a@shop.test', keySealed: 'sealed-1' });
      const second = await other.claimAccount({ directory: 'https://acme.test/dir', email: 'b@shop.test', keySealed: 'sealed-2' });
      assert.deepEqual(second, first);
      await store.setAccountUrl('https://acme.test/dir', 'https://acme.test/acct/1');
      assert.equal((await other.account('https://acme.test/dir'))?.url, 'https://acme.test/acct/1');
      assert.equal(await other.account('https://other.test/dir'), undefined);
    });

    test('a certificate is requested once, fails with its reason, keeps what was issued, and renews', async () => {
      const { store, other } = stores;
      assert.equal(await store.requestCertificate('web.shop.test', 1000), true);
      assert.equal(await other.requestCertificate('web.shop.test', 2000), false);
      assert.deepEqual(await other.certificate('web.shop.test'), { host: 'web.shop.test', failures: 0, attemptAt: 1000, updatedAt: 1000 });
      await store.recordFailure('web.shop.test', 'connection refused', 5000, 1100);
      await store.recordFailure('web.shop.test', 'connection refused again', 9000, 1200);
      let stored = await other.certificate('web.shop.test');
      assert.equal(stored?.failures, 2);
      assert.equal(stored?.error, 'connection refused again');
      assert.equal(stored?.attemptAt, 9000);
      await store.saveCertificate('web.shop.test', { certificate: 'PEM', keySealed: 'sealed', notBefore: 10, notAfter: 20 }, 1300);
      stored = await other.certificate('web.shop.test');
      assert.deepEqual(stored, { host: 'web.shop.test', certificate: 'PEM', keySealed: 'sealed', notBefore: 10, notAfter: 20, failures: 0, updatedAt: 1300 });
      await store.recordFailure('web.shop.test', 'rate limited', 7000, 1400);
      stored = await other.certificate('web.shop.test');
      assert.equal(stored?.certificate, 'PEM', 'a failed renewal keeps the certificate');
      assert.equal(stored?.error, 'rate limited');
      assert.deepEqual((await other.listCertificates()).map((row) => row.host), ['web.shop.test']);
      await other.removeCertificate('web.shop.test');
      assert.equal(await store.certificate('web.shop.test'), undefined);
    });

    test('challenges are seen by every node until they expire or go', async () => {
      const { store, other } = stores;
      await store.putChallenge({ kind: 'http-01', name: 'token-1', value: 'token-1.thumb', expiresAt: 5000 });
      assert.equal((await other.challenge('http-01', 'token-1', 4000))?.value, 'token-1.thumb');
      assert.equal(await other.challenge('http-01', 'token-1', 5000), undefined, 'expired');
      assert.equal(await other.challenge('tls-alpn-01', 'token-1', 4000), undefined, 'another kind');
      await store.removeChallenge('http-01', 'token-1');
      assert.equal(await other.challenge('http-01', 'token-1', 4000), undefined);
    });

    test('a domain belongs to one app; a list is replaced whole or not at all', async () => {
      const { store, other } = stores;
      assert.deepEqual(await store.claimDomain({ domain: 'www.shop.test', projectId: 'p1', app: 'web', createdAt: 1 }), { outcome: 'claimed' });
      assert.deepEqual(await other.claimDomain({ domain: 'www.shop.test', projectId: 'p1', app: 'web', createdAt: 2 }), { outcome: 'unchanged' });
      const taken = await other.claimDomain({ domain: 'www.shop.test', projectId: 'p2', app: 'web', createdAt: 3 });
      assert.equal(taken.outcome, 'taken');
      assert.deepEqual(await other.replaceAppDomains('p1', 'web', ['shop.test', 'www.shop.test'], 4), {});
      assert.deepEqual((await store.listDomains('p1')).map((row) => row.domain), ['shop.test', 'www.shop.test']);
      // p2 asks for a free one and a taken one: nothing of it is saved.
      const refused = await store.replaceAppDomains('p2', 'site', ['free.test', 'shop.test'], 5);
      assert.equal(refused.taken?.domain, 'shop.test');
      assert.equal(refused.taken?.projectId, 'p1');
      assert.deepEqual(await other.listDomains('p2'), []);
      assert.equal(await other.domain('free.test'), undefined);
      assert.deepEqual(await store.replaceAppDomains('p1', 'web', ['www.shop.test'], 6), {});
      assert.deepEqual((await other.listDomains()).map((row) => row.domain), ['www.shop.test']);
      assert.equal(await other.removeDomain('p2', 'www.shop.test'), false, "another project's domain");
      assert.equal(await other.removeDomain('p1', 'www.shop.test'), true);
      assert.deepEqual(await store.listDomains(), []);
    });
  });
}
