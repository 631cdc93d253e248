/**
 * Resumable exports on a cloud of two `alto up` processes sharing one PostgreSQL (`--store`), as
 * behind a balancer that sends each request to either: an export written by node A is resumed,
 * described and released through node B, which relays each request to A
 * (platform/transfer/export-relay.ts) and passes A's bytes back unchanged. Once A has stopped,
 * B answers 410 saying the node holding the export is not running. Needs the test PostgreSQL
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { download } from './download-fixture.js';
import { startProcess, waitForAsync, type ServerProcess } from './harness.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const PROJECT = 'ledger';

const nodeIdOf = (server: ServerProcess) => readFileSync(join(server.dataDir, 'node-id'), 'utf8').trim();
const spoolFiles = (server: ServerProcess) => {
  const folder = join(server.dataDir, 'transfer');
  return existsSync(folder) ? readdirSync(folder).filter((name) => name.startsWith('export-')) : [];
};

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
    const key = await first.projectKey(PROJECT, ['db']);
    // Records that do not compress, so the archive is a few hundred KiB and a download can be cut part way.
    for (let index = 0; index < 40; index++) {
      const created = await first.call('db', 'Create', { table: 'entries', record: { id: `e${index}`, noise: randomBytes(6_000).toString('base64') } }, key);
      assert.equal(created.status, 200, JSON.stringify(created.body));
    }
  });

  after(async () => {
    await second?.close();
    await first?.close();
    await database?.drop();
  });

  test('a download from node A cut part way goes on through node B, byte for byte; DELETE through B releases it on A', async () => {
    const cut = 50_000;
    const started = await download(`${first.url}/admin/projects/export?name=${PROJECT}`, auth(), { keep: cut });
    assert.equal(started.status, 200);
    assert.equal(started.body.length, cut);
    const id = String(started.headers['x-alto-export']);
    assert.equal(id.slice(0, id.lastIndexOf('.')), nodeIdOf(first), 'the id names the node that wrote the export');
    assert.notEqual(nodeIdOf(first), nodeIdOf(second));

    // ?info through B: A's spool, as A describes it, once A has written it whole.
    const exportUrl = (server: ServerProcess) => `${server.url}/admin/projects/exports/${id}`;
    let info: { id: string; project: string; state: string; size: number; sha256?: string } | undefined;
    await waitForAsync(async () => {
      const described = await download(`${exportUrl(second)}?info`, auth());
      assert.equal(described.status, 200, described.body.toString());
      info = JSON.parse(described.body.toString());
      return info!.state === 'complete';
    }, 'the export to be complete, as node B reports it');
    assert.equal(info!.id, id);
    assert.equal(info!.project, PROJECT);

    // The rest through B.
    const rest = await download(exportUrl(second), { ...auth(), range: `bytes=${cut}-` });
    assert.equal(rest.status, 206, rest.body.toString());
    assert.equal(rest.headers['x-alto-export'], id);
    assert.equal(rest.headers['x-alto-offset'], String(cut));
    assert.equal(rest.headers['content-length'], String(info!.size - cut));
    assert.equal(rest.headers['content-range'], `bytes ${cut}-${info!.size - 1}/${info!.size}`);
    const resumed = Buffer.concat([started.body, rest.body]);
    assert.equal(resumed.length, info!.size);
    assert.equal(sha256(resumed), rest.headers['x-alto-export-sha256'], 'the whole file is the archive A wrote');
    assert.equal(sha256(resumed), info!.sha256);

    // The same bytes as A serves from that offset, and nothing spooled on B.
    const fromA = await download(exportUrl(first), { ...auth(), range: `bytes=${cut}-` });
    assert.equal(fromA.status, 206);
    assert.ok(rest.body.equals(fromA.body), "B's bytes are A's archive from that offset");
    assert.deepEqual(spoolFiles(second), []);
    assert.equal(spoolFiles(first).length, 1);

    // A resume past the end, and a request without a valid key, are answered as A would (the key checked on B too).
    const beyond = await download(exportUrl(second), { ...auth(), range: `bytes=${info!.size + 1}-` });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], `bytes */${info!.size}`);
    assert.equal((await download(exportUrl(second), { authorization: 'Bearer alto_admin_wrong' })).status, 401);

    // A request that came relayed is answered where it arrives, never relayed again.
    assert.equal((await download(exportUrl(second), { ...auth(), 'x-alto-via': nodeIdOf(first) })).status, 404);

    // Released through B: gone from A's disk; then not found through either.
    const released = await download(exportUrl(second), auth(), { method: 'DELETE' });
    assert.equal(released.status, 204, released.body.toString());
    assert.deepEqual(spoolFiles(first), []);
    assert.equal((await download(exportUrl(second), auth())).status, 404);
    assert.equal((await download(exportUrl(first), auth())).status, 404);

    // An id naming a node the cloud does not have is not found, as any unknown export.
    assert.equal((await download(`${second.url}/admin/projects/exports/no-such-node.${randomBytes(16).toString('hex')}`, auth())).status, 404);
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
