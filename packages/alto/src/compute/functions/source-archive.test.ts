/**
 * Function sources kept as objects: a folder packed and unpacked again is the same folder (files,
 * modes, folders, symlinks; `.git` left out), in the functions' own private namespace; one larger
 * than an upload is not kept; removal by function and by project; and unpacking refuses what a
 * tampered archive could do (names outside the folder, writing through a symlink, hard links,
 * more than an upload's bytes).
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { LocalObjectStore } from '../../store/objects/local.js';
import { SourceArchives, SOURCE_NAMESPACE_ROOT, sourceNamespace } from './source-archive.js';
import { MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES } from './source.js';

/** A gzipped tar of the given entries, as a tampered object would hold. */
async function craftedArchive(entries: Array<{ name: string; type: 'file' | 'directory' | 'symlink' | 'link'; content?: Buffer; linkname?: string }>): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  archive.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => archive.on('end', resolve));
  for (const entry of entries) {
    if (entry.type === 'file') archive.entry({ name: entry.name, type: 'file', size: entry.content!.length }, entry.content!);
    else archive.entry({ name: entry.name, type: entry.type, linkname: entry.linkname });
  }
  archive.finalize();
  await ended;
  return gzipSync(Buffer.concat(chunks));
}

/** Every path under `folder` with what it is: file content, link target, or a folder. */
function describeTree(folder: string, prefix = ''): Record<string, string> {
  const tree: Record<string, string> = {};
  for (const name of readdirSync(folder).sort()) {
    const path = join(folder, name);
    const stats = lstatSync(path);
    const key = prefix + name;
    if (stats.isSymbolicLink()) tree[key] = `-> ${readlinkSync(path)}`;
    else if (stats.isDirectory()) Object.assign(tree, { [`${key}/`]: 'folder' }, describeTree(path, `${key}/`));
    else tree[key] = `${(stats.mode & 0o777).toString(8)} ${readFileSync(path, 'utf8')}`;
  }
  return tree;
}

describe('function source archives', () => {
  let dir: string;
  let objects: LocalObjectStore;
  let archives: SourceArchives;
  let count = 0;
  const fresh = (label: string) => {
    const folder = join(dir, `${label}-${++count}`);
    mkdirSync(folder, { recursive: true });
    return folder;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'alto-fn-archives-'));
    objects = await LocalObjectStore.open(join(dir, 'objects'));
    archives = new SourceArchives(objects);
  });
  after(async () => {
    await objects.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a folder packed and unpacked is the same folder, without .git, in a private object of the functions namespace', async () => {
    const source = fresh('source');
    mkdirSync(join(source, 'lib', 'deep'), { recursive: true });
    mkdirSync(join(source, 'empty'));
    mkdirSync(join(source, '.git', 'objects'), { recursive: true });
    writeFileSync(join(source, '.git', 'HEAD'), 'ref: refs/heads/main\n');
    writeFileSync(join(source, 'index.ts'), 'export default () => new Response("ünïcødé 🚀");\n');
    writeFileSync(join(source, 'lib', 'deep', 'sum.ts'), 'export const sum = 1;\n');
    writeFileSync(join(source, 'run.sh'), '#!/bin/sh\necho hi\n');
    chmodSync(join(source, 'run.sh'), 0o755);
    writeFileSync(join(source, 'lib', 'café.json'), '{"a":1}');
    symlinkSync('../index.ts', join(source, 'lib', 'entry.ts'));

    const kept = await archives.keep('project-a', 'fn1', source, ['.git']);
    assert.ok(kept.kept, JSON.stringify(kept));
    assert.equal(kept.files, 4);
    assert.match(kept.name, /^fn1\/[a-z0-9]+-[0-9a-f]{12}\.tar\.gz$/);
    const info = await objects.head(sourceNamespace('project-a'), kept.name);
    assert.equal(sourceNamespace('project-a'), `${SOURCE_NAMESPACE_ROOT}/project-a`);
    assert.equal(info?.visibility, 'private');
    assert.equal(info?.contentType, 'application/gzip');

    const restored = fresh('restored');
    await archives.restore('project-a', kept.name, restored);
    const expected = describeTree(source);
    for (const key of Object.keys(expected)) if (key.startsWith('.git')) delete expected[key];
    assert.deepEqual(describeTree(restored), expected);
    assert.equal(describeTree(restored)['run.sh'].split(' ')[0], '755');

    // The same folder makes the same bytes: a fixed time in every header.
    const again = await archives.keep('project-a', 'fn1', source, ['.git']);
    assert.ok(again.kept);
    assert.notEqual(again.name, kept.name, 'each archive is named afresh');
    assert.equal((await objects.head(sourceNamespace('project-a'), again.name))?.sha256, info?.sha256);
  });

  test(`a folder of more than ${MAX_UPLOAD_BYTES} bytes or ${MAX_UPLOAD_FILES} files is not kept, and nothing is written`, async () => {
    const big = fresh('big');
    writeFileSync(join(big, 'a.bin'), Buffer.alloc(MAX_UPLOAD_BYTES / 2));
    writeFileSync(join(big, 'b.bin'), Buffer.alloc(MAX_UPLOAD_BYTES / 2 + 1));
    assert.deepEqual(await archives.keep('project-big', 'fn', big), { kept: false, reason: `its files add up to more than ${MAX_UPLOAD_BYTES} bytes` });
    const many = fresh('many');
    for (let index = 0; index <= MAX_UPLOAD_FILES; index++) writeFileSync(join(many, `f${index}.js`), '');
    assert.deepEqual(await archives.keep('project-big', 'fn', many), { kept: false, reason: `it holds more than ${MAX_UPLOAD_FILES} files` });
    assert.deepEqual((await objects.list(sourceNamespace('project-big'), { limit: 10 })).objects, []);
    // Just under both bounds is kept.
    rmSync(join(big, 'b.bin'));
    assert.equal((await archives.keep('project-big', 'fn', big)).kept, true);
  });

  test('removeFunction removes that function\'s archives; removeProject every archive of the project only', async () => {
    const source = fresh('small');
    writeFileSync(join(source, 'index.js'), 'export default 1;\n');
    const names = async (projectId: string) => (await objects.list(sourceNamespace(projectId), { limit: 100 })).objects.map((info) => info.name.split('/')[0]).sort();
    for (const [projectId, functionId] of [['p1', 'one'], ['p1', 'one'], ['p1', 'two'], ['p2', 'one']]) await archives.keep(projectId, functionId, source);
    await archives.removeFunction('p1', 'one');
    assert.deepEqual(await names('p1'), ['two']);
    assert.deepEqual(await names('p2'), ['one']);
    await archives.removeProject('p1');
    assert.deepEqual(await names('p1'), []);
    assert.deepEqual(await names('p2'), ['one']);
    await archives.remove('p2', 'one/missing.tar.gz');
  });

  test('restoring refuses names outside the folder, writes nothing through a symlink, refuses hard links and oversized content', async () => {
    const outside = fresh('outside');
    const put = async (name: string, bytes: Buffer) =>
      objects.put(sourceNamespace('tampered'), name, Readable.from([bytes]), { contentType: 'application/gzip', visibility: 'private' });
    const refused = async (name: string, pattern: RegExp) => {
      const target = fresh('target');
      await assert.rejects(archives.restore('tampered', name, target), (error: Error & { status?: number }) => {
        assert.equal(error.status, 400, error.message);
        assert.match(error.message, pattern);
        return true;
      });
    };

    await put('x/escape.tar.gz', await craftedArchive([{ name: '../outside-file', type: 'file', content: Buffer.from('x') }]));
    await refused('x/escape.tar.gz', /a path outside its folder/);
    await put('x/absolute.tar.gz', await craftedArchive([{ name: `${outside}/abs`, type: 'file', content: Buffer.from('x') }]));
    await refused('x/absolute.tar.gz', /a path outside its folder/);
    assert.deepEqual(readdirSync(outside), []);

    await put('x/through.tar.gz', await craftedArchive([
      { name: 'link', type: 'symlink', linkname: outside },
      { name: 'link/planted', type: 'file', content: Buffer.from('planted') },
    ]));
    const through = fresh('target');
    await assert.rejects(archives.restore('tampered', 'x/through.tar.gz', through));
    assert.deepEqual(readdirSync(outside), [], 'nothing was written through the symlink');

    await put('x/hard.tar.gz', await craftedArchive([{ name: 'hard', type: 'link', linkname: '/etc/passwd' }]));
    await refused('x/hard.tar.gz', /of type link/);

    await put('x/huge.tar.gz', await craftedArchive([{ name: 'zeros.bin', type: 'file', content: Buffer.alloc(MAX_UPLOAD_BYTES + 1) }]));
    await refused('x/huge.tar.gz', /larger than an upload may be/);

    const target = fresh('target');
    await assert.rejects(archives.restore('tampered', 'x/gone.tar.gz', target), (error: Error & { status?: number }) => error.status === 503);
    assert.ok(existsSync(target) && statSync(target).isDirectory());
  });
});
