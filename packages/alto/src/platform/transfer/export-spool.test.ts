import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newExportId, writerOfExport } from './export-spool.js';

test('an export id names the node that wrote it, then 128 random bits', () => {
  const id = newExportId('node-a');
  assert.match(id, /^node-a\.[0-9a-f]{32}$/);
  assert.notEqual(newExportId('node-a'), id, 'a new id each time');
  assert.equal(writerOfExport(id), 'node-a');
  // A node id may hold dots: the random part follows the last one.
  assert.equal(writerOfExport(newExportId('rack1.host-2_b')), 'rack1.host-2_b');
  assert.equal(writerOfExport(newExportId('a1b2c3d4e5f6')), 'a1b2c3d4e5f6');
});

test('what is not an export id names no node', () => {
  for (const id of [
    '0123456789abcdef0123456789abcdef', // the former form, without a node
    '.0123456789abcdef0123456789abcdef',
    'node-a.0123456789abcdef0123456789abcde', // 31 digits
    'node-a.0123456789abcdef0123456789abcdef0',
    'node-a.0123456789ABCDEF0123456789ABCDEF',
    '-node.0123456789abcdef0123456789abcdef',
    'no/de.0123456789abcdef0123456789abcdef',
    `${'n'.repeat(65)}.0123456789abcdef0123456789abcdef`,
    'node-a.',
    '',
  ]) {
    assert.equal(writerOfExport(id), undefined, id);
  }
});
