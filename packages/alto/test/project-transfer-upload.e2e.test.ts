/**
 * Resumable imports: an archive sent in parts (`PUT /admin/projects/uploads/<id>` at an offset)
 * is imported whole; a part at the wrong offset is refused with the bytes the server holds; and
 * `alto projects import` run again after an upload broke off goes on from those bytes instead of
 * sending the file again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { uploadIdOf } from '../src/cli/transfer.js';
import { runCli } from './apps-fixture.js';
import { startInProcess, type TestAlto } from './harness.js';

let alto: TestAlto;
const scratch = mkdtempSync(join(tmpdir(), 'alto-upload-'));
let archive: Buffer;

before(async () => {
  alto = await startInProcess();
  const key = await alto.projectKey('shop', ['db', 'space']);
  for (let index = 0; index < 50; index++) await alto.call('db', 'Create', { table: 'items', record: { id: `i${index}`, text: 'x'.repeat(500) } }, key);
  // An object that does not compress, so the archive has some size.
  await alto.call('space', 'Create', { name: 'noise.bin', object: Buffer.from(Array.from({ length: 200_000 }, (_, index) => (index * 7919) % 251)).toString('base64') }, key);
  const response = await fetch(`${alto.url}/admin/projects/export?name=shop`, { headers: { authorization: `Bearer ${alto.adminKey}` } });
  archive = Buffer.from(await response.arrayBuffer());
});

after(async () => {
  await alto?.close();
  rmSync(scratch, { recursive: true, force: true });
});

const headers = (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${alto.adminKey}`, ...extra });

test('an archive sent in parts is imported whole; a part at the wrong offset is refused', async () => {
  const id = 'parts-0123456789abcdef';
  const url = `${alto.url}/admin/projects/uploads/${id}`;
  const half = Math.floor(archive.length / 2);
  const first = await fetch(url, { method: 'PUT', headers: headers({ 'x-alto-offset': '0' }), body: archive.subarray(0, half) });
  assert.equal(first.status, 200);
  assert.equal(((await first.json()) as { received: number }).received, half);
  const wrong = await fetch(url, { method: 'PUT', headers: headers({ 'x-alto-offset': '0' }), body: archive.subarray(0, 10) });
  assert.equal(wrong.status, 409);
  assert.equal(wrong.headers.get('x-alto-received'), String(half));
  assert.match(((await wrong.json()) as { detail: string }).detail, new RegExp(`send from byte ${half}`));
  // Half an archive is not imported: it is incomplete, and the upload stays for the rest.
  const early = await fetch(`${alto.url}/admin/projects/import?upload=${id}&as=early`, { method: 'POST', headers: headers() });
  assert.equal(early.status, 400);
  const rest = await fetch(url, { method: 'PUT', headers: headers({ 'x-alto-offset': String(half) }), body: archive.subarray(half) });
  assert.equal(((await rest.json()) as { received: number }).received, archive.length);
  const imported = await fetch(`${alto.url}/admin/projects/import?upload=${id}&as=parts`, { method: 'POST', headers: headers() });
  assert.equal(imported.status, 200, await imported.clone().text());
  const key = ((await imported.json()) as { key: string }).key;
  assert.equal((await alto.call('db', 'Count', { table: 'items' }, key)).body.count, 50);
  // Imported, the upload is gone.
  assert.equal((await fetch(`${alto.url}/admin/projects/import?upload=${id}&as=again`, { method: 'POST', headers: headers() })).status, 404);
});

test('alto projects import goes on from the bytes the server holds', async () => {
  const file = join(scratch, 'shop.tgz');
  writeFileSync(file, archive);
  // An earlier run sent the first third before it broke off.
  const third = Math.floor(archive.length / 3);
  const url = `${alto.url}/admin/projects/uploads/${uploadIdOf(file)}`;
  assert.equal((await fetch(url, { method: 'PUT', headers: headers({ 'x-alto-offset': '0' }), body: readFileSync(file).subarray(0, third) })).status, 200);
  // The server refuses a part that does not start at the bytes it holds: the import only succeeds by going on from them.
  const result = await runCli(['projects', 'import', file, '--as', 'resumed', '--json', '--url', alto.url, '--key', alto.adminKey]);
  assert.equal(result.code, 0, result.stderr);
  const answer = JSON.parse(result.stdout);
  assert.equal(answer.project.name, 'resumed');
  assert.equal((await alto.call('db', 'Count', { table: 'items' }, answer.key)).body.count, 50);
  assert.equal((await alto.call('space', 'Head', { name: 'noise.bin' }, answer.key)).body.object.size, 200_000);
});
