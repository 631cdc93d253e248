/**
 * Root-filesystem preparation with a stand-in image manager: concurrent starts of one digest
 * unpack it once and share the folder; a folder no app uses is removed, one in use stays; an
 * image named by digest is refused, and a project's local copy it may not use is pulled for it
 * instead (the admin uses any). (Real images: test/apps.e2e.test.ts, test/app-images.test.ts.)
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { errors, isAltoError } from '../../kit/errors.js';
import type { ImageDetails, ImageManager } from '../images/manager.js';
import { RootFilesystems } from './rootfs.js';

const dataDir = mkdtempSync(join(tmpdir(), 'alto-rootfs-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });
const DIGEST = `sha256:${'a'.repeat(64)}`;

function imagesOf(overrides: Partial<Record<'unpack' | 'inspect' | 'mayUse' | 'pull', unknown>>): ImageManager {
  return overrides as unknown as ImageManager;
}

test('a digest is unpacked once however many starts ask at once, and removed once unused', async () => {
  let unpacks = 0;
  let used = true;
  const images = imagesOf({
    unpack: async (_digest: string, target: string) => {
      unpacks += 1;
      await new Promise((resolve) => setTimeout(resolve, 10));
      mkdirSync(target, { recursive: true });
    },
  });
  const rootfs = new RootFilesystems({ dataDir, images, log, inUse: () => used });
  const paths = await Promise.all([rootfs.ensure(DIGEST), rootfs.ensure(DIGEST), rootfs.ensure(DIGEST)]);
  assert.equal(unpacks, 1);
  assert.equal(new Set(paths).size, 1);
  assert.equal(paths[0], join(dataDir, 'apps', 'rootfs', `sha256-${'a'.repeat(64)}`));
  await rootfs.ensure(DIGEST);
  assert.equal(unpacks, 1, 'an unpacked folder is reused');
  await rootfs.dropIfUnused(DIGEST);
  assert.ok(existsSync(paths[0]), 'a root filesystem in use stays');
  used = false;
  await rootfs.dropIfUnused(DIGEST);
  assert.ok(!existsSync(paths[0]));
});

test('images: a digest is refused; a local copy the project may not use is pulled for it; the admin uses any', async () => {
  const local = { digest: DIGEST } as ImageDetails;
  const pulled: { project?: string }[] = [];
  const images = imagesOf({
    inspect: () => local,
    mayUse: () => false,
    pull: async (_text: string, options: { project?: string }) => {
      pulled.push(options);
      throw errors.unauthorized('the registry wants credentials');
    },
  });
  const rootfs = new RootFilesystems({ dataDir, images, log, inUse: () => false });
  const owner = { projectId: 'p1', admin: false };
  await assert.rejects(rootfs.imageFor(owner, 'a'.repeat(64), false, 'missing'), (error) => isAltoError(error) && error.status === 400);
  await assert.rejects(rootfs.imageFor(owner, 'private/app:v1', false, 'missing'), (error) => isAltoError(error) && error.status === 401 && /pulling private\/app:v1/.test(error.detail));
  assert.deepEqual(pulled, [{ insecure: false, project: 'p1' }]);
  assert.equal(await rootfs.imageFor({ projectId: 'p1', admin: true }, 'private/app:v1', false, 'missing'), local);
});
