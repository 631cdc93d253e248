/**
 * @module store/request-log/contract
 * The behaviour every request-log adapter must have, as one node:test suite. Each adapter's
 * `request-log.contract.test.ts` calls `runRequestLogStoreContract` with a factory for a fresh,
 * empty store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RequestLogRow, RequestLogStore, StoredRequestLogRow } from './port.js';

export interface RequestLogStoreFixture {
  store: RequestLogStore;
  /** Drops whatever the fixture created (a database, a file). */
  dispose(): Promise<void>;
}

const T0 = 1_800_000_000_000;

function apiRow(projectId: string, at: number, overrides: Partial<RequestLogRow> = {}): RequestLogRow {
  return {
    projectId,
    at,
    kind: 'api',
    method: 'POST',
    path: '/v1/id/Generate',
    status: 200,
    durationMs: 0.25,
    bytesIn: 16,
    bytesOut: 48,
    keyPrefix: 'alto_AbC',
    clientAddress: '127.0.0.1',
    requestId: `req-${at}`,
    app: null,
    ...overrides,
  };
}

function appRow(projectId: string, at: number, overrides: Partial<RequestLogRow> = {}): RequestLogRow {
  return apiRow(projectId, at, { kind: 'app', method: 'GET', path: '/', keyPrefix: null, app: 'web', requestId: '', ...overrides });
}

const withoutId = ({ id: _id, ...row }: StoredRequestLogRow): RequestLogRow => row;

export function runRequestLogStoreContract(adapter: string, openFixture: () => Promise<RequestLogStoreFixture>): void {
  describe(`request log store contract: ${adapter}`, () => {
    let fixture: RequestLogStoreFixture;
    let store: RequestLogStore;
    let counter = 0;
    /** A project of its own per test, so tests share one store without seeing each other's rows. */
    const project = (label: string) => `${label}-${++counter}`;

    before(async () => {
      fixture = await openFixture();
      store = fixture.store;
    });
    after(async () => {
      await store.close?.();
      await fixture.dispose();
    });

    test('rows round-trip and read newest first, ties in the order they were written reversed', async () => {
      const id = project('round-trip');
      const first = apiRow(id, T0, { durationMs: 12.345, bytesIn: 5_000_000_000, keyPrefix: 'alto_Xy', clientAddress: '::1' });
      const second = appRow(id, T0 + 10, { status: 404, path: '/missing', requestId: 'given-id', clientAddress: null });
      const tie = apiRow(id, T0 + 10, { method: 'GET', status: 500, requestId: 'tie' });
      await store.append([first, second]);
      await store.append([tie]);
      const rows = await store.read({ projectId: id, limit: 10 });
      assert.deepEqual(rows.map(withoutId), [tie, second, first]);
      assert.ok(rows.every((row) => Number.isSafeInteger(row.id)));
      assert.ok(rows[0].id > rows[1].id, 'the newer of two rows of one millisecond has the larger id');
      assert.deepEqual(await store.read({ projectId: project('empty'), limit: 10 }), []);
    });

    test('a project never reads another project\'s rows', async () => {
      const mine = project('mine');
      const theirs = project('theirs');
      await store.append([apiRow(mine, T0), apiRow(theirs, T0 + 1), appRow(theirs, T0 + 2)]);
      const rows = await store.read({ projectId: mine, limit: 100 });
      assert.equal(rows.length, 1);
      assert.equal(rows[0].projectId, mine);
    });

    test('filters: time range, kind, app, status (exact and class), path prefix, limit', async () => {
      const id = project('filters');
      await store.append([
        apiRow(id, T0 + 1, { path: '/v1/db/Read', status: 200 }),
        apiRow(id, T0 + 2, { path: '/v1/db/Create', status: 400 }),
        apiRow(id, T0 + 3, { path: '/v1/id/Generate', status: 503 }),
        appRow(id, T0 + 4, { app: 'web', path: '/api/items', status: 500 }),
        appRow(id, T0 + 5, { app: 'admin', path: '/api/%_', status: 201 }),
      ]);
      const read = async (query: Partial<Parameters<RequestLogStore['read']>[0]>) =>
        (await store.read({ projectId: id, limit: 100, ...query })).map((row) => row.at - T0);
      assert.deepEqual(await read({}), [5, 4, 3, 2, 1]);
      assert.deepEqual(await read({ since: T0 + 2, until: T0 + 4 }), [3, 2], 'since included, until excluded');
      assert.deepEqual(await read({ kind: 'api' }), [3, 2, 1]);
      assert.deepEqual(await read({ kind: 'app' }), [5, 4]);
      assert.deepEqual(await read({ app: 'web' }), [4]);
      assert.deepEqual(await read({ statusMin: 400, statusMax: 400 }), [2]);
      assert.deepEqual(await read({ statusMin: 500, statusMax: 599 }), [4, 3]);
      assert.deepEqual(await read({ pathPrefix: '/v1/db/' }), [2, 1]);
      assert.deepEqual(await read({ pathPrefix: '/api/%' }), [5], 'a prefix is plain text, not a pattern');
      assert.deepEqual(await read({ pathPrefix: '/api/_' }), []);
      assert.deepEqual(await read({ kind: 'app', statusMin: 500, statusMax: 599, pathPrefix: '/api' }), [4]);
      assert.deepEqual(await read({ limit: 2 }), [5, 4]);
    });

    test('paging after a row returns every row once, across rows of one millisecond', async () => {
      const id = project('paging');
      const rows: RequestLogRow[] = [];
      for (let index = 0; index < 25; index++) rows.push(apiRow(id, T0 + Math.floor(index / 4), { requestId: `r${index}` }));
      await store.append(rows.slice(0, 10));
      await store.append(rows.slice(10));
      const seen: string[] = [];
      let after: { at: number; id: number } | undefined;
      for (let page = 0; page < 20; page++) {
        const got = await store.read({ projectId: id, limit: 7, after });
        seen.push(...got.map((row) => row.requestId));
        if (got.length < 7) break;
        after = { at: got[got.length - 1].at, id: got[got.length - 1].id };
      }
      assert.equal(seen.length, 25);
      assert.equal(new Set(seen).size, 25);
      const all = await store.read({ projectId: id, limit: 100 });
      assert.deepEqual(seen, all.map((row) => row.requestId));
    });

    test('deleteOlder deletes one project\'s rows before a time, at most limit at a time', async () => {
      const id = project('retention');
      const other = project('retention-other');
      const rows = Array.from({ length: 10 }, (_, index) => apiRow(id, T0 + index));
      await store.append([...rows, apiRow(other, T0)]);
      assert.equal(await store.deleteOlder(id, T0 + 6, 4), 4);
      assert.equal(await store.deleteOlder(id, T0 + 6, 4), 2);
      assert.equal(await store.deleteOlder(id, T0 + 6, 4), 0);
      assert.deepEqual((await store.read({ projectId: id, limit: 100 })).map((row) => row.at - T0), [9, 8, 7, 6]);
      assert.equal((await store.read({ projectId: other, limit: 100 })).length, 1, 'another project keeps its rows');
    });

    test('deleteProject deletes every row of that project only', async () => {
      const id = project('deleted');
      const other = project('kept');
      await store.append([apiRow(id, T0), appRow(id, T0 + 1), apiRow(other, T0)]);
      assert.equal(await store.deleteProject(id), 2);
      assert.deepEqual(await store.read({ projectId: id, limit: 100 }), []);
      assert.equal((await store.read({ projectId: other, limit: 100 })).length, 1);
    });

    test('a large batch is written whole', async () => {
      const id = project('large');
      const rows = Array.from({ length: 3000 }, (_, index) => apiRow(id, T0 + index));
      await store.append(rows);
      const newest = await store.read({ projectId: id, limit: 1000 });
      assert.equal(newest.length, 1000);
      assert.equal(newest[0].at, T0 + 2999);
      assert.equal((await store.read({ projectId: id, limit: 1000, since: T0 + 2500 })).length, 500);
    });
  });
}
