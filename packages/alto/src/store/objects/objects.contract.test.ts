/**
 * Runs the object store contract against the embedded local-disk adapter, plus what only the
 * local adapter has: its files stay inside the namespace folder whatever the name, failed
 * writes leave no temporary file, and a start sweeps what a crashed process left behind.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { failingBody, readAll, runObjectStoreContract } from './contract.js';
import { HEADER_BYTES, LocalObjectStore, TEMPORARY_FOLDER } from './local.js';

runObjectStoreContract('local', async () => {
  const root = mkdtempSync(join(tmpdir(), 'alto-objects-'));
  return {
    store: await LocalObjectStore.open(root),
    async cleanup() {
      rmSync(root, { recursive: true, force: true });
    },
  };
});

function filesUnder(folder: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(path));
    else found.push(path);
  }
  return found;
}

test('local: every object file lies inside its namespace folder, whatever the name', async () => {
  const root = mkdtempSync(join(tmpdir(), 'alto-objects-'));
  try {
    const store = await LocalObjectStore.open(root);
    const hostile = ['%2e%2e/%2e%2e/escape', '..%2F..%2Fescape', 'a\\..\\..\\b', '~/~', '..~', 'x/~..'];
    for (const name of hostile) {
      await store.put('p1/dev', name, Readable.from([Buffer.from(name)]), { contentType: 'text/plain', visibility: 'private' });
    }
    const files = filesUnder(root).map((path) => relative(root, path));
    assert.equal(files.length, hostile.length);
    for (const file of files) {
      assert.ok(file.startsWith(join('p1', 'dev') + '/'), `${file} is inside p1/dev`);
      assert.ok(file.endsWith('~'), `${file} is an object file`);
      assert.ok(statSync(join(root, file)).size > HEADER_BYTES, `${file} holds a header and content`);
    }
    for (const name of hostile) {
      const read = await store.get('p1/dev', name);
      assert.equal((await readAll(read!.body)).toString(), name);
    }
    // A namespace that is not <project>/<environment> is a programming error, never a path.
    for (const namespace of ['../p1/dev', 'p1', 'p1/dev/x', './dev', 'p1/..']) {
      await assert.rejects(store.head(namespace, 'x'), /is not a namespace/);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('local: a failed or refused write leaves no temporary file and no empty folder', async () => {
  const root = mkdtempSync(join(tmpdir(), 'alto-objects-'));
  try {
    const store = await LocalObjectStore.open(root);
    await assert.rejects(
      store.put('p1/dev', 'deep/folder/file', failingBody([Buffer.alloc(100_000)]), { contentType: 'x/y', visibility: 'private' }),
      /connection reset/,
    );
    await assert.rejects(
      store.put('p1/dev', 'big', Readable.from([Buffer.alloc(2000)]), { contentType: 'x/y', visibility: 'private', maxBytes: 1000 }),
      /larger than 1000 bytes/,
    );
    assert.deepEqual(readdirSync(join(root, TEMPORARY_FOLDER)), []);
    assert.equal(existsSync(join(root, 'p1', 'dev', 'deep')), false, 'no folder made for an object never written');
    await store.put('p1/dev', 'deep/folder/file', Readable.from([Buffer.from('x')]), { contentType: 'x/y', visibility: 'private' });
    await store.delete('p1/dev', 'deep/folder/file');
    assert.deepEqual(readdirSync(join(root, 'p1', 'dev')), [], 'deleting the last object removes its empty folders');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('local: opening sweeps temporary files of dead processes and keeps those of live ones', async () => {
  const root = mkdtempSync(join(tmpdir(), 'alto-objects-'));
  try {
    const temporary = join(root, TEMPORARY_FOLDER);
    mkdirSync(temporary, { recursive: true });
    // A pid that surely belonged to a process that has exited: a child we ran to completion.
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(temporary, `${deadPid}-0123456789abcdef`), 'half an upload');
    mkdirSync(join(temporary, `${deadPid}-deleted-0123456789abcdef`, 'dev'), { recursive: true });
    writeFileSync(join(temporary, `${process.ppid}-fedcba9876543210`), 'another live process is writing this');
    const store = await LocalObjectStore.open(root);
    assert.deepEqual(readdirSync(temporary), [`${process.ppid}-fedcba9876543210`]);
    assert.equal(await store.sweepTemporaryFiles(), 0);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
