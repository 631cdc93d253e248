/**
 * @module store/users/contract
 * The behaviour every users store adapter must have, as one node:test suite;
 * `users.contract.test.ts` runs it once per adapter. Hashing of passwords, session ids and
 * tokens is the block's concern: the store keeps the strings it is given.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { StoredUser, UserStore } from './port.js';

export interface UserAdapterUnderTest {
  store: UserStore;
  /** Opens a second store on the same data, as a restarted process would. */
  reopen(): Promise<UserStore>;
  cleanup(): Promise<void>;
}

function user(id: string, email: string, username = '', createdAt = 1000): StoredUser {
  return {
    id,
    username,
    email,
    passwordHash: `$argon2id$fake$${id}`,
    verified: false,
    verifiedAt: 0,
    profile: {},
    createdAt,
    updatedAt: createdAt,
  };
}

export function runUserStoreContract(name: string, open: () => Promise<UserAdapterUnderTest>): void {
  describe(`users store contract: ${name}`, () => {
    let adapter: UserAdapterUnderTest;
    let store: UserStore;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/dev`;

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(async () => {
      await store.close();
      await adapter.cleanup();
    });

    test('an account is created once and read back by id, email and username', async () => {
      const ns = namespace('create');
      const ada = { ...user('u1', 'ada@example.com', 'ada'), profile: { city: 'London', 'emoji ✓': 'yes' } };
      assert.equal(await store.createUser(ns, ada), 'created');
      assert.deepEqual(await store.getUser(ns, 'u1'), ada);
      assert.deepEqual(await store.findUser(ns, 'email', 'ada@example.com'), ada);
      assert.deepEqual(await store.findUser(ns, 'username', 'ada'), ada);
      assert.equal(await store.getUser(ns, 'nobody'), undefined);
      assert.equal(await store.findUser(ns, 'email', 'nobody@example.com'), undefined);
      assert.equal(await store.findUser(ns, 'username', ''), undefined, 'an empty username names no account');

      assert.equal(await store.createUser(ns, user('u1', 'other@example.com', 'other')), 'id_taken');
      assert.equal(await store.createUser(ns, user('u2', 'ada@example.com', 'other')), 'email_taken');
      assert.equal(await store.createUser(ns, user('u2', 'other@example.com', 'ada')), 'username_taken');
      assert.equal(await store.getUser(ns, 'u2'), undefined, 'a refused create writes nothing');
      // Accounts without a username do not collide with each other.
      assert.equal(await store.createUser(ns, user('u3', 'a@example.com')), 'created');
      assert.equal(await store.createUser(ns, user('u4', 'b@example.com')), 'created');
    });

    test('two concurrent sign-ups with one email: exactly one wins', async () => {
      const ns = namespace('race');
      const outcomes = await Promise.all([
        store.createUser(ns, user('r1', 'same@example.com')),
        store.createUser(ns, user('r2', 'same@example.com')),
      ]);
      assert.deepEqual([...outcomes].sort(), ['created', 'email_taken']);
    });

    test('update changes only the given fields and refuses taken emails and usernames', async () => {
      const ns = namespace('update');
      await store.createUser(ns, user('u1', 'ada@example.com', 'ada'));
      await store.createUser(ns, user('u2', 'bob@example.com', 'bob'));
      assert.equal(await store.updateUser(ns, 'u1', { profile: { a: '1' }, updatedAt: 2000 }), 'updated');
      let ada = (await store.getUser(ns, 'u1'))!;
      assert.deepEqual(ada, { ...user('u1', 'ada@example.com', 'ada'), profile: { a: '1' }, updatedAt: 2000 });
      assert.equal(
        await store.updateUser(ns, 'u1', { email: 'ada@new.example', username: 'lovelace', verified: true, verifiedAt: 2500, updatedAt: 3000 }),
        'updated',
      );
      ada = (await store.getUser(ns, 'u1'))!;
      assert.equal(ada.email, 'ada@new.example');
      assert.equal(ada.username, 'lovelace');
      assert.equal(ada.verified, true);
      assert.equal(ada.verifiedAt, 2500);
      assert.deepEqual(ada.profile, { a: '1' });
      assert.equal(await store.findUser(ns, 'email', 'ada@example.com'), undefined, 'the old email is free');
      assert.equal(await store.updateUser(ns, 'u1', { email: 'bob@example.com', updatedAt: 4000 }), 'email_taken');
      assert.equal(await store.updateUser(ns, 'u1', { username: 'bob', updatedAt: 4000 }), 'username_taken');
      assert.equal(await store.updateUser(ns, 'u1', { email: 'ada@new.example', username: 'lovelace', updatedAt: 4000 }), 'updated');
      assert.equal(await store.updateUser(ns, 'u1', { passwordHash: 'new-hash', updatedAt: 5000 }), 'updated');
      assert.equal((await store.getUser(ns, 'u1'))!.passwordHash, 'new-hash');
      assert.equal((await store.getUser(ns, 'u2'))!.email, 'bob@example.com', 'the other account is untouched');
      assert.equal(await store.updateUser(ns, 'missing', { profile: {}, updatedAt: 1 }), 'not_found');
    });

    test('list pages through accounts in creation order', async () => {
      const ns = namespace('list');
      for (let i = 0; i < 7; i++) await store.createUser(ns, user(`id-${6 - i}`, `u${i}@example.com`, '', 1000 + i));
      const all = await store.listUsers(ns, 0, 100);
      assert.deepEqual(all.map((account) => account.email), ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6'].map((u) => `${u}@example.com`));
      assert.deepEqual((await store.listUsers(ns, 2, 3)).map((account) => account.id), ['id-4', 'id-3', 'id-2']);
      assert.deepEqual(await store.listUsers(ns, 7, 10), []);
      assert.deepEqual(await store.listUsers(namespace('list-empty'), 0, 10), []);
    });

    test('sessions expire, end one by one or all at once but one', async () => {
      const ns = namespace('sessions');
      await store.createSession(ns, { idHash: 'h1', userId: 'u1', createdAt: 100, expiresAt: 200 });
      await store.createSession(ns, { idHash: 'h2', userId: 'u1', createdAt: 100, expiresAt: 900 });
      await store.createSession(ns, { idHash: 'h3', userId: 'u1', createdAt: 100, expiresAt: 900 });
      await store.createSession(ns, { idHash: 'h4', userId: 'u2', createdAt: 100, expiresAt: 900 });
      assert.deepEqual(await store.getSession(ns, 'h1', 199), { idHash: 'h1', userId: 'u1', createdAt: 100, expiresAt: 200 });
      assert.equal(await store.getSession(ns, 'h1', 200), undefined, 'expired at its expiry time');
      assert.equal(await store.deleteSession(ns, 'h2'), true);
      assert.equal(await store.deleteSession(ns, 'h2'), false);
      assert.equal(await store.getSession(ns, 'h2', 150), undefined);
      await store.createSession(ns, { idHash: 'h5', userId: 'u1', createdAt: 100, expiresAt: 900 });
      assert.equal(await store.deleteSessions(ns, 'u1', 'h5'), 2, 'h1 and h3 end, h5 is kept');
      assert.equal(await store.getSession(ns, 'h3', 150), undefined);
      assert.ok(await store.getSession(ns, 'h5', 150));
      assert.ok(await store.getSession(ns, 'h4', 150), 'another user keeps their session');
      assert.equal(await store.deleteSessions(ns, 'u1'), 1);
      assert.equal(await store.getSession(ns, 'h5', 150), undefined);
    });

    test('a token is consumed once, expired or not, and only for its purpose', async () => {
      const ns = namespace('tokens');
      const token = { hash: 't1', purpose: 'password_reset' as const, userId: 'u1', createdAt: 10, expiresAt: 20, data: { a: 'b' } };
      await store.createToken(ns, token);
      assert.equal(await store.consumeToken(ns, 'verification', 't1'), undefined, 'another purpose does not see it');
      assert.deepEqual(await store.consumeToken(ns, 'password_reset', 't1'), token, 'returned even though expired: the caller checks');
      assert.equal(await store.consumeToken(ns, 'password_reset', 't1'), undefined, 'single use');

      await store.createToken(ns, { ...token, hash: 'race', expiresAt: 10_000 });
      const raced = await Promise.all([store.consumeToken(ns, 'password_reset', 'race'), store.consumeToken(ns, 'password_reset', 'race')]);
      assert.equal(raced.filter(Boolean).length, 1, 'of two concurrent uses exactly one gets the token');

      await store.createToken(ns, { ...token, hash: 'v1', purpose: 'verification' });
      await store.createToken(ns, { ...token, hash: 'r1' });
      await store.createToken(ns, { ...token, hash: 'm1', purpose: 'magic_link' });
      await store.createToken(ns, { ...token, hash: 'other', userId: 'u2' });
      assert.equal(await store.deleteTokens(ns, 'u1', ['password_reset', 'magic_link']), 2);
      assert.equal(await store.consumeToken(ns, 'password_reset', 'r1'), undefined);
      assert.equal(await store.consumeToken(ns, 'magic_link', 'm1'), undefined);
      assert.ok(await store.consumeToken(ns, 'verification', 'v1'));
      assert.ok(await store.consumeToken(ns, 'password_reset', 'other'));
    });

    test('attempts are counted per subject within a window, and cleared', async () => {
      const ns = namespace('attempts');
      for (const at of [100, 200, 300]) await store.recordAttempt(ns, 'login:ada', at);
      await store.recordAttempt(ns, 'login:bob', 300);
      assert.equal(await store.countAttempts(ns, 'login:ada', 0), 3);
      assert.equal(await store.countAttempts(ns, 'login:ada', 200), 2);
      assert.equal(await store.countAttempts(ns, 'login:ada', 301), 0);
      await store.clearAttempts(ns, 'login:ada');
      assert.equal(await store.countAttempts(ns, 'login:ada', 0), 0);
      assert.equal(await store.countAttempts(ns, 'login:bob', 0), 1);
    });

    test('templates are put, replaced, read and deleted', async () => {
      const ns = namespace('templates');
      const template = { name: 'verification', subject: 'Hi {{name}}', textBody: 'go {{link}}', htmlBody: '', fromName: 'Acme', updatedAt: 1 };
      assert.equal(await store.getTemplate(ns, 'verification'), undefined);
      await store.putTemplate(ns, template);
      assert.deepEqual(await store.getTemplate(ns, 'verification'), template);
      await store.putTemplate(ns, { ...template, subject: 'Hello', updatedAt: 2 });
      assert.deepEqual(await store.getTemplate(ns, 'verification'), { ...template, subject: 'Hello', updatedAt: 2 });
      assert.equal(await store.deleteTemplate(ns, 'verification'), true);
      assert.equal(await store.deleteTemplate(ns, 'verification'), false);
      assert.equal(await store.getTemplate(ns, 'verification'), undefined);
    });

    test('namespaces never see each other', async () => {
      const first = namespace('iso-a');
      const second = namespace('iso-b');
      assert.equal(await store.createUser(first, user('same', 'same@example.com', 'same')), 'created');
      assert.equal(await store.createUser(second, user('same', 'same@example.com', 'same')), 'created', 'the same id, email and username in another project');
      await store.updateUser(second, 'same', { profile: { owner: 'second' }, updatedAt: 2 });
      assert.deepEqual((await store.getUser(first, 'same'))!.profile, {});
      await store.createSession(first, { idHash: 's', userId: 'same', createdAt: 1, expiresAt: 100 });
      assert.equal(await store.getSession(second, 's', 2), undefined);
      await store.createToken(first, { hash: 't', purpose: 'verification', userId: 'same', createdAt: 1, expiresAt: 100, data: {} });
      assert.equal(await store.consumeToken(second, 'verification', 't'), undefined);
      await store.recordAttempt(first, 'login:same', 1);
      assert.equal(await store.countAttempts(second, 'login:same', 0), 0);
      await store.putTemplate(first, { name: 'magic_link', subject: 's', textBody: 't', htmlBody: '', fromName: '', updatedAt: 1 });
      assert.equal(await store.getTemplate(second, 'magic_link'), undefined);
      assert.equal(await store.deleteUser(second, 'same'), true);
      assert.ok(await store.getUser(first, 'same'));
      assert.ok(await store.getSession(first, 's', 2));
      assert.ok(await store.consumeToken(first, 'verification', 't'));
      assert.deepEqual((await store.listUsers(second, 0, 10)).length, 0);
    });

    test('deleting an account ends its sessions and tokens', async () => {
      const ns = namespace('delete');
      await store.createUser(ns, user('u1', 'ada@example.com', 'ada'));
      await store.createSession(ns, { idHash: 's1', userId: 'u1', createdAt: 1, expiresAt: 100 });
      await store.createToken(ns, { hash: 't1', purpose: 'password_reset', userId: 'u1', createdAt: 1, expiresAt: 100, data: {} });
      assert.equal(await store.deleteUser(ns, 'u1'), true);
      assert.equal(await store.deleteUser(ns, 'u1'), false);
      assert.equal(await store.getSession(ns, 's1', 2), undefined);
      assert.equal(await store.consumeToken(ns, 'password_reset', 't1'), undefined);
      assert.equal(await store.createUser(ns, user('u9', 'ada@example.com', 'ada')), 'created', 'the email and username are free again');
    });

    test('deleteProject removes every environment of that project only', async () => {
      const project = `proj_${run}`;
      await store.createUser(`${project}/dev`, user('a', 'a@example.com'));
      await store.createUser(`${project}/prod`, user('b', 'b@example.com'));
      await store.createSession(`${project}/dev`, { idHash: 's', userId: 'a', createdAt: 1, expiresAt: 100 });
      await store.putTemplate(`${project}/dev`, { name: 'verification', subject: 's', textBody: 't', htmlBody: '', fromName: '', updatedAt: 1 });
      // `_` is a LIKE wildcard: "projX..." must not match "proj_...".
      await store.createUser(`${project.replace('_', 'X')}/dev`, user('a', 'a@example.com'));
      await store.createUser(`${project}0/dev`, user('a', 'a@example.com'));
      assert.equal(await store.deleteProject(project), 2);
      assert.equal(await store.getUser(`${project}/dev`, 'a'), undefined);
      assert.equal(await store.getUser(`${project}/prod`, 'b'), undefined);
      assert.equal(await store.getSession(`${project}/dev`, 's', 2), undefined);
      assert.equal(await store.getTemplate(`${project}/dev`, 'verification'), undefined);
      assert.ok(await store.getUser(`${project.replace('_', 'X')}/dev`, 'a'));
      assert.ok(await store.getUser(`${project}0/dev`, 'a'));
    });

    test('purgeExpired removes expired sessions and tokens and old attempts only', async () => {
      const ns = namespace('purge');
      const far = 9_000_000_000_000;
      await store.createSession(ns, { idHash: 'old', userId: 'u', createdAt: 1, expiresAt: 50 });
      await store.createSession(ns, { idHash: 'live', userId: 'u', createdAt: 1, expiresAt: far });
      await store.createToken(ns, { hash: 'old', purpose: 'magic_link', userId: 'u', createdAt: 1, expiresAt: 50, data: {} });
      await store.createToken(ns, { hash: 'live', purpose: 'magic_link', userId: 'u', createdAt: 1, expiresAt: far, data: {} });
      await store.recordAttempt(ns, 'login:x', 10);
      await store.recordAttempt(ns, 'login:x', far);
      assert.ok((await store.purgeExpired(100, 100)) >= 3);
      assert.ok(await store.getSession(ns, 'live', 100));
      assert.equal(await store.consumeToken(ns, 'magic_link', 'old'), undefined);
      assert.ok(await store.consumeToken(ns, 'magic_link', 'live'));
      assert.equal(await store.countAttempts(ns, 'login:x', 0), 1);
    });

    test('data written is there for a store reopened on the same database', async () => {
      const ns = namespace('reopen');
      await store.createUser(ns, { ...user('kept', 'kept@example.com', 'kept'), profile: { k: 'v' } });
      const reopened = await adapter.reopen();
      assert.deepEqual((await reopened.getUser(ns, 'kept'))?.profile, { k: 'v' });
      await reopened.close();
    });
  });
}
