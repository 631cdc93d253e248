import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync, gunzipSync } from 'node:zlib';
import { after, test } from 'node:test';
import { pack } from 'tar-stream';
import { isAltoError } from '../../kit/errors.js';
import { ArchiveReader, ArchiveWriter, CHUNK_BYTES, entryPart, entryPartText, type ArchiveHeader, type ArchiveLimits } from './archive.js';
import { openWithPassphrase, sealWithPassphrase } from './passphrase.js';

const folder = mkdtempSync(join(tmpdir(), 'alto-archive-'));
after(() => rmSync(folder, { recursive: true, force: true }));
let files = 0;

const HEADER: ArchiveHeader = { format: 'alto-project/1', altoVersion: '0.1.0', project: 'shop', createdAt: '2026-12-07T00:00:00.000Z', secrets: 'none', only: 'all' };

/** Writes an archive with the writer: a document, records over two chunks and a streamed object. */
async function writeArchive(object: Buffer): Promise<string> {
  const file = join(folder, `archive-${++files}.tgz`);
  const writer = new ArchiveWriter(HEADER);
  const written = pipeline(writer.output, createWriteStream(file));
  await writer.begin();
  await writer.json('project', 'settings.json', { limits: {} }, 1);
  const records = writer.records('db', 'dev/todo/records');
  const big = 'x'.repeat(64 * 1024);
  for (let index = 0; index < 100; index++) await records.write({ id: String(index), data: { big } });
  await records.close();
  await writer.stream('space', `dev/objects/${entryPart('a/b c.txt')}`, object.length, Readable.from([object.subarray(0, 10), object.subarray(10)]));
  await writer.finish();
  await written;
  return file;
}

/** Writes a tar.gz by hand, entry by entry, for archives the writer would never make. */
async function handMade(entries: Array<{ name: string; content?: Buffer; type?: 'file' | 'symlink'; linkname?: string }>): Promise<string> {
  const file = join(folder, `hand-${++files}.tgz`);
  const tar = pack();
  const written = pipeline(tar, (await import('node:zlib')).createGzip(), createWriteStream(file));
  for (const entry of entries) {
    if (entry.type === 'symlink') tar.entry({ name: entry.name, type: 'symlink', linkname: entry.linkname });
    else tar.entry({ name: entry.name, size: entry.content?.length ?? 0 }, entry.content ?? Buffer.alloc(0));
  }
  tar.finalize();
  await written;
  return file;
}

const headerEntry = (header: object = HEADER) => ({ name: 'alto-project.json', content: Buffer.from(JSON.stringify(header)) });
function manifestEntry(entries: Array<{ name: string; content?: Buffer }>, override: object = {}) {
  const sections: Record<string, { count: number; entries: unknown[] }> = {};
  for (const entry of entries) {
    const section = entry.name.split('/')[0];
    sections[section] ??= { count: 0, entries: [] };
    const content = entry.content ?? Buffer.alloc(0);
    sections[section].entries.push({ path: entry.name, size: content.length, sha256: createHash('sha256').update(content).digest('hex') });
  }
  return { name: 'manifest.json', content: Buffer.from(JSON.stringify({ ...HEADER, sections, ...override })) };
}

async function refusal(file: string, limits?: ArchiveLimits): Promise<string> {
  try {
    await new ArchiveReader(file, limits).verify();
  } catch (error) {
    assert.ok(isAltoError(error), `a refusal is a 4xx AltoError, not ${String(error)}`);
    assert.equal(error.status, 400);
    return error.detail;
  }
  assert.fail('the archive was accepted');
}

test('what the writer writes, the reader verifies and gives back entry by entry', async () => {
  const object = randomBytes(200_000);
  const file = await writeArchive(object);
  const reader = new ArchiveReader(file);
  const manifest = await reader.verify();
  assert.equal(manifest.project, 'shop');
  assert.equal(manifest.sections.db.count, 100);
  // 100 records of 64 KiB do not fit one chunk: they are split, each chunk under the bound.
  assert.ok(manifest.sections.db.entries.length >= 2);
  assert.ok(manifest.sections.db.entries.every((entry) => entry.size <= CHUNK_BYTES));
  assert.equal(manifest.sections.space.entries[0].sha256, createHash('sha256').update(object).digest('hex'));
  const seen: string[] = [];
  let records = 0;
  for await (const entry of reader.entries()) {
    seen.push(entry.path);
    if (entry.section === 'db') records += (await entry.lines()).length;
    if (entry.section === 'space') {
      assert.equal(entryPartText(entry.name.split('/')[2]), 'a/b c.txt');
      assert.deepEqual(await entry.buffer(), object);
    }
    // The project entry is left unread: the reader skips it.
  }
  assert.equal(records, 100);
  assert.equal(seen[0], 'project/settings.json');
  assert.equal(seen.at(-1), `space/dev/objects/${entryPart('a/b c.txt')}`);
});

test('an unknown format is refused from the first entry, with the version that wrote it', async () => {
  const file = await handMade([headerEntry({ ...HEADER, format: 'alto-project/9', altoVersion: '3.0.0' })]);
  assert.match(await refusal(file), /format "alto-project\/9".*reads alto-project\/1 only.*3\.0\.0/);
});

test('a file that is not an archive, or not a project archive, is refused', async () => {
  const garbage = join(folder, 'garbage.tgz');
  writeFileSync(garbage, randomBytes(1000));
  assert.match(await refusal(garbage), /cannot be read as a gzipped tar/);
  const other = await handMade([{ name: 'etc/passwd', content: Buffer.from('root') }]);
  assert.match(await refusal(other), /not an Alto project archive/);
});

test('path traversal, absolute paths and odd names are refused', async () => {
  for (const name of ['db/../../etc/passwd', '/etc/passwd', 'db/dev/./x', 'db', 'DB/x', 'db/a\\b']) {
    const entry = { name, content: Buffer.from('x') };
    const file = await handMade([headerEntry(), entry, manifestEntry([])]);
    assert.match(await refusal(file), /not a plain relative path|not inside a section folder|names no known kind of section/, name);
  }
});

test('links are refused: only files are imported', async () => {
  const file = await handMade([headerEntry(), { name: 'space/dev/objects/x', type: 'symlink', linkname: '/etc/passwd' }]);
  assert.match(await refusal(file), /is a symlink, not a file/);
});

test('an entry whose bytes do not match the manifest, or that the manifest does not list, is refused', async () => {
  const entry = { name: 'db/dev/t/records/000001.jsonl', content: Buffer.from('{"id":"1","data":{}}\n') };
  const altered = { ...entry, content: Buffer.from('{"id":"2","data":{}}\n') };
  assert.match(await refusal(await handMade([headerEntry(), altered, manifestEntry([entry])])), /does not match its sha256/);
  assert.match(await refusal(await handMade([headerEntry(), entry, manifestEntry([])])), /lists 0 entries and the archive holds 1/);
  const extra = { name: 'db/dev/t/records/000002.jsonl', content: Buffer.from('') };
  assert.match(await refusal(await handMade([headerEntry(), entry, manifestEntry([extra])])), /not in its manifest/);
});

test('an archive cut short (no manifest) is refused as incomplete', async () => {
  const object = randomBytes(50_000);
  const whole = readFileSync(await writeArchive(object));
  const tar = gunzipSync(whole);
  const cut = join(folder, 'cut.tgz');
  // The tar without its last entries: a stream that stopped part way.
  writeFileSync(cut, gzipSync(tar.subarray(0, tar.length - 4096)));
  assert.match(await refusal(cut), /incomplete|cut short/);
  const noManifest = await handMade([headerEntry()]);
  assert.match(await refusal(noManifest), /no manifest/);
});

test('entries larger than the limits, or too many of them, are refused before they are read', async () => {
  const entry = { name: 'space/dev/objects/big', content: Buffer.alloc(2048) };
  const file = await handMade([headerEntry(), entry, manifestEntry([entry])]);
  const limits = { maxEntries: 10, maxEntryBytes: 1024, maxTotalBytes: 10_000, maxJsonBytes: 4096 };
  assert.match(await refusal(file, limits), /2048 bytes, more than the 1024/);
  const many = Array.from({ length: 4 }, (_, index) => ({ name: `db/dev/t/records/${index}.jsonl`, content: Buffer.from('') }));
  const crowded = await handMade([headerEntry(), ...many, manifestEntry(many)]);
  assert.match(await refusal(crowded, { ...limits, maxEntries: 3 }), /more than 3 entries/);
});

test('entry names carry any text and give it back; dots never become path steps', () => {
  for (const text of ['a/b', '..', '.', 'ünïcode ✓', 'x~y', '']) assert.equal(entryPartText(entryPart(text)), text);
  assert.notEqual(entryPart('..'), '..');
  assert.ok(!entryPart('../x').includes('/'));
});

test('a passphrase seals and opens; a wrong one or a changed byte says so', () => {
  const sealed = sealWithPassphrase(Buffer.from('{"value":"sk_live"}'), 'correct horse');
  assert.ok(!sealed.includes(Buffer.from('sk_live')));
  assert.equal(openWithPassphrase(sealed, 'correct horse', 'the secrets').toString(), '{"value":"sk_live"}');
  assert.throws(() => openWithPassphrase(sealed, 'wrong horse', 'the secrets'), /does not open with this passphrase/);
  sealed[sealed.length - 1] ^= 1;
  assert.throws(() => openWithPassphrase(sealed, 'correct horse', 'the secrets'), /does not open with this passphrase/);
});

test('a writer whose receiver went away fails its writes at once, and stops reading the object', async () => {
  const writer = new ArchiveWriter(HEADER);
  await writer.begin();
  // Nobody reads the output: a large object fills the buffers and its write waits.
  let destroyed = false;
  const endless = new Readable({ read() { this.push(Buffer.alloc(64 * 1024)); } });
  endless.on('close', () => (destroyed = true));
  const pending = writer.stream('space', 'dev/objects/big', 1024 ** 3, endless);
  await new Promise((resolve) => setTimeout(resolve, 50));
  writer.fail(new Error('the client went away'));
  await assert.rejects(pending, /the client went away/);
  await assert.rejects(writer.json('db', 'dev/t/indexes.json', []), /the client went away/);
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(destroyed, 'the object being read was closed');
});
