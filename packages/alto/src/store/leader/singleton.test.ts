import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../kit/logger.js';
import { openSqlite } from '../sqlite/database.js';
import { SingletonJob } from './singleton.js';
import { SqliteSingletonLock } from './sqlite.js';

test('a singleton job runs on the process holding its role only, and on another once that one stops', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-singleton-job-'));
  const ranOn: string[] = [];
  let running = 0;
  const job = (process: string) =>
    new SingletonJob(new SqliteSingletonLock(openSqlite(join(dir, 'alto.db'))), {
      name: 'sweep',
      everyMs: 60_000,
      log: silentLogger(),
      run: async () => {
        assert.equal(running++, 0, 'runs never overlap');
        ranOn.push(process);
        await new Promise((resolve) => setImmediate(resolve));
        running--;
      },
    });
  const first = job('first');
  const second = job('second');
  try {
    for (let round = 0; round < 5; round++) await Promise.all([first.runIfHolder(), second.runIfHolder()]);
    assert.equal(ranOn.length, 5, 'once per round');
    assert.equal(new Set(ranOn).size, 1, `on one process: ${ranOn}`);
    const [holder, other] = ranOn[0] === 'first' ? [first, second] : [second, first];
    await holder.close();
    assert.equal(await other.runIfHolder(), true, 'the other process takes the job over');
    assert.equal(await holder.runIfHolder(), false, 'a stopped job does not run');
  } finally {
    await first.close();
    await second.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
