/**
 * The unpacker on layers built in code: the changeset rules (whiteouts, opaque directories,
 * replacement), modes, owners, times and links exactly as the layers say, and the refusals that
 * keep a malicious layer inside the root (traversal, absolute names, symlink escapes, hard link
 * escapes, oversized layers, a wrong diff_id).
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import {
  buildTar,
  busyboxBaseLayer,
  changesLayer,
  describeTree,
  EXPECTED_TREE,
  FIXED_MTIME,
  sha256,
  type LayerEntry,
} from '../../../test/images-fixture.js';
import { unpackLayers, type LayerToUnpack, type UnpackOptions } from './unpack.js';

const workspace = mkdtempSync(join(tmpdir(), 'alto-unpack-'));
after(() => rmSync(workspace, { recursive: true, force: true }));
let counter = 0;

async function layerFile(entries: LayerEntry[], options: { gzip?: boolean; diffId?: string } = {}): Promise<LayerToUnpack> {
  const tar = await buildTar(entries);
  const bytes = options.gzip === false ? tar : gzipSync(tar);
  const path = join(workspace, `layer-${counter++}`);
  writeFileSync(path, bytes);
  return {
    digest: sha256(bytes),
    mediaType: options.gzip === false ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip',
    path,
    diffId: options.diffId ?? sha256(tar),
  };
}

function freshRoot(): { root: string; outside: string } {
  const base = join(workspace, `case-${counter++}`);
  return { root: join(base, 'rootfs'), outside: join(base, 'outside') };
}

const limits: UnpackOptions = { maxLayerBytes: 64 * 1024 * 1024 };
const asRoot = process.getuid?.() === 0;

describe('unpackLayers', () => {
  test('applies layers in order: whiteouts, opaque directories, links, modes, owners and times', async () => {
    const { root } = freshRoot();
    const stats = await unpackLayers(root, [await layerFile(busyboxBaseLayer()), await layerFile(changesLayer(), { gzip: false })], limits);
    assert.deepEqual(describeTree(root), EXPECTED_TREE);
    assert.equal(readFileSync(join(root, 'etc/passwd'), 'utf8'), 'root:x:0:0:root:/root:/bin/sh\n', 'layer 2 replaced the file');
    assert.equal(readFileSync(join(root, 'var/cache/new'), 'utf8'), 'written by layer 2\n');
    assert.deepEqual(readFileSync(join(root, 'bin/busybox')), readFileSync('/bin/busybox'));
    assert.equal(statSync(join(root, 'bin/busybox')).mtime.getTime(), FIXED_MTIME.getTime());
    assert.equal(statSync(join(root, 'var/cache')).mtime.getTime(), FIXED_MTIME.getTime(), 'directory times are set after their children');
    assert.equal(lstatSync(join(root, 'bin/sh')).mtime.getTime(), FIXED_MTIME.getTime());
    assert.equal(stats.layers, 2);
    assert.equal(stats.whiteouts, 2);
    assert.deepEqual(
      stats.skipped.map((entry) => `${entry.path} ${entry.type}`),
      ['dev/null character-device', 'run/pipe fifo'],
    );
    if (asRoot) {
      assert.equal(statSync(join(root, 'etc/secret')).uid, 1000);
      assert.equal(statSync(join(root, 'app')).gid, 1000);
      assert.equal(statSync(join(root, 'bin/busybox')).uid, 0);
    }
  });

  test('a layer whiteouts only what lower layers made; its own entries stay', async () => {
    const { root } = freshRoot();
    await unpackLayers(
      root,
      [
        await layerFile([
          { type: 'file', path: 'data/old', content: 'old' },
          { type: 'dir', path: 'gone/' },
          { type: 'file', path: 'gone/deep/file', content: 'x' },
        ]),
        await layerFile([
          // New entries before the opaque marker of the same directory survive it.
          { type: 'file', path: 'data/kept', content: 'new' },
          { type: 'opaque', path: 'data/' },
          { type: 'whiteout', path: 'gone' },
          { type: 'whiteout', path: 'never-existed' },
        ]),
      ],
      limits,
    );
    assert.deepEqual(readdirSync(join(root, 'data')), ['kept']);
    assert.equal(existsSync(join(root, 'gone')), false, 'a whiteout removes a whole directory');
  });

  test('later entries replace earlier ones of another kind', async () => {
    const { root } = freshRoot();
    await unpackLayers(
      root,
      [
        await layerFile([
          { type: 'dir', path: 'was-dir/' },
          { type: 'file', path: 'was-dir/child', content: 'x' },
          { type: 'symlink', path: 'was-link', target: '/etc' },
          { type: 'file', path: 'was-file', content: 'x' },
        ]),
        await layerFile([
          { type: 'file', path: 'was-dir', content: 'now a file' },
          { type: 'dir', path: 'was-link/', mode: 0o700 },
          { type: 'symlink', path: 'was-file', target: 'was-dir' },
        ]),
      ],
      limits,
    );
    assert.equal(readFileSync(join(root, 'was-dir'), 'utf8'), 'now a file');
    assert.ok(lstatSync(join(root, 'was-link')).isDirectory());
    assert.equal(lstatSync(join(root, 'was-link')).mode & 0o7777, 0o700);
    assert.ok(lstatSync(join(root, 'was-file')).isSymbolicLink());
  });

  test('"../" and absolute entry names are refused with a clear error and write nothing outside', async () => {
    for (const name of ['../escaped', 'a/../../escaped', '/escaped']) {
      const { root, outside } = freshRoot();
      const layer = await layerFile([
        { type: 'file', path: 'fine', content: 'ok' },
        { type: 'file', path: name.replace('escaped', join('..', 'outside', 'escaped')), content: 'pwned' },
      ]);
      await assert.rejects(unpackLayers(root, [layer], limits), (error: Error) => {
        assert.match(error.message, new RegExp(`layer ${layer.digest} is refused: entry ".*" (contains "\\.\\." \\(path traversal\\)|is an absolute path)`));
        return true;
      });
      assert.equal(existsSync(join(outside, 'escaped')), false);
      assert.equal(existsSync(join(root, '..', 'escaped')), false);
    }
  });

  test('symlinks are never followed out of the root: absolute, relative and root links resolve inside it', async () => {
    const { root, outside } = freshRoot();
    const layers = [
      await layerFile([
        { type: 'symlink', path: 'abs', target: outside },
        { type: 'symlink', path: 'rel', target: '../../../../../../../../..' + outside },
        { type: 'symlink', path: 'slash', target: '/' },
        { type: 'symlink', path: 'loop', target: 'loop' },
      ]),
      await layerFile([
        { type: 'file', path: 'abs/through-absolute', content: 'x' },
        { type: 'file', path: 'rel/through-relative', content: 'x' },
        { type: 'file', path: 'slash/etc/through-root', content: 'x' },
      ]),
    ];
    await unpackLayers(root, layers, limits);
    assert.equal(existsSync(outside), false, 'nothing was created outside the root');
    assert.ok(existsSync(join(root, outside, 'through-absolute')), 'an absolute link resolves from the root, as in the guest');
    assert.ok(existsSync(join(root, outside, 'through-relative')), '.. stops at the root');
    assert.ok(existsSync(join(root, 'etc/through-root')));
    assert.ok(lstatSync(join(root, 'abs')).isSymbolicLink(), 'the link itself is kept as the image says');

    const looping = freshRoot();
    await assert.rejects(
      unpackLayers(looping.root, [await layerFile([{ type: 'symlink', path: 'loop', target: 'loop' }, { type: 'file', path: 'loop/x', content: 'x' }])], limits),
      /meets more than 40 symlinks/,
    );
  });

  test('a hard link may not point outside the root or at a missing file', async () => {
    const { root, outside } = freshRoot();
    await assert.rejects(
      unpackLayers(root, [await layerFile([{ type: 'link', path: 'passwd', target: '../../../../etc/passwd' }])], limits),
      /hard link target of "passwd": "..\/..\/..\/..\/etc\/passwd" contains ".." \(path traversal\)/,
    );
    await assert.rejects(
      unpackLayers(root, [await layerFile([{ type: 'link', path: 'x', target: '/etc/passwd' }])], limits),
      /is an absolute path/,
    );
    await assert.rejects(unpackLayers(root, [await layerFile([{ type: 'link', path: 'x', target: 'missing' }])], limits), /which does not exist/);
    // Through a symlink to the host's /etc: the link target resolves inside the root, where
    // there is no passwd, so nothing of the host is linked in.
    await assert.rejects(
      unpackLayers(root, [await layerFile([{ type: 'symlink', path: 'hostetc', target: '/etc' }, { type: 'link', path: 'stolen', target: 'hostetc/passwd' }])], limits),
      /which does not exist/,
    );
    assert.equal(existsSync(outside), false);
  });

  test('an oversized layer is refused while it streams', async () => {
    const { root } = freshRoot();
    const layer = await layerFile([{ type: 'file', path: 'big', content: Buffer.alloc(50_000, 1) }]);
    await assert.rejects(unpackLayers(root, [layer], { maxLayerBytes: 10_000 }), /unpacks to more than 10000 bytes/);
  });

  test('a layer whose content does not match the config diff_id is refused', async () => {
    const { root } = freshRoot();
    const layer = await layerFile([{ type: 'file', path: 'a', content: 'a' }], { diffId: sha256('something else') });
    await assert.rejects(unpackLayers(root, [layer], limits), /hashes to sha256:[a-f0-9]{64}, but the image config says/);
  });

  test('a layer that is not a tar archive is refused clearly', async () => {
    const { root } = freshRoot();
    const path = join(workspace, 'garbage.gz');
    writeFileSync(path, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(100, 7)]));
    await assert.rejects(
      unpackLayers(root, [{ digest: sha256('x'), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', path }], limits),
      /is refused: it is not a valid gzip-compressed tar archive/,
    );
  });
});
