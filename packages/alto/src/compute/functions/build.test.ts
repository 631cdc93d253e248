/**
 * The function builder without a server: which handler style a module gets, the bundle actually
 * serving HTTP when run by node, build errors carrying file and line, how source-built apps
 * start, and uploaded paths kept inside the build folder.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BuildFailure, buildEnvironment, bundleFunction, startCommandOf } from './build.js';
import { fetchSource } from './source.js';

const scratch = mkdtempSync(join(tmpdir(), 'alto-fn-build-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

let folders = 0;
function project(files: Record<string, string>): string {
  const folder = join(scratch, `p${folders++}`);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(folder, path, '..'), { recursive: true });
    writeFileSync(join(folder, path), content);
  }
  return folder;
}

const bundle = (folder: string, options: { entrypoint?: string; name?: string } = {}) =>
  bundleFunction({ folder, entryFile: join(folder, 'index.ts'), name: options.name ?? 'fn', entrypoint: options.entrypoint, nodeVersion: process.version });

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

describe('bundleFunction', () => {
  test('a default export is a web handler; the bundle serves it over HTTP', async () => {
    const folder = project({ 'index.ts': "import { twice } from './lib';\nexport default (request: Request) => Response.json({ n: twice(2), method: request.method });\n", 'lib.ts': 'export const twice = (n: number) => n * 2;\n' });
    const result = await bundle(folder);
    assert.deepEqual(result.style, { kind: 'web' });
    const file = join(folder, 'out.mjs');
    writeFileSync(file, result.code);
    const port = await freePort();
    const child = spawn(process.execPath, [file], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('listening') && resolve()));
      const answer = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: '{}' });
      assert.deepEqual(await answer.json(), { n: 4, method: 'POST' });
    } finally {
      child.kill();
    }
  });

  test('an entrypoint, or the export named like the function, is a JSON handler', async () => {
    const folder = project({ 'index.ts': 'export const add = (input: { a: number }) => ({ b: input.a + 1 });\nexport function fn() { return {}; }\n' });
    assert.deepEqual((await bundle(folder, { entrypoint: 'add' })).style, { kind: 'json', exportName: 'add' });
    assert.deepEqual((await bundle(folder)).style, { kind: 'json', exportName: 'fn' });
  });

  test('faults in the code are BuildFailures naming file and line', async () => {
    const syntax = project({ 'index.ts': 'export default () => {\n  const x = ;\n};\n' });
    await assert.rejects(bundle(syntax), (error: unknown) => error instanceof BuildFailure && error.status === 400 && /index\.ts:2:13: Unexpected ";"/.test(error.detail));
    const missing = project({ 'index.ts': 'export const other = 1;\n' });
    await assert.rejects(bundle(missing), /no default export .* and no export named "fn"/);
    await assert.rejects(bundle(missing, { entrypoint: 'main' }), /no export named "main" \(the entrypoint\); it exports: other/);
    const unresolved = project({ 'index.ts': "import './nowhere';\nexport default () => new Response('x');\n" });
    await assert.rejects(bundle(unresolved), /index\.ts:1:8: Could not resolve "\.\/nowhere"/);
  });
});

describe('startCommandOf', () => {
  test('a plain node start script, else main; Dockerfiles and shell scripts are refused', () => {
    assert.deepEqual(startCommandOf(project({ 'package.json': JSON.stringify({ scripts: { start: 'node --enable-source-maps server.js 8080' } }), 'server.js': '' })), ['--enable-source-maps', 'server.js', '8080']);
    assert.deepEqual(startCommandOf(project({ 'package.json': JSON.stringify({ main: 'app.js' }), 'app.js': '' })), ['app.js']);
    assert.throws(() => startCommandOf(project({ Dockerfile: 'FROM x', 'package.json': '{}' })), /Dockerfile or Containerfile: deploy it as an app built from it/);
    assert.throws(() => startCommandOf(project({ 'package.json': JSON.stringify({ scripts: { start: 'tsc && node dist/a.js' } }) })), /not a plain "node <file>" command/);
    assert.throws(() => startCommandOf(project({ 'package.json': JSON.stringify({ name: 'x' }) })), /neither a start script/);
    assert.throws(() => startCommandOf(project({ 'index.js': '' })), /no package\.json/);
  });
});

describe('fetchSource', () => {
  test('uploaded paths stay inside the build folder; local repositories need an admin key', async () => {
    const target = mkdtempSync(join(scratch, 'build-'));
    for (const path of ['../x.ts', '/etc/passwd', 'a/../../x.ts']) {
      await assert.rejects(fetchSource({ files: { [path]: '' } }, target, { allowLocalRepos: false }), /must be a relative path/);
    }
    await assert.rejects(fetchSource({ repo: '/tmp' }, target, { allowLocalRepos: false }), /only an admin key/);
    await assert.rejects(fetchSource({ repo: 'ftp://example.com/x' }, target, { allowLocalRepos: false }), /not a git URL/);
    await assert.rejects(fetchSource({ source: 'x', repo: 'https://example.com/x' }, target, { allowLocalRepos: false }), /not source and repo/);
  });
});

describe('buildEnvironment', () => {
  test('npm sees how to find programs, its own settings and the proxy, never Alto\'s keys or cloud credentials', () => {
    const environment = buildEnvironment({
      PATH: '/usr/bin',
      HOME: '/root',
      HTTPS_PROXY: 'http://proxy:3128',
      npm_config_registry: 'http://registry.local/',
      ALTO_ADMIN_KEY: 'sk_admin',
      ALTO_MASTER_KEY: 'master',
      AWS_SECRET_ACCESS_KEY: 'aws',
      GITHUB_TOKEN: 'gh',
      DATABASE_URL: 'postgres://secret',
    });
    assert.deepEqual(environment, { PATH: '/usr/bin', HOME: '/root', HTTPS_PROXY: 'http://proxy:3128', npm_config_registry: 'http://registry.local/' });
  });
});
