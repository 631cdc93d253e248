/**
 * Images across tenants: an image on the machine is not every project's. The admin pulls a
 * private image with the machine's registry login; another project's key cannot run it (its
 * own, anonymous pull is refused by the registry) until the admin shares it. A public image
 * stays usable by everyone. Registries run on loopback, which the harness trusts for projects.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { privateSandboxCache, webImage } from '../apps-fixture.js';
import { startProcess, temporaryDataDir, type CallResult, type ServerProcess } from '../harness.js';
import { startRegistry, type TestRegistry } from '../images-fixture.js';

/** app/Run went through: the image was allowed, pulled where needed and the app started. */
function assertImageAccepted(result: CallResult, what: string): void {
  assert.equal(result.status, 200, `${what}: ${result.status} ${JSON.stringify(result.body)}`);
}

describe('images across tenants', () => {
  let alto: ServerProcess;
  let privateRegistry: TestRegistry;
  let openRegistry: TestRegistry;
  let otherKey: string;
  const dataDir = temporaryDataDir();
  const cache = privateSandboxCache();

  before(async () => {
    [privateRegistry, openRegistry] = await Promise.all([startRegistry({ auth: 'basic' }), startRegistry()]);
    await privateRegistry.push('team/secret', 'v1', await webImage('secret', 'secret\n'));
    await openRegistry.push('library/public', 'v1', await webImage('public', 'public\n'));
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    otherKey = await alto.projectKey('other', ['app']);
    const login = await alto.call('registry', 'Login', { registry: privateRegistry.host, username: 'reader', password: 'reader-secret' });
    assert.equal(login.status, 200, JSON.stringify(login.body));
  });
  after(async () => {
    await alto?.close();
    await Promise.all([privateRegistry?.stop(), openRegistry?.stop()]);
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const secret = () => `${privateRegistry.host}/team/secret:v1`;

  test("the admin's private image is the admin's: another project cannot run it, by tag or by digest", async () => {
    assertImageAccepted(await alto.call('app', 'Run', { name: 'admin-secret', image: secret(), port: 8080 }), 'the admin runs its private image');
    const inspected = await alto.call('images', 'Inspect', { image: secret() });
    assert.equal(inspected.status, 200, 'the image is on the machine');
    const digest = inspected.body.image.digest as string;

    const byTag = await alto.call('app', 'Run', { name: 'stolen', image: secret(), port: 8080 }, otherKey);
    assert.equal(byTag.status, 403, JSON.stringify(byTag.body));
    assert.match(byTag.body.detail, /refused an anonymous pull/);
    const byDigest = await alto.call('app', 'Run', { name: 'stolen', image: `${privateRegistry.host}/team/secret@${digest}`, port: 8080 }, otherKey);
    assert.equal(byDigest.status, 403, JSON.stringify(byDigest.body));
    assert.equal((await alto.call('app', 'List', {}, otherKey)).body.services.length, 0);
  });

  test('a public image stays usable by every project', async () => {
    // Pulled first by the admin, anonymously: public in its registry.
    assertImageAccepted(await alto.call('app', 'Run', { name: 'public', image: `${openRegistry.host}/library/public:v1`, port: 8080 }), 'the admin runs a public image');
    const run = await alto.call('app', 'Run', { name: 'public', image: `${openRegistry.host}/library/public:v1`, port: 8080 }, otherKey);
    assertImageAccepted(run, 'another project runs the public image');
    if (run.status === 200) assert.equal((await alto.call('app', 'Delete', { name: 'public' }, otherKey)).status, 200);
  });

  test('an image the admin shares with a project runs there, and no longer once the share is taken back', async () => {
    const shared = await alto.call('images', 'Share', { image: secret(), project: 'other' });
    assert.equal(shared.status, 200, JSON.stringify(shared.body));
    assert.equal(shared.body.shared, true);
    const run = await alto.call('app', 'Run', { name: 'shared', image: secret(), port: 8080 }, otherKey);
    assertImageAccepted(run, 'the project runs the shared image');
    if (run.status === 200) assert.equal((await alto.call('app', 'Delete', { name: 'shared' }, otherKey)).status, 200);

    assert.equal((await alto.call('images', 'Share', { image: secret(), project: 'other', revoke: true })).body.shared, false);
    const again = await alto.call('app', 'Run', { name: 'shared', image: secret(), port: 8080 }, otherKey);
    assert.equal(again.status, 403, JSON.stringify(again.body));
    assert.equal((await alto.call('images', 'Share', { image: secret(), project: 'other' }, otherKey)).status, 403, 'only the admin shares');
  });
});
