/**
 * @module store/mail/contract
 * The behaviour every mail store adapter must have, as one node:test suite;
 * `mail.contract.test.ts` runs it once per adapter.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { MailStore, OutboxMessage } from './port.js';

export interface MailAdapterUnderTest {
  store: MailStore;
  /** Opens a second store on the same data, as a restarted process would. */
  reopen(): Promise<MailStore>;
  cleanup(): Promise<void>;
}

function message(id: string, to = 'ada@example.com', createdAt = 1000): OutboxMessage {
  return {
    id,
    from: 'Acme <noreply@acme.example>',
    to,
    replyTo: '',
    subject: `subject ${id}`,
    textBody: `text ${id} ✓`,
    htmlBody: `<p>${id}</p>`,
    source: 'email',
    status: 'queued',
    error: '',
    messageId: '',
    createdAt,
    updatedAt: createdAt,
  };
}

export function runMailStoreContract(name: string, open: () => Promise<MailAdapterUnderTest>): void {
  describe(`mail store contract: ${name}`, () => {
    let adapter: MailAdapterUnderTest;
    let store: MailStore;
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

    test('a message is added, read back and updated', async () => {
      const ns = namespace('basic');
      const first = message('m1');
      await store.addMessage(ns, first);
      assert.deepEqual(await store.getMessage(ns, 'm1'), first);
      const update = { status: 'sent' as const, error: '', messageId: '<abc@acme.example>', updatedAt: 2000 };
      assert.equal(await store.updateMessage(ns, 'm1', update), true);
      assert.deepEqual(await store.getMessage(ns, 'm1'), { ...first, ...update });
      assert.equal(await store.updateMessage(ns, 'missing', update), false);
      assert.equal(await store.getMessage(ns, 'missing'), undefined);
    });

    test('the outbox lists newest first, pages, and filters by recipient', async () => {
      const ns = namespace('list');
      // Same timestamp for all: the order they were added decides.
      for (let i = 0; i < 6; i++) await store.addMessage(ns, message(`m${i}`, i % 2 === 0 ? 'Even@Example.com' : 'odd@example.com', 5000));
      const all = await store.listMessages(ns, { offset: 0, limit: 100, to: '' });
      assert.deepEqual(all.map((m) => m.id), ['m5', 'm4', 'm3', 'm2', 'm1', 'm0']);
      assert.deepEqual((await store.listMessages(ns, { offset: 1, limit: 2, to: '' })).map((m) => m.id), ['m4', 'm3']);
      assert.deepEqual((await store.listMessages(ns, { offset: 0, limit: 10, to: 'even@example.COM' })).map((m) => m.id), ['m4', 'm2', 'm0']);
      assert.deepEqual((await store.listMessages(ns, { offset: 0, limit: 10, to: '%' })).map((m) => m.id), [], 'the filter is text, not a pattern');
      assert.deepEqual(await store.listMessages(ns, { offset: 6, limit: 10, to: '' }), []);
    });

    test('the SMTP setting is put, replaced and deleted', async () => {
      const ns = namespace('smtp');
      assert.equal(await store.getSmtpUrl(ns), undefined);
      await store.putSmtpUrl(ns, 'smtp://a:b@mail.example:587', 1);
      assert.equal(await store.getSmtpUrl(ns), 'smtp://a:b@mail.example:587');
      await store.putSmtpUrl(ns, 'smtps://c:d@mail.example:465', 2);
      assert.equal(await store.getSmtpUrl(ns), 'smtps://c:d@mail.example:465');
      assert.equal(await store.deleteSmtpUrl(ns), true);
      assert.equal(await store.deleteSmtpUrl(ns), false);
      assert.equal(await store.getSmtpUrl(ns), undefined);
    });

    test('namespaces never see each other', async () => {
      const first = namespace('iso-a');
      const second = namespace('iso-b');
      await store.addMessage(first, message('same'));
      await store.addMessage(second, { ...message('same'), subject: 'second' });
      await store.putSmtpUrl(first, 'smtp://first.example', 1);
      assert.equal((await store.getMessage(first, 'same'))?.subject, 'subject same');
      assert.equal((await store.getMessage(second, 'same'))?.subject, 'second');
      await store.updateMessage(second, 'same', { status: 'failed', error: 'x', messageId: '', updatedAt: 2 });
      assert.equal((await store.getMessage(first, 'same'))?.status, 'queued');
      assert.equal((await store.listMessages(second, { offset: 0, limit: 10, to: '' })).length, 1);
      assert.equal(await store.getSmtpUrl(second), undefined);
    });

    test('deleteProject removes every environment of that project only', async () => {
      const project = `proj_${run}`;
      await store.addMessage(`${project}/dev`, message('a'));
      await store.addMessage(`${project}/prod`, message('b'));
      await store.putSmtpUrl(`${project}/dev`, 'smtp://x.example', 1);
      // `_` is a LIKE wildcard: "projX..." must not match "proj_...".
      await store.addMessage(`${project.replace('_', 'X')}/dev`, message('a'));
      await store.addMessage(`${project}0/dev`, message('a'));
      assert.equal(await store.deleteProject(project), 2);
      assert.equal(await store.getMessage(`${project}/dev`, 'a'), undefined);
      assert.equal(await store.getSmtpUrl(`${project}/dev`), undefined);
      assert.ok(await store.getMessage(`${project.replace('_', 'X')}/dev`, 'a'));
      assert.ok(await store.getMessage(`${project}0/dev`, 'a'));
    });

    test('purgeBefore removes old messages only', async () => {
      const ns = namespace('purge');
      await store.addMessage(ns, message('old', 'a@example.com', 10));
      await store.addMessage(ns, message('new', 'a@example.com', 9_000_000_000_000));
      assert.ok((await store.purgeBefore(100)) >= 1);
      assert.equal(await store.getMessage(ns, 'old'), undefined);
      assert.ok(await store.getMessage(ns, 'new'));
    });

    test('data written is there for a store reopened on the same database', async () => {
      const ns = namespace('reopen');
      await store.addMessage(ns, message('kept'));
      const reopened = await adapter.reopen();
      assert.equal((await reopened.getMessage(ns, 'kept'))?.textBody, 'text kept ✓');
      await reopened.close();
    });
  });
}
