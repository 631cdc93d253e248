/**
 * The request log's recorder on the embedded stores: rows written at the flush with the query
 * string cut and the time worked out, app requests given their project from their address, a
 * project at 0 days keeping nothing, a full buffer dropping and counting, and the retention
 * sweep on a clock moved forward rather than waited for.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../kit/logger.js';
import type { AppStore, StoredApp } from '../store/apps/port.js';
import type { ControlStore, ProjectRecord } from '../store/control.js';
import { openSqlite, type SqliteDatabase } from '../store/sqlite/database.js';
import { SqliteQuotaStore } from '../store/sqlite/quota.js';
import { SqliteRequestLogStore } from '../store/request-log/sqlite.js';
import { pathOf, RequestLog } from './request-log.js';

const DAY_MS = 86_400_000;

describe('request log recorder', () => {
  let db: SqliteDatabase;
  let store: SqliteRequestLogStore;
  let quota: SqliteQuotaStore;
  const projects: ProjectRecord[] = [
    { id: 'p-week', accountId: 'a', name: 'week', createdAt: 0 },
    { id: 'p-month', accountId: 'a', name: 'month', createdAt: 0 },
    { id: 'p-off', accountId: 'a', name: 'off', createdAt: 0 },
  ];
  const control = { listProjects: async () => projects } as unknown as ControlStore;
  const apps = {
    findByAddress: async (projectName: string, environment: string, name: string) =>
      projectName === 'week' && environment === 'dev' && name === 'web' ? ({ projectId: 'p-week', projectName, environment, name } as StoredApp) : undefined,
  } as unknown as AppStore;
  let now = Date.now();
  const open = (options: ConstructorParameters<typeof RequestLog>[2] = {}) =>
    new RequestLog({ requestLog: store, quota, control, apps }, silentLogger(), { clock: () => now, ...options });

  before(async () => {
    db = openSqlite(':memory:');
    store = new SqliteRequestLogStore(db);
    quota = new SqliteQuotaStore(db);
    await quota.updateLimits('project:p-month', { request_log_days: 30 });
    await quota.updateLimits('project:p-off', { request_log_days: 0 });
  });
  after(() => db.close());

  test('API calls and app requests are written at the flush, paths without their query string', async () => {
    const log = open();
    const started = performance.now() - 12;
    log.recordApi('p-week', 'alto_Ab', 'POST', '/v1/db/Read', 200, started, 10, 20, '::ffff:10.0.0.1', 'req-1');
    log.recordApp('week', 'web', 'GET', '/search?token=secret&q=1', 404, started, 0, 99, '10.0.0.2', undefined);
    log.recordApp('nowhere', 'web', 'GET', '/', 200, started, 0, 1, '10.0.0.3', 'req-x');
    log.recordApp('week', 'web', 'GET', '/', 200, started, 0, 1, '10.0.0.4', 'req-staging', 'staging');
    log.recordApi('p-off', 'alto_Off', 'POST', '/v1/id/Generate', 200, started, 1, 1, '127.0.0.1', 'req-off');
    assert.equal(log.buffered, 5);
    const before = Date.now();
    await log.flush();
    assert.equal(log.buffered, 0);
    assert.equal(log.written, 2, "the unknown address, an app's name in an environment without it, and the project at 0 days are not written");
    const rows = await store.read({ projectId: 'p-week', limit: 10 });
    assert.equal(rows.length, 2);
    const app = rows.find((row) => row.kind === 'app')!;
    const api = rows.find((row) => row.kind === 'api')!;
    assert.deepEqual(
      { path: app.path, app: app.app, status: app.status, keyPrefix: app.keyPrefix, client: app.clientAddress, requestId: app.requestId, bytesOut: app.bytesOut },
      { path: '/search', app: 'web', status: 404, keyPrefix: null, client: '10.0.0.2', requestId: '', bytesOut: 99 },
    );
    assert.deepEqual(
      { path: api.path, keyPrefix: api.keyPrefix, client: api.clientAddress, requestId: api.requestId, bytesIn: api.bytesIn },
      { path: '/v1/db/Read', keyPrefix: 'alto_Ab', client: '10.0.0.1', requestId: 'req-1', bytesIn: 10 },
    );
    assert.ok(api.durationMs >= 12 && api.durationMs < 1000, `duration ${api.durationMs}`);
    assert.ok(api.at <= before - 11 && api.at > before - 1000, 'the time is when the request arrived');
    assert.deepEqual(await store.read({ projectId: 'p-off', limit: 10 }), []);
    await log.close();
  });

  test('a full buffer drops requests and counts them; the next batch records again', async () => {
    const log = open({ maxBufferedRows: 3, flushRows: 3 });
    for (let index = 0; index < 5; index++) log.recordApi('p-month', 'alto_M', 'POST', '/v1/full', 200, performance.now(), 0, 0, undefined, `full-${index}`);
    assert.equal(log.dropped, 2);
    await log.flush();
    log.recordApi('p-month', 'alto_M', 'POST', '/v1/full', 200, performance.now(), 0, 0, undefined, 'full-after');
    await log.close();
    const rows = await store.read({ projectId: 'p-month', pathPrefix: '/v1/full', limit: 10 });
    assert.deepEqual(rows.map((row) => row.requestId), ['full-after', 'full-2', 'full-1', 'full-0']);
  });

  test('the sweep deletes each project\'s rows past its retention, on the clock it is given', async () => {
    const log = open();
    const old = Date.now() - 10 * DAY_MS;
    await store.append([
      { projectId: 'p-week', at: old, kind: 'api', method: 'POST', path: '/v1/old', status: 200, durationMs: 1, bytesIn: 0, bytesOut: 0, keyPrefix: null, clientAddress: null, requestId: 'old-week', app: null },
      { projectId: 'p-month', at: old, kind: 'api', method: 'POST', path: '/v1/old', status: 200, durationMs: 1, bytesIn: 0, bytesOut: 0, keyPrefix: null, clientAddress: null, requestId: 'old-month', app: null },
    ]);
    now = Date.now();
    assert.equal(await log.sweep(), 1, 'ten days old: past the default week, within the month');
    assert.deepEqual((await store.read({ projectId: 'p-week', pathPrefix: '/v1/old', limit: 10 })).length, 0);
    assert.deepEqual((await store.read({ projectId: 'p-month', pathPrefix: '/v1/old', limit: 10 })).map((row) => row.requestId), ['old-month']);
    now = Date.now() + 25 * DAY_MS;
    const deleted = await log.sweep();
    assert.ok(deleted >= 1);
    assert.deepEqual(await store.read({ projectId: 'p-month', pathPrefix: '/v1/old', limit: 10 }), []);
    assert.equal((await store.read({ projectId: 'p-month', limit: 10 })).length, 4, 'newer rows stay');
    await log.close();
  });

  test('the node-wide cap bounds every project\'s days', async () => {
    const log = open({ maxDays: 3 });
    assert.equal(await log.retentionDays('p-month'), 3);
    assert.equal(await log.retentionDays('p-week'), 3);
    assert.equal(await log.retentionDays('p-off'), 0);
    await log.close();
  });

  test('pathOf cuts the query string and fragment and bounds the length', () => {
    assert.equal(pathOf('/a/b?key=secret'), '/a/b');
    assert.equal(pathOf('/a#frag?x'), '/a');
    assert.equal(pathOf('/plain'), '/plain');
    const long = pathOf('/' + 'x'.repeat(2000));
    assert.equal(long.length, 512);
    assert.ok(long.endsWith('…'));
  });
});
