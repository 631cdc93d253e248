/**
 * Issue 20, item 1: builds read only their source. A real `alto up --sandbox process` bundles
 * functions (and source-built apps) on the host; each attack here tries to make the build read
 * a canary file outside the uploaded folder (beside admin-key in the data folder), the admin
 * and master keys, or the server's own environment (/proc/self/environ, holding a canary
 * variable): absolute, `../`, `file:`, require(), dynamic import(), JSON/text/CSS loaders, CSS
 * @import, tsconfig paths and extends, package.json main, `file:` dependencies, symlinks in a
 * cloned repository (a link to the canary, node_modules -> the data folder, a subfolder that is
 * a link). Each must answer 400 naming the import (or the link, or the field), and no answer,
 * nor the build log, may carry the canary, the admin key or the master key. data: imports and
 * `new URL(path, import.meta.url)` read nothing at build time and still build.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { privateSandboxCache } from '../apps-fixture.js';
import { startProcess, temporaryDataDir, type CallResult, type ServerProcess } from '../harness.js';

const PROJECT = 'builders';
const MARKER = `canary-${randomBytes(12).toString('hex')}`;

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('builds read only their source', () => {
  let alto: ServerProcess;
  let key: string;
  let secrets: string[];
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const scratch = mkdtempSync(join(tmpdir(), 'alto-build-attack-'));
  const canary = {
    text: join(dataDir, 'canary.txt'),
    json: join(dataDir, 'canary.json'),
    css: join(dataDir, 'canary.css'),
    js: join(dataDir, 'canary.js'),
    pkg: join(dataDir, 'canary-pkg'),
  };
  // From <data>/functions/builds/<name>-xxxx/src up to the data folder.
  const up = '../../../../';
  let deploys = 0;

  /** The answer carries none of the canary, the admin key, the master key. */
  function assertClean(result: CallResult, what: string): void {
    const text = JSON.stringify(result.body);
    assert.ok(!text.includes(MARKER), `${what}: the answer quotes the canary: ${text}`);
    for (const secret of secrets) assert.ok(!text.includes(secret), `${what}: the answer quotes a key of the server`);
  }

  /** Deploys `files` as a new function; expects a 400 whose detail matches `names`, with nothing leaked. */
  async function refused(what: string, files: Record<string, string>, names: RegExp, as: string = key): Promise<void> {
    const encoded = Object.fromEntries(Object.entries(files).map(([path, content]) => [path, b64(content)]));
    const result = await alto.call('function', 'Deploy', { name: `attack-${deploys++}`, files: encoded }, as);
    assertClean(result, what);
    assert.equal(result.status, 400, `${what}: ${JSON.stringify(result.body)}`);
    assert.match(result.body.detail, names, what);
  }

  before(async () => {
    writeFileSync(canary.text, `${MARKER}\n`);
    writeFileSync(canary.json, JSON.stringify({ marker: MARKER }));
    writeFileSync(canary.css, `.leak::after { content: "${MARKER}"; }\n`);
    writeFileSync(canary.js, `export default ${JSON.stringify(MARKER)};\n`);
    mkdirSync(canary.pkg);
    writeFileSync(join(canary.pkg, 'package.json'), JSON.stringify({ name: 'canary-pkg', version: '1.0.0', main: 'index.js' }));
    writeFileSync(join(canary.pkg, 'index.js'), `module.exports = ${JSON.stringify(MARKER)};\n`);
    alto = await startProcess({
      dataDir,
      args: ['--sandbox', 'process'],
      env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host', ALTO_BUILD_CANARY: MARKER },
    });
    key = await alto.projectKey(PROJECT, ['function', 'app']);
    // The secret block writes the master key when it first opens.
    assert.equal((await alto.call('secret', 'Set', { key: 'warm', value: 'up' })).status, 200);
    secrets = [readFileSync(join(dataDir, 'admin-key'), 'utf8').trim(), readFileSync(join(dataDir, 'master-key'), 'utf8').trim()].filter(Boolean);
    assert.ok(secrets.length === 2 && secrets.every((secret) => secret.length >= 16));
  });

  after(async () => {
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  test('absolute, ../, file: and /proc imports are refused by name, without their content', async () => {
    const cases: [string, string][] = [
      ['admin-key', `import key from '${dataDir}/admin-key';\nexport default () => new Response(String(key));\n`],
      ['master-key', `import key from '${dataDir}/master-key' with { type: 'text' };\nexport default () => new Response(key);\n`],
      ['absolute text', `import leak from '${canary.text}' with { type: 'text' };\nexport default () => new Response(leak);\n`],
      ['absolute js', `import leak from '${canary.js}';\nexport default () => new Response(leak);\n`],
      ['relative ../', `import leak from '${up}canary.txt' with { type: 'text' };\nexport default () => new Response(leak);\n`],
      ['file: URL', `import leak from 'file://${canary.text}' with { type: 'text' };\nexport default () => new Response(leak);\n`],
      ['/proc/self/environ', `import env from '/proc/self/environ' with { type: 'text' };\nexport default () => new Response(env);\n`],
      ['/proc/self/environ as js', `import env from '/proc/self/environ';\nexport default () => new Response(String(env));\n`],
      ['JSON loader', `import leak from '${canary.json}';\nexport default () => Response.json(leak);\n`],
      ['require()', `const leak = require('${canary.json}');\nexport default () => Response.json(leak);\n`],
      ['dynamic import()', `export default async () => Response.json(await import('${canary.json}'));\n`],
      ['CSS loader', `import '${canary.css}';\nexport default () => new Response('css');\n`],
    ];
    for (const [what, source] of cases) {
      const spec = /(?:from |require\(|import\(|import )'([^']+)'/.exec(source)![1]!;
      await refused(what, { 'index.ts': source }, new RegExp(`the import "${spec.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`));
    }
    // Inline source (one file) takes the same road.
    const inline = await alto.call('function', 'Deploy', { name: 'inline-attack', source: `import leak from '${canary.text}' with { type: 'text' };\nexport default () => new Response(leak);\n` }, key);
    assertClean(inline, 'inline source');
    assert.equal(inline.status, 400);
    assert.match(inline.body.detail, /the import ".*canary\.txt" in index\.ts is outside the folder/);
  });

  test('CSS @import, tsconfig paths and extends, package.json main and file: dependencies are refused', async () => {
    await refused('CSS @import', { 'index.ts': "import './style.css';\nexport default () => new Response('css');\n", 'style.css': `@import "${canary.css}";\n` }, /the import ".*canary\.css" in style\.css/);
    await refused(
      'tsconfig paths',
      {
        'index.ts': "import leak from 'leak' with { type: 'text' };\nexport default () => new Response(leak);\n",
        'tsconfig.json': JSON.stringify({ compilerOptions: { baseUrl: '.', paths: { leak: [canary.text] } } }),
      },
      /the import "leak" in index\.ts is outside the folder/,
    );
    await refused('tsconfig extends (absolute)', { 'index.ts': "export default () => new Response('x');\n", 'tsconfig.json': JSON.stringify({ extends: canary.text }) }, /tsconfig\.json extends ".*canary\.txt"/);
    await refused('tsconfig extends admin-key', { 'index.ts': "export default () => new Response('x');\n", 'tsconfig.json': `// comments are fine\n{ "extends": "${up}admin-key", }` }, /tsconfig\.json extends "(\.\.\/)+admin-key"/);
    await refused('package.json main', { 'package.json': JSON.stringify({ name: 'x', main: `${up}canary.js` }), 'index.ts': "export default () => new Response('x');\n" }, /package\.json names main ".*canary\.js", which is outside the folder/);
    await refused(
      'file: dependency',
      { 'package.json': JSON.stringify({ name: 'x', main: 'index.js', dependencies: { 'canary-pkg': `file:${canary.pkg}` } }), 'index.js': "import leak from 'canary-pkg';\nexport default () => new Response(leak);\n" },
      /dependencies "canary-pkg" is a local path/,
    );
    await refused(
      'path dependency in overrides',
      { 'package.json': JSON.stringify({ name: 'x', main: 'index.js', dependencies: { 'is-number': '7.0.0' }, overrides: { 'is-number': `${up}canary-pkg` } }), 'index.js': "export default () => new Response('x');\n" },
      /overrides "is-number" is a local path/,
    );
    await refused(
      'lockfile link',
      {
        'package.json': JSON.stringify({ name: 'x', main: 'index.js', dependencies: { 'canary-pkg': '1.0.0' } }),
        'package-lock.json': JSON.stringify({ lockfileVersion: 3, packages: { '': { dependencies: { 'canary-pkg': '1.0.0' } }, 'node_modules/canary-pkg': { resolved: canary.pkg, link: true } } }),
        'index.js': "export default () => new Response('x');\n",
      },
      /package-lock\.json installs "node_modules\/canary-pkg" from a local path/,
    );
    // A source-built app: its main and start script stay in the project.
    const app = await alto.call('app', 'Run', { name: 'app-main', files: { 'package.json': b64(JSON.stringify({ name: 'a', main: `${up}canary.js` })) } }, key);
    assertClean(app, 'app main');
    assert.equal(app.status, 400, JSON.stringify(app.body));
    assert.match(app.body.detail, /package\.json names main ".*canary\.js", which is outside the project/);
    const start = await alto.call('app', 'Run', { name: 'app-start', files: { 'package.json': b64(JSON.stringify({ name: 'a', scripts: { start: `node ${up}canary.js` } })) } }, key);
    assertClean(start, 'app start script');
    assert.equal(start.status, 400, JSON.stringify(start.body));
    assert.match(start.body.detail, /the start script runs .*canary\.js, which is outside the project/);
  });

  test('a failed Update keeps no canary in the build log', async () => {
    const deployed = await alto.call('function', 'Deploy', { name: 'kept', source: "export default () => new Response('fine');\n" }, key);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const updated = await alto.call('function', 'Update', { name: 'kept', source: `import leak from '${dataDir}/admin-key';\nexport default () => new Response(String(leak));\n` }, key);
    assertClean(updated, 'update');
    assert.equal(updated.status, 400);
    assert.match(updated.body.detail, /the import ".*admin-key" in index\.ts is outside the folder/);
    const logs = await alto.call('function', 'Logs', { name: 'kept', logs_type: 'build' }, key);
    assert.equal(logs.status, 200);
    assertClean(logs, 'build log');
    assert.match(logs.body.logs, /admin-key/);
  });

  test('symlinks in a cloned repository that lead out are refused; links inside it are kept', async () => {
    const repo = (name: string, build: (dir: string) => void) => {
      const dir = join(scratch, name);
      mkdirSync(dir, { recursive: true });
      build(dir);
      const git = (...args: string[]) => execFileSync('git', ['-C', dir, ...args], { stdio: 'pipe', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } });
      git('init', '-q', '-b', 'main');
      git('add', '-A');
      git('commit', '-q', '-m', 'attack');
      return `file://${dir}`;
    };
    const admin = alto.adminKey;
    const cases: [string, string, string | undefined, RegExp][] = [
      [
        'a link to the canary',
        repo('link-file', (dir) => {
          writeFileSync(join(dir, 'index.ts'), "import leak from './leak.txt' with { type: 'text' };\nexport default () => new Response(leak);\n");
          symlinkSync(canary.text, join(dir, 'leak.txt'));
        }),
        undefined,
        /"leak\.txt" is a symlink to a path outside the repository/,
      ],
      [
        'node_modules -> the data folder',
        repo('link-modules', (dir) => {
          writeFileSync(join(dir, 'index.ts'), "import leak from 'canary.txt' with { type: 'text' };\nexport default () => new Response(leak);\n");
          symlinkSync(dataDir, join(dir, 'node_modules'));
        }),
        undefined,
        /"node_modules" is a symlink to a path outside the repository/,
      ],
      [
        'node_modules -> /',
        repo('link-root', (dir) => {
          writeFileSync(join(dir, 'index.ts'), `import leak from '${canary.text.slice(1)}' with { type: 'text' };\nexport default () => new Response(leak);\n`);
          symlinkSync('/', join(dir, 'node_modules'));
        }),
        undefined,
        /"node_modules" is a symlink to a path outside the repository/,
      ],
      [
        'package.json -> admin-key',
        repo('link-manifest', (dir) => {
          writeFileSync(join(dir, 'index.ts'), "export default () => new Response('x');\n");
          symlinkSync(join(dataDir, 'admin-key'), join(dir, 'package.json'));
        }),
        undefined,
        /"package\.json" is a symlink to a path outside the repository/,
      ],
      [
        'a subfolder that is a link',
        repo('link-subfolder', (dir) => {
          writeFileSync(join(dir, 'README'), 'x\n');
          symlinkSync(dataDir, join(dir, 'fn'));
        }),
        'fn',
        /leads outside the repository|"fn" is a symlink to a path outside the repository/,
      ],
    ];
    for (const [what, url, subfolder, names] of cases) {
      const result = await alto.call('function', 'Deploy', { name: `repo-${deploys++}`, repo: url, ...(subfolder ? { subfolder } : {}) }, admin);
      assertClean(result, what);
      assert.equal(result.status, 400, `${what}: ${JSON.stringify(result.body)}`);
      assert.match(result.body.detail, names, what);
    }
    // A link inside the repository is fine.
    const inside = repo('link-inside', (dir) => {
      mkdirSync(join(dir, 'lib'));
      writeFileSync(join(dir, 'lib', 'greeting.txt'), 'hello from a link');
      writeFileSync(join(dir, 'index.ts'), "import greeting from './greeting.txt' with { type: 'text' };\nexport default () => new Response(greeting);\n");
      symlinkSync('lib/greeting.txt', join(dir, 'greeting.txt'));
    });
    const deployed = await alto.call('function', 'Deploy', { name: 'linked', repo: inside }, admin);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const called = await alto.call('function', 'Call', { name: 'linked', request: {} }, admin);
    assert.equal(called.body.response, 'hello from a link');
  });

  test('data: imports and new URL(path, import.meta.url) read nothing on the host and still build', async () => {
    const source = `import seven from 'data:text/javascript,export default 7';
export default () => Response.json({ seven, url: String(new URL('${canary.text}', import.meta.url)) });
`;
    const deployed = await alto.call('function', 'Deploy', { name: 'harmless', source }, key);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const called = await alto.call('function', 'Call', { name: 'harmless', request: {} }, key);
    assertClean(called, 'data: and new URL');
    assert.deepEqual(called.body.response, { seven: 7, url: `file://${canary.text}` });
  });
});
