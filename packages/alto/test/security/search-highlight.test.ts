/**
 * Search highlights through the real server: the document's own HTML comes back escaped, only
 * the marks Alto adds (`<em>…</em>`) are markup. Neighbours: a script tag, an attribute with
 * quotes, an entity, and a document that spells `<em>` itself.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { highlightHtml, MARK_END, MARK_START } from '../../src/store/search/port.js';
import { startInProcess } from '../harness.js';

let alto: Awaited<ReturnType<typeof startInProcess>>;
let key: string;

before(async () => {
  alto = await startInProcess();
  key = await alto.projectKey('highlights', ['search']);
});
after(() => alto.close());

test('the document text is escaped in highlights, the marks are not', async () => {
  assert.equal((await alto.call('search', 'CreateIndex', { index: 'pages' }, key)).status, 200);
  const hostile = `coffee <script>alert(1)</script> <img src=x onerror="steal()"> &amp; <em>fake</em> 'quoted'`;
  const indexed = await alto.call('search', 'Index', { index: 'pages', id: 'p1', data: { body: hostile } }, key);
  assert.equal(indexed.status, 200, JSON.stringify(indexed.body));
  const found = await alto.call('search', 'Search', { index: 'pages', query: 'coffee' }, key);
  assert.equal(found.status, 200, JSON.stringify(found.body));
  const [highlight] = found.body.records[0].highlights as string[];
  assert.match(highlight, /<em>coffee<\/em>/);
  assert.ok(!highlight.includes('<script>') && !highlight.includes('<img'), highlight);
  assert.ok(highlight.includes('&#60;script&#62;'), highlight);
  assert.ok(highlight.includes('&#38;amp;'), 'an entity in the text is shown as typed');
  assert.equal(highlight.match(/<em>/g)?.length, 1, 'a <em> in the document is text, not a mark');
  assert.ok(!highlight.includes('"') && !highlight.includes("'"), 'quotes are escaped');
});

test('highlightHtml escapes everything but the marks', () => {
  assert.equal(highlightHtml(`a<b>&"'${MARK_START}tea${MARK_END}`), 'a&#60;b&#62;&#38;&#34;&#39;<em>tea</em>');
});
