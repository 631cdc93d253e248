import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backupLines } from './backup.js';

test('alto status shows scheduled backups: the last one, volumes left out, and a failure newer than it', () => {
  assert.equal(backupLines(undefined), '');
  const status = {
    to: '/backups',
    every_seconds: 6 * 3600,
    keep: 14,
    running: false,
    next_at: '2026-12-07T12:00:00.000Z',
    successes: 3,
    failures: 1,
    last_success: {
      id: '2026-12-07T06-00-00Z',
      finished_at: '2026-12-07T06:00:04.000Z',
      seconds: 4.2,
      files: 120,
      copied_blobs: 3,
      copied_bytes: 2048,
      skipped: ['volume apps/volumes/p/web: in use by a running app instance (Alto process 42): stop the app to back it up'],
    },
    last_failure: { at: '2026-12-07T00:00:01.000Z', reason: 'ENOSPC: no space left on device' },
  };
  const healthy = backupLines(status);
  assert.match(healthy, /every 6h into \/backups, keeping 14/);
  assert.match(healthy, /last: 2026-12-07T06-00-00Z, 120 files, 2\.0 KiB new, in 4\.2s/);
  assert.match(healthy, /not copied: volume apps\/volumes\/p\/web: in use/);
  assert.doesNotMatch(healthy, /FAILING/, 'a failure older than the last success is over');
  const failing = backupLines({ ...status, last_failure: { at: '2026-12-07T12:00:01.000Z', reason: 'ENOSPC: no space left on device' } });
  assert.match(failing, /FAILING \(last tried 2026-12-07T12:00:01\.000Z, 1 failed so far\): ENOSPC: no space left on device/);
});
