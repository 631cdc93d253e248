import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AltoError } from '../../kit/errors.js';
import { openSqlite } from '../../store/sqlite/database.js';
import { SqliteUrlStore } from '../../store/urls/sqlite.js';
import { checkPublicUrl, idFromShortUrl, idOfRequest, parseDestination, ShortUrls } from './short-urls.js';

function rejects(run: () => unknown, status: number, detail: RegExp): void {
  assert.throws(run, (error: unknown) => error instanceof AltoError && error.status === status && detail.test(error.detail));
}

test('only absolute http and https destinations are accepted, in canonical form', () => {
  assert.equal(parseDestination('https://example.com'), 'https://example.com/');
  assert.equal(parseDestination('  http://Example.COM/a b?x=1#top '), 'http://example.com/a%20b?x=1#top');
  assert.equal(parseDestination('https://例え.jp/パス'), 'https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9');
  for (const refused of ['javascript:alert(1)', 'JavaScript:alert(1)', 'data:text/html,<b>x</b>', 'ftp://example.com/f', 'file:///etc/passwd', 'mailto:a@b.c']) {
    rejects(() => parseDestination(refused), 400, /only http and https URLs/);
  }
  for (const relative of ['/path', 'example.com/page', '//example.com/x', '', 'http://']) {
    rejects(() => parseDestination(relative), 400, /destinationURL: .* (is not an absolute URL|has no host)/);
  }
  rejects(() => parseDestination(`https://example.com/${'a'.repeat(9000)}`), 400, /the most is 8192/);
  // A header-splitting attempt cannot survive: href percent-encodes or drops control characters.
  assert.doesNotMatch(parseDestination('https://example.com/a\r\nSet-Cookie: x=1'), /[\r\n ]/);
});

test('ids come from the id field or from a short URL on any host', () => {
  assert.equal(idFromShortUrl('https://alto.example.com/u/abc123'), 'abc123');
  assert.equal(idFromShortUrl('http://127.0.0.1:4000/u/my-url/'), 'my-url');
  assert.equal(idFromShortUrl('https://example.com/alto/u/x.y~z_1'), 'x.y~z_1');
  rejects(() => idFromShortUrl('abc123'), 400, /shortURL: "abc123" is not a URL/);
  rejects(() => idFromShortUrl('https://alto.example.com/v/abc'), 400, /is not a short URL/);
  assert.equal(idOfRequest({ id: 'launch' }), 'launch');
  assert.equal(idOfRequest({ shortURL: 'http://h/u/launch' }), 'launch');
  assert.equal(idOfRequest({ id: 'launch', shortURL: 'http://h/u/launch' }), 'launch');
  rejects(() => idOfRequest({ id: 'a', shortURL: 'http://h/u/b' }), 400, /name different short URLs/);
  rejects(() => idOfRequest({}), 400, /give the id or the shortURL/);
  rejects(() => idOfRequest({ id: 'has space' }), 400, /not a valid short id/);
  rejects(() => idOfRequest({ id: '-leading' }), 400, /not a valid short id/);
});

test('ALTO_PUBLIC_URL must be an http(s) URL and loses its trailing slash', () => {
  assert.equal(checkPublicUrl(undefined), undefined);
  assert.equal(checkPublicUrl(''), undefined);
  assert.equal(checkPublicUrl('https://go.example.com/'), 'https://go.example.com');
  assert.equal(checkPublicUrl('https://example.com/alto/'), 'https://example.com/alto');
  assert.throws(() => checkPublicUrl('go.example.com'), /ALTO_PUBLIC_URL="go.example.com" is not a URL/);
  assert.throws(() => checkPublicUrl('ftp://go.example.com'), /must be an http or https URL/);
});

test('short URLs use ALTO_PUBLIC_URL, else the caller origin', async () => {
  const store = new SqliteUrlStore(openSqlite(':memory:'));
  const fromOrigin = new ShortUrls(store, undefined);
  assert.equal(fromOrigin.shortUrlOf('abc', 'http://127.0.0.1:8080'), 'http://127.0.0.1:8080/u/abc');
  assert.equal(fromOrigin.shortUrlOf('abc', undefined), 'http://localhost/u/abc');
  const fromConfig = new ShortUrls(store, 'https://go.example.com');
  assert.equal(fromConfig.shortUrlOf('abc', 'http://127.0.0.1:8080'), 'https://go.example.com/u/abc');
});

test('custom ids: a conflict in this project and in another say so differently', async () => {
  const urls = new ShortUrls(new SqliteUrlStore(openSqlite(':memory:')), undefined);
  await urls.create('a/production', 'launch', 'https://example.com/', false);
  await assert.rejects(urls.create('a/production', 'launch', 'https://example.com/', false), /already exists in this project/);
  await assert.rejects(urls.create('b/production', 'launch', 'https://example.com/', false), /is taken; short ids are shared/);
  const generated = await urls.create('a/production', undefined, 'https://example.com/x', true);
  assert.match(generated.id, /^[0-9A-Za-z]{8}$/);
  assert.equal(generated.permanent, true);
});

test('Shorten retries when a random id is taken', async () => {
  const store = new SqliteUrlStore(openSqlite(':memory:'));
  let refusals = 2;
  const insert = store.insert.bind(store);
  store.insert = async (namespace, url) => (refusals-- > 0 ? false : insert(namespace, url));
  const urls = new ShortUrls(store, undefined);
  const created = await urls.shorten('a/production', 'https://example.com/', false);
  assert.equal(refusals, -1);
  assert.equal((await store.get('a/production', created.id))?.destination, 'https://example.com/');
});

test('Update needs something to change and a URL that exists', async () => {
  const urls = new ShortUrls(new SqliteUrlStore(openSqlite(':memory:')), undefined, () => 1_000);
  await urls.create('a/production', 'launch', 'https://example.com/', false);
  await assert.rejects(urls.update('a/production', 'launch', {}), /give the new destination/);
  await assert.rejects(urls.update('a/production', 'launch', { destinationURL: 'javascript:void(0)' }), /only http and https/);
  await assert.rejects(urls.update('b/production', 'launch', { permanent: true }), /no short URL with id "launch" in this project/);
  const updated = await urls.update('a/production', 'launch', { permanent: true });
  assert.equal(updated.permanent, true);
  assert.equal(updated.destination, 'https://example.com/');
});
