/**
 * Dockerfile builds end to end on the process sandbox: a real `alto up --sandbox process` builds
 * folders with a Dockerfile from a busybox base image the test builds and pushes to a real
 * docker-registry, with no Docker anywhere. `alto deploy ./dir` streams the build log and runs
 * the result: a multi-stage build (COPY --from), RUN steps that add and delete files (the
 * whiteouts are read back from the layer tars in the image store), USER, WORKDIR, ENV and ARG
 * seen by the running app, every step cached on a second build (the same image digest), a
 * failing RUN answered with its output and exit code while the previous version keeps serving.
 * ADD unpacks a local archive and fetches a URL only when the build's network is on.
 * Refused before anything runs: a file .dockerignore leaves out, COPY ../x, a symlink out of the
 * context, an unsupported instruction (400 naming the line).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { extract } from 'tar-stream';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { buildImage, busyboxBinary, startRegistry, type LayerEntry, type TestRegistry } from './images-fixture.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';

const PROJECT = 'builds';
const APPLETS = ['sh', 'httpd', 'echo', 'cat', 'rm', 'mkdir', 'cp', 'id', 'pwd', 'touch', 'ls', 'sleep', 'chmod'];

/** A busybox base: applets, /etc/passwd with www (33), /etc/motd and /opt/old/gone to delete. */
function baseLayer(): LayerEntry[] {
  return [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...APPLETS.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/sh\n' },
    { type: 'file', path: 'etc/group', content: 'root:x:0:\nwww:x:33:\n' },
    { type: 'file', path: 'etc/motd', content: 'deleted by a RUN step\n' },
    { type: 'dir', path: 'opt/' },
    { type: 'dir', path: 'opt/old/' },
    { type: 'file', path: 'opt/old/gone', content: 'its folder is replaced\n' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
  ];
}

const DOCKERFILE = (registry: string, extra = '') => `# syntax=docker/dockerfile:1
ARG BASE=${registry}/demo/busybox:v1
FROM \${BASE} AS build
RUN mkdir -p /out && echo "built in stage one" > /out/page.html
FROM \${BASE}
ARG GREETING=hello
ENV GREETING=$GREETING
COPY --from=build /out/page.html /www/index.html
COPY site/ /www/static/
RUN echo added > /added.txt && rm /etc/motd && rm -rf /opt/old && mkdir /opt/old && echo new > /opt/old/new
${extra}WORKDIR /www
USER www
EXPOSE 8080
CMD ["sh", "-c", "mkdir -p /tmp/site && cp -r /www/. /tmp/site/ && echo \\"$(id -u) $(pwd) $GREETING\\" > /tmp/site/who.txt && exec httpd -f -p 8080 -h /tmp/site"]
`;

/** Entry names of an uncompressed layer tar. */
async function tarNames(path: string): Promise<string[]> {
  const names: string[] = [];
  const reader = extract();
  const done = new Promise<void>((resolve, reject) => {
    reader.on('entry', (header, stream, next) => {
      names.push(header.name);
      stream.on('end', next);
      stream.resume();
    });
    reader.on('finish', resolve);
    reader.on('error', reject);
  });
  const bytes = readFileSync(path);
  // The base image's layers came gzipped from the registry; built ones are plain tars.
  reader.end(bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes);
  await done;
  return names;
}

describe('Dockerfile builds', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const work = mkdtempSync(join(tmpdir(), 'alto-build-test-'));
  const app = join(work, 'app');

  const call = (endpoint: string, body: unknown, withKey = key) => alto.call('app', endpoint, body, withKey);
  const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);
  const web = (path = '/') => getThroughEdge(edgePort, `web.${PROJECT}.localhost`, path);
  const filesOf = (files: Record<string, string>) => Object.fromEntries(Object.entries(files).map(([path, content]) => [path, Buffer.from(content).toString('base64')]));

  before(async () => {
    registry = await startRegistry();
    await registry.push('demo/busybox', 'v1', await buildImage({ layers: [baseLayer()], config: { Env: ['PATH=/bin'], Cmd: ['sh'] } }));
    // Private targets allowed: ADD fetches from the test's server on 127.0.0.1.
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_ALLOW_PRIVATE_CALLBACKS: '1' } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app']);
    mkdirSync(join(app, 'site'), { recursive: true });
    writeFileSync(join(app, 'Dockerfile'), DOCKERFILE(registry.host));
    writeFileSync(join(app, 'site', 'about.txt'), 'about this site\n');
    writeFileSync(join(app, 'site', 'secret.txt'), 'left out by .dockerignore\n');
    writeFileSync(join(app, '.dockerignore'), '# not for the image\nsite/secret.txt\n');
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  let firstDigest = '';
  let firstImage = '';

  test('alto deploy ./dir builds the Dockerfile (log streamed) and runs it with its USER, WORKDIR and ENV', async () => {
    const deployed = await cli(['deploy', app, '--name', 'web', '--build-arg', 'GREETING=bonjour', '--min-instances', '1']);
    assert.equal(deployed.code, 0, deployed.stderr);
    // The build log came as it went: each step with its time, the RUN steps' output, the result.
    assert.match(deployed.stderr, /\[build 2\/\d+\] RUN mkdir -p \/out/);
    assert.match(deployed.stderr, /done in \d+\.\d\d s/);
    assert.match(deployed.stderr, /image sha256:[a-f0-9]{64} built in/);
    assert.equal(JSON.parse(deployed.stdout).version, 1);

    const status = await call('Get', { name: 'web' });
    assert.equal(status.status, 200, JSON.stringify(status.body));
    firstDigest = status.body.service.digest;
    firstImage = status.body.service.image;
    assert.match(status.body.service.image, new RegExp(`^builds\\.alto\\.internal/${PROJECT}/web@sha256:`));

    assert.equal((await web('/index.html')).body, 'built in stage one\n');
    assert.equal((await web('/static/about.txt')).body, 'about this site\n');
    // uid 33 (USER www), the working directory /www, the build arg through ARG and ENV.
    assert.equal((await web('/who.txt')).body, '33 /www bonjour\n');
    // .dockerignore left the secret out of COPY site/.
    assert.equal((await web('/static/secret.txt')).status, 404);

    // The image is in the project's repository of Alto's registry too, tagged with the build id.
    const named = new RegExp(`in this project's registry as ${PROJECT}/web:([a-z0-9]+)`).exec(deployed.stderr);
    assert.ok(named, deployed.stderr);
    const tags = await fetch(`${alto.url}/v2/${PROJECT}/web/tags/list`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(tags.status, 200);
    assert.ok(((await tags.json()) as { tags: string[] }).tags.includes(named[1]));
    const manifest = await fetch(`${alto.url}/v2/${PROJECT}/web/manifests/${named[1]}`, {
      headers: { authorization: `Bearer ${key}`, accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers.get('docker-content-digest'), firstDigest);
    const layers = ((await manifest.json()) as { layers: { digest: string }[] }).layers;
    const blob = await fetch(`${alto.url}/v2/${PROJECT}/web/blobs/${layers[0].digest}`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(blob.status, 200);
    assert.equal(`sha256:${createHash('sha256').update(Buffer.from(await blob.arrayBuffer())).digest('hex')}`, layers[0].digest);
  });

  test('a RUN step that adds and deletes files becomes a layer with whiteouts', async () => {
    const image = await alto.call('images', 'Inspect', { image: firstImage });
    assert.equal(image.status, 200, JSON.stringify(image.body));
    const layers: { digest: string; role: string; position: number }[] = image.body.image.blobs.filter((blob: any) => blob.role === 'layer');
    const all = await Promise.all(layers.map((layer) => tarNames(join(dataDir, 'images', 'blobs', 'sha256', layer.digest.slice(7)))));
    const runLayer = all.find((names) => names.includes('added.txt'));
    assert.ok(runLayer, `no layer holds added.txt: ${JSON.stringify(all)}`);
    assert.ok(runLayer.includes('etc/.wh.motd'), JSON.stringify(runLayer));
    // /opt/old was deleted and made again: what was in it is gone, what is new is there.
    assert.ok(runLayer.includes('opt/old/.wh.gone'), JSON.stringify(runLayer));
    assert.ok(runLayer.includes('opt/old/new'), JSON.stringify(runLayer));
    // Nothing of the sandbox itself is in a layer.
    assert.ok(!runLayer.some((name) => name.startsWith('.alto')), JSON.stringify(runLayer));
  });

  test('a second build of the same folder runs nothing again and makes the same image', async () => {
    const deployed = await cli(['deploy', app, '--name', 'web', '--build-arg', 'GREETING=bonjour']);
    assert.equal(deployed.code, 0, deployed.stderr);
    const cachedSteps = deployed.stderr.split('\n').filter((line) => line.trim() === 'cached').length;
    assert.equal(cachedSteps, 4, deployed.stderr);
    assert.doesNotMatch(deployed.stderr, /\| /, 'no RUN step ran');
    assert.equal(JSON.parse(deployed.stdout).version, 2);
    const status = await call('Get', { name: 'web' });
    assert.equal(status.body.service.digest, firstDigest);
  });

  test('a failing RUN is answered with its output and exit code; the previous version keeps serving', async () => {
    writeFileSync(join(app, 'Dockerfile'), DOCKERFILE(registry.host, 'RUN echo "about to fail" && exit 7\n'));
    try {
      const deployed = await cli(['deploy', app, '--name', 'web']);
      assert.notEqual(deployed.code, 0);
      assert.match(deployed.stderr, /line 11: RUN failed with exit code 7/);
      assert.match(deployed.stderr, /about to fail/);
    } finally {
      writeFileSync(join(app, 'Dockerfile'), DOCKERFILE(registry.host));
    }
    const status = await call('Get', { name: 'web' });
    assert.equal(status.body.service.digest, firstDigest);
    assert.equal((await web('/index.html')).body, 'built in stage one\n');
  });

  test('what leaves the context, what .dockerignore leaves out and unsupported instructions are refused with the line', async () => {
    const run = (dockerfile: string, extra: Record<string, string> = {}) =>
      call('Run', { name: 'refused', files: filesOf({ Dockerfile: dockerfile, 'a.txt': 'a\n', '.dockerignore': 'hidden.txt\n', 'hidden.txt': 'no\n', ...extra }) });
    const from = `FROM ${registry.host}/demo/busybox:v1\n`;

    const escape = await run(`${from}COPY ../etc/passwd /x\n`);
    assert.equal(escape.status, 400);
    assert.match(escape.body.detail, /line 2: COPY \.\.\/etc\/passwd is outside the build context/);

    const ignored = await run(`${from}COPY hidden.txt /x\n`);
    assert.equal(ignored.status, 400);
    assert.match(ignored.body.detail, /line 2: COPY hidden\.txt is not in the build context \(\.dockerignore leaves it out\)/);

    const unsupported = await run(`${from}COPY a.txt /a.txt\nONBUILD RUN echo no\n`);
    assert.equal(unsupported.status, 400);
    assert.match(unsupported.body.detail, /Dockerfile line 3: ONBUILD is not supported/);

    const flag = await run(`${from}RUN --mount=type=cache,target=/x echo no\n`);
    assert.equal(flag.status, 400);
    assert.match(flag.body.detail, /Dockerfile line 2: RUN --mount is not supported/);

    const ghost = await run(`${from}USER ghost\nRUN echo never\n`);
    assert.equal(ghost.status, 400);
    assert.match(ghost.body.detail, /Dockerfile line 3: user "ghost" is not in the image's \/etc\/passwd/);

    const platform = await run(`FROM --platform=linux/arm64 ${registry.host}/demo/busybox:v1\n`);
    assert.equal(platform.status, 400);
    assert.match(platform.body.detail, /line 1: FROM --platform=linux\/arm64/);

    // A symlink in the context that leads out of it (here from a git repository, as uploads carry none).
    const repo = join(work, 'repo');
    mkdirSync(repo);
    writeFileSync(join(repo, 'Dockerfile'), `${from}COPY . /src/\n`);
    symlinkSync('/etc/passwd', join(repo, 'passwd'));
    const git = (...args: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { stdio: 'pipe' });
    git('init', '-q');
    git('add', '.');
    git('commit', '-q', '-m', 'escape');
    const linked = await call('Run', { name: 'refused', repo, dockerfile: 'Dockerfile' }, alto.adminKey);
    assert.equal(linked.status, 400, JSON.stringify(linked.body));
    assert.match(linked.body.detail, /symlink passwd points outside the context/);

    // Nothing was kept of any of them.
    assert.equal((await call('Get', { name: 'refused' })).status, 404);
  });

  test('ADD unpacks a local archive, and fetches a URL only with the build network on', async () => {
    const files = mkdtempSync(join(work, 'archive-'));
    writeFileSync(join(files, 'from-archive.txt'), 'unpacked by ADD\n');
    const archive = join(work, 'site.tar.gz');
    execFileSync('tar', ['-czf', archive, '-C', files, '.']);
    const server = createServer((request, response) => {
      if (request.url === '/remote.txt') response.end('fetched by ADD\n');
      else response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/remote.txt`;
    try {
      const dockerfile = `FROM ${registry.host}/demo/busybox:v1\nADD site.tar.gz /www/\nADD ${url} /www/\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n`;
      const body = { name: 'adds', min_instances: 1, files: { ...filesOf({ Dockerfile: dockerfile }), 'site.tar.gz': readFileSync(archive).toString('base64') } };
      const offline = await call('Run', body);
      assert.equal(offline.status, 400);
      assert.match(offline.body.detail, /line 3: ADD http:\/\/127\.0\.0\.1:\d+\/remote\.txt: ADD fetches URLs only when the build network is on/);
      const online = await call('Run', { ...body, build_network: true });
      assert.equal(online.status, 200, JSON.stringify(online.body));
      assert.equal((await getThroughEdge(edgePort, `adds.${PROJECT}.localhost`, '/from-archive.txt')).body, 'unpacked by ADD\n');
      assert.equal((await getThroughEdge(edgePort, `adds.${PROJECT}.localhost`, '/remote.txt')).body, 'fetched by ADD\n');
    } finally {
      server.close();
    }
  });

  test('FROM scratch with COPY --from an image makes an image of only what was copied', async () => {
    const dockerfile = [
      'FROM scratch',
      `COPY --from=${registry.host}/demo/busybox:v1 /bin/busybox /bin/busybox`,
      'COPY <<EOT /www/index.html',
      'from scratch',
      'EOT',
      'CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]',
      '',
    ].join('\n');
    const built = await call('Run', { name: 'bare', files: filesOf({ Dockerfile: dockerfile }) });
    assert.equal(built.status, 200, JSON.stringify(built.body));
    assert.equal((await getThroughEdge(edgePort, `bare.${PROJECT}.localhost`, '/index.html')).body, 'from scratch\n');
    const image = await alto.call('images', 'Inspect', { image: built.body.service.image });
    const layers = image.body.image.blobs.filter((blob: any) => blob.role === 'layer');
    assert.equal(layers.length, 2);
    const names = (await Promise.all(layers.map((layer: any) => tarNames(join(dataDir, 'images', 'blobs', 'sha256', layer.digest.slice(7)))))).flat();
    assert.deepEqual(names.sort(), ['bin/busybox', 'www/index.html']);
  });

  test('heredocs, SHELL and the config instructions; app/BuildLogs replays a finished build', async () => {
    const buildId = 'logsreplay1';
    const dockerfile = [
      `FROM ${registry.host}/demo/busybox:v1`,
      'SHELL ["/bin/sh", "-ec"]',
      'RUN <<EOF',
      'mkdir -p /www',
      'echo "from a RUN heredoc" > /www/run.txt',
      'EOF',
      'COPY <<EOT /www/note.txt',
      'from a COPY heredoc',
      'EOT',
      'LABEL org.example.team="build tests" version=1',
      'VOLUME /data',
      'STOPSIGNAL SIGINT',
      'HEALTHCHECK --interval=30s --retries=2 CMD ["cat", "/www/run.txt"]',
      'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]',
      '',
    ].join('\n');
    const built = await call('Run', { name: 'tiny', build_id: buildId, files: filesOf({ Dockerfile: dockerfile }) });
    assert.equal(built.status, 200, JSON.stringify(built.body));
    assert.equal((await getThroughEdge(edgePort, `tiny.${PROJECT}.localhost`, '/run.txt')).body, 'from a RUN heredoc\n');
    assert.equal((await getThroughEdge(edgePort, `tiny.${PROJECT}.localhost`, '/note.txt')).body, 'from a COPY heredoc\n');

    const image = await alto.call('images', 'Inspect', { image: built.body.service.image });
    assert.equal(image.status, 200, JSON.stringify(image.body));
    const config = JSON.parse(readFileSync(join(dataDir, 'images', 'blobs', 'sha256', image.body.image.config_digest.slice(7)), 'utf8'));
    assert.deepEqual(config.config.Labels, { 'org.example.team': 'build tests', version: '1' });
    assert.deepEqual(config.config.Volumes, { '/data': {} });
    assert.equal(config.config.StopSignal, 'SIGINT');
    assert.deepEqual(config.config.Shell, ['/bin/sh', '-ec']);
    assert.deepEqual(config.config.Healthcheck, { Test: ['CMD', 'cat', '/www/run.txt'], Interval: 30e9, Retries: 2 });
    assert.equal(config.created, '1970-01-01T00:00:00.000Z');

    const lines = await eventually(async () => {
      const printed = await runCli(['call', 'app', 'BuildLogs', '--build_id', buildId, '--url', alto.url, '--key', key]);
      return printed.code === 0 && printed.stdout.includes('succeeded') && printed.stdout;
    }, 'the build log');
    assert.match(lines, /RUN <<EOF/);
    assert.match(lines, /COPY <<EOT \/www\/note\.txt/);
  });
});
