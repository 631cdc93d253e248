/**
 * The local placement before any start: nothing is probed (so `alto up` with no apps stays
 * quick), its status says the driver is chosen when the first app starts, it claims no snapshots,
 * and closing it starts nothing. (Starts placed on real drivers: test/apps*.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { LocalPlacement } from './placement.js';

test('nothing is probed before the first start', async () => {
  const placement = new LocalPlacement({ sandbox: 'process', dataDir: '/nonexistent/alto-placement-test', log: pino({ level: 'silent' }) });
  assert.deepEqual(placement.status(), { choice: 'process', probed: false, reason: 'chosen when the first app starts (no app has run yet)' });
  assert.equal(placement.canSnapshot, false);
  await placement.close();
});
