/**
 * @module store/objects/contract
 * The behaviour every object store adapter must have, as one node:test suite;
 * `objects.contract.test.ts` runs it per adapter. Besides round trips it checks what makes a
 * store safe to build on: a failed or oversized write leaves the previous object whole, a
 * reader never sees a mix of two versions, listing is in byte order and pages without gaps
 * or repeats, and namespaces never see each other.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { RangeNotSatisfiableError, type ObjectInfo, type ObjectStore, type PutOptions, type RangeRequest } from './port.js';

export interface ObjectAdapterUnderTest {
  store: ObjectStore;
  /** Removes whatever the suite left behind (a folder, a bucket prefix). */
  cleanup(): Promise<void>;
}

export async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function sha256Of(content: Buffer | string): string {
  return createHash('sha256').update(content).digest('hex');
}

/** A body of `chunks` pieces that fails after sending them: a client cut off mid-upload. */
export function failingBody(chunks: Buffer[]): Readable {
  return Readable.from(
    (async function* () {
      for (const chunk of chunks) yield chunk;
      throw new Error('connection reset by peer');
    })(),
  );
}

export async function rejectsWithStatus(promise: Promise<unknown>, status: number, detail?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isAltoError(error), `expected an AltoError, got ${String(error)}`);
    assert.equal(error.status, status, error.detail);
    if (detail) assert.match(error.detail, detail);
    return true;
  });
}

export function runObjectStoreContract(name: string, open: () => Promise<ObjectAdapterUnderTest>): void {
  describe(`object store contract: ${name}`, () => {
    let adapter: ObjectAdapterUnderTest;
    let store: ObjectStore;
    const run = randomBytes(4).toString('hex');
    /** A namespace of its own for each test, shaped like a real one. */
    const namespace = (label: string) => `project-${run}-${label}/dev`;

    const put = (ns: string, objectName: string, content: Buffer | string, options: Partial<PutOptions> = {}) =>
      store.put(ns, objectName, Readable.from([Buffer.from(content)]), {
        contentType: 'application/octet-stream',
        visibility: 'private',
        ...options,
      });

    async function contentOf(ns: string, objectName: string, range?: RangeRequest): Promise<Buffer | undefined> {
      const read = await store.get(ns, objectName, range);
      return read && readAll(read.body);
    }

    async function allNames(ns: string, prefix?: string): Promise<string[]> {
      return (await store.list(ns, { prefix, limit: 1000 })).objects.map((object) => object.name);
    }

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(async () => {
      await store.close();
      await adapter.cleanup();
    });

    test('put, get, head and delete one object with its metadata', async () => {
      const ns = namespace('basic');
      const before = Date.now();
      const info = await put(ns, 'docs/hello.txt', 'hello, world', { contentType: 'text/plain; charset=utf-8', visibility: 'public' });
      assert.equal(info.name, 'docs/hello.txt');
      assert.equal(info.size, 12);
      assert.equal(info.contentType, 'text/plain; charset=utf-8');
      assert.equal(info.visibility, 'public');
      assert.equal(info.sha256, sha256Of('hello, world'));
      assert.ok(info.etag.length > 0);
      assert.ok(info.createdAt >= before - 1000 && info.createdAt <= Date.now() + 1000, 'created is now');
      assert.equal(info.modifiedAt, info.createdAt);
      assert.deepEqual(await store.head(ns, 'docs/hello.txt'), info);
      const read = await store.get(ns, 'docs/hello.txt');
      assert.deepEqual(read?.info, info);
      assert.equal(read?.range, undefined);
      assert.equal((await readAll(read!.body)).toString(), 'hello, world');
      assert.equal(await store.delete(ns, 'docs/hello.txt'), true);
      assert.equal(await store.delete(ns, 'docs/hello.txt'), false);
      assert.equal(await store.head(ns, 'docs/hello.txt'), undefined);
      assert.equal(await store.get(ns, 'docs/hello.txt'), undefined);
      assert.deepEqual(await allNames(ns), []);
    });

    test('an overwrite replaces content and metadata but keeps the creation time', async () => {
      const ns = namespace('overwrite');
      const first = await put(ns, 'a.bin', 'first version', { contentType: 'text/plain', visibility: 'public' });
      await new Promise((resolve) => setTimeout(resolve, 5)); // so the modification time can differ
      const second = await put(ns, 'a.bin', 'second', { contentType: 'application/json', visibility: 'private' });
      assert.equal(second.createdAt, first.createdAt);
      assert.ok(second.modifiedAt > first.modifiedAt);
      assert.notEqual(second.etag, first.etag);
      assert.deepEqual(await store.head(ns, 'a.bin'), second);
      assert.equal((await contentOf(ns, 'a.bin'))?.toString(), 'second');
    });

    test('ifAbsent creates once and then refuses with 409, leaving the object as it was', async () => {
      const ns = namespace('if-absent');
      const created = await put(ns, 'once', 'original', { ifAbsent: true });
      await rejectsWithStatus(put(ns, 'once', 'intruder', { ifAbsent: true, visibility: 'public' }), 409, /already exists/);
      assert.deepEqual(await store.head(ns, 'once'), created);
      assert.equal((await contentOf(ns, 'once'))?.toString(), 'original');
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => put(ns, 'race', `writer ${i}`, { ifAbsent: true })));
      assert.equal(results.filter((result) => result.status === 'fulfilled').length, 1, 'exactly one concurrent create wins');
    });

    test('bytes round-trip exactly, streamed in many chunks', async () => {
      const ns = namespace('bytes');
      const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await put(ns, 'every-byte', everyByte);
      assert.deepEqual(await contentOf(ns, 'every-byte'), everyByte);
      const chunks = Array.from({ length: 80 }, () => randomBytes(64 * 1024 + 7));
      const whole = Buffer.concat(chunks);
      const info = await store.put(ns, 'big', Readable.from(chunks), { contentType: 'application/octet-stream', visibility: 'private' });
      assert.equal(info.size, whole.length);
      assert.equal(info.sha256, sha256Of(whole));
      assert.equal(sha256Of((await contentOf(ns, 'big'))!), info.sha256);
      const empty = await put(ns, 'empty', '');
      assert.equal(empty.size, 0);
      assert.equal((await contentOf(ns, 'empty'))?.length, 0);
    });

    test('names with folders, unicode and escape-like characters coexist and read back', async () => {
      const ns = namespace('names');
      const names = [
        'a',
        'a/b',
        'a/b/c',
        'a-c',
        'percent%2F%2e%2e',
        'tilde~',
        '~',
        'back\\slash\\..',
        '.hidden/.x',
        '..dots/x..',
        'spaces and #?&=+ symbols',
        'ünïcødé/ファイル.txt',
        'emoji/😀.png',
      ];
      for (const objectName of names) await put(ns, objectName, `content of ${objectName}`);
      for (const objectName of names) assert.equal((await contentOf(ns, objectName))?.toString(), `content of ${objectName}`, objectName);
      assert.deepEqual(await allNames(ns), [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
      await store.delete(ns, 'a');
      assert.equal((await contentOf(ns, 'a/b'))?.toString(), 'content of a/b', 'deleting "a" leaves "a/b"');
      await store.delete(ns, 'a/b/c');
      await store.delete(ns, 'a/b');
      assert.deepEqual(await allNames(ns, 'a'), ['a-c']);
    });

    test('invalid names are refused with 400 by every method', async () => {
      const ns = namespace('invalid');
      const invalid: [string, RegExp][] = [
        ['', /missing/],
        ['/etc/passwd', /starts with "\/"/],
        ['folder/', /ends with "\/"/],
        ['a//b', /"\/\/"/],
        ['../escape', /"\.\." part/],
        ['a/../../b', /"\.\." part/],
        ['./here', /"\." part/],
        ['.', /"\." part/],
        ['line\nbreak', /control characters/],
        ['nul\u0000', /control characters/],
        ['x'.repeat(1025), /1024-byte limit/],
        [`${'y'.repeat(241)}/z`, /at most 240 bytes/],
        ['lone\uD800surrogate', /surrogate/],
      ];
      for (const [objectName, detail] of invalid) {
        await rejectsWithStatus(put(ns, objectName, 'x'), 400, detail);
        await rejectsWithStatus(store.get(ns, objectName), 400, detail);
        await rejectsWithStatus(store.head(ns, objectName), 400, detail);
        await rejectsWithStatus(store.delete(ns, objectName), 400, detail);
      }
      assert.deepEqual(await allNames(ns), []);
    });

    test('list filters by prefix and orders by UTF-8 bytes', async () => {
      const ns = namespace('list');
      // U+FF5E sorts after U+1F600 in UTF-16 but before it in UTF-8, as S3 orders keys.
      const names = ['photos/2024/b.jpg', 'photos/2024/a.jpg', 'photos/cat.jpg', 'photos2', 'photo', 'z', '\uFF5E', '\u{1F600}'];
      for (const objectName of names) await put(ns, objectName, objectName);
      assert.deepEqual(await allNames(ns), ['photo', 'photos/2024/a.jpg', 'photos/2024/b.jpg', 'photos/cat.jpg', 'photos2', 'z', '\uFF5E', '\u{1F600}']);
      assert.deepEqual(await allNames(ns, 'photos/'), ['photos/2024/a.jpg', 'photos/2024/b.jpg', 'photos/cat.jpg']);
      assert.deepEqual(await allNames(ns, 'photos'), ['photos/2024/a.jpg', 'photos/2024/b.jpg', 'photos/cat.jpg', 'photos2']);
      assert.deepEqual(await allNames(ns, 'photos/2024/a'), ['photos/2024/a.jpg']);
      assert.deepEqual(await allNames(ns, 'nothing'), []);
      assert.deepEqual(await allNames(namespace('list-empty')), []);
      const listed = (await store.list(ns, { prefix: 'photos/cat', limit: 10 })).objects[0];
      assert.deepEqual(listed, await store.head(ns, 'photos/cat.jpg'), 'listed objects carry their full metadata');
    });

    test('paging visits every object once, in order, whatever the page size', async () => {
      const ns = namespace('paging');
      const names: string[] = [];
      for (const folder of ['a', 'a/b', 'c', '']) {
        for (let i = 0; i < 7; i++) names.push(`${folder ? `${folder}/` : ''}item-${i}`);
      }
      await Promise.all(names.map((objectName) => put(ns, objectName, objectName)));
      const expected = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      for (const limit of [1, 3, 7, 28, 100]) {
        const seen: string[] = [];
        let startAfter: string | undefined;
        let pages = 0;
        do {
          const page = await store.list(ns, { limit, startAfter });
          assert.ok(page.objects.length <= limit);
          seen.push(...page.objects.map((object) => object.name));
          startAfter = page.nextStartAfter;
          pages++;
        } while (startAfter !== undefined && pages < 100);
        assert.deepEqual(seen, expected, `limit ${limit}`);
      }
      const afterMiddle = await store.list(ns, { limit: 3, startAfter: 'a/b/item-3' });
      assert.deepEqual(afterMiddle.objects.map((object) => object.name), ['a/b/item-4', 'a/b/item-5', 'a/b/item-6']);
      const withPrefix = await store.list(ns, { prefix: 'a/', limit: 100, startAfter: 'a/b/item-6' });
      assert.deepEqual(withPrefix.objects.map((object) => object.name), expected.filter((n) => n.startsWith('a/item')));
    });

    test('ranges: first-last, first-, suffix, clamped, and unsatisfiable', async () => {
      const ns = namespace('ranges');
      await put(ns, 'digits', '0123456789');
      const ranged = await store.get(ns, 'digits', { first: 2, last: 4 });
      assert.deepEqual(ranged?.range, { first: 2, last: 4 });
      assert.equal((await readAll(ranged!.body)).toString(), '234');
      assert.equal((await contentOf(ns, 'digits', { first: 7 }))?.toString(), '789');
      assert.equal((await contentOf(ns, 'digits', { suffix: 3 }))?.toString(), '789');
      assert.equal((await contentOf(ns, 'digits', { suffix: 30 }))?.toString(), '0123456789');
      assert.equal((await contentOf(ns, 'digits', { first: 8, last: 100 }))?.toString(), '89');
      await assert.rejects(store.get(ns, 'digits', { first: 10 }), (error: unknown) => {
        assert.ok(error instanceof RangeNotSatisfiableError);
        assert.equal(error.status, 416);
        assert.equal(error.size, 10);
        return true;
      });
      await put(ns, 'empty', '');
      await assert.rejects(store.get(ns, 'empty', { suffix: 1 }), RangeNotSatisfiableError);
    });

    test('a body past maxBytes is refused with 413 and changes nothing', async () => {
      const ns = namespace('max-bytes');
      const original = await put(ns, 'limited', 'small');
      const chunks = Array.from({ length: 10 }, () => randomBytes(1000));
      await rejectsWithStatus(
        store.put(ns, 'limited', Readable.from(chunks), { contentType: 'x/y', visibility: 'public', maxBytes: 5000 }),
        413,
        /larger than 5000 bytes/,
      );
      await rejectsWithStatus(put(ns, 'limited', 'x', { maxBytes: 5000, expectedBytes: 6000 }), 413);
      await rejectsWithStatus(put(ns, 'never', Buffer.alloc(5001), { maxBytes: 5000 }), 413);
      assert.deepEqual(await store.head(ns, 'limited'), original);
      assert.equal((await contentOf(ns, 'limited'))?.toString(), 'small');
      assert.equal(await store.head(ns, 'never'), undefined);
      assert.ok(await put(ns, 'exact', Buffer.alloc(5000), { maxBytes: 5000 }));
    });

    test('a body shorter or longer than announced is refused and changes nothing', async () => {
      const ns = namespace('expected');
      const original = await put(ns, 'sized', 'original');
      await rejectsWithStatus(put(ns, 'sized', '12345', { expectedBytes: 10 }), 400, /ended after 5 of the 10 bytes/);
      await rejectsWithStatus(put(ns, 'sized', '12345', { expectedBytes: 3 }), 400, /longer than the 3 bytes/);
      assert.deepEqual(await store.head(ns, 'sized'), original);
      assert.equal((await put(ns, 'sized', '12345', { expectedBytes: 5 })).size, 5);
    });

    test('a body that fails half way leaves the previous object whole, or none', async () => {
      const ns = namespace('torn');
      const original = await put(ns, 'precious', 'the old content', { visibility: 'public' });
      const parts = Array.from({ length: 20 }, () => randomBytes(64 * 1024));
      await assert.rejects(
        store.put(ns, 'precious', failingBody(parts), { contentType: 'x/y', visibility: 'private' }),
        /connection reset/,
      );
      assert.deepEqual(await store.head(ns, 'precious'), original);
      assert.equal((await contentOf(ns, 'precious'))?.toString(), 'the old content');
      await assert.rejects(store.put(ns, 'fresh', failingBody(parts), { contentType: 'x/y', visibility: 'private' }), /connection reset/);
      assert.equal(await store.head(ns, 'fresh'), undefined);
      assert.deepEqual(await allNames(ns), ['precious']);
    });

    test('concurrent writers: the object ends up as one of them, whole', async () => {
      const ns = namespace('concurrent');
      const bodies = Array.from({ length: 6 }, () => randomBytes(256 * 1024));
      await Promise.all(bodies.map((body) => put(ns, 'contended', body)));
      const info = await store.head(ns, 'contended');
      const content = await contentOf(ns, 'contended');
      assert.ok(bodies.some((body) => body.equals(content!)), 'content is exactly one writer’s body');
      assert.equal(info?.sha256, sha256Of(content!), 'metadata belongs to the same write as the content');
    });

    test('a read that started before an overwrite finishes on the old version', async () => {
      const ns = namespace('snapshot');
      const oldBody = randomBytes(2 * 1024 * 1024);
      const old = await put(ns, 'moving', oldBody);
      const reading = await store.get(ns, 'moving');
      await put(ns, 'moving', 'replaced');
      await store.delete(ns, 'moving');
      assert.deepEqual(reading?.info, old);
      assert.ok((await readAll(reading!.body)).equals(oldBody));
    });

    test('namespaces never see each other', async () => {
      const first = namespace('iso-a');
      const second = namespace('iso-b');
      await put(first, 'shared', 'first');
      await put(second, 'shared', 'second');
      await put(first, 'only-first', 'x');
      assert.equal((await contentOf(first, 'shared'))?.toString(), 'first');
      assert.equal((await contentOf(second, 'shared'))?.toString(), 'second');
      assert.deepEqual(await allNames(second), ['shared']);
      assert.equal(await store.head(second, 'only-first'), undefined);
      assert.equal(await store.delete(second, 'only-first'), false);
      await store.delete(second, 'shared');
      assert.equal((await contentOf(first, 'shared'))?.toString(), 'first');
    });

    test('deleteProject removes every environment of that project only', async () => {
      const project = `proj-${run}`;
      await put(`${project}/dev`, 'a', '1');
      await put(`${project}/prod`, 'deep/b', '2');
      await put(`${project}0/dev`, 'a', 'neighbour');
      await store.deleteProject(project);
      assert.deepEqual(await allNames(`${project}/dev`), []);
      assert.deepEqual(await allNames(`${project}/prod`), []);
      assert.equal((await contentOf(`${project}0/dev`, 'a'))?.toString(), 'neighbour');
      await store.deleteProject(`never-${run}`); // a project without objects is fine
      const again: ObjectInfo = await put(`${project}/dev`, 'a', 'new life');
      assert.equal(again.size, 8, 'the project can store objects again');
    });

    test('projectBytes adds up the content of every environment of that project only', async () => {
      const project = `bytes-${run}`;
      assert.equal(await store.projectBytes(project), 0, 'a project without objects keeps nothing');
      await put(`${project}/dev`, 'a', '12345');
      await put(`${project}/prod`, 'deep/er/b', '1234567');
      await put(`${project}0/dev`, 'a', 'a neighbour is not counted');
      assert.equal(await store.projectBytes(project), 12);
      await put(`${project}/dev`, 'a', '1'); // replaced: counted at its new size
      assert.equal(await store.projectBytes(project), 8);
      await store.delete(`${project}/prod`, 'deep/er/b');
      assert.equal(await store.projectBytes(project), 1);
    });
  });
}
