/**
 * Two `alto up` processes on different ports and data folders, on one PostgreSQL database, with
 * the same ALTO_MASTER_KEY and ALTO_ADMIN_KEY, serve one cloud: projects and keys made on one
 * work on the other at once, a revocation holds on both at once, a key's rate limit is shared,
 * usage counts the calls made on both; and a process started with another master key refuses
 * to start, saying why. Needs the test PostgreSQL (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { startProcess, waitForAsync, type ServerProcess } from './harness.js';

/** Tokens a bucket of `rate` per second, full at the start, can hand out within `elapsedMs`. */
const tokensWithin = (rate: number, elapsedMs: number) => rate + Math.floor((elapsedMs * rate) / 1000);

describe('two processes, one PostgreSQL: one cloud', () => {
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    // Usage written every 50 ms, so reports see calls soon after they are made.
    ALTO_USAGE_FLUSH_MS: '50',
  };
  let database: TestDatabase;
  let first: ServerProcess;
  let second: ServerProcess;

  before(async () => {
    database = await createTestDatabase('two_processes');
    first = await startProcess({ args: ['--store', database.url], env });
    second = await startProcess({ args: ['--store', database.url], env });
  });
  after(async () => {
    await second?.close();
    await first?.close();
    await database?.drop();
  });

  test('a project and key made on one process work on the other at once; a revoked key fails on both at once', async () => {
    assert.equal((await first.call('projects', 'Create', { name: 'shop' })).status, 200);
    const generated = await first.call('keys', 'Generate', { project: 'shop', scopes: ['id'] });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    const key = generated.body.key as string;
    assert.equal((await second.call('id', 'Generate', { type: 'uuid' }, key)).status, 200, 'the key works on the other process');
    const listed = await second.call('projects', 'List', {});
    assert.ok(listed.body.projects.some((project: { name: string }) => project.name === 'shop'), JSON.stringify(listed.body));

    assert.equal((await second.call('keys', 'Revoke', { id: generated.body.info.id })).status, 200);
    for (const server of [first, second]) {
      const refused = await server.call('id', 'Generate', { type: 'uuid' }, key);
      assert.equal(refused.status, 401, JSON.stringify(refused.body));
      assert.match(refused.body.detail, /revoked/);
    }
  });

  test("a key's rate limit holds across both processes", async () => {
    await first.call('projects', 'Create', { name: 'rated' });
    const key = (await second.call('keys', 'Generate', { project: 'rated', scopes: ['id'], rate_limit: 5 })).body.key as string;
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? second : first).call('id', 'Generate', {}, key)));
    const elapsed = performance.now() - started;
    const passed = answers.filter((answer) => answer.status === 200).length;
    assert.ok(answers.every((answer) => answer.status === 200 || answer.status === 429), JSON.stringify(answers.map((a) => a.status)));
    // Each process alone would let 5 through, 10 in all: together they share one bucket of 5.
    assert.ok(passed >= 5, `${passed} passed`);
    assert.ok(passed <= tokensWithin(5, elapsed), `${passed} calls passed in ${elapsed.toFixed(0)} ms across two processes`);
    assert.ok(elapsed < 1000 || passed < 10, `the calls took ${elapsed.toFixed(0)} ms: too slow to tell a shared bucket from two`);
  });

  test('usage/Read on either process counts the calls made on both', async () => {
    await first.call('projects', 'Create', { name: 'metered' });
    const key = (await first.call('keys', 'Generate', { project: 'metered', scopes: ['id'] })).body.key as string;
    const calls = [];
    for (let i = 0; i < 4; i++) calls.push(first.call('id', 'Generate', { type: 'uuid' }, key));
    for (let i = 0; i < 6; i++) calls.push(second.call('id', 'Generate', { type: 'uuid' }, key));
    assert.deepEqual((await Promise.all(calls)).map((answer) => answer.status), Array(10).fill(200));
    const callsSeenBy = async (server: ServerProcess) => {
      const usage = await server.call('usage', 'Read', { project: 'metered', service: 'id' });
      assert.equal(usage.status, 200, JSON.stringify(usage.body));
      return usage.body.usage.reduce((total: number, row: { calls: number }) => total + row.calls, 0) as number;
    };
    await waitForAsync(async () => (await callsSeenBy(first)) === 10, 'the calls of both processes in the first one’s usage');
    assert.equal(await callsSeenBy(second), 10);
  });

  test('a process with another master key refuses to start, and says why', async () => {
    const otherKey = randomBytes(32).toString('hex');
    await assert.rejects(
      startProcess({ args: ['--store', database.url], env: { ...env, ALTO_MASTER_KEY: otherKey } }),
      (error: Error) => {
        assert.match(error.message, /exited \(1\) before listening/);
        assert.match(error.message, /ALTO_MASTER_KEY is not the master key of this cloud/);
        assert.match(error.message, /must run with the same ALTO_MASTER_KEY/);
        return true;
      },
    );
    // The cloud is unchanged: the processes that share the key still serve it.
    assert.equal((await second.call('projects', 'List', {})).status, 200);
  });
});
