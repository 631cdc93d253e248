import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ArchiveHeader } from './archive.js';
import { environmentMapping, parseEnvironmentPairs } from './transfer.js';

const HEADER: ArchiveHeader = { format: 'alto-project/1', altoVersion: '0.1.0', project: 'shop', createdAt: '2026-12-07T00:00:00.000Z', secrets: 'none', only: 'all', environments: ['dev', 'staging'] };

test('--env pairs: SOURCE:TARGET, each source once', () => {
  assert.deepEqual([...parseEnvironmentPairs(['dev:staging', 'staging:qa'])], [['dev', 'staging'], ['staging', 'qa']]);
  assert.throws(() => parseEnvironmentPairs(['dev']), /give SOURCE:TARGET/);
  assert.throws(() => parseEnvironmentPairs(['dev:a', 'dev:b']), /"dev" is mapped twice/);
  assert.throws(() => parseEnvironmentPairs(['a:b:c']), /give SOURCE:TARGET/);
});

test('a mapping names environments of the archive and never brings two into one', () => {
  assert.deepEqual([...environmentMapping(HEADER, new Map([['staging', 'qa']]))], [['staging', 'qa']]);
  // A swap is two environments under each other's names: allowed.
  assert.equal(environmentMapping(HEADER, new Map([['dev', 'staging'], ['staging', 'dev']])).size, 2);
  assert.throws(() => environmentMapping(HEADER, new Map([['prod', 'qa']])), /the archive has no environment "prod" \(it has dev, staging\)/);
  assert.throws(() => environmentMapping(HEADER, new Map([['dev', 'staging']])), /"dev" and "staging" would both arrive in "staging"/);
  assert.throws(() => environmentMapping(HEADER, new Map([['dev', 'Not A Name']])), /is not an environment name/);
  // An archive of an Alto before environments travelled lists none: the mapping applies as asked.
  assert.equal(environmentMapping({ ...HEADER, environments: undefined }, new Map([['dev', 'qa']])).get('dev'), 'qa');
});
