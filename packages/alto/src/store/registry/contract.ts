/**
 * @module store/registry/contract
 * The behaviour every registry catalog adapter must have, as one node:test suite;
 * `registry.contract.test.ts` runs it per adapter. `other` is a second catalog on the same data,
 * as another node would open it: what one pushes, tags, deletes or collects the other sees.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { TwoStores } from '../two-processes.js';
import type { RegistryCatalog } from './port.js';

const IMAGE = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

export function runRegistryCatalogContract(name: string, open: () => Promise<TwoStores<RegistryCatalog>>): void {
  describe(`registry catalog contract: ${name}`, () => {
    let adapter: TwoStores<RegistryCatalog>;
    let store: RegistryCatalog;
    let other: RegistryCatalog;
    const run = randomBytes(4).toString('hex');
    const project = (label: string) => `project-${run}-${label}`;
    const digest = (label: string) => `sha256:${label.padEnd(64, '0')}`;

    before(async () => {
      adapter = await open();
      store = adapter.store;
      other = adapter.other;
    });
    after(() => adapter.dispose());

    test('blobs, manifests and tags written by one are read by the other; bytes count each digest once', async () => {
      const p1 = project('a');
      const web = `${p1}/web`;
      const api = `${p1}/api`;
      await store.linkBlob(web, digest('c0'), 10);
      await store.linkBlob(web, digest('1a'), 1000);
      await store.linkBlob(web, digest('5a'), 500);
      await other.linkBlob(api, digest('1a'), 1000);
      await store.linkBlob(`${project('b')}/web`, digest('07'), 7);
      assert.equal(await other.linkedBlobSize(web, digest('1a')), 1000);
      assert.equal(await other.linkedBlobSize(`${project('b')}/web`, digest('1a')), undefined, "another project's repository does not hold it");
      await store.linkBlob(web, digest('1a'), 1000);
      assert.equal(await other.linkedBlobSize(web, digest('1a')), 1000, 'linked again: still one link');

      await store.putManifest(web, { digest: digest('e1'), mediaType: IMAGE, size: 300, references: [digest('c0'), digest('1a')] }, 'v1');
      await other.putManifest(web, { digest: digest('d1'), mediaType: INDEX, size: 200, references: [digest('e1')] }, 'multi');
      await store.putManifest(web, { digest: digest('00'), mediaType: IMAGE, size: 90, references: [digest('c0')] });
      assert.equal(await other.digestOfTag(web, 'v1'), digest('e1'));
      assert.equal(await other.digestOfTag(web, 'v9'), undefined);
      const manifest = await other.manifestOf(web, digest('e1'));
      assert.deepEqual({ ...manifest, pushedAt: undefined }, { digest: digest('e1'), mediaType: IMAGE, size: 300, references: [digest('1a'), digest('c0')].sort(), pushedAt: undefined });
      assert.ok(manifest!.pushedAt! > Date.now() - 60_000);
      assert.equal(await other.manifestOf(api, digest('e1')), undefined, 'a manifest belongs to its repository');
      assert.deepEqual(await other.repositories(`${p1}/`), [api, web]);
      // 10 + 1000 + 500 + 300 + 200 + 90: each blob and manifest once across the project's repositories.
      assert.equal(await other.repositoryBytes(`${p1}/`), 2100);
      assert.equal(await other.repositoryBytes(`${project('b')}/`), 7);
      assert.equal(await other.repositoryBytes(`${project('none')}/`), 0);
      assert.deepEqual(await other.held([digest('1a'), digest('d1'), digest('ff')]), new Set([digest('1a'), digest('d1')]));
      assert.deepEqual(await other.held([]), new Set());
    });

    test('tags list in byte order, in pages; moved, removed, and taken with their manifest', async () => {
      const repository = `${project('tags')}/web`;
      const manifest0Time = Date.now();
      await store.putManifest(repository, { digest: digest('a1'), mediaType: IMAGE, size: 1, references: [] }, 'v1');
      for (const tag of ['v2', 'V2', 'latest', 'v10']) await store.putManifest(repository, { digest: digest('a1'), mediaType: IMAGE, size: 1, references: [] }, tag);
      assert.deepEqual(await other.tagsOf(repository, 100), ['V2', 'latest', 'v1', 'v10', 'v2']);
      assert.deepEqual(await other.tagsOf(repository, 2, 'latest'), ['v1', 'v10']);
      await other.putManifest(repository, { digest: digest('a2'), mediaType: IMAGE, size: 2, references: [] }, 'v1');
      assert.equal(await store.digestOfTag(repository, 'v1'), digest('a2'), 'the tag moved');
      assert.deepEqual(await store.taggedOf(repository), [
        { tag: 'V2', digest: digest('a1') },
        { tag: 'latest', digest: digest('a1') },
        { tag: 'v1', digest: digest('a2') },
        { tag: 'v10', digest: digest('a1') },
        { tag: 'v2', digest: digest('a1') },
      ]);
      const moved = (await other.tagsUpdatedSince(manifest0Time)).filter((entry) => entry.repository === repository);
      assert.deepEqual(moved.find((entry) => entry.tag === 'v1')?.digest, digest('a2'), 'a tag as it was last written');
      assert.equal(moved.length, 5);
      assert.ok(moved.every((entry) => entry.updatedAt >= manifest0Time));
      assert.deepEqual(await other.tagsUpdatedSince(Date.now() + 60_000), [], 'nothing written in the future');
      assert.equal(await other.removeTag(repository, 'v10'), true);
      assert.equal(await other.removeTag(repository, 'v10'), false);
      assert.deepEqual(await other.removeManifest(repository, digest('a1')), ['V2', 'latest', 'v2']);
      assert.equal(await store.manifestOf(repository, digest('a1')), undefined);
      assert.deepEqual(await store.tagsOf(repository, 100), ['v1']);
      assert.deepEqual(await store.removeManifest(repository, digest('a9')), []);
    });

    test('collection: manifests no tag reaches and blobs no manifest names go, in the prefix only, except what is kept', async () => {
      const p1 = project('gc');
      const web = `${p1}/web`;
      for (const [blob, size] of [['c0', 10], ['1a', 1000], ['9c', 500]] as const) await store.linkBlob(web, digest(blob), size);
      await store.linkBlob(`${p1}/api`, digest('1a'), 1000);
      await store.linkBlob(`${project('gc2')}/web`, digest('07'), 7);
      await store.putManifest(web, { digest: digest('e1'), mediaType: IMAGE, size: 300, references: [digest('c0'), digest('1a')] }, 'v1');
      await store.putManifest(web, { digest: digest('d1'), mediaType: INDEX, size: 200, references: [digest('e1')] }, 'multi');
      await store.putManifest(web, { digest: digest('00'), mediaType: IMAGE, size: 90, references: [digest('c0')] });

      const first = await other.collectRepositories(`${p1}/`, new Set([digest('1a')]));
      assert.deepEqual(first, { manifests: [digest('00')], blobs: 1 }, 'the untagged manifest and the stray blob; the api link is kept');
      assert.equal(await store.linkedBlobSize(web, digest('9c')), undefined);
      assert.deepEqual(await store.held([digest('9c'), digest('07')]), new Set([digest('07')]), 'no repository holds the stray blob any more');
      assert.equal(await store.linkedBlobSize(`${p1}/api`, digest('1a')), 1000);
      assert.equal(await store.linkedBlobSize(`${project('gc2')}/web`, digest('07')), 7, "another project's repositories are not collected");

      assert.equal(await store.removeTag(web, 'multi'), true);
      const second = await other.collectRepositories(`${p1}/`, new Set());
      assert.deepEqual(second, { manifests: [digest('d1')], blobs: 1 }, 'the untagged index, and the api link held back before');
      assert.equal(await store.manifestOf(web, digest('e1')) !== undefined, true, 'the image is still tagged v1');
      assert.deepEqual(await store.removeManifest(web, digest('e1')), ['v1']);
      const third = await other.collectRepositories(`${p1}/`, new Set());
      assert.deepEqual(third, { manifests: [], blobs: 2 });
      assert.equal(await store.repositoryBytes(`${p1}/`), 0);
    });

    test('releaseUnheld gives back what no repository holds; a link made meanwhile waits for the release to end', async () => {
      const repository = `${project('release')}/web`;
      await store.linkBlob(repository, digest('f1'), 1);
      let released: string[] = [];
      let linked = false;
      let link: Promise<void> | undefined;
      await other.releaseUnheld([digest('f1'), digest('f2'), digest('f3')], async (unheld) => {
        released = unheld;
        link = other.linkBlob(repository, digest('f2'), 2).then(() => {
          linked = true;
        });
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(linked, false, 'the link waits while the release runs');
      });
      await link;
      assert.deepEqual(released, [digest('f2'), digest('f3')]);
      assert.equal(await store.linkedBlobSize(repository, digest('f2')), 2, 'linked after the release');
      await other.releaseUnheld([digest('f1'), digest('f2')], async (unheld) => assert.deepEqual(unheld, []));
    });

    test("removing a project's repositories takes everything they hold and nothing of another project's", async () => {
      const gone = project('gone');
      const kept = `${project('gone')}x/web`;
      await store.linkBlob(`${gone}/web`, digest('e0'), 5);
      await store.linkBlob(kept, digest('e0'), 5);
      await store.putManifest(`${gone}/web`, { digest: digest('e9'), mediaType: IMAGE, size: 9, references: [digest('e0')] }, 'v1');
      await store.putManifest(`${gone}/api/deep`, { digest: digest('e8'), mediaType: IMAGE, size: 8, references: [] }, 'v1');
      await other.removeRepositories(`${gone}/`);
      assert.deepEqual(await store.repositories(`${gone}/`), []);
      assert.equal(await store.repositoryBytes(`${gone}/`), 0);
      assert.equal(await store.digestOfTag(`${gone}/web`, 'v1'), undefined);
      assert.equal(await store.linkedBlobSize(kept, digest('e0')), 5, 'a project whose id starts the same keeps its own');
      assert.deepEqual(await store.held([digest('e0'), digest('e9'), digest('e8')]), new Set([digest('e0')]));
    });

    test('a collection while the other pushes loses no tagged manifest', async () => {
      const repository = `${project('race')}/web`;
      await Promise.all([
        ...Array.from({ length: 10 }, (_, index) =>
          store.putManifest(repository, { digest: digest(`b${index}`), mediaType: IMAGE, size: 5, references: [] }, `t${index}`),
        ),
        other.collectRepositories(`${project('race')}/`, new Set()),
        other.collectRepositories(`${project('race')}/`, new Set()),
      ]);
      assert.equal((await other.tagsOf(repository, 100)).length, 10);
      for (let index = 0; index < 10; index++) assert.ok(await other.manifestOf(repository, digest(`b${index}`)));
    });
  });
}
