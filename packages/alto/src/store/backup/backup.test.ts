/**
 * Backups of a data folder made on disk by hand (no Alto running): what a backup holds, that a
 * second one into the same folder copies only new content, how volumes are claimed or skipped,
 * and that a restore checks every checksum before writing anything.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { backupInstance, type BackupInstanceOptions } from './backup-instance.js';
import { listBackups, restoreInstance } from './restore-instance.js';
import { openBackupTarget } from './target.js';
import { pruneBackups } from './prune.js';
import { blobPath } from './blobs.js';
import { finishedBackups, readManifest } from './manifest.js';

const folders: string[] = [];
after(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

function folder(): string {
  const path = mkdtempSync(join(tmpdir(), 'alto-backup-unit-'));
  folders.push(path);
  return path;
}

const VOLUME_BYTES = 64 * 1024 * 1024;
const IMAGE_LAYER = createHash('sha256').update('image layer').digest('hex');

/** A data folder as Alto leaves it: database, objects (one being written), a volume, the node's files. */
function dataFolder(): string {
  const dataDir = folder();
  const db = new Database(join(dataDir, 'alto.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
  for (let i = 0; i < 100; i++) db.prepare('INSERT INTO notes (body) VALUES (?)').run(`note ${i}`);
  db.close();
  mkdirSync(join(dataDir, 'objects', 'p1', 'dev', 'docs'), { recursive: true });
  writeFileSync(join(dataDir, 'objects', 'p1', 'dev', 'docs', 'a.txt~'), 'object a');
  mkdirSync(join(dataDir, 'objects', '_functions', 'p1'), { recursive: true });
  writeFileSync(join(dataDir, 'objects', '_functions', 'p1', 'hello.tgz~'), 'function source');
  mkdirSync(join(dataDir, 'objects', '.tmp'), { recursive: true });
  writeFileSync(join(dataDir, 'objects', '.tmp', '123-abc'), 'half written');
  const volume = join(dataDir, 'apps', 'volumes', 'p1', 'web', 'data');
  mkdirSync(volume, { recursive: true });
  // A sparse disk image: 64 MiB long, one block of data in the middle.
  const image = openSync(join(volume, 'process.ext4'), 'w');
  writeSync(image, 'volume data', 32 * 1024 * 1024);
  ftruncateSync(image, VOLUME_BYTES);
  closeSync(image);
  writeFileSync(join(dataDir, 'admin-key'), 'sk_admin_test\n', { mode: 0o600 });
  writeFileSync(join(dataDir, 'node-id'), 'node1\n');
  writeFileSync(join(dataDir, 'master-key'), 'ab'.repeat(32) + '\n', { mode: 0o600 });
  mkdirSync(join(dataDir, 'images', 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dataDir, 'images', 'blobs', 'sha256', IMAGE_LAYER), 'image layer');
  mkdirSync(join(dataDir, 'images', 'ingest'), { recursive: true });
  writeFileSync(join(dataDir, 'images', 'ingest', `${'c'.repeat(64)}.partial`), 'half a download');
  return dataDir;
}

const quiet = () => {};

async function backup(dataDir: string, to: string, options: Partial<BackupInstanceOptions> = {}) {
  const target = await openBackupTarget(to, { create: true });
  return backupInstance({ dataDir, to: target, report: quiet, ...options });
}

async function restore(from: string, dataDir: string) {
  return restoreInstance({ from: await openBackupTarget(from, { create: false }), dataDir, report: quiet });
}

test('a backup holds the database, objects, function sources, image blobs, volumes and node files, not the master key', async () => {
  const dataDir = dataFolder();
  const to = folder();
  const { manifest, copiedBlobs } = await backup(dataDir, to);
  const paths = manifest.files.map((file) => file.path).sort();
  assert.deepEqual(paths, [
    'admin-key',
    'alto.db',
    'apps/volumes/p1/web/data/process.ext4',
    `images/blobs/sha256/${IMAGE_LAYER}`,
    'node-id',
    'objects/_functions/p1/hello.tgz~',
    'objects/p1/dev/docs/a.txt~',
  ]);
  assert.equal(copiedBlobs, 7);
  assert.equal(manifest.masterKey, 'not included');
  assert.ok(manifest.skipped.some((part) => part.what === 'master key'));
  assert.ok(manifest.skipped.some((part) => part.what === 'unpacked image layers, app root filesystems'));
  const withoutImages = await backup(dataDir, folder(), { withoutImages: true });
  assert.ok(!withoutImages.manifest.files.some((file) => file.part === 'image'));
  assert.match(withoutImages.manifest.skipped.find((part) => part.what === 'images')!.reason, /--without-images/);
  for (const file of manifest.files) assert.equal(statSync(blobPath(to, file.sha256)).size, file.size);
  // The volume's blob is as sparse as its source: the zeros are holes, not written blocks.
  const volume = manifest.files.find((file) => file.part === 'volume')!;
  assert.equal(volume.size, VOLUME_BYTES);
  assert.ok(statSync(blobPath(to, volume.sha256)).blocks * 512 < VOLUME_BYTES / 8, 'the volume blob is sparse');
  // The copy of the database is a database with every row.
  const copy = new Database(blobPath(to, manifest.files.find((file) => file.path === 'alto.db')!.sha256), { readonly: true });
  assert.equal((copy.prepare('SELECT count(*) AS n FROM notes').get() as { n: number }).n, 100);
  copy.close();
  // The volume's lock was taken for the copy and given back.
  assert.ok(!existsSync(join(dataDir, 'apps', 'volumes', 'p1', 'web', 'data', 'lock')));
});

test('a second backup into the same folder copies only new content', async () => {
  const dataDir = dataFolder();
  const to = folder();
  await backup(dataDir, to);
  const blobsBefore = readdirSync(join(to, 'blobs', 'sha256')).length;
  writeFileSync(join(dataDir, 'objects', 'p1', 'dev', 'docs', 'b.txt~'), 'object b');
  const second = await backup(dataDir, to);
  assert.notEqual(second.manifest.id, finishedBackups(to)[0]);
  assert.equal(finishedBackups(to).length, 2);
  // The new object, and the database if its copy differs by a byte; the rest is reused.
  assert.ok(second.copiedBlobs >= 1 && second.copiedBlobs <= 2, `copied ${second.copiedBlobs}`);
  assert.ok(second.reusedFiles >= 6, `reused ${second.reusedFiles}`);
  assert.equal(readdirSync(join(to, 'blobs', 'sha256')).length, blobsBefore + second.copiedBlobs);
  assert.ok(second.manifest.files.some((file) => file.path === 'objects/p1/dev/docs/b.txt~'));
});

test('a volume claimed by a running instance is skipped with the reason; the master key goes in when asked', async () => {
  const dataDir = dataFolder();
  const to = folder();
  const lock = join(dataDir, 'apps', 'volumes', 'p1', 'web', 'data', 'lock');
  // A live process other than this one (our parent) holds it.
  writeFileSync(lock, `${process.ppid}\n`);
  const { manifest } = await backup(dataDir, to, { includeMasterKey: true });
  assert.ok(!manifest.files.some((file) => file.part === 'volume'));
  const skipped = manifest.skipped.find((part) => part.what === 'volume apps/volumes/p1/web/data');
  // Without a way to freeze its filesystem (this backup has none), it is left out.
  assert.match(skipped!.reason, new RegExp(`in use by an app instance \\(Alto process ${process.ppid}\\) and not copied: this backup cannot freeze`));
  assert.equal(readFileSync(lock, 'utf8'), `${process.ppid}\n`, 'the holder keeps its lock');
  assert.equal(manifest.masterKey, 'included');
  assert.ok(manifest.files.some((file) => file.path === 'master-key'));
});

test('restore rebuilds the data folder byte for byte, and refuses a non-empty target', async () => {
  const dataDir = dataFolder();
  const to = folder();
  const { manifest } = await backup(dataDir, to);
  // A backup that never finished (no manifest) is not the newest whole one.
  mkdirSync(join(to, '2999-01-01T00-00-00Z'));
  const target = join(folder(), 'restored');
  const restored = await restore(to, target);
  assert.equal(restored.id, manifest.id);
  for (const file of manifest.files) {
    if (file.path === 'alto.db') continue;
    assert.ok(readFileSync(join(target, file.path)).equals(readFileSync(join(dataDir, file.path))), `${file.path} is restored as it was`);
  }
  // The database is its online backup's copy: the same rows, not the same bytes.
  const database = new Database(join(target, 'alto.db'), { readonly: true });
  assert.deepEqual(database.prepare('SELECT body FROM notes ORDER BY id').all(), Array.from({ length: 100 }, (_, i) => ({ body: `note ${i}` })));
  database.close();
  assert.equal(statSync(join(target, 'admin-key')).mode & 0o777, 0o600);
  assert.ok(!existsSync(join(target, 'master-key')));
  assert.ok(!existsSync(join(target, 'objects', '.tmp')));
  await assert.rejects(restore(to, target), /is not empty: restore into a new \(or empty\) folder/);
});

test('restore refuses a backup whose files fail their checksum, and writes nothing', async () => {
  const dataDir = dataFolder();
  const to = folder();
  const { manifest } = await backup(dataDir, to);
  const object = manifest.files.find((file) => file.path === 'objects/p1/dev/docs/a.txt~')!;
  writeFileSync(blobPath(to, object.sha256), 'object A');
  const target = join(folder(), 'restored');
  await assert.rejects(
    restore(to, target),
    (error: Error) => {
      assert.match(error.message, /is damaged, 1 of its files fail their checksum; nothing was written/);
      assert.match(error.message, /objects\/p1\/dev\/docs\/a\.txt~: its content's sha256 is [0-9a-f]{64}, the manifest says/);
      return true;
    },
  );
  assert.ok(!existsSync(target));
  assert.deepEqual(readManifest(to, manifest.id).files.length, manifest.files.length);
});

test('on PostgreSQL and S3 objects, the backup says those are backed up with their own tools and copies the rest', async () => {
  const dataDir = dataFolder();
  const to = folder();
  const lines: string[] = [];
  const { manifest } = await backup(dataDir, to, { postgres: true, objectsInBucket: true, report: (line) => lines.push(line) });
  assert.ok(manifest.skipped.some((part) => part.what === 'database' && /pg_dump/.test(part.reason)));
  assert.ok(manifest.skipped.some((part) => part.what === 'space objects and function sources' && /S3 bucket/.test(part.reason)));
  assert.ok(lines.some((line) => /PostgreSQL, not copied: back it up with pg_dump/.test(line)));
  // The SQLite file still holds this node's own records (images, cache, events): it is copied.
  assert.deepEqual(manifest.files.map((file) => file.path).sort(), ['admin-key', 'alto.db', 'apps/volumes/p1/web/data/process.ext4', `images/blobs/sha256/${IMAGE_LAYER}`, 'node-id']);
});

test('a backup into a folder another process is backing up into is refused, naming that process', async () => {
  const dataDir = dataFolder();
  const to = folder();
  await backup(dataDir, to);
  writeFileSync(join(to, 'lock'), `${process.ppid}\n`);
  await assert.rejects(backup(dataDir, to), new RegExp(`another backup is writing into .* \\(process ${process.ppid}\\): wait for it to end`));
  assert.equal(finishedBackups(to).length, 1);
});

test('a prune keeps the newest backups, and removes the others, backups cut short and content only they held', async () => {
  const dataDir = dataFolder();
  const to = folder();
  const first = await backup(dataDir, to);
  writeFileSync(join(dataDir, 'objects', 'p1', 'dev', 'docs', 'a.txt~'), 'object a, changed');
  const second = await backup(dataDir, to);
  const third = await backup(dataDir, to);
  // A backup cut short: its entry and a blob it copied, no manifest.
  mkdirSync(join(to, '2000-01-01T00-00-00Z'));
  writeFileSync(join(to, 'blobs', 'sha256', 'f'.repeat(64)), 'orphan');
  const firstObject = first.manifest.files.find((file) => file.path === 'objects/p1/dev/docs/a.txt~')!;
  assert.ok(existsSync(blobPath(to, firstObject.sha256)));
  const target = await openBackupTarget(to, { create: false });
  const pruned = await pruneBackups(target, 2);
  assert.deepEqual(pruned.removedBackups, [first.manifest.id]);
  assert.deepEqual(finishedBackups(to), [second.manifest.id, third.manifest.id]);
  assert.ok(!existsSync(join(to, '2000-01-01T00-00-00Z')));
  assert.ok(!existsSync(join(to, first.manifest.id)));
  assert.ok(!existsSync(blobPath(to, firstObject.sha256)), 'the object as only the first backup held it is removed');
  assert.ok(!existsSync(blobPath(to, 'f'.repeat(64))));
  for (const file of [...second.manifest.files, ...third.manifest.files]) assert.ok(existsSync(blobPath(to, file.sha256)), `${file.path} of a kept backup stays`);
  await assert.rejects(pruneBackups(target, 0), /at least 1/);
});

test('the finished backups are listed oldest first, with their size and what they left out', async () => {
  const dataDir = dataFolder();
  const to = folder();
  const first = await backup(dataDir, to);
  const second = await backup(dataDir, to, { withoutImages: true, includeMasterKey: true });
  mkdirSync(join(to, '2999-01-01T00-00-00Z'));
  const listings = await listBackups(await openBackupTarget(to, { create: false }));
  assert.deepEqual(listings.map((listing) => listing.id), [first.manifest.id, second.manifest.id]);
  assert.equal(listings[0].files, first.manifest.files.length);
  assert.equal(listings[0].bytes, first.manifest.files.reduce((sum, file) => sum + file.size, 0));
  assert.deepEqual(listings[0].skipped, []);
  assert.deepEqual(listings[1].skipped, ['images']);
  assert.equal(listings[1].masterKey, 'included');
});
