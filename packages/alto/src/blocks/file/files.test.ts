import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { SqliteFileStore } from '../../store/files/sqlite.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { DEFAULT_FILE_LIMITS, Files } from './files.js';

function files(limits = DEFAULT_FILE_LIMITS): Files {
  return new Files(new SqliteFileStore(openSqlite(':memory:')), undefined, limits, () => 1_700_000_000_000);
}

function throws400(action: () => unknown, detail: RegExp): void {
  assert.throws(action, (error: unknown) => isAltoError(error) && error.status === 400 && detail.test(error.detail));
}

test('file paths are made canonical or refused', () => {
  const block = files();
  assert.equal(block.filePath('/docs/a.md'), '/docs/a.md');
  assert.equal(block.filePath('docs/a.md'), '/docs/a.md');
  assert.equal(block.filePath('/ünï côdé/a b.txt'), '/ünï côdé/a b.txt');
  throws400(() => block.filePath('/'), /missing/);
  throws400(() => block.filePath('/docs/'), /ends with/);
  throws400(() => block.filePath('//x'), /"\/\/"/);
  throws400(() => block.filePath('/a/../b'), /"\.\." part/);
  throws400(() => block.filePath('..'), /"\.\." part/);
  throws400(() => block.filePath('/a\u0000'), /control characters/);
});

test('folders become the prefix of the paths inside them', () => {
  const block = files();
  assert.equal(block.folderPrefix(''), '/');
  assert.equal(block.folderPrefix('/'), '/');
  assert.equal(block.folderPrefix('/docs'), '/docs/');
  assert.equal(block.folderPrefix('/docs/'), '/docs/');
  assert.equal(block.folderPrefix('docs//'), '/docs/');
  throws400(() => block.folderPrefix('/docs/../etc'), /"\.\." part/);
});

test('a List page stops at the content budget, always holding at least one file, and pages on', async () => {
  const block = files({ ...DEFAULT_FILE_LIMITS, listContentBudgetBytes: 250 });
  const ns = 'p/dev';
  for (let i = 0; i < 10; i++) await block.save(ns, { project: 'x', path: `/f${i}`, content: 'y'.repeat(100), metadata: {} }, false);
  await block.save(ns, { project: 'x', path: '/huge', content: 'z'.repeat(1000), metadata: {} }, false);
  const seen: string[][] = [];
  let startAfter = '';
  do {
    const page = await block.list(ns, 'x', '/', 1000, startAfter);
    seen.push(page.files.map((record) => record.path));
    startAfter = page.nextStartAfter;
  } while (startAfter !== '');
  assert.deepEqual(seen, [['/f0', '/f1'], ['/f2', '/f3'], ['/f4', '/f5'], ['/f6', '/f7'], ['/f8', '/f9'], ['/huge']]);
});

test('a List page of exactly `limit` files says whether more follow', async () => {
  const block = files();
  for (let i = 0; i < 120; i++) await block.save('p/dev', { project: 'x', path: `/f${String(i).padStart(3, '0')}`, content: '', metadata: {} }, false);
  const full = await block.list('p/dev', 'x', '/', 120, '');
  assert.equal(full.files.length, 120);
  assert.equal(full.nextStartAfter, '', 'all of them: no next page');
  const partial = await block.list('p/dev', 'x', '/', 100, '');
  assert.equal(partial.files.length, 100);
  assert.equal(partial.nextStartAfter, '/f099');
  const rest = await block.list('p/dev', 'x', '/', 100, partial.nextStartAfter);
  assert.deepEqual([rest.files.length, rest.nextStartAfter], [20, '']);
});
