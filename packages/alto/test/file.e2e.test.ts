/**
 * The file block through the real server: Save, Read, List and Delete over HTTP and through
 * M3O's client; folder listing and paging; public permalinks and private files; the limits of
 * a small text file; project deletion.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import { startInProcess } from './harness.js';

let alto: Awaited<ReturnType<typeof startInProcess>>;
let key: string;
let otherKey: string;

before(async () => {
  alto = await startInProcess();
  key = await alto.projectKey('site', ['file']);
  otherKey = await alto.projectKey('elsewhere', ['file']);
});
after(() => alto.close());

const file = (endpoint: string, body: unknown, as: string | null = key) => alto.call('file', endpoint, body, as);

test('Save, Read, overwrite and Delete a file', async () => {
  const saved = await file('Save', { file: { project: 'blog', path: '/posts/hello.md', content: '# Hello', metadata: { author: 'ada' } } });
  assert.equal(saved.status, 200, JSON.stringify(saved.body));
  assert.deepEqual(saved.body, { url: '' }, 'a private file has no permalink');

  const read = await file('Read', { project: 'blog', path: '/posts/hello.md' });
  assert.equal(read.status, 200);
  const record = read.body.file;
  assert.deepEqual(
    { ...record, created: undefined, updated: undefined },
    { project: 'blog', path: '/posts/hello.md', content: '# Hello', metadata: { author: 'ada' }, public: false, created: undefined, updated: undefined },
  );
  assert.ok(!Number.isNaN(Date.parse(record.created)) && record.created === record.updated);

  const withoutSlash = await file('Read', { project: 'blog', path: 'posts/hello.md' });
  assert.equal(withoutSlash.body.file.content, '# Hello', 'a path without its leading "/" names the same file');

  await file('Save', { file: { project: 'blog', path: 'posts/hello.md', content: '# Hello again', created: '1999-01-01T00:00:00Z' } });
  const overwritten = (await file('Read', { project: 'blog', path: '/posts/hello.md' })).body.file;
  assert.equal(overwritten.content, '# Hello again');
  assert.deepEqual(overwritten.metadata, {}, 'a save replaces the metadata');
  assert.equal(overwritten.created, record.created, 'the server keeps the creation time; a sent one is ignored');
  assert.ok(Date.parse(overwritten.updated) >= Date.parse(record.updated));

  assert.equal((await file('Read', { project: 'other-blog', path: '/posts/hello.md' })).status, 404, 'projects are separate');
  assert.equal((await file('Read', { project: 'blog', path: '/posts/hello.md' }, otherKey)).status, 404, 'Alto projects are separate');

  assert.deepEqual((await file('Delete', { project: 'blog', path: '/posts/hello.md' })).body, {});
  const gone = await file('Read', { project: 'blog', path: '/posts/hello.md' });
  assert.equal(gone.status, 404);
  assert.match(gone.body.detail, /"\/posts\/hello\.md" does not exist in project "blog"/);
  assert.equal((await file('Delete', { project: 'blog', path: '/posts/hello.md' })).status, 200, 'deleting a missing file succeeds');
});

test('List a folder: default "/" lists everything, sorted by path, with contents; pages with limit', async () => {
  const paths = ['/docs/b.md', '/docs/a.md', '/docs/api/c.md', '/docs-old/d.md', '/readme.md'];
  for (const path of paths) await file('Save', { file: { project: 'manual', path, content: `text of ${path}` } });
  await file('Save', { file: { project: 'other', path: '/docs/x.md', content: 'other project' } });

  const all = await file('List', { project: 'manual' });
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.files.map((record: { path: string }) => record.path), ['/docs-old/d.md', '/docs/a.md', '/docs/api/c.md', '/docs/b.md', '/readme.md']);
  assert.equal(all.body.files[0].content, 'text of /docs-old/d.md');
  assert.equal(all.body.nextStartAfter, '');

  for (const folder of ['/docs', '/docs/', 'docs']) {
    const docs = await file('List', { project: 'manual', path: folder });
    assert.deepEqual(docs.body.files.map((record: { path: string }) => record.path), ['/docs/a.md', '/docs/api/c.md', '/docs/b.md'], folder);
  }
  assert.deepEqual((await file('List', { project: 'manual', path: '/nothing' })).body.files, []);

  const seen: string[] = [];
  let startAfter = '';
  do {
    const page = await file('List', { project: 'manual', limit: 2, startAfter });
    assert.ok(page.body.files.length <= 2);
    seen.push(...page.body.files.map((record: { path: string }) => record.path));
    startAfter = page.body.nextStartAfter;
  } while (startAfter !== '');
  assert.deepEqual(seen, all.body.files.map((record: { path: string }) => record.path));

  const missingProject = await file('List', {});
  assert.equal(missingProject.status, 400);
  assert.match(missingProject.body.detail, /project/);
});

test('a public file is served at its permalink without a key; a private one only with a key', async () => {
  const saved = await file('Save', { file: { project: 'web', path: '/notes/public.txt', content: '<b>hello</b>' }, public: true });
  const permalink: string = saved.body.url;
  assert.match(permalink, new RegExp(`^${alto.url}/files/[0-9a-f-]{36}/dev/web/notes/public\\.txt$`));
  const served = await fetch(permalink);
  assert.equal(served.status, 200);
  assert.equal(await served.text(), '<b>hello</b>');
  assert.equal(served.headers.get('content-type'), 'text/plain; charset=utf-8', 'always plain text, never a page of this origin');
  assert.equal(served.headers.get('content-security-policy'), 'sandbox');
  assert.equal(served.headers.get('x-content-type-options'), 'nosniff');
  assert.equal((await file('Read', { project: 'web', path: '/notes/public.txt' })).body.file.public, true);
  const etag = served.headers.get('etag')!;
  assert.equal((await fetch(permalink, { headers: { 'if-none-match': etag } })).status, 304);

  await file('Save', { file: { project: 'web', path: '/notes/public.txt', content: 'now private' } });
  const hidden = await fetch(permalink);
  assert.equal(hidden.status, 404, 'saved again without public: private again');
  const never = await fetch(permalink.replace('public.txt', 'never-saved.txt'));
  assert.equal((await hidden.json()).detail, (await never.json()).detail, 'a private file answers as a missing one');
  const withKey = await fetch(permalink, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(withKey.status, 200);
  assert.equal(await withKey.text(), 'now private');
  assert.equal((await fetch(permalink, { headers: { authorization: `Bearer ${otherKey}` } })).status, 403);

  const odd = await file('Save', { file: { project: 'web site', path: '/ünï côdé/a b#c?.txt', content: 'odd' }, public: true });
  assert.equal(await (await fetch(odd.body.url)).text(), 'odd', 'names that need escaping still make working permalinks');
});

test('paths, projects, content and metadata are checked with a 400 or 413 that says what is wrong', async () => {
  const save = (changes: Record<string, unknown>) =>
    file('Save', { file: { project: 'checks', path: '/ok.txt', content: 'x', ...changes } });
  const cases: [Record<string, unknown>, number, RegExp][] = [
    [{ path: '/' }, 400, /path: missing/],
    [{ path: '' }, 400, /path: missing/],
    [{ path: '/docs/' }, 400, /ends with "\/"/],
    [{ path: '/a//b' }, 400, /"\/\/"/],
    [{ path: '/../etc/passwd' }, 400, /"\.\." part/],
    [{ path: '/a/./b' }, 400, /"\." part/],
    [{ path: `/${'p'.repeat(1024)}` }, 400, /1024-byte limit/],
    [{ path: '/line\nbreak' }, 400, /control characters/],
    [{ project: '' }, 400, /project: missing/],
    [{ project: 'a/b' }, 400, /may not contain "\/"/],
    [{ content: 'x'.repeat(1024 * 1024 + 1) }, 413, /1048577 bytes is more than the 1048576 bytes of a file; .*space block/],
    [{ content: 'nul\u0000byte' }, 400, /^file\.content: text may not hold a NUL character .*base64/],
    [{ metadata: { k: 1 } }, 400, /metadata values are text/],
    [{ metadata: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }, 400, /65 entries is more than 64/],
  ];
  for (const [changes, status, detail] of cases) {
    const answer = await save(changes);
    assert.equal(answer.status, status, JSON.stringify(changes).slice(0, 80));
    assert.match(answer.body.detail, detail, JSON.stringify(changes).slice(0, 80));
  }
  assert.equal((await file('Save', { public: true })).status, 400, 'a Save without a file');
  assert.equal((await file('Read', { project: 'checks', path: '/../x' })).status, 400);
  assert.equal((await file('Delete', { project: 'checks', path: '/' })).status, 400);
  assert.equal((await save({ content: 'x'.repeat(1024 * 1024) })).status, 200, 'exactly 1 MiB fits');
  assert.equal((await file('List', { project: 'checks', path: '/../' })).status, 400);
});

test('deleting a project deletes its files and only its files', async () => {
  const doomedKey = await alto.projectKey('doomed-files', ['file']);
  const saved = await file('Save', { file: { project: 'p', path: '/a.txt', content: 'bye' }, public: true }, doomedKey);
  await file('Save', { file: { project: 'p', path: '/a.txt', content: 'stays' } });
  assert.equal((await fetch(saved.body.url)).status, 200);
  assert.equal((await alto.call('projects', 'Delete', { name: 'doomed-files' })).status, 200);
  assert.equal((await fetch(saved.body.url)).status, 404);
  assert.equal((await file('Read', { project: 'p', path: '/a.txt' })).body.file.content, 'stays');
});

test('M3O’s JS client drives file', async () => {
  const client = new Client({ token: key, address: `${alto.url}/` });
  const saved = await client.call<object, { url: string }>('file', 'Save', {
    file: { project: 'm3o', path: '/documents/text-files/file.txt', content: 'from m3o', metadata: { a: 'b' } },
    public: true,
  });
  assert.equal(await (await fetch(saved.url)).text(), 'from m3o');
  const read = await client.call<object, { file: { content: string; metadata: Record<string, string> } }>('file', 'Read', {
    project: 'm3o',
    path: '/documents/text-files/file.txt',
  });
  assert.equal(read.file.content, 'from m3o');
  assert.deepEqual(read.file.metadata, { a: 'b' });
  const listed = await client.call<object, { files: { path: string }[] }>('file', 'List', { project: 'm3o', path: '/documents' });
  assert.deepEqual(listed.files.map((record) => record.path), ['/documents/text-files/file.txt']);
  await client.call('file', 'Delete', { project: 'm3o', path: '/documents/text-files/file.txt' });
  const missing = await client.call('file', 'Read', { project: 'm3o', path: '/documents/text-files/file.txt' }).then(
    () => assert.fail('expected a 404'),
    (error: { code: number; id: string }) => error,
  );
  assert.equal(missing.code, 404);
  assert.equal(missing.id, 'not_found');
});
