/**
 * What only the admin key may read (the "Low" list): `/metrics` (every project's calls and
 * the process's figures) and, in `/v1/status`, anything that describes the host (the data folder,
 * store addresses, why a sandbox driver was chosen).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startInProcess, type TestAlto } from '../harness.js';

describe('admin-only surfaces', () => {
  let alto: TestAlto;
  let projectKey: string;
  before(async () => {
    alto = await startInProcess();
    projectKey = await alto.projectKey('curious');
  });
  after(() => alto?.close());

  const get = (path: string, key?: string) => fetch(`${alto.url}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

  test('/metrics: 401 without a key, 403 for a project key, the figures for the admin key', async () => {
    const anonymous = await get('/metrics');
    assert.equal(anonymous.status, 401);
    assert.equal((await anonymous.json()).id, 'unauthorized');
    assert.equal((await get('/metrics', 'alto_not_a_key')).status, 401);
    const project = await get('/metrics', projectKey);
    assert.equal(project.status, 403);
    assert.doesNotMatch(await project.text(), /alto_api_requests_total/);
    const admin = await get('/metrics', alto.adminKey);
    assert.equal(admin.status, 200);
    assert.match(await admin.text(), /alto_api_requests_total/);
  });

  test('/v1/status shows host details (the data folder among them) to the admin key only', async () => {
    const project = await get('/v1/status', projectKey);
    assert.equal(project.status, 200);
    const text = await project.text();
    assert.ok(!text.includes(alto.dataDir), `a project key sees the data folder: ${text}`);
    const shown = JSON.parse(text);
    assert.equal(shown.store, 'sqlite (WAL)');
    assert.equal(shown.sandbox.reason, undefined);
    assert.equal(shown.key.project, 'curious');

    const admin = await (await get('/v1/status', alto.adminKey)).json();
    assert.ok(String(admin.store).includes(alto.dataDir), 'the admin sees where the store is');
    assert.equal(typeof admin.sandbox.reason, 'string');
  });
});
