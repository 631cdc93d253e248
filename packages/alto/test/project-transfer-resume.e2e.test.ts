/**
 * Resumable exports: the server spools each export and serves it again from any byte. A download
 * cut after N bytes goes on with `GET /admin/projects/exports/<id>` and `Range: bytes=N-`, and the
 * two parts are byte for byte the whole archive as the server wrote it (its sha256). `alto
 * projects export` cut by a proxy that closes the connection part way goes on by itself and
 * checks the result; cut on every try, it stops, and `--resume` in a later run goes on from the
 * bytes in its file. The spool is removed once the CLI holds the archive.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ArchiveReader } from '../src/platform/transfer/archive.js';
import { runCli } from './apps-fixture.js';
import { download } from './download-fixture.js';
import { startInProcess, type TestAlto } from './harness.js';

let alto: TestAlto;
const scratch = mkdtempSync(join(tmpdir(), 'alto-resume-'));
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const auth = () => ({ authorization: `Bearer ${alto.adminKey}` });

before(async () => {
  alto = await startInProcess();
  const key = await alto.projectKey('shop', ['db', 'space']);
  for (let index = 0; index < 50; index++) await alto.call('db', 'Create', { table: 'items', record: { id: `i${index}`, text: 'x'.repeat(500) } }, key);
  // Objects that do not compress, so the archive is a few hundred KiB.
  for (const name of ['noise-1.bin', 'noise-2.bin']) await alto.call('space', 'Create', { name, object: randomBytes(300_000).toString('base64') }, key);
});

after(async () => {
  await alto?.close();
  rmSync(scratch, { recursive: true, force: true });
});

const spoolFiles = () => readdirSync(join(alto.dataDir, 'transfer')).filter((name) => name.startsWith('export-'));

test('an export cut after N bytes goes on from byte N: the parts are the whole archive, byte for byte', async () => {
  const cut = 100_000;
  const first = await download(`${alto.url}/admin/projects/export?name=shop`, auth(), { keep: cut });
  assert.equal(first.status, 200);
  assert.equal(first.body.length, cut);
  const id = String(first.headers['x-alto-export']);
  // The node that wrote it (its data folder's node-id), then 128 random bits.
  assert.equal(id.slice(0, id.lastIndexOf('.')), readFileSync(join(alto.dataDir, 'node-id'), 'utf8').trim());
  assert.match(id, /\.[0-9a-f]{32}$/);

  // The export may still be being written: the answer then follows the spool as it grows (200, X-Alto-Offset).
  const rest = await download(`${alto.url}/admin/projects/exports/${id}`, { ...auth(), range: `bytes=${cut}-` });
  assert.ok(rest.status === 206 || rest.status === 200, String(rest.status));
  assert.equal(rest.headers['x-alto-offset'], String(cut));
  const resumed = Buffer.concat([first.body, rest.body]);
  if (rest.status === 206) assert.equal(rest.headers['content-range'], `bytes ${cut}-${resumed.length - 1}/${resumed.length}`);
  // Once complete, a range is answered 206 with the whole size.
  const tail = await download(`${alto.url}/admin/projects/exports/${id}`, { ...auth(), range: `bytes=${resumed.length - 10}-` });
  assert.equal(tail.status, 206);
  assert.equal(tail.headers['content-range'], `bytes ${resumed.length - 10}-${resumed.length - 1}/${resumed.length}`);
  assert.ok(tail.body.equals(resumed.subarray(resumed.length - 10)));

  // The same export downloaded whole, and the server's own digest of what it wrote.
  const whole = await download(`${alto.url}/admin/projects/exports/${id}`, auth());
  assert.equal(whole.status, 200);
  assert.ok(resumed.equals(whole.body), 'the resumed download is byte-identical to the whole one');
  const info = await (await fetch(`${alto.url}/admin/projects/exports/${id}?info`, { headers: auth() })).json();
  assert.deepEqual(info, { id, project: 'shop', state: 'complete', size: resumed.length, sha256: sha256(resumed) });
  const file = join(scratch, 'resumed.tgz');
  writeFileSync(file, resumed);
  const manifest = await new ArchiveReader(file).verify();
  assert.equal(manifest.sections.db.count, 50);
  assert.equal(manifest.sections.space.count, 2);

  // Past the end: 416; another account's key: not found; released: gone from the disk.
  const beyond = await fetch(`${alto.url}/admin/projects/exports/${id}`, { headers: { ...auth(), range: `bytes=${resumed.length + 1}-` } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers.get('content-range'), `bytes */${resumed.length}`);
  const bad = await fetch(`${alto.url}/admin/projects/exports/${id}`, { headers: { ...auth(), range: 'bytes=0-10' } });
  assert.equal(bad.status, 400);
  assert.equal(spoolFiles().length, 1);
  assert.equal((await fetch(`${alto.url}/admin/projects/exports/${id}`, { method: 'DELETE', headers: auth() })).status, 204);
  assert.equal((await fetch(`${alto.url}/admin/projects/exports/${id}`, { headers: auth() })).status, 404);
  assert.deepEqual(spoolFiles(), []);
});

/**
 * A TCP proxy to Alto that closes a connection once it has passed `cutAfter` bytes of the
 * answer: on the first connection only, or on every one. It records each request's head.
 */
async function cuttingProxy(cutAfter: number, every: boolean): Promise<{ url: string; heads: string[]; close(): Promise<void> }> {
  const target = new URL(alto.url);
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((client) => {
    const cuts = every || ++connections === 1;
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let passed = 0;
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (/^(GET|POST|PUT|DELETE) /.test(text)) heads.push(text.slice(0, text.indexOf('\r\n\r\n')));
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!cuts) return void client.write(chunk);
      const room = cutAfter - passed;
      passed += chunk.length;
      if (room > 0) client.write(chunk.subarray(0, room));
      if (passed >= cutAfter) {
        client.destroy();
        upstream.destroy();
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    heads,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

test('alto projects export goes on by itself when the connection is closed part way, and checks the archive', async () => {
  const proxy = await cuttingProxy(150_000, false);
  try {
    const file = join(scratch, 'auto.tgz');
    const result = await runCli(['projects', 'export', 'shop', '-o', file, '--url', proxy.url, '--key', alto.adminKey], { ALTO_TRANSFER_RETRY_MS: '20' });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /the download broke off at byte \d+; going on from there/);
    const [, rangeAt] = /the download broke off at byte (\d+)/.exec(result.stderr)!;
    assert.ok(proxy.heads.some((head) => new RegExp(`^GET /admin/projects/exports/[A-Za-z0-9._-]+\\.[0-9a-f]{32} `).test(head) && head.toLowerCase().includes(`range: bytes=${rangeAt}-`)), proxy.heads.join('\n---\n'));
    assert.match(result.stderr, /exported shop to .*db 50/);
    assert.ok(!existsSync(`${file}.alto-export`), 'the export id is not kept once the archive is whole');
    // Verified against the server's digest, then released: no spool stays.
    assert.deepEqual(spoolFiles(), []);
    const imported = await runCli(['projects', 'import', file, '--as', 'auto', '--json', '--url', alto.url, '--key', alto.adminKey]);
    assert.equal(imported.code, 0, imported.stderr);
    const key = JSON.parse(imported.stdout).key;
    assert.equal((await alto.call('db', 'Count', { table: 'items' }, key)).body.count, 50);
  } finally {
    await proxy.close();
  }
});

test('cut on every try, the export stops; --resume in a later run goes on from the bytes in the file', async () => {
  const file = join(scratch, 'later.tgz');
  const proxy = await cuttingProxy(40_000, true);
  let held: number;
  try {
    const broken = await runCli(['projects', 'export', 'shop', '-o', file, '--url', proxy.url, '--key', alto.adminKey], { ALTO_TRANSFER_RETRY_MS: '20' });
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr, /run the same export with --resume/);
    held = statSync(file).size;
    assert.ok(held > 0, 'the file holds the bytes received');
    assert.ok(existsSync(`${file}.alto-export`));
  } finally {
    await proxy.close();
  }
  const resumed = await runCli(['projects', 'export', 'shop', '-o', file, '--resume', '--url', alto.url, '--key', alto.adminKey]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`exporting shop \\(from byte ${held}\\)`));
  const manifest = await new ArchiveReader(file).verify();
  assert.equal(manifest.sections.space.count, 2);
  assert.ok(!existsSync(`${file}.alto-export`));
  assert.deepEqual(spoolFiles(), []);
  // Nothing left to resume now.
  const again = await runCli(['projects', 'export', 'shop', '-o', file, '--resume', '--url', alto.url, '--key', alto.adminKey]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /no export left part way there/);
  assert.ok(readFileSync(file).length > 0);
});
