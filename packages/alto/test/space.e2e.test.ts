/**
 * The space block through the real server: every endpoint over HTTP and through M3O's client;
 * public objects at a stable URL, private ones only with a key or a presigned URL; tampered and
 * expired signatures refused; name validation and the inline limit; project deletion. Then, with
 * Alto as its own process: a 1 GiB object up and down through presigned URLs while the server's
 * resident memory stays flat, and a server killed mid-upload that keeps the previous object.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import { startInProcess, startProcess, temporaryDataDir } from './harness.js';

const base64 = (text: string | Buffer) => Buffer.from(text).toString('base64');

/** Polls an async condition (for things only time brings, like an expiry) until it holds. */
async function eventually(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function errorOf(response: Response): Promise<{ code: number; id: string; detail: string }> {
  return (await response.json()) as { code: number; id: string; detail: string };
}

/** Sends a PUT with a streamed body; resolves with the answer, or rejects when the connection breaks. */
function put(url: string, body: Readable, headers: Record<string, string | number>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: 'PUT', headers }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
      response.on('error', reject);
    });
    request.on('error', reject);
    pipeline(body, request).catch(reject);
  });
}

/** GETs a URL and hashes the body as it streams; never holds it. */
function getHashed(url: string): Promise<{ status: number; bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: 'GET' }, (response: IncomingMessage) => {
      const hash = createHash('sha256');
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, bytes, sha256: hash.digest('hex') }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

/**
 * `size` bytes of varied content made on the fly, 1 MiB at a time, hashed as they go: neither
 * the test nor the server ever holds the whole body.
 */
function generatedBody(size: number, pace?: () => Promise<void>): { body: Readable; sha256: () => string } {
  const block = randomBytes(1024 * 1024);
  const hash = createHash('sha256');
  let sent = 0;
  let counter = 0;
  const body = Readable.from(
    (async function* () {
      while (sent < size) {
        const chunk = Buffer.from(block.subarray(0, Math.min(block.length, size - sent)));
        chunk.writeUInt32BE(counter++, 0); // every mebibyte differs from the last
        sent += chunk.length;
        hash.update(chunk);
        if (pace) await pace();
        yield chunk;
      }
    })(),
  );
  return { body, sha256: () => hash.digest('hex') };
}

/** Resident memory of a process in bytes, from /proc. */
function residentBytesOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}

describe('space over HTTP (in process)', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let key: string;
  let otherKey: string;
  let idOnlyKey: string;

  before(async () => {
    alto = await startInProcess();
    key = await alto.projectKey('media', ['space']);
    otherKey = await alto.projectKey('other', ['space']);
    idOnlyKey = await alto.projectKey('media', ['id']);
  });
  after(() => alto.close());

  const space = (endpoint: string, body: unknown, as: string | null = key) => alto.call('space', endpoint, body, as);

  /** The stable URL of an object of the `media` project, public or not. */
  async function stableUrlOf(name: string): Promise<string> {
    const signed = await space('Download', { name });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const url = new URL(signed.body.url);
    return `${url.origin}${url.pathname}`;
  }

  test('Create, Read, Head, Update and Delete an object', async () => {
    const created = await space('Create', { name: 'docs/hello.txt', object: base64('hello, world') });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.deepEqual(created.body, { url: '' }, 'a private object has no public URL');

    const again = await space('Create', { name: 'docs/hello.txt', object: base64('other') });
    assert.equal(again.status, 409);
    assert.match(again.body.detail, /already exists; use Update/);

    const read = await space('Read', { name: 'docs/hello.txt' });
    assert.equal(read.status, 200);
    const object = read.body.object;
    assert.equal(Buffer.from(object.data, 'base64').toString(), 'hello, world');
    assert.equal(object.name, 'docs/hello.txt');
    assert.equal(object.visibility, 'private');
    assert.equal(object.url, '');
    assert.equal(object.size, 12);
    assert.equal(object.contentType, 'text/plain; charset=utf-8');
    assert.equal(object.sha256, createHash('sha256').update('hello, world').digest('hex'));
    assert.ok(!Number.isNaN(Date.parse(object.created)) && object.created === object.modified);

    const head = await space('Head', { name: 'docs/hello.txt' });
    const { data: _data, ...withoutData } = object;
    assert.deepEqual(head.body, { object: withoutData });

    const updated = await space('Update', { name: 'docs/hello.txt', object: base64('{"v":2}'), visibility: 'public', contentType: 'application/json' });
    assert.equal(updated.status, 200);
    assert.match(updated.body.url, new RegExp(`^${alto.url}/space/[0-9a-f-]{36}/dev/docs/hello\\.txt$`));
    const afterUpdate = (await space('Head', { name: 'docs/hello.txt' })).body.object;
    assert.equal(afterUpdate.created, object.created, 'an update keeps the creation time');
    assert.ok(Date.parse(afterUpdate.modified) >= Date.parse(object.modified));
    assert.equal(afterUpdate.visibility, 'public');
    assert.equal(afterUpdate.contentType, 'application/json');
    assert.equal(afterUpdate.url, updated.body.url);

    const upserted = await space('Update', { name: 'docs/new.txt', object: base64('made by Update') });
    assert.equal(upserted.status, 200, 'Update creates a missing object');
    assert.equal(Buffer.from((await space('Read', { name: 'docs/new.txt' })).body.object.data, 'base64').toString(), 'made by Update');

    assert.deepEqual((await space('Delete', { name: 'docs/hello.txt' })).body, {});
    const gone = await space('Read', { name: 'docs/hello.txt' });
    assert.equal(gone.status, 404);
    assert.match(gone.body.detail, /"docs\/hello\.txt" does not exist/);
    assert.equal((await space('Head', { name: 'docs/hello.txt' })).status, 404);
    assert.equal((await space('Delete', { name: 'docs/hello.txt' })).status, 200, 'deleting a missing object succeeds');
    assert.equal((await fetch(updated.body.url)).status, 404, 'the public URL is gone too');
  });

  test('List filters by prefix, sorts by name and pages', async () => {
    const names = ['photos/2024/b.jpg', 'photos/2024/a.jpg', 'photos/cat.png', 'photos2/x', 'readme.md'];
    for (const name of names) {
      const created = await space('Create', { name: `list/${name}`, object: base64(name), visibility: name === 'photos/cat.png' ? 'public' : 'private' });
      assert.equal(created.status, 200, JSON.stringify(created.body));
    }
    const photos = await space('List', { prefix: 'list/photos/' });
    assert.deepEqual(photos.body.objects.map((object: { name: string }) => object.name), ['list/photos/2024/a.jpg', 'list/photos/2024/b.jpg', 'list/photos/cat.png']);
    assert.equal(photos.body.nextStartAfter, '');
    const cat = photos.body.objects[2];
    assert.equal(cat.visibility, 'public');
    assert.match(cat.url, /\/list\/photos\/cat\.png$/);
    assert.equal(cat.contentType, 'image/png');
    assert.equal(photos.body.objects[0].url, '');

    const seen: string[] = [];
    let startAfter = '';
    do {
      const page = await space('List', { prefix: 'list/', limit: 2, startAfter });
      assert.ok(page.body.objects.length <= 2);
      seen.push(...page.body.objects.map((object: { name: string }) => object.name));
      startAfter = page.body.nextStartAfter;
    } while (startAfter !== '');
    assert.deepEqual(seen, names.map((name) => `list/${name}`).sort());
    assert.equal((await space('List', { limit: 0 })).status, 400);
    assert.equal((await space('List', {}, otherKey)).body.objects.length, 0, 'another project sees none of them');
  });

  test('public objects are served at a stable URL without a key; private ones only with a key', async () => {
    const page = '<h1>hello</h1><script>alert(1)</script>';
    const created = await space('Create', { name: 'site/index.html', object: base64(page), visibility: 'public' });
    const publicUrl: string = created.body.url;
    const served = await fetch(publicUrl);
    assert.equal(served.status, 200);
    assert.equal(await served.text(), page);
    assert.equal(served.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(served.headers.get('content-security-policy'), 'sandbox', 'stored HTML cannot run as this origin');
    assert.equal(served.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(served.headers.get('cache-control'), 'public, no-cache');
    assert.equal(served.headers.get('access-control-allow-origin'), '*');
    const etag = served.headers.get('etag')!;
    assert.match(etag, /^"[0-9a-f]{64}"$/);

    const head = await fetch(publicUrl, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(page)));
    assert.equal(await head.text(), '');
    assert.equal((await fetch(publicUrl, { headers: { 'if-none-match': etag } })).status, 304);

    const ranged = await fetch(publicUrl, { headers: { range: 'bytes=4-8' } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get('content-range'), `bytes 4-8/${Buffer.byteLength(page)}`);
    assert.equal(await ranged.text(), 'hello');
    assert.equal(await (await fetch(publicUrl, { headers: { range: 'bytes=-9' } })).text(), '</script>');
    const outside = await fetch(publicUrl, { headers: { range: 'bytes=1000-' } });
    assert.equal(outside.status, 416);
    assert.equal(outside.headers.get('content-range'), `bytes */${Buffer.byteLength(page)}`);

    const preflight = await fetch(publicUrl, { method: 'OPTIONS' });
    assert.equal(preflight.status, 204);
    assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /PUT/);

    await space('Create', { name: 'private/secret.txt', object: base64('top secret') });
    const privateUrl = await stableUrlOf('private/secret.txt');
    const anonymous = await fetch(privateUrl);
    assert.equal(anonymous.status, 404);
    const missing = await fetch(privateUrl.replace('secret.txt', 'no-such-object.txt'));
    assert.equal(missing.status, 404);
    assert.equal((await errorOf(anonymous)).detail, (await errorOf(missing)).detail, 'a private object answers as a missing one');

    const withKey = await fetch(privateUrl, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(withKey.status, 200);
    assert.equal(await withKey.text(), 'top secret');
    assert.equal(withKey.headers.get('cache-control'), 'private, no-cache');
    const otherProject = await fetch(privateUrl, { headers: { authorization: `Bearer ${otherKey}` } });
    assert.equal(otherProject.status, 403);
    assert.match((await errorOf(otherProject)).detail, /another project/);
    const wrongScope = await fetch(privateUrl, { headers: { authorization: `Bearer ${idOnlyKey}` } });
    assert.equal(wrongScope.status, 403);
    assert.match((await errorOf(wrongScope)).detail, /may not use the "space" service/);
    assert.equal((await fetch(privateUrl, { headers: { authorization: 'Bearer alto_nope' } })).status, 401);

    await space('Update', { name: 'private/secret.txt', object: base64('top secret'), visibility: 'public' });
    assert.equal((await fetch(privateUrl)).status, 200, 'made public, the same URL answers without a key');
    await space('Update', { name: 'private/secret.txt', object: base64('top secret') });
    assert.equal((await fetch(privateUrl)).status, 404, 'an Update without visibility makes it private again, as in M3O');
  });

  test('Download: a presigned URL that works without a key, refused when tampered with or expired', async () => {
    await space('Create', { name: 'reports/q1.csv', object: base64('a,b\n1,2\n') });
    await space('Create', { name: 'reports/q2.csv', object: base64('other') });
    const download = await space('Download', { name: 'reports/q1.csv' });
    assert.equal(download.status, 200);
    const expiresIn = (Date.parse(download.body.expires) - Date.now()) / 1000;
    assert.ok(expiresIn > 3500 && expiresIn <= 3600, `one hour by default, got ${expiresIn}s`);
    const url = new URL(download.body.url);
    assert.match(url.search, /^\?expires=\d+&signature=[\w-]{43}$/);

    const fetched = await fetch(url);
    assert.equal(fetched.status, 200);
    assert.equal(await fetched.text(), 'a,b\n1,2\n');
    assert.equal((await fetch(url, { method: 'HEAD' })).status, 200);

    const tampered = (change: (copy: URL) => void) => {
      const copy = new URL(url);
      change(copy);
      return fetch(copy);
    };
    const signature = url.searchParams.get('signature')!;
    const cases: [string, (copy: URL) => void][] = [
      ['signature', (copy) => copy.searchParams.set('signature', (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1))],
      ['expiry', (copy) => copy.searchParams.set('expires', String(Number(url.searchParams.get('expires')) + 3600))],
      ['name', (copy) => (copy.pathname = copy.pathname.replace('q1.csv', 'q2.csv'))],
      ['namespace', (copy) => (copy.pathname = copy.pathname.replace('/dev/', '/prod/'))],
    ];
    for (const [what, change] of cases) {
      const refused = await tampered(change);
      assert.equal(refused.status, 403, `changed ${what}`);
      assert.match((await errorOf(refused)).detail, /signature does not match/, `changed ${what}`);
    }
    const asUpload = await fetch(url, { method: 'PUT', body: 'overwrite attempt' });
    assert.equal(asUpload.status, 403, 'a download URL cannot upload');
    assert.equal(Buffer.from((await space('Read', { name: 'reports/q1.csv' })).body.object.data, 'base64').toString(), 'a,b\n1,2\n');

    const shortLived = await space('Download', { name: 'reports/q1.csv', expiresIn: 1 });
    assert.equal((await fetch(shortLived.body.url)).status, 200, 'valid before it expires');
    await eventually(async () => (await fetch(shortLived.body.url)).status === 403, 'the URL to expire');
    const expired = await fetch(shortLived.body.url);
    assert.match((await errorOf(expired)).detail, /expired at .*space\/Download/);

    assert.equal((await space('Download', { name: 'reports/none.csv' })).status, 404);
    assert.equal((await space('Download', { name: 'reports/q1.csv', expiresIn: 0 })).status, 400);
    assert.equal((await space('Download', { name: 'reports/q1.csv', expiresIn: 8 * 24 * 3600 })).status, 400);
  });

  test('Upload: a presigned PUT URL stores the body with the visibility it was signed for', async () => {
    const upload = await space('Upload', { name: 'uploads/data.bin', visibility: 'public' });
    assert.equal(upload.status, 200);
    const url = new URL(upload.body.url);
    assert.equal(url.searchParams.get('visibility'), 'public');
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const stored = await fetch(url, { method: 'PUT', body, headers: { 'content-type': 'application/x-test' } });
    assert.equal(stored.status, 200);
    const description = await stored.json();
    assert.equal(description.size, body.length);
    assert.equal(description.sha256, createHash('sha256').update(body).digest('hex'));
    assert.equal(description.visibility, 'public');
    assert.equal(description.contentType, 'application/x-test');
    assert.equal(stored.headers.get('etag'), `"${description.sha256}"`);
    const served = await fetch(description.url);
    assert.ok(Buffer.from(await served.arrayBuffer()).equals(body), 'the public URL serves the uploaded bytes');
    assert.equal((await space('Head', { name: 'uploads/data.bin' })).body.object.sha256, description.sha256);

    const privateUpload = new URL((await space('Upload', { name: 'uploads/private.bin' })).body.url);
    assert.equal(privateUpload.searchParams.get('visibility'), 'private');
    privateUpload.searchParams.set('visibility', 'public');
    const escalated = await fetch(privateUpload, { method: 'PUT', body: 'x' });
    assert.equal(escalated.status, 403, 'the visibility is part of the signature');
    const downloadUrl = (await space('Download', { name: 'uploads/data.bin' })).body.url;
    assert.equal((await fetch(downloadUrl, { method: 'PUT', body: 'x' })).status, 403, 'a download URL does not upload');

    const shortLived = (await space('Upload', { name: 'uploads/late.bin', expiresIn: 1 })).body.url;
    assert.equal((await fetch(shortLived, { method: 'PUT', body: 'in time' })).status, 200, 'valid before it expires');
    await eventually(async () => (await fetch(shortLived, { method: 'PUT', body: 'in time' })).status === 403, 'the upload URL to expire');
    const expired = await fetch(shortLived, { method: 'PUT', body: 'too late' });
    assert.match((await errorOf(expired)).detail, /expired at .*space\/Upload/);
    assert.equal((await space('Head', { name: 'uploads/late.bin' })).body.object.size, 'in time'.length, 'an expired URL stores nothing');

    const stableUrl = `${url.origin}${url.pathname}`;
    assert.equal((await fetch(stableUrl, { method: 'PUT', body: 'anonymous' })).status, 401);
    const byKey = await fetch(`${stableUrl.replace('data.bin', 'by-key.txt')}?visibility=public`, {
      method: 'PUT',
      body: 'put with a key',
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(byKey.status, 200, 'a key holder may PUT directly');
    assert.equal((await byKey.json()).visibility, 'public');
    const byOtherKey = await fetch(stableUrl, { method: 'PUT', body: 'x', headers: { authorization: `Bearer ${otherKey}` } });
    assert.equal(byOtherKey.status, 403);

    const badName = await fetch(stableUrl.replace('uploads/data.bin', 'a%2F%2Fb'), { method: 'PUT', body: 'x', headers: { authorization: `Bearer ${key}` } });
    assert.equal(badName.status, 400);
    assert.match((await errorOf(badName)).detail, /contains "\/\/"/);
  });

  test('an upload announcing more than an object may hold is refused before its body is read', async () => {
    const url = (await space('Upload', { name: 'uploads/too-big.bin' })).body.url;
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const request = httpRequest(url, { method: 'PUT', headers: { 'content-length': 6 * 1024 ** 3 } }, (response) => {
        let text = '';
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
      });
      request.on('error', reject);
      request.write(Buffer.alloc(1024)); // a little of the body; the rest never comes
    });
    assert.equal(answer.status, 413);
    assert.match(JSON.parse(answer.text).detail, /more than the 5368709120 bytes one object may hold/);
  });

  test('a client that disconnects mid-upload leaves the previous object and no temporary file', async () => {
    await space('Create', { name: 'uploads/kept.txt', object: base64('kept') });
    const url = (await space('Upload', { name: 'uploads/kept.txt' })).body.url;
    const temporaryFolder = join(alto.dataDir, 'objects', '.tmp');
    const request = httpRequest(url, { method: 'PUT', headers: { 'content-length': 64 * 1024 * 1024 } });
    request.on('error', () => undefined); // the socket is destroyed on purpose
    request.write(randomBytes(4 * 1024 * 1024));
    await eventually(async () => readdirSync(temporaryFolder).length > 0, 'the upload to reach the store');
    request.destroy();
    await eventually(async () => readdirSync(temporaryFolder).length === 0, 'the aborted upload to be cleaned up');
    const read = await space('Read', { name: 'uploads/kept.txt' });
    assert.equal(Buffer.from(read.body.object.data, 'base64').toString(), 'kept');
  });

  test('object names are validated with a 400 that says what is wrong', async () => {
    const cases: [string, RegExp][] = [
      ['../etc/passwd', /"\.\." part/],
      ['a/../../b', /"\.\." part/],
      ['/absolute', /starts with "\/"/],
      ['folder/', /ends with "\/"/],
      ['a//b', /"\/\/"/],
      ['a/./b', /"\." part/],
      ['', /missing/],
      ['tab\there', /control characters/],
      ['n'.repeat(1025), /1024-byte limit/],
    ];
    for (const [name, detail] of cases) {
      for (const endpoint of ['Create', 'Update', 'Read', 'Head', 'Delete', 'Download', 'Upload']) {
        const answer = await space(endpoint, { name, object: base64('x') });
        assert.equal(answer.status, 400, `${endpoint} ${JSON.stringify(name)}`);
        assert.match(answer.body.detail, detail, `${endpoint} ${JSON.stringify(name)}`);
      }
    }
    assert.equal((await space('Create', { name: 'ok', visibility: 'secret' })).status, 400);
    const notBase64 = await space('Create', { name: 'ok', object: 'not base64!' });
    assert.equal(notBase64.status, 400);
    assert.match(notBase64.body.detail, /not valid base64/);
  });

  test('the inline limit: 10 MiB through Create, more refused with a 413 that points to Upload', async () => {
    const tenMiB = randomBytes(10 * 1024 * 1024);
    const fits = await space('Create', { name: 'inline/ten.bin', object: base64(tenMiB) });
    assert.equal(fits.status, 200, JSON.stringify(fits.body));
    const read = await space('Read', { name: 'inline/ten.bin' });
    assert.ok(Buffer.from(read.body.object.data, 'base64').equals(tenMiB));

    const oneMore = await space('Update', { name: 'inline/ten.bin', object: base64(Buffer.concat([tenMiB, Buffer.alloc(1)])) });
    assert.equal(oneMore.status, 413);
    assert.match(oneMore.body.detail, /10485761 bytes is more than the 10485760 bytes an inline Create or Update carries; call space\/Upload/);
    const wayOver = await space('Create', { name: 'inline/big.bin', object: base64(Buffer.alloc(12 * 1024 * 1024)) });
    assert.equal(wayOver.status, 413);
    assert.match(wayOver.body.detail, /request body is larger than .* bytes.*call space\/Upload/);

    const bigUrl = (await space('Upload', { name: 'inline/eleven.bin' })).body.url;
    assert.equal((await fetch(bigUrl, { method: 'PUT', body: Buffer.alloc(11 * 1024 * 1024) })).status, 200);
    const tooBigToRead = await space('Read', { name: 'inline/eleven.bin' });
    assert.equal(tooBigToRead.status, 413);
    assert.match(tooBigToRead.body.detail, /space\/Download/);
  });

  test('deleting a project deletes its objects and only its objects', async () => {
    const doomedKey = await alto.projectKey('doomed', ['space']);
    const created = await space('Create', { name: 'keep/me.txt', object: base64('bye'), visibility: 'public' }, doomedKey);
    await space('Upload', { name: 'x' }, doomedKey);
    await space('Create', { name: 'survivor.txt', object: base64('still here'), visibility: 'public' });
    const projectId = new URL(created.body.url).pathname.split('/')[2];
    assert.ok(existsSync(join(alto.dataDir, 'objects', projectId)));
    const deleted = await alto.call('projects', 'Delete', { name: 'doomed' });
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.equal(existsSync(join(alto.dataDir, 'objects', projectId)), false, 'the project folder is gone');
    assert.equal((await fetch(created.body.url)).status, 404);
    assert.equal(Buffer.from((await space('Read', { name: 'survivor.txt' })).body.object.data, 'base64').toString(), 'still here');
  });

  test('M3O’s JS client drives space', async () => {
    const client = new Client({ token: key, address: `${alto.url}/` });
    const created = await client.call<object, { url: string }>('space', 'Create', { name: 'm3o/hello.txt', object: base64('from m3o'), visibility: 'public' });
    assert.match(created.url, /\/m3o\/hello\.txt$/);
    const conflict = await client.call('space', 'Create', { name: 'm3o/hello.txt', object: base64('x') }).then(
      () => assert.fail('expected a 409'),
      (error: { code: number; id: string }) => error,
    );
    assert.equal(conflict.code, 409);
    assert.equal(conflict.id, 'conflict');
    await client.call('space', 'Update', { name: 'm3o/hello.txt', object: base64('updated by m3o'), visibility: 'public' });
    const read = await client.call<object, { object: { data: string; visibility: string } }>('space', 'Read', { name: 'm3o/hello.txt' });
    assert.equal(Buffer.from(read.object.data, 'base64').toString(), 'updated by m3o');
    const head = await client.call<object, { object: { name: string; url: string } }>('space', 'Head', { name: 'm3o/hello.txt' });
    assert.equal(head.object.url, created.url);
    const listed = await client.call<object, { objects: { name: string }[] }>('space', 'List', { prefix: 'm3o/' });
    assert.deepEqual(listed.objects.map((object) => object.name), ['m3o/hello.txt']);
    const download = await client.call<object, { url: string }>('space', 'Download', { name: 'm3o/hello.txt' });
    assert.equal(await (await fetch(download.url)).text(), 'updated by m3o');
    const upload = await client.call<object, { url: string }>('space', 'Upload', { name: 'm3o/large.bin' });
    assert.equal((await fetch(upload.url, { method: 'PUT', body: 'streamed' })).status, 200);
    const uploaded = await client.call<object, { object: { data: string } }>('space', 'Read', { name: 'm3o/large.bin' });
    assert.equal(Buffer.from(uploaded.object.data, 'base64').toString(), 'streamed');
    await client.call('space', 'Delete', { name: 'm3o/hello.txt' });
    const missing = await client.call('space', 'Head', { name: 'm3o/hello.txt' }).then(
      () => assert.fail('expected a 404'),
      (error: { code: number }) => error,
    );
    assert.equal(missing.code, 404);
  });
});

describe('space with Alto as its own process', () => {
  test('a 1 GiB object uploads and downloads through presigned URLs while the server’s memory stays flat', async () => {
    const size = 1024 ** 3;
    const server = await startProcess();
    try {
      const key = await server.projectKey('big', ['space']);
      const call = (endpoint: string, body: unknown) => server.call('space', endpoint, body, key);
      // Warm up the paths the transfer uses, so the baseline includes their code.
      const warmUrl = (await call('Upload', { name: 'warm' })).body.url;
      await put(warmUrl, generatedBody(4 * 1024 * 1024).body, { 'content-length': 4 * 1024 * 1024 });
      await getHashed((await call('Download', { name: 'warm' })).body.url);
      const baseline = residentBytesOf(server.child.pid!);

      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, residentBytesOf(server.child.pid!))), 50);
      try {
        const upload = (await call('Upload', { name: 'videos/huge.bin' })).body.url;
        const generated = generatedBody(size);
        const stored = await put(upload, generated.body, { 'content-length': size, 'content-type': 'video/mp4' });
        assert.equal(stored.status, 200, stored.text);
        const expectedSha = generated.sha256();
        const description = JSON.parse(stored.text);
        assert.equal(description.size, size);
        assert.equal(description.sha256, expectedSha, 'the server hashed exactly what was sent');

        const download = (await call('Download', { name: 'videos/huge.bin' })).body.url;
        const fetched = await getHashed(download);
        assert.equal(fetched.status, 200);
        assert.equal(fetched.bytes, size);
        assert.equal(fetched.sha256, expectedSha, 'the download is byte for byte the upload');
      } finally {
        clearInterval(sampler);
      }
      const growth = peak - baseline;
      process.stdout.write(`# server RSS: baseline ${(baseline / 2 ** 20).toFixed(0)} MiB, peak ${(peak / 2 ** 20).toFixed(0)} MiB\n`);
      assert.ok(growth < 96 * 2 ** 20, `the server grew by ${(growth / 2 ** 20).toFixed(0)} MiB moving a 1024 MiB object`);
      assert.ok(peak < 400 * 2 ** 20, `the server peaked at ${(peak / 2 ** 20).toFixed(0)} MiB`);
    } finally {
      await server.close(); // removes the data folder, and the 1 GiB with it
    }
  });

  test('a server killed mid-upload keeps the previous object whole', async () => {
    const dataDir = temporaryDataDir();
    try {
      let server = await startProcess({ dataDir });
      const key = await server.projectKey('crash', ['space']);
      const original = randomBytes(256 * 1024);
      const created = await server.call('space', 'Create', { name: 'precious.bin', object: base64(original) }, key);
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const upload = (await server.call('space', 'Upload', { name: 'precious.bin' }, key)).body.url;

      const temporaryFolder = join(dataDir, 'objects', '.tmp');
      const receivedBytes = () => readdirSync(temporaryFolder).reduce((sum, entry) => sum + statSync(join(temporaryFolder, entry)).size, 0);
      // Sent slowly enough that the kill lands while the body is still arriving.
      const slow = generatedBody(512 * 1024 * 1024, () => new Promise((resolve) => setImmediate(resolve)));
      const uploading = put(upload, slow.body, { 'content-length': 512 * 1024 * 1024 }).then(
        (answer) => ({ answer }),
        (error: Error) => ({ error }),
      );
      await eventually(async () => receivedBytes() > 16 * 1024 * 1024, 'the server to have written part of the upload');
      assert.equal(await server.stop('SIGKILL'), 'SIGKILL');
      const outcome = await uploading;
      assert.ok('error' in outcome, 'the upload was cut off, not completed');
      assert.ok(receivedBytes() > 0, 'the half-written temporary file is still on disk after the crash');

      server = await startProcess({ dataDir });
      try {
        const read = await server.call('space', 'Read', { name: 'precious.bin' }, key);
        assert.equal(read.status, 200, JSON.stringify(read.body));
        assert.ok(Buffer.from(read.body.object.data, 'base64').equals(original), 'the previous object is intact');
        assert.equal(read.body.object.sha256, createHash('sha256').update(original).digest('hex'));
        assert.deepEqual(readdirSync(temporaryFolder), [], 'the restart swept the half-written upload');
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
