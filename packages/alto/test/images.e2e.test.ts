/**
 * Images end to end: a real Alto (HTTP and websocket, admin key) pulls images the tests built
 * and pushed to real docker-registry servers on loopback (open, token auth, basic auth), then
 * inspects, unpacks, imports, removes and prunes them; and the `alto images` / `alto registry`
 * commands drive the same. The unpacked trees are compared entry by entry with what the
 * layers say.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { CLI_ENTRY, startInProcess, type TestAlto } from './harness.js';
import {
  buildImage,
  buildIndex,
  busyboxBaseLayer,
  changesLayer,
  describeTree,
  EXPECTED_TREE,
  startRegistry,
  writeDockerSave,
  writeOciLayout,
  type BuiltImage,
  type TestRegistry,
} from './images-fixture.js';

interface StreamResult {
  messages: any[];
  code: number;
  reason: string;
}

/** Opens the Pull stream and collects every message until the server closes it. */
function pull(alto: TestAlto, reference: string, key = alto.adminKey): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${alto.url.replace('http', 'ws')}/v1/images/Pull`, { headers: { authorization: `Bearer ${key}` } });
    const messages: any[] = [];
    ws.on('open', () => ws.send(JSON.stringify({ reference })));
    ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
    ws.on('close', (code, reason) => resolve({ messages, code, reason: reason.toString() }));
    ws.on('unexpected-response', (_request, response) => resolve({ messages, code: response.statusCode ?? 0, reason: 'http' }));
    ws.on('error', reject);
  });
}

function pulledImage(result: StreamResult): any {
  const last = result.messages.at(-1);
  assert.equal(result.code, 1000, `the pull failed: ${JSON.stringify(last)}`);
  assert.equal(last.status, 'pulled');
  return last.image;
}

function pullError(result: StreamResult): { code: number; detail: string; id: string } {
  const last = result.messages.at(-1);
  assert.ok(result.code >= 4000, `expected the pull to fail, it ended with ${result.code}`);
  assert.equal(last.code, result.code - 4000);
  return last;
}

const workspace = mkdtempSync(join(tmpdir(), 'alto-images-e2e-'));

describe('images through a real registry', () => {
  let alto: TestAlto;
  let open: TestRegistry;
  let tokenAuth: TestRegistry;
  let basicAuth: TestRegistry;
  let busybox: BuiltImage;

  before(async () => {
    [open, tokenAuth, basicAuth] = await Promise.all([
      startRegistry(),
      startRegistry({ auth: 'token', publicRepositories: ['public/busybox'] }),
      startRegistry({ auth: 'basic' }),
    ]);
    busybox = await buildImage({
      layers: [busyboxBaseLayer(), changesLayer()],
      config: {
        Entrypoint: ['/app/run.sh'],
        Cmd: ['--port', '8080'],
        Env: ['PATH=/bin', 'GREETING=hello=world', 'PATH=/usr/bin:/bin'],
        WorkingDir: '/app',
        User: '1000:1000',
        ExposedPorts: { '8080/tcp': {}, '53/udp': {} },
        Volumes: { '/data': {} },
        Labels: { 'org.opencontainers.image.title': 'busybox test' },
        StopSignal: 'SIGINT',
      },
    });
    await open.push('demo/busybox', 'v1', busybox);
    await tokenAuth.push('public/busybox', 'v1', busybox);
    await tokenAuth.push('private/busybox', 'v1', busybox);
    await basicAuth.push('team/busybox', 'v1', busybox);
    alto = await startInProcess();
  });

  after(async () => {
    await alto?.close();
    await Promise.all([open?.stop(), tokenAuth?.stop(), basicAuth?.stop()]);
    rmSync(workspace, { recursive: true, force: true });
  });

  test('pulls a multi-layer image with progress, then unpacks exactly what the layers say', async () => {
    const result = await pull(alto, `${open.host}/demo/busybox:v1`);
    const image = pulledImage(result);
    assert.equal(image.digest, busybox.manifest.digest);
    assert.deepEqual(image.references, [`${open.host}/demo/busybox:v1`]);
    assert.equal(image.layers, 2);

    const [resolved, ...rest] = result.messages;
    assert.deepEqual(resolved, { status: 'resolved', digest: busybox.manifest.digest, layers: 2, total: busybox.layers[0].size + busybox.layers[1].size });
    for (const layer of busybox.layers) {
      const done = rest.find((message) => message.digest === layer.digest && message.status === 'done');
      assert.deepEqual(done, { status: 'done', digest: layer.digest, role: 'layer', current: layer.size, total: layer.size });
    }

    const inspected = await alto.call('images', 'Inspect', { image: `${open.host}/demo/busybox:v1` });
    assert.equal(inspected.status, 200, JSON.stringify(inspected.body));
    assert.deepEqual(inspected.body.image.spec, {
      os: 'linux',
      architecture: 'amd64',
      entrypoint: ['/app/run.sh'],
      cmd: ['--port', '8080'],
      env: { PATH: '/usr/bin:/bin', GREETING: 'hello=world' },
      working_dir: '/app',
      user: '1000:1000',
      exposed_ports: [
        { port: 53, protocol: 'udp' },
        { port: 8080, protocol: 'tcp' },
      ],
      volumes: ['/data'],
      labels: { 'org.opencontainers.image.title': 'busybox test' },
      stop_signal: 'SIGINT',
      created: '2024-01-02T03:04:05Z',
    });
    assert.deepEqual(
      inspected.body.image.blobs.filter((blob: any) => blob.role === 'layer').map((blob: any) => [blob.digest, blob.diff_id]),
      busybox.layers.map((layer) => [layer.digest, layer.diffId]),
    );

    const target = join(workspace, 'busybox-rootfs');
    const unpacked = await alto.call('images', 'Unpack', { image: `${open.host}/demo/busybox:v1`, path: target });
    assert.equal(unpacked.status, 200, JSON.stringify(unpacked.body));
    assert.deepEqual(describeTree(target), EXPECTED_TREE);
    assert.equal(unpacked.body.whiteouts, 2);
    assert.deepEqual(unpacked.body.skipped, [
      { path: 'dev/null', type: 'character-device' },
      { path: 'run/pipe', type: 'fifo' },
    ]);
    assert.deepEqual(readFileSync(join(target, 'bin/busybox')), readFileSync('/bin/busybox'));
    if (process.getuid?.() === 0) assert.equal(statSync(join(target, 'app/run.sh')).uid, 1000);

    // The unpacked busybox is a real program that runs.
    const version = await new Promise<string>((resolve, reject) =>
      execFile(join(target, 'bin/busybox'), ['echo', 'unpacked and running'], (error, stdout) => (error ? reject(error) : resolve(stdout))),
    );
    assert.equal(version, 'unpacked and running\n');

    // Unpacking into a folder that is not empty is refused rather than merged.
    const again = await alto.call('images', 'Unpack', { image: `${open.host}/demo/busybox:v1`, path: target });
    assert.equal(again.status, 409);
    assert.match(again.body.detail, /already exists and is not empty/);
  });

  test('a second pull of the same image downloads nothing', async () => {
    const result = await pull(alto, `${open.host}/demo/busybox:v1`);
    pulledImage(result);
    const states = result.messages.filter((message) => message.role).map((message) => message.status);
    assert.ok(states.length >= 3);
    assert.ok(states.every((state) => state === 'cached'), states.join(','));
  });

  test('a multi-platform index is resolved to linux/amd64', async () => {
    const amd64 = await buildImage({ layers: [[{ type: 'file', path: 'arch', content: 'amd64' }]] });
    const arm64 = await buildImage({ layers: [[{ type: 'file', path: 'arch', content: 'arm64' }]], architecture: 'arm64' });
    const index = buildIndex([
      { image: arm64, architecture: 'arm64', variant: 'v8' },
      { image: amd64, architecture: 'amd64' },
    ]);
    await open.push('demo/multi', 'v1', index);
    const image = pulledImage(await pull(alto, `${open.host}/demo/multi:v1`));
    assert.equal(image.digest, amd64.manifest.digest);
    assert.equal(image.index_digest, index.index.digest);
    const target = join(workspace, 'multi-rootfs');
    assert.equal((await alto.call('images', 'Unpack', { image: `${open.host}/demo/multi:v1`, path: target })).status, 200);
    assert.equal(readFileSync(join(target, 'arch'), 'utf8'), 'amd64');

    // The same image by the index digest, and by its own digest.
    assert.equal(pulledImage(await pull(alto, `${open.host}/demo/multi@${index.index.digest}`)).digest, amd64.manifest.digest);
    assert.equal((await alto.call('images', 'Inspect', { image: `${open.host}/demo/multi@${amd64.manifest.digest}` })).body.image.digest, amd64.manifest.digest);

    // A Docker manifest list with no amd64 entry says what it offers.
    const armOnly = buildIndex([{ image: arm64, architecture: 'arm64', variant: 'v8' }], 'docker');
    await open.push('demo/arm-only', 'v1', armOnly);
    const failed = pullError(await pull(alto, `${open.host}/demo/arm-only:v1`));
    assert.equal(failed.code, 404);
    assert.match(failed.detail, /has no linux\/amd64 image; it offers linux\/arm64\/v8/);
  });

  test('a Docker v2 manifest with an uncompressed layer', async () => {
    const image = await buildImage({
      format: 'docker',
      layers: [busyboxBaseLayer(), [{ type: 'file', path: 'etc/motd', content: 'plain tar layer\n' }]],
      uncompressed: [1],
    });
    await open.push('demo/docker', 'v1', image);
    const pulled = pulledImage(await pull(alto, `${open.host}/demo/docker:v1`));
    assert.equal(pulled.media_type, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(pulled.blobs.find((blob: any) => blob.role === 'layer' && blob.diff_id === image.layers[1].diffId).media_type, 'application/vnd.docker.image.rootfs.diff.tar');
    const target = join(workspace, 'docker-rootfs');
    assert.equal((await alto.call('images', 'Unpack', { image: `${open.host}/demo/docker:v1`, path: target })).status, 200);
    assert.equal(readFileSync(join(target, 'etc/motd'), 'utf8'), 'plain tar layer\n');
  });

  test('token auth: anonymous pulls of public repositories, saved credentials for private ones', async () => {
    const issuer = tokenAuth.tokenIssuer!;
    const publicImage = pulledImage(await pull(alto, `${tokenAuth.host}/public/busybox:v1`));
    assert.equal(publicImage.digest, busybox.manifest.digest);
    assert.ok(issuer.requests.some((request) => request.scope === 'repository:public/busybox:pull' && request.user === undefined), 'an anonymous token was fetched');

    const refused = pullError(await pull(alto, `${tokenAuth.host}/private/busybox:v1`));
    assert.equal(refused.code, 403);
    assert.match(refused.detail, new RegExp(`${tokenAuth.host} needs credentials for repository:private/busybox:pull; save them with "alto registry login ${tokenAuth.host}"`));

    const wrong = await alto.call('registry', 'Login', { registry: tokenAuth.host, username: 'reader', password: 'wrong' });
    assert.equal(wrong.status, 403);
    assert.match(wrong.body.detail, /refused the saved credentials of "reader"|refused the credentials of "reader"/);

    const login = await alto.call('registry', 'Login', { registry: tokenAuth.host, username: 'reader', password: 'reader-secret' });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const credentialsFile = join(alto.dataDir, 'images', 'credentials.json');
    assert.equal(statSync(credentialsFile).mode & 0o777, 0o600);
    const listed = await alto.call('registry', 'List', {});
    assert.deepEqual(listed.body.registries.map((entry: any) => [entry.registry, entry.username]), [[tokenAuth.host, 'reader']]);
    assert.ok(!JSON.stringify(listed.body).includes('reader-secret'), 'List never shows passwords');

    const privateImage = pulledImage(await pull(alto, `${tokenAuth.host}/private/busybox:v1`));
    assert.equal(privateImage.digest, busybox.manifest.digest);
    assert.ok(issuer.requests.some((request) => request.scope === 'repository:private/busybox:pull' && request.user === 'reader'));

    const logout = await alto.call('registry', 'Logout', { registry: tokenAuth.host });
    assert.deepEqual(logout.body, { registry: tokenAuth.host, removed: true });
  });

  test('basic auth with credentials saved by login', async () => {
    const refused = pullError(await pull(alto, `${basicAuth.host}/team/busybox:v1`));
    assert.equal(refused.code, 403);
    assert.match(refused.detail, /needs credentials/);
    const wrong = await alto.call('registry', 'Login', { registry: basicAuth.host, username: 'reader', password: 'nope' });
    assert.equal(wrong.status, 403);
    assert.equal((await alto.call('registry', 'Login', { registry: basicAuth.host, username: 'reader', password: 'reader-secret' })).status, 200);
    assert.equal(pulledImage(await pull(alto, `${basicAuth.host}/team/busybox:v1`)).digest, busybox.manifest.digest);
  });

  test('a blob whose digest does not match is deleted and the pull fails clearly', async () => {
    const image = await buildImage({ layers: [[{ type: 'file', path: 'data', content: 'original content '.repeat(1000) }]] });
    await open.push('demo/corrupt', 'v1', image);
    // Tamper with the registry's stored copy, keeping its length.
    const stored = open.blobPath(image.layers[0].digest);
    const bytes = readFileSync(stored);
    bytes[bytes.length - 20] ^= 0xff;
    writeFileSync(stored, bytes);

    const failed = pullError(await pull(alto, `${open.host}/demo/corrupt:v1`));
    assert.equal(failed.code, 502);
    assert.match(failed.detail, new RegExp(`the blob ${open.host}/demo/corrupt sent as ${image.layers[0].digest} has the digest sha256:[a-f0-9]{64}: it is corrupt or was tampered with; the download was deleted and nothing was stored`));
    const images = join(alto.dataDir, 'images');
    assert.equal(existsSync(join(images, 'blobs/sha256', image.layers[0].digest.slice(7))), false);
    assert.deepEqual(readdirSync(join(images, 'ingest')), [], 'no partial download is left');
    const listed = await alto.call('images', 'List', {});
    assert.ok(!listed.body.images.some((entry: any) => entry.digest === image.manifest.digest), 'the image was not recorded');
  });

  test('malicious layers: traversal is refused at unpack, symlink escapes stay inside the root', async () => {
    const outside = join(workspace, 'outside');
    const traversal = await buildImage({ layers: [[{ type: 'file', path: 'ok', content: 'fine' }, { type: 'file', path: '../../../../../../../../../..' + outside + '/pwned', content: 'x' }]] });
    await open.push('evil/traversal', 'v1', traversal);
    pulledImage(await pull(alto, `${open.host}/evil/traversal:v1`));
    const target = join(workspace, 'traversal-rootfs');
    const refused = await alto.call('images', 'Unpack', { image: `${open.host}/evil/traversal:v1`, path: target });
    assert.equal(refused.status, 400);
    assert.match(refused.body.detail, new RegExp(`layer ${traversal.layers[0].digest} of ${open.host}/evil/traversal:v1 is refused: entry ".*pwned" contains "\\.\\." \\(path traversal\\)`));
    assert.equal(existsSync(outside), false, 'nothing was written outside');
    assert.equal(existsSync(target), false, 'a refused unpack leaves no folder behind');
    assert.deepEqual(readdirSync(workspace).filter((name) => name.includes('unpacking')), []);

    const escape = await buildImage({
      layers: [
        [{ type: 'symlink', path: 'escape', target: outside }],
        [{ type: 'file', path: 'escape/pwned', content: 'x' }],
      ],
    });
    await open.push('evil/symlink', 'v1', escape);
    pulledImage(await pull(alto, `${open.host}/evil/symlink:v1`));
    const escapeTarget = join(workspace, 'symlink-rootfs');
    assert.equal((await alto.call('images', 'Unpack', { image: `${open.host}/evil/symlink:v1`, path: escapeTarget })).status, 200);
    assert.equal(existsSync(outside), false, 'the symlink was not followed out of the root');
    assert.equal(readFileSync(join(escapeTarget, outside, 'pwned'), 'utf8'), 'x');
  });

  test('imports a docker save tarball and an OCI layout folder', async () => {
    const image = await buildImage({ layers: [busyboxBaseLayer(), changesLayer(), busyboxBaseLayer()] });
    const tarball = join(workspace, 'saved.tar');
    await writeDockerSave(tarball, image, ['imported/busybox:saved']);
    const fromTarball = await alto.call('images', 'Import', { path: tarball });
    assert.equal(fromTarball.status, 200, JSON.stringify(fromTarball.body));
    const [saved] = fromTarball.body.images;
    assert.deepEqual(saved.references, ['docker.io/imported/busybox:saved']);
    assert.equal(saved.config_digest, image.config.digest, 'the config is kept byte for byte');
    assert.deepEqual(saved.blobs.filter((blob: any) => blob.role === 'layer').map((blob: any) => blob.diff_id), image.layers.map((layer) => layer.diffId));
    const savedRoot = join(workspace, 'saved-rootfs');
    assert.equal((await alto.call('images', 'Unpack', { image: 'imported/busybox:saved', path: savedRoot })).status, 200);
    // The third layer puts back what the second removed.
    assert.ok(existsSync(join(savedRoot, 'etc/removed-later')));
    assert.ok(existsSync(join(savedRoot, 'var/cache/old-1')));

    const layout = join(workspace, 'layout');
    const amd64 = await buildImage({ layers: [busyboxBaseLayer(), changesLayer()] });
    const arm64 = await buildImage({ layers: [[{ type: 'file', path: 'arch', content: 'arm64' }]], architecture: 'arm64' });
    writeOciLayout(layout, [{ image: buildIndex([{ image: arm64, architecture: 'arm64' }, { image: amd64, architecture: 'amd64' }]), refName: 'v2' }]);
    const unnamed = await alto.call('images', 'Import', { path: layout });
    assert.equal(unnamed.status, 400);
    assert.match(unnamed.body.detail, /does not name its image \(only the tag v2\); give it a name/);
    const fromLayout = await alto.call('images', 'Import', { path: layout, reference: 'imported/layout:v2' });
    assert.equal(fromLayout.status, 200, JSON.stringify(fromLayout.body));
    assert.equal(fromLayout.body.images[0].digest, amd64.manifest.digest);
    const layoutRoot = join(workspace, 'layout-rootfs');
    assert.equal((await alto.call('images', 'Unpack', { image: 'imported/layout:v2', path: layoutRoot })).status, 200);
    assert.deepEqual(describeTree(layoutRoot), EXPECTED_TREE);

    // The same layout as a tarball (what skopeo's oci-archive: and Docker 25's save write).
    const archive = join(workspace, 'layout.tar');
    execFileSync('tar', ['-cf', archive, '-C', layout, '.']);
    const fromArchive = await alto.call('images', 'Import', { path: archive, reference: 'imported/archive:v2' });
    assert.equal(fromArchive.status, 200, JSON.stringify(fromArchive.body));
    assert.equal(fromArchive.body.images[0].digest, amd64.manifest.digest);
    assert.deepEqual(fromArchive.body.images[0].references, ['docker.io/imported/archive:v2', 'docker.io/imported/layout:v2']);

    const missing = await alto.call('images', 'Import', { path: join(workspace, 'nope.tar') });
    assert.equal(missing.status, 404);
    assert.match(missing.body.detail, /does not exist on the server's machine/);
  });

  test('remove and prune count references: a shared layer stays until its last image goes', async () => {
    const first = await buildImage({ layers: [[{ type: 'file', path: 'shared', content: 'shared layer' }], [{ type: 'file', path: 'one', content: '1' }]] });
    const second = await buildImage({ layers: [[{ type: 'file', path: 'shared', content: 'shared layer' }], [{ type: 'file', path: 'two', content: '2' }]] });
    await open.push('demo/one', 'v1', first);
    await open.push('demo/two', 'v1', second);
    pulledImage(await pull(alto, `${open.host}/demo/one:v1`));
    pulledImage(await pull(alto, `${open.host}/demo/two:v1`));
    const blobPath = (digest: string) => join(alto.dataDir, 'images/blobs/sha256', digest.slice(7));
    const shared = first.layers[0].digest;
    assert.equal(shared, second.layers[0].digest);

    const removed = await alto.call('images', 'Delete', { image: `${open.host}/demo/one:v1` });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.deepEqual(removed.body.deleted, [first.manifest.digest]);
    assert.equal(existsSync(blobPath(first.layers[1].digest)), false, 'its own layer is gone');
    assert.equal(existsSync(blobPath(shared)), true, 'the shared layer is kept for the other image');

    const second2 = await alto.call('images', 'Delete', { image: second.manifest.digest.slice(0, 19) });
    assert.equal(second2.status, 200, JSON.stringify(second2.body));
    assert.deepEqual(second2.body.untagged, [`${open.host}/demo/two:v1`]);
    assert.equal(existsSync(blobPath(shared)), false, 'the last image took the shared layer with it');

    // An orphan blob (left by an interrupted import) goes with prune; tagged images stay.
    const orphan = join(alto.dataDir, 'images/blobs/sha256', 'ab'.repeat(32));
    writeFileSync(orphan, 'orphan');
    const pruned = await alto.call('images', 'Prune', {});
    assert.equal(pruned.status, 200);
    assert.deepEqual(pruned.body.deleted, []);
    assert.ok(pruned.body.blobs_deleted >= 1);
    assert.equal(existsSync(orphan), false);
    assert.ok((await alto.call('images', 'Inspect', { image: `${open.host}/demo/busybox:v1` })).status === 200);

    const missing = await alto.call('images', 'Delete', { image: 'not/there:v1' });
    assert.equal(missing.status, 404);
    assert.match(missing.body.detail, /no image is called "not\/there:v1"/);
  });

  test("the machine's images need the admin key; a project key lists only what its project pushed", async () => {
    const projectKey = await alto.projectKey('images-shop');
    const listed = await alto.call('images', 'List', {}, projectKey);
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.images, [], 'none of the pulled images');
    assert.equal((await alto.call('images', 'Inspect', { image: `${open.host}/demo/busybox:v1` }, projectKey)).status, 403);
    const streamed = await pull(alto, `${open.host}/demo/busybox:v1`, projectKey);
    assert.equal(streamed.code, 403);
  });

  test('the alto images and alto registry commands', async () => {
    const env = { ...process.env, ALTO_URL: alto.url, ALTO_KEY: alto.adminKey, ALTO_CONFIG: join(workspace, 'cli-config.json'), NO_COLOR: '1' };
    const cli = (args: string[], input?: string) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const child = execFile(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args], { env }, (error, stdout, stderr) =>
          resolve({ code: error ? ((error as any).code as number) : 0, stdout, stderr }),
        );
        child.stdin!.end(input ?? '');
      });
    const reference = `${basicAuth.host}/team/busybox:v1`;
    await alto.call('registry', 'Logout', { registry: basicAuth.host });
    const login = await cli(['registry', 'login', basicAuth.host, '-u', 'reader', '--password-stdin'], 'reader-secret\n');
    assert.equal(login.code, 0, login.stderr);
    assert.deepEqual(JSON.parse(login.stdout), { registry: basicAuth.host, username: 'reader', status: 'ok' });

    await alto.call('images', 'Delete', { image: reference });
    const pulled = await cli(['images', 'pull', reference]);
    assert.equal(pulled.code, 0, pulled.stderr);
    // Progress goes to stderr (one line per blob when not a terminal), the result to stdout.
    assert.match(pulled.stderr, new RegExp(`${reference}: 2 layers, \\d+(\\.\\d)? (KB|MB) \\(sha256:`));
    assert.match(pulled.stderr, /layer [a-f0-9]{12}: (\d+(\.\d)? (KB|MB) downloaded|already stored)/);
    assert.ok(JSON.parse(pulled.stdout).references.includes(reference));
    const progressJson = await cli(['images', 'pull', reference, '--json']);
    const lines = progressJson.stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(lines[0].status, 'resolved');
    assert.equal(lines.at(-1).status, 'pulled');

    const listed = await cli(['images', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(JSON.parse(listed.stdout).images.some((image: any) => image.references.includes(reference)));

    const inspected = await cli(['images', 'inspect', reference]);
    assert.equal(JSON.parse(inspected.stdout).spec.working_dir, '/app');

    const unpackTarget = join(workspace, 'cli-rootfs');
    const unpacked = await cli(['images', 'unpack', reference, unpackTarget]);
    assert.equal(unpacked.code, 0, unpacked.stderr);
    assert.equal(JSON.parse(unpacked.stdout).hard_links, 2);
    assert.deepEqual(describeTree(unpackTarget), EXPECTED_TREE);

    const removed = await cli(['images', 'rm', reference]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(JSON.parse(removed.stdout).untagged, [reference]);
    const pruned = await cli(['images', 'prune']);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.equal(typeof JSON.parse(pruned.stdout).freed_bytes, 'number');

    const bad = await cli(['images', 'pull', 'Not A Reference']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /error: .*not a valid/);
    const logout = await cli(['registry', 'logout', basicAuth.host]);
    assert.deepEqual(JSON.parse(logout.stdout), { registry: basicAuth.host, removed: true });
  });
});
