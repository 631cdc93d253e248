import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { extract, type Headers } from 'tar-stream';
import { writeLayer, type LayerEntry } from './layer.js';

async function headersOf(path: string): Promise<Headers[]> {
  const headers: Headers[] = [];
  const reader = extract();
  const done = new Promise<void>((resolve, reject) => {
    reader.on('entry', (header, stream, next) => {
      headers.push(header);
      stream.on('end', next);
      stream.resume();
    });
    reader.on('finish', resolve);
    reader.on('error', reject);
  });
  reader.end(readFileSync(path));
  await done;
  return headers;
}

test('a layer is a tar with whiteouts for deletions, epoch times, and the same digest for the same changes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-layer-'));
  try {
    writeFileSync(join(dir, 'content'), 'from a file on disk\n');
    const entries: LayerEntry[] = [
      { type: 'directory', path: 'app', mode: 0o755, uid: 33, gid: 33 },
      { type: 'file', path: 'app/run.sh', mode: 0o755, uid: 33, gid: 33, content: Buffer.from('#!/bin/sh\n') },
      { type: 'file', path: 'app/data.txt', mode: 0o600, uid: 0, gid: 0, content: { file: join(dir, 'content'), size: 20 } },
      { type: 'symlink', path: 'app/latest', target: 'run.sh', uid: 0, gid: 0 },
      { type: 'whiteout', path: 'etc/motd' },
      { type: 'whiteout', path: 'top-level' },
    ];
    const first = await writeLayer(join(dir, 'one.tar'), entries);
    const second = await writeLayer(join(dir, 'two.tar'), entries);
    assert.equal(first.digest, second.digest);
    assert.equal(first.size, readFileSync(first.path).length);
    const headers = await headersOf(first.path);
    assert.deepEqual(
      headers.map((header) => [header.name, header.type, header.uid, header.mode]),
      [
        ['app/', 'directory', 33, 0o755],
        ['app/run.sh', 'file', 33, 0o755],
        ['app/data.txt', 'file', 0, 0o600],
        ['app/latest', 'symlink', 0, 0o777],
        ['etc/.wh.motd', 'file', 0, 0o644],
        ['.wh.top-level', 'file', 0, 0o644],
      ],
    );
    assert.ok(headers.every((header) => header.mtime?.getTime() === 0));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
