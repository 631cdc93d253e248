/**
 * @module store/files/contract
 * The behaviour every file store adapter must have, as one node:test suite;
 * `files.contract.test.ts` runs it per adapter.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FileStore, FileToSave } from './port.js';

export interface FileAdapterUnderTest {
  store: FileStore;
  /** Removes whatever the suite left behind (a database file, a database). */
  dispose(): Promise<void>;
}

export function runFileStoreContract(name: string, open: () => Promise<FileAdapterUnderTest>): void {
  describe(`file store contract: ${name}`, () => {
    let adapter: FileAdapterUnderTest;
    let store: FileStore;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/dev`;
    const file = (path: string, changes: Partial<FileToSave> = {}): FileToSave => ({
      project: 'site',
      path,
      content: `content of ${path}`,
      metadata: {},
      public: false,
      at: 1_000,
      ...changes,
    });
    const pathsOf = async (ns: string, pathPrefix: string, project = 'site') =>
      (await store.list(ns, project, { pathPrefix, limit: 1000 })).map((record) => record.path);

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(async () => {
      await store.close?.();
      await adapter.dispose();
    });

    test('save, get, overwrite and delete', async () => {
      const ns = namespace('basic');
      assert.equal(await store.get(ns, 'site', '/a.txt'), undefined);
      const saved = await store.save(ns, file('/a.txt', { metadata: { lang: 'en', 'x-y': 'z' }, public: true, at: 1_000 }));
      assert.deepEqual(saved, {
        project: 'site',
        path: '/a.txt',
        content: 'content of /a.txt',
        metadata: { lang: 'en', 'x-y': 'z' },
        public: true,
        createdAt: 1_000,
        updatedAt: 1_000,
      });
      assert.deepEqual(await store.get(ns, 'site', '/a.txt'), saved);
      const replaced = await store.save(ns, file('/a.txt', { content: 'new', metadata: {}, public: false, at: 2_000 }));
      assert.deepEqual(replaced, { ...saved, content: 'new', metadata: {}, public: false, updatedAt: 2_000 });
      assert.deepEqual(await store.get(ns, 'site', '/a.txt'), replaced);
      assert.equal(await store.delete(ns, 'site', '/a.txt'), true);
      assert.equal(await store.delete(ns, 'site', '/a.txt'), false);
      assert.equal(await store.get(ns, 'site', '/a.txt'), undefined);
    });

    test('content round-trips: empty, unicode, a megabyte', async () => {
      const ns = namespace('content');
      const contents = ['', 'ünïcødé 🚀\r\n\ttabs', 'x'.repeat(1024 * 1024), '{"json":[1,2]}'];
      for (const [i, content] of contents.entries()) await store.save(ns, file(`/f${i}`, { content }));
      for (const [i, content] of contents.entries()) assert.equal((await store.get(ns, 'site', `/f${i}`))?.content, content);
    });

    test('list: by folder prefix, in byte order, paged with startAfter', async () => {
      const ns = namespace('list');
      const paths = ['/docs/b.md', '/docs/a.md', '/docs/sub/c.md', '/docs-old/x.md', '/readme.md', '/\uFF5E', '/\u{1F600}'];
      for (const path of paths) await store.save(ns, file(path));
      await store.save(ns, file('/docs/other-project.md', { project: 'other' }));
      assert.deepEqual(await pathsOf(ns, '/'), ['/docs-old/x.md', '/docs/a.md', '/docs/b.md', '/docs/sub/c.md', '/readme.md', '/\uFF5E', '/\u{1F600}']);
      assert.deepEqual(await pathsOf(ns, '/docs/'), ['/docs/a.md', '/docs/b.md', '/docs/sub/c.md']);
      assert.deepEqual(await pathsOf(ns, '/docs/', 'other'), ['/docs/other-project.md']);
      assert.deepEqual(await pathsOf(ns, '/nothing/'), []);
      const first = await store.list(ns, 'site', { pathPrefix: '/', limit: 2 });
      assert.deepEqual(first.map((record) => record.path), ['/docs-old/x.md', '/docs/a.md']);
      const second = await store.list(ns, 'site', { pathPrefix: '/', limit: 2, startAfter: first[1].path });
      assert.deepEqual(second.map((record) => record.path), ['/docs/b.md', '/docs/sub/c.md']);
      const listed = (await store.list(ns, 'site', { pathPrefix: '/readme', limit: 1 }))[0];
      assert.deepEqual(listed, await store.get(ns, 'site', '/readme.md'), 'listed files carry content and metadata');
    });

    test('prefixes are literal text, not patterns', async () => {
      const ns = namespace('literal');
      for (const path of ['/a%/x', '/a_/x', '/ab/x', '/a\\/x']) await store.save(ns, file(path));
      assert.deepEqual(await pathsOf(ns, '/a%/'), ['/a%/x']);
      assert.deepEqual(await pathsOf(ns, '/a_/'), ['/a_/x']);
      assert.deepEqual(await pathsOf(ns, '/a\\/'), ['/a\\/x']);
    });

    test('namespaces never see each other', async () => {
      const first = namespace('iso-a');
      const second = namespace('iso-b');
      await store.save(first, file('/shared', { content: 'first' }));
      await store.save(second, file('/shared', { content: 'second' }));
      assert.equal((await store.get(first, 'site', '/shared'))?.content, 'first');
      assert.equal((await store.get(second, 'site', '/shared'))?.content, 'second');
      await store.delete(second, 'site', '/shared');
      assert.equal((await store.get(first, 'site', '/shared'))?.content, 'first');
      assert.deepEqual(await pathsOf(second, '/'), []);
    });

    test('deleteProject removes every environment of that project only', async () => {
      const project = `proj-${run}`;
      await store.save(`${project}/dev`, file('/a'));
      await store.save(`${project}/prod`, file('/b'));
      await store.save(`${project}0/dev`, file('/a', { content: 'neighbour' }));
      assert.equal(await store.deleteProject(project), 2);
      assert.deepEqual(await pathsOf(`${project}/dev`, '/'), []);
      assert.deepEqual(await pathsOf(`${project}/prod`, '/'), []);
      assert.equal((await store.get(`${project}0/dev`, 'site', '/a'))?.content, 'neighbour');
    });
  });
}
