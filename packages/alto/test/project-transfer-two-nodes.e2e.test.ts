/**
 * Resumable exports on a cloud of two `alto up` processes sharing one PostgreSQL (`--store`), as
 * behind a balancer that sends each request to either: an export written by node A is resumed,
 * described and released through node B, which relays each request to A
 * (platform/transfer/export-relay.ts) and passes A's bytes back unchanged. Once A has stopped,
 * B answers 410 saying the node holding the export is not running. Needs the test PostgreSQL
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { download } from './download-fixture.js';
import { exportUrl, fillProject, nodeIdOf, releaseThroughRelay, resumeThroughRelay } from './export-relay-fixture.js';
import { startProcess, type ServerProcess } from './harness.js';

const PROJECT = 'ledger';

describe('a resumable export written on one node is resumed, described and released through another', () => {
  let database: TestDatabase;
  let first: ServerProcess;
  let second: ServerProcess;
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
  };
  const auth = () => ({ authorization: `Bearer ${env.ALTO_ADMIN_KEY}` });

  before(async () => {
    database = await createTestDatabase('transfer_two_nodes');
    const args = ['--store', database.url];
    first = await startProcess({ args, env });
    second = await startProcess({ args, env });
    await fillProject(first, PROJECT);
  });

  after(async () => {
    await second?.close();
    await first?.close();
    await database?.drop();
  });

  test('a download from node A cut part way goes on through node B, byte for byte; DELETE through B releases it on A', async () => {
    const writer = { server: first, url: first.url };
    const info = await resumeThroughRelay(writer, second, PROJECT, auth());

    // A resume past the end, and a request without a valid key, are answered as A would (the key checked on B too).
    const beyond = await download(exportUrl(second.url, info.id), { ...auth(), range: `bytes=${info.size + 1}-` });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], `bytes */${info.size}`);
    assert.equal((await download(exportUrl(second.url, info.id), { authorization: 'Bearer alto_admin_wrong' })).status, 401);

    // A request that came relayed is answered where it arrives, never relayed again.
    assert.equal((await download(exportUrl(second.url, info.id), { ...auth(), 'x-alto-via': nodeIdOf(first) })).status, 404);

    await releaseThroughRelay(writer, second, info.id, auth());

    // An id naming a node the cloud does not have is not found, as any unknown export.
    assert.equal((await download(exportUrl(second.url, `no-such-node.${randomBytes(16).toString('hex')}`), auth())).status, 404);
  });

  test('once node A has stopped, a resume through node B answers 410: the node holding the export is not running', async () => {
    const whole = await download(`${first.url}/admin/projects/export?name=${PROJECT}`, auth());
    assert.equal(whole.status, 200);
    const id = String(whole.headers['x-alto-export']);
    assert.equal((await download(`${second.url}/admin/projects/exports/${id}?info`, auth())).status, 200, 'served through B while A runs');

    await first.stop();
    const gone = await download(`${second.url}/admin/projects/exports/${id}`, { ...auth(), range: 'bytes=1000-' });
    assert.equal(gone.status, 410, gone.body.toString());
    const { detail } = JSON.parse(gone.body.toString()) as { detail: string };
    assert.match(detail, /which is not running/);
    assert.match(detail, /export again/);
  });
});
