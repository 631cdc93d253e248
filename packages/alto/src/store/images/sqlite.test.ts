/**
 * The image records adapter: references move between images, a blob is returned for deletion
 * only with the last image made of it, users and access are kept per image, and a data folder
 * whose image tables were written before the port keeps its images.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migrate, openSqlite } from '../sqlite/database.js';
import { EVERY_PROJECT, type ImageBlob, type NewImage } from './port.js';
import { MIGRATIONS, SqliteImageRecordStore } from './sqlite.js';

const SHARED_LAYER: ImageBlob = { digest: 'sha256:layer0', role: 'layer', position: 0, mediaType: 'tar+gzip', size: 100, diffId: 'sha256:diff0' };

function image(digest: string, layers: ImageBlob[], references: string[]): NewImage {
  return {
    digest,
    repository: 'docker.io/library/web',
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest: `${digest}-config`,
    spec: JSON.stringify({ os: 'linux', cmd: ['httpd'] }),
    source: 'pull',
    blobs: [
      { digest, role: 'manifest', position: 0, mediaType: 'manifest', size: 10 },
      { digest: `${digest}-config`, role: 'config', position: 0, mediaType: 'config', size: 20 },
      ...layers,
    ],
    references,
  };
}

test('references, shared blobs, users and access', () => {
  const db = openSqlite(':memory:');
  const store = new SqliteImageRecordStore(db);
  store.save(image('sha256:aaa1', [SHARED_LAYER], ['web:1', 'web:latest']));
  store.save(image('sha256:bbb2', [SHARED_LAYER, { ...SHARED_LAYER, digest: 'sha256:layer1', position: 1, size: 50 }], ['web:latest']));

  const first = store.get('sha256:aaa1')!;
  assert.deepEqual(first.references, ['web:1'], 'web:latest moved to the newer image');
  assert.equal(first.layersSize, 100);
  assert.deepEqual(JSON.parse(first.spec), { os: 'linux', cmd: ['httpd'] });
  assert.equal(store.get('sha256:bbb2')!.layersSize, 150);
  assert.equal(store.digestOfReference('web:latest'), 'sha256:bbb2');
  assert.deepEqual(store.digestsStartingWith('sha256:b'), ['sha256:bbb2']);
  assert.deepEqual(store.list().map((record) => record.digest).sort(), ['sha256:aaa1', 'sha256:bbb2']);
  assert.deepEqual(
    store.blobsOf('sha256:bbb2').map((blob) => `${blob.role}:${blob.position}:${blob.digest}`),
    ['config:0:sha256:bbb2-config', 'layer:0:sha256:layer0', 'layer:1:sha256:layer1', 'manifest:0:sha256:bbb2'],
  );
  assert.equal(store.blobReferenceCount('sha256:layer0'), 2);

  store.addUser('sha256:aaa1', 'app:web');
  assert.deepEqual(store.get('sha256:aaa1')!.users, ['app:web']);
  assert.equal(store.removeUser('sha256:aaa1', 'app:web'), true);
  assert.equal(store.removeUser('sha256:aaa1', 'app:web'), false);

  store.grant('sha256:aaa1', 'p1', 'pulled');
  store.grant('sha256:aaa1', 'p1', 'shared');
  assert.deepEqual(store.accessOf('sha256:aaa1'), [{ project: 'p1', how: 'pulled' }], 'the first reason is kept');
  assert.equal(store.mayUse('sha256:aaa1', 'p1'), true);
  assert.equal(store.mayUse('sha256:aaa1', 'p2'), false);
  store.grant('sha256:aaa1', EVERY_PROJECT, 'public');
  assert.equal(store.mayUse('sha256:aaa1', 'p2'), true);
  assert.equal(store.revoke('sha256:aaa1', EVERY_PROJECT), true);
  assert.equal(store.mayUse('sha256:aaa1', 'p2'), false);

  assert.deepEqual(store.removeImage('sha256:aaa1').sort(), ['sha256:aaa1', 'sha256:aaa1-config'], 'the shared layer stays');
  assert.equal(store.get('sha256:aaa1'), undefined);
  assert.equal(store.digestOfReference('web:1'), undefined, 'its references went with it');
  assert.deepEqual(store.accessOf('sha256:aaa1'), []);
  assert.equal(store.removeReference('web:latest'), true);
  assert.equal(store.removeReference('web:latest'), false);
  assert.deepEqual([...store.referencedBlobs()].sort(), ['sha256:bbb2', 'sha256:bbb2-config', 'sha256:layer0', 'sha256:layer1']);
  db.close();
});

test('image tables written before the port are read as they are', () => {
  const db = openSqlite(':memory:');
  migrate(db, 'images', MIGRATIONS);
  db.prepare(`INSERT INTO image_manifests (digest, repository, media_type, index_digest, config_digest, layers_size, spec, source, created_at, updated_at)
    VALUES ('sha256:old', 'docker.io/library/redis', 'manifest', 'sha256:index', 'sha256:config', 7, '{"os":"linux"}', 'import', 10, 20)`).run();
  db.prepare("INSERT INTO image_tags (reference, digest, updated_at) VALUES ('docker.io/library/redis:7', 'sha256:old', 20)").run();

  const store = new SqliteImageRecordStore(db);
  assert.deepEqual(store.get('sha256:old'), {
    digest: 'sha256:old',
    repository: 'docker.io/library/redis',
    mediaType: 'manifest',
    indexDigest: 'sha256:index',
    configDigest: 'sha256:config',
    layersSize: 7,
    spec: '{"os":"linux"}',
    source: 'import',
    createdAt: 10,
    updatedAt: 20,
    references: ['docker.io/library/redis:7'],
    users: [],
  });
  assert.equal((db.prepare("SELECT COUNT(*) AS n FROM alto_migrations WHERE module = 'images'").get() as { n: number }).n, MIGRATIONS.length);
  db.close();
});

test("registry repositories: linked blobs, manifests, tags, bytes, and collection of what no tag reaches", () => {
  const db = openSqlite(':memory:');
  const store = new SqliteImageRecordStore(db);
  const repository = 'p1/web';
  store.linkBlob(repository, 'sha256:config', 10);
  store.linkBlob(repository, 'sha256:layer', 1000);
  store.linkBlob(repository, 'sha256:stray', 500);
  store.linkBlob('p1/api', 'sha256:layer', 1000);
  store.linkBlob('p2/web', 'sha256:other', 7);
  assert.equal(store.linkedBlobSize(repository, 'sha256:layer'), 1000);
  assert.equal(store.linkedBlobSize('p2/web', 'sha256:layer'), undefined, "another project's repository does not hold it");
  assert.equal(store.blobReferenceCount('sha256:layer'), 2, 'a linked blob counts as referenced');

  store.putManifest(repository, { digest: 'sha256:image', mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 300, references: ['sha256:config', 'sha256:layer'] }, 'v1');
  store.putManifest(repository, { digest: 'sha256:index', mediaType: 'application/vnd.oci.image.index.v1+json', size: 200, references: ['sha256:image'] }, 'multi');
  store.putManifest(repository, { digest: 'sha256:loose', mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 90, references: ['sha256:config'] });
  assert.equal(store.digestOfTag(repository, 'v1'), 'sha256:image');
  assert.deepEqual(store.manifestOf(repository, 'sha256:image')?.references, ['sha256:config', 'sha256:layer']);
  assert.deepEqual(store.tagsOf(repository, 10), ['multi', 'v1']);
  assert.deepEqual(store.tagsOf(repository, 1, 'multi'), ['v1']);
  assert.deepEqual(store.repositories('p1/'), ['p1/api', 'p1/web']);
  // Each blob and manifest once, across the project's repositories: 10 + 1000 + 500 + 300 + 200 + 90.
  assert.equal(store.repositoryBytes('p1/'), 2100);
  assert.ok(store.referencedBlobs().has('sha256:index'), 'manifests are referenced blobs too');

  // The untagged manifest, and blobs no manifest names, go; `keep` holds one back.
  assert.deepEqual(store.collectRepositories('p1/', new Set(['sha256:layer'])), { manifests: ['sha256:loose'], blobs: 1 });
  assert.equal(store.linkedBlobSize(repository, 'sha256:stray'), undefined);
  assert.equal(store.linkedBlobSize('p1/api', 'sha256:layer'), 1000, 'kept');
  assert.equal(store.linkedBlobSize('p2/web', 'sha256:other'), 7, "another project's repositories are not collected");

  // Untagging the index leaves the image (still tagged v1); removing the image's manifest takes its tag.
  assert.equal(store.removeTag(repository, 'multi'), true);
  assert.deepEqual(store.collectRepositories('p1/', new Set()), { manifests: ['sha256:index'], blobs: 1 }, 'the layer held back before goes now');
  assert.deepEqual(store.removeManifest(repository, 'sha256:image'), ['v1']);
  assert.equal(store.digestOfTag(repository, 'v1'), undefined);
  assert.deepEqual(store.collectRepositories('p1/', new Set()), { manifests: [], blobs: 2 });
  assert.equal(store.repositoryBytes('p1/'), 0);
  db.close();
});
