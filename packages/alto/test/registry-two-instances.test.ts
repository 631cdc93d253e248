/**
 * Alto's registry in a process that starts Alto twice (as tests and benchmarks do): the second
 * instance's registry answers with its own platform (its keys, its stores), not the first's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startInProcess } from './harness.js';

test("each Alto started in one process serves its own registry", async () => {
  for (let round = 0; round < 2; round++) {
    const alto = await startInProcess();
    try {
      const key = await alto.projectKey('shop', ['app']);
      const answer = await fetch(`${alto.url}/v2/token?scope=repository:shop/web:pull`, { headers: { authorization: `Basic ${Buffer.from(`x:${key}`).toString('base64')}` } });
      assert.equal(answer.status, 200, `round ${round}: ${await answer.clone().text()}`);
      const { token } = (await answer.json()) as { token: string };
      assert.equal((await fetch(`${alto.url}/v2/`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    } finally {
      await alto.close();
    }
  }
});
