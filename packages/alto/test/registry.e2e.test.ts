/**
 * Alto's own registry end to end: a real `alto up --sandbox process` on loopback, pushed to and
 * pulled from with Debian's `skopeo` (its own token flow, with an Alto key as the password) and
 * with raw HTTP for what skopeo does not show: the 401 challenge and the token endpoint, chunked
 * uploads with Content-Range (out of order refused, status, a wrong digest refused and nothing
 * stored), monolithic uploads, mounts within a project and not across, manifests naming blobs the
 * repository lacks, tags list pages. Another project's key and a key without the app scope are
 * refused; the pushed image is deployed by `<host>/<project>/<name>:<tag>` and answers; `alto
 * images` lists the project's tags, deleting one and pruning frees its blobs, and pushed bytes
 * count toward the project's space_bytes cap.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { busyboxHttpdImage, HTTPD_PAGE, HTTPD_PORT } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli, webImage } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { buildImage, buildIndex, writeOciLayout, type BuiltImage } from './images-fixture.js';

const execFileAsync = promisify(execFile);

function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Runs skopeo; resolves with its output, or rejects with what it printed. */
async function skopeo(args: string[]): Promise<string> {
  try {
    return (await execFileAsync('skopeo', args, { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (error: any) {
    throw new Error(`skopeo ${args[0]} failed: ${error.stderr || error.message}`);
  }
}

/** An image no other test pushes (a layer of random bytes), to see its blobs come and go. */
function uniqueImage(): Promise<BuiltImage> {
  return buildImage({ layers: [[{ type: 'file', path: 'data.bin', content: randomBytes(64 * 1024) }]] });
}

describe("Alto's registry", () => {
  let alto: ServerProcess;
  let host: string;
  let edgePort: number;
  let key: string;
  let otherKey: string;
  let dbKey: string;
  let imagesKey: string;
  let spaceKey: string;
  let web: BuiltImage;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const folders: string[] = [];

  const folder = () => {
    const dir = mkdtempSync(join(tmpdir(), 'alto-registry-test-'));
    folders.push(dir);
    return dir;
  };
  /** An OCI layout holding `image` as `ref`, for skopeo to read. */
  const layoutOf = (image: BuiltImage, ref = 'latest') => {
    const dir = folder();
    writeOciLayout(dir, [{ image, refName: ref }]);
    return `oci:${dir}:${ref}`;
  };
  const push = (source: string, destination: string, credentialsKey = key) =>
    skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', `x:${credentialsKey}`, source, `docker://${host}/${destination}`]);
  const v2 = (path: string, init: RequestInit & { key?: string } = {}) => {
    const headers = new Headers(init.headers);
    const credentials = init.key === undefined ? key : init.key;
    if (credentials) headers.set('authorization', `Bearer ${credentials}`);
    return fetch(`${alto.url}/v2/${path}`, { ...init, headers, redirect: 'manual' });
  };
  /** The status of a PUT that declares `length` bytes and sends none: what the server decides from the headers alone. */
  const declaredOnly = (path: string, length: number) =>
    new Promise<number>((resolve, reject) => {
      const request = httpRequest(`${alto.url}${path}`, { method: 'PUT', headers: { authorization: `Bearer ${key}`, 'content-length': length, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
      request.on('response', (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
        request.destroy();
      });
      request.on('error', reject);
      request.flushHeaders();
    });
  const errorCode = async (response: Response) => ((await response.json()) as { errors: { code: string }[] }).errors[0].code;

  before(async () => {
    web = await busyboxHttpdImage();
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    host = new URL(alto.url).host;
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey('shop', ['app']);
    otherKey = await alto.projectKey('other', ['app']);
    dbKey = await alto.projectKey('shop', ['db']);
    imagesKey = await alto.projectKey('shop', ['images']);
    spaceKey = await alto.projectKey('shop', ['space']);
  });

  after(async () => {
    await alto?.close();
    cache.remove();
    for (const dir of folders) rmSync(dir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('GET /v2/ challenges; the token endpoint trades a key for a token of its own project', async () => {
    const anonymous = await v2('', { key: '' });
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.equal(anonymous.headers.get('www-authenticate'), `Bearer realm="http://${host}/v2/token",service="${host}"`);
    assert.equal(await errorCode(anonymous), 'UNAUTHORIZED');

    const noBasic = await fetch(`${alto.url}/v2/token?service=${host}&scope=repository:shop/web:pull`);
    assert.equal(noBasic.status, 401);
    const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`anyone:${password}`).toString('base64')}` });
    assert.equal((await fetch(`${alto.url}/v2/token?service=${host}`, { headers: basic('alto_not-a-key') })).status, 401);

    const answer = await fetch(`${alto.url}/v2/token?service=${host}&scope=repository:shop/web:pull,push`, { headers: basic(key) });
    assert.equal(answer.status, 200);
    const issued = (await answer.json()) as { token: string; access_token: string; expires_in: number };
    assert.equal(issued.token, issued.access_token);
    assert.ok(issued.expires_in > 0 && issued.expires_in <= 300);
    assert.equal((await v2('', { key: issued.token })).status, 200);
    // The token grants what was asked for: pulling another repository sends the client back for a new one.
    const elsewhere = await v2('shop/api/tags/list', { key: issued.token });
    assert.equal(elsewhere.status, 401);
    assert.match(elsewhere.headers.get('www-authenticate')!, /scope="repository:shop\/api:pull",error="insufficient_scope"/);
    // A token altered by one character is no token.
    const altered = issued.token.slice(0, -2) + (issued.token.at(-2) === 'A' ? 'B' : 'A') + issued.token.at(-1);
    assert.equal((await v2('', { key: altered })).status, 401);
  });

  test('a TLS handshake on the plain port is refused at once, so clients that try HTTPS first fall back to HTTP', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(edgePort, '127.0.0.1', () => socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03])));
      const chunks: Buffer[] = [];
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
  });

  test('skopeo pushes an image and pulls it back byte for byte, by tag and by digest', async () => {
    await push(layoutOf(web, 'v1'), 'shop/web:v1');
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', '--creds', `x:${key}`, `docker://${host}/shop/web:v1`]);
    assert.equal(sha256(raw), web.manifest.digest, 'the manifest comes back as it was pushed');
    const head = await v2('shop/web/manifests/v1', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), web.manifest.digest);
    assert.equal(head.headers.get('content-type'), web.manifest.mediaType);

    const pulled = folder();
    await skopeo(['copy', '--src-tls-verify=false', '--src-creds', `x:${key}`, `docker://${host}/shop/web:v1`, `oci:${pulled}:v1`]);
    const index = JSON.parse(readFileSync(join(pulled, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].digest, web.manifest.digest);
    for (const blob of [web.config, ...web.layers]) {
      const bytes = readFileSync(join(pulled, 'blobs', 'sha256', blob.digest.slice('sha256:'.length)));
      assert.equal(sha256(bytes), blob.digest, `${blob.digest} came back whole`);
    }
    const byDigest = await skopeo(['inspect', '--raw', '--tls-verify=false', '--creds', `x:${key}`, `docker://${host}/shop/web@${web.manifest.digest}`]);
    assert.equal(sha256(byDigest), web.manifest.digest);

    // A second tag of the same image: its blobs are already there.
    await push(`docker://${host}/shop/web:v1`, 'shop/web:v2').catch(() => push(layoutOf(web, 'v2'), 'shop/web:v2'));
    const tags = (await (await v2('shop/web/tags/list')).json()) as { name: string; tags: string[] };
    assert.deepEqual(tags, { name: 'shop/web', tags: ['v1', 'v2'] });
  });

  test('chunked uploads with Content-Range: in order only, status, a wrong digest stores nothing', async () => {
    const blob = randomBytes(300_000);
    const digest = sha256(blob);
    const started = await v2('shop/chunks/blobs/uploads/', { method: 'POST' });
    assert.equal(started.status, 202);
    const location = started.headers.get('location')!;
    assert.match(location, /^\/v2\/shop\/chunks\/blobs\/uploads\/[0-9a-f-]{36}$/);
    assert.ok(started.headers.get('docker-upload-uuid'));
    const at = (path: string, init: RequestInit = {}) => fetch(`${alto.url}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.headers as Record<string, string>) } });

    const first = await at(location, { method: 'PATCH', body: blob.subarray(0, 100_000), headers: { 'content-range': '0-99999', 'content-type': 'application/octet-stream' } });
    assert.equal(first.status, 202);
    assert.equal(first.headers.get('range'), '0-99999');
    const skipped = await at(first.headers.get('location')!, { method: 'PATCH', body: blob.subarray(200_000), headers: { 'content-range': '200000-299999' } });
    assert.equal(skipped.status, 416, 'a chunk that does not start where the upload ends is refused');
    assert.equal(await errorCode(skipped), 'RANGE_INVALID');
    assert.equal(skipped.headers.get('range'), '0-99999');
    const status = await at(location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-99999', 'the refused chunk left nothing');
    const second = await at(location, { method: 'PATCH', body: blob.subarray(100_000, 200_000), headers: { 'content-range': '100000-199999' } });
    assert.equal(second.headers.get('range'), '0-199999');

    // A wrong digest: refused, the upload ends, and nothing is stored under either digest.
    const wrong = sha256('something else');
    const refused = await at(`${location}?digest=${wrong}`, { method: 'PUT', body: blob.subarray(200_000) });
    assert.equal(refused.status, 400);
    assert.equal(await errorCode(refused), 'DIGEST_INVALID');
    assert.equal((await v2(`shop/chunks/blobs/${wrong}`, { method: 'HEAD' })).status, 404);
    assert.equal((await v2(`shop/chunks/blobs/${digest}`, { method: 'HEAD' })).status, 404);
    assert.equal((await at(location)).status, 404, 'the upload is gone');

    // Again, finished with the last chunk in the PUT.
    const again = (await v2('shop/chunks/blobs/uploads/', { method: 'POST' })).headers.get('location')!;
    const patched = await at(again, { method: 'PATCH', body: blob.subarray(0, 250_000), headers: { 'content-range': '0-249999' } });
    const finished = await at(`${patched.headers.get('location')}?digest=${digest}`, { method: 'PUT', body: blob.subarray(250_000) });
    assert.equal(finished.status, 201);
    assert.equal(finished.headers.get('docker-content-digest'), digest);
    assert.equal(finished.headers.get('location'), `/v2/shop/chunks/blobs/${digest}`);
    const fetched = await v2(`shop/chunks/blobs/${digest}`);
    assert.equal(fetched.headers.get('docker-content-digest'), digest);
    assert.equal(sha256(Buffer.from(await fetched.arrayBuffer())), digest);
    const part = await v2(`shop/chunks/blobs/${digest}`, { headers: { range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10-19/${blob.length}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), blob.subarray(10, 20));

    // Monolithic, in the POST itself; a wrong digest there stores nothing either.
    const small = randomBytes(1000);
    const monolithic = await v2(`shop/chunks/blobs/uploads/?digest=${sha256(small)}`, { method: 'POST', body: small });
    assert.equal(monolithic.status, 201);
    assert.equal((await v2(`shop/chunks/blobs/${sha256(small)}`, { method: 'HEAD' })).headers.get('content-length'), '1000');
    const badMonolithic = await v2(`shop/chunks/blobs/uploads/?digest=${sha256('other')}`, { method: 'POST', body: randomBytes(10) });
    assert.equal(await errorCode(badMonolithic), 'DIGEST_INVALID');

    // Mount: from a repository of the same project at once; from another project's, an upload starts instead.
    const mounted = await v2(`shop/mounted/blobs/uploads/?mount=${digest}&from=shop/chunks`, { method: 'POST' });
    assert.equal(mounted.status, 201);
    assert.equal((await v2(`shop/mounted/blobs/${digest}`, { method: 'HEAD' })).status, 200);
    const foreign = await v2(`other/copy/blobs/uploads/?mount=${digest}&from=shop/chunks`, { method: 'POST', key: otherKey });
    assert.equal(foreign.status, 202, 'no mount across projects');
    assert.equal((await v2(`other/copy/blobs/${digest}`, { method: 'HEAD', key: otherKey })).status, 404, "another project cannot read the blob, though it is on this machine's disk");

    // Uploads open at once are bounded per project; cancelling frees the places.
    const opened: string[] = [foreign.headers.get('location')!];
    for (;;) {
      const next = await v2('other/many/blobs/uploads/', { method: 'POST', key: otherKey });
      if (next.status !== 202) {
        assert.equal(next.status, 429);
        assert.equal(await errorCode(next), 'TOOMANYREQUESTS');
        break;
      }
      opened.push(next.headers.get('location')!);
      assert.ok(opened.length <= 64, 'at most 64 uploads open');
    }
    assert.equal(opened.length, 64);
    for (const upload of opened) assert.equal((await fetch(`${alto.url}${upload}`, { method: 'DELETE', headers: { authorization: `Bearer ${otherKey}` } })).status, 204);
    assert.equal((await v2('other/many/blobs/uploads/', { method: 'POST', key: otherKey })).status, 202);
  });

  test('manifests are checked before they are recorded; tags list in pages', async () => {
    const image = await uniqueImage();
    const manifestPut = (reference: string, body: Buffer | string, contentType = image.manifest.mediaType) =>
      v2(`shop/checked/manifests/${reference}`, { method: 'PUT', body, headers: { 'content-type': contentType } });
    const missing = await manifestPut('v1', image.manifest.bytes);
    assert.equal(missing.status, 400);
    assert.equal(await errorCode(missing), 'MANIFEST_BLOB_UNKNOWN', 'its blobs were not pushed');
    for (const blob of [image.config, ...image.layers]) {
      assert.equal((await v2(`shop/checked/blobs/uploads/?digest=${blob.digest}`, { method: 'POST', body: blob.bytes })).status, 201);
    }
    assert.equal(await errorCode(await manifestPut('v1', '{not json')), 'MANIFEST_INVALID');
    assert.equal(await errorCode(await manifestPut(sha256('x'), image.manifest.bytes)), 'DIGEST_INVALID');
    assert.equal(await errorCode(await manifestPut('-bad-tag', image.manifest.bytes)), 'TAG_INVALID');
    assert.equal(await declaredOnly(`/v2/shop/checked/manifests/v1`, 5 * 1024 * 1024), 413, 'a manifest over 4 MiB is refused before it is read');
    assert.equal((await v2('shop/checked/manifests/v1')).status, 404, 'nothing was recorded');

    const stored = await manifestPut('v1', image.manifest.bytes);
    assert.equal(stored.status, 201);
    assert.equal(stored.headers.get('docker-content-digest'), image.manifest.digest);
    assert.equal((await manifestPut(image.manifest.digest, image.manifest.bytes)).status, 201, 'by its own digest too');
    for (const tag of ['v2', 'v3', 'v4']) assert.equal((await manifestPut(tag, image.manifest.bytes)).status, 201);

    const page = await v2('shop/checked/tags/list?n=2');
    assert.deepEqual(await page.json(), { name: 'shop/checked', tags: ['v1', 'v2'] });
    assert.equal(page.headers.get('link'), '</v2/shop/checked/tags/list?n=2&last=v2>; rel="next"');
    const next = await v2('shop/checked/tags/list?n=2&last=v2');
    assert.deepEqual(await next.json(), { name: 'shop/checked', tags: ['v3', 'v4'] });
    assert.equal(next.headers.get('link'), null);
    assert.equal(await errorCode(await v2('shop/nothing/tags/list')), 'NAME_UNKNOWN');

    assert.equal((await v2('shop/checked/manifests/v4', { method: 'DELETE' })).status, 202);
    assert.equal(await errorCode(await v2('shop/checked/manifests/v4')), 'MANIFEST_UNKNOWN');
    assert.equal((await v2(`shop/checked/manifests/${image.manifest.digest}`)).status, 200, 'deleting a tag keeps the manifest');
  });

  test("another project's key and a key without the app scope are refused", async () => {
    await assert.rejects(
      skopeo(['inspect', '--raw', '--tls-verify=false', '--creds', `x:${otherKey}`, `docker://${host}/shop/web:v1`]),
      /denied|unauthorized|not found/i,
    );
    await assert.rejects(push(layoutOf(web, 'v1'), 'shop/intruder:v1', otherKey), /denied|unauthorized|403 \(Forbidden\)/i);
    const denied = await v2('shop/web/manifests/v1', { key: otherKey });
    assert.equal(denied.status, 403);
    assert.equal(await errorCode(denied), 'DENIED');
    assert.equal((await v2(`shop/web/blobs/${web.layers[0].digest}`, { key: otherKey })).status, 403);
    assert.equal((await v2('shop/web/blobs/uploads/', { method: 'POST', key: otherKey })).status, 403);
    // A project that does not exist answers the same as one that does.
    assert.equal(await errorCode(await v2('nosuchproject/web/manifests/v1', { key: otherKey })), 'DENIED');

    // The token endpoint grants another project's repository nothing; the token then reads nothing there.
    const basic = { authorization: `Basic ${Buffer.from(`x:${otherKey}`).toString('base64')}` };
    const { token } = (await (await fetch(`${alto.url}/v2/token?scope=repository:shop/web:pull`, { headers: basic })).json()) as { token: string };
    assert.equal((await v2('shop/web/manifests/v1', { key: token })).status, 403);

    const noScope = await v2('shop/web/manifests/v1', { key: dbKey });
    assert.equal(noScope.status, 403);
    assert.match(((await noScope.json()) as { errors: { message: string }[] }).errors[0].message, /"app" or "registry" scope/);
    assert.equal((await v2('shop/web/manifests/v1', { key: 'alto_revokedOrNeverIssued000000' })).status, 401);
  });

  test('the pushed image deploys as <host>/<project>/<name>:<tag> and answers; another project cannot run it', async () => {
    const deployed = await runCli(['deploy', `${host}/shop/web:v1`, '--name', 'web', '--port', String(HTTPD_PORT), '--min-instances', '1', '--json', '--url', alto.url, '--key', key]);
    assert.equal(deployed.code, 0, deployed.stderr);
    const answer = await eventually(async () => {
      const result = await getThroughEdge(edgePort, 'web.shop.localhost');
      return result.status === 200 && result;
    }, 'the pushed image to answer');
    assert.equal(answer.body, HTTPD_PAGE);
    const status = await alto.call('app', 'Status', { name: 'web' }, key);
    assert.equal(status.body.service?.image ?? `${host}/shop/web:v1`, `${host}/shop/web:v1`);

    // localhost:<port> names the same registry.
    const viaLocalhost = await alto.call('app', 'Run', { name: 'web2', image: `localhost:${edgePort}/shop/web:v2`, port: HTTPD_PORT }, key);
    assert.equal(viaLocalhost.status, 200, JSON.stringify(viaLocalhost.body));
    const foreign = await alto.call('app', 'Run', { name: 'thief', image: `${host}/shop/web:v1`, port: HTTPD_PORT }, otherKey);
    assert.equal(foreign.status, 404, JSON.stringify(foreign.body));
    assert.match(foreign.body.detail, /project "shop"'s repository/);
    await alto.call('app', 'Delete', { name: 'web2' }, key);
  });

  test('an index pushed with skopeo --all comes back as pushed, and its linux/amd64 image runs', async () => {
    const arm = await buildImage({ architecture: 'arm64', layers: [[{ type: 'file', path: 'arm.txt', content: 'arm64' }]] });
    const index = buildIndex([
      { image: web, architecture: 'amd64' },
      { image: arm, architecture: 'arm64' },
    ]);
    const dir = folder();
    writeOciLayout(dir, [{ image: index, refName: 'multi' }]);
    await skopeo(['copy', '--all', '--dest-tls-verify=false', '--dest-creds', `x:${key}`, `oci:${dir}:multi`, `docker://${host}/shop/multi:v1`]);
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', '--creds', `x:${key}`, `docker://${host}/shop/multi:v1`]);
    assert.equal(sha256(raw), index.index.digest);
    const head = await v2('shop/multi/manifests/v1', { method: 'HEAD' });
    assert.equal(head.headers.get('content-type'), index.index.mediaType);
    assert.equal((await v2(`shop/multi/manifests/${arm.manifest.digest}`, { method: 'HEAD' })).status, 200, 'the arm64 image is kept though it cannot run here');

    const run = await alto.call('app', 'Run', { name: 'multi', image: `${host}/shop/multi:v1`, port: HTTPD_PORT }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const answer = await eventually(async () => {
      const result = await getThroughEdge(edgePort, 'multi.shop.localhost');
      return result.status === 200 && result;
    }, 'the index to answer');
    assert.equal(answer.body, HTTPD_PAGE);
    await alto.call('app', 'Delete', { name: 'multi' }, key);
  });

  test('--follow-tag: a new image pushed to the tag an app follows is rolled out; an app that does not follow keeps its image', async () => {
    const [one, two] = await Promise.all([webImage('follow v1', 'follow one\n'), webImage('follow v2', 'follow two\n')]);
    await push(layoutOf(one, 'v1'), 'shop/follow:v1');
    const deployed = await runCli(['deploy', `${host}/shop/follow:v1`, '--name', 'follower', '--port', '8080', '--follow-tag', '--min-instances', '1', '--json', '--url', alto.url, '--key', key]);
    assert.equal(deployed.code, 0, deployed.stderr);
    const still = await alto.call('app', 'Run', { name: 'still', image: `${host}/shop/follow:v1`, port: 8080, min_instances: 1 }, key);
    assert.equal(still.status, 200, JSON.stringify(still.body));
    const page = async (app: string) => (await getThroughEdge(edgePort, `${app}.shop.localhost`)).body;
    await eventually(async () => (await page('follower')) === 'follow one\n', 'the follower to serve v1');

    await push(layoutOf(two, 'v1'), 'shop/follow:v1');
    await eventually(async () => (await page('follower')) === 'follow two\n', 'the follower to serve the image pushed to its tag');
    const follower = await alto.call('app', 'Status', { name: 'follower' }, key);
    assert.equal(follower.body.service.digest, two.manifest.digest);
    assert.equal(follower.body.service.follow_tag, true);
    assert.equal(await page('still'), 'follow one\n', 'an app that does not follow its tag keeps its image');
    assert.equal((await alto.call('app', 'Status', { name: 'still' }, key)).body.service.digest, one.manifest.digest);
    await alto.call('app', 'Delete', { name: 'follower' }, key);
    await alto.call('app', 'Delete', { name: 'still' }, key);
  });

  test('alto images lists the tags; deleting one and pruning frees its blobs; pushes count toward space_bytes', async () => {
    const image = await uniqueImage();
    await push(layoutOf(image), 'shop/scratch:v1');
    const listed = await runCli(['images', 'list', '--json', '--url', alto.url, '--key', imagesKey]);
    assert.equal(listed.code, 0, listed.stderr);
    const references = (JSON.parse(listed.stdout).images as { references: string[] }[]).flatMap((entry) => entry.references);
    for (const reference of ['shop/web:v1', 'shop/web:v2', 'shop/scratch:v1', 'shop/checked:v1']) assert.ok(references.includes(reference), `${reference} in ${references}`);
    assert.ok(!references.some((reference) => reference.startsWith('other/')));

    const layer = image.layers[0];
    assert.equal((await v2(`shop/scratch/blobs/${layer.digest}`, { method: 'HEAD' })).status, 200);
    const removed = await runCli(['images', 'rm', 'shop/scratch:v1', '--json', '--url', alto.url, '--key', imagesKey]);
    assert.equal(removed.code, 0, removed.stderr);
    const pruned = await runCli(['images', 'prune', '--json', '--url', alto.url, '--key', imagesKey]);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.ok(JSON.parse(pruned.stdout).freed_bytes >= layer.size, pruned.stdout);
    assert.equal((await v2(`shop/scratch/blobs/${layer.digest}`, { method: 'HEAD' })).status, 404);
    assert.equal((await v2('shop/web/manifests/v1', { method: 'HEAD' })).status, 200, 'tagged images stay');

    // A cap below what the project's repositories hold: the next upload is refused before a byte is stored.
    assert.equal((await alto.call('projects', 'Update', { name: 'shop', space_bytes: 1000 })).status, 200);
    const blob = randomBytes(5000);
    const over = await v2(`shop/web/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob });
    assert.equal(over.status, 402);
    const refusal = ((await over.json()) as { errors: { code: string; message: string }[] }).errors[0];
    assert.equal(refusal.code, 'DENIED');
    assert.match(refusal.message, /storage cap reached/);
    assert.equal((await v2(`shop/web/blobs/${sha256(blob)}`, { method: 'HEAD' })).status, 404);
    // The same cap covers the space block: the pushed images fill it.
    const object = await alto.call('space', 'Create', { name: 'note.txt', object: Buffer.from('hello').toString('base64') }, spaceKey);
    assert.equal(object.status, 402, JSON.stringify(object.body));
    assert.equal((await alto.call('projects', 'Update', { name: 'shop', space_bytes: 0 })).status, 200);
  });
});
