/**
 * Resumable exports on a cloud whose writing node is reached over HTTPS: three `alto up`
 * processes share one PostgreSQL (`--store`); node A serves HTTPS with a certificate from the
 * test's own authority and advertises `https://127.0.0.1:<its HTTPS port>` (`--advertise`), so
 * the other nodes relay requests for its exports over TLS (platform/transfer/export-relay.ts).
 * Node B trusts the authority (NODE_EXTRA_CA_CERTS: Alto has no option of its own for the roots
 * it verifies peers against): an export A wrote is described, resumed byte for byte and released
 * through B. Node C does not: each request through it is refused with a 503 whose detail names
 * the certificate error's code, not A's address, and A's export is left as it was. Needs the
 * test PostgreSQL (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { download } from './download-fixture.js';
import { exportUrl, fillProject, releaseThroughRelay, resumeThroughRelay, spoolFiles, type DirectNode } from './export-relay-fixture.js';
import { startProcess, type ServerProcess } from './harness.js';
import { startHttpsNode } from './https-node-fixture.js';
import { testAuthority, type TestAuthority } from './tls-fixture.js';

const PROJECT = 'ledger';

describe('an export written on a node reached over HTTPS is resumed through a node that trusts its certificate, and refused through one that does not', () => {
  let database: TestDatabase;
  let authority: TestAuthority;
  let first: ServerProcess;
  let trusting: ServerProcess;
  let untrusting: ServerProcess;
  let writer: DirectNode;
  let advertised: string;
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
  };
  const auth = () => ({ authorization: `Bearer ${env.ALTO_ADMIN_KEY}` });

  before(async () => {
    database = await createTestDatabase('transfer_two_nodes_https');
    authority = testAuthority();
    const args = ['--store', database.url];
    const node = await startHttpsNode(authority, { args, env, certificateFile: 'node-a' });
    first = node.server;
    advertised = node.url;
    writer = { server: first, url: advertised, ca: authority.root };
    trusting = await startProcess({ args, env: { ...env, NODE_EXTRA_CA_CERTS: authority.rootPath } });
    untrusting = await startProcess({ args, env });
    // Through B: A's certificate names 127.0.0.1, so A sends plain requests for that host to HTTPS.
    await fillProject(trusting, PROJECT);
  });

  after(async () => {
    await untrusting?.close();
    await trusting?.close();
    await first?.close();
    await database?.drop();
    authority?.remove();
  });

  test('A advertises its HTTPS URL, and sends plain requests for its certificate\'s host there', async () => {
    const nodes = await trusting.call('nodes', 'List', {});
    assert.equal(nodes.status, 200, JSON.stringify(nodes.body));
    const listed = (nodes.body as { nodes: { advertise_url: string }[] }).nodes.map((node) => node.advertise_url);
    assert.ok(listed.includes(advertised), JSON.stringify(listed));
    const plain = await download(`${first.url}/admin/projects/export?name=${PROJECT}`, auth());
    assert.equal(plain.status, 308);
    assert.equal(plain.headers.location, `${advertised}/admin/projects/export?name=${PROJECT}`);
  });

  test('a download from node A over HTTPS cut part way goes on through node B, byte for byte; DELETE through B releases it on A', async () => {
    const info = await resumeThroughRelay(writer, trusting, PROJECT, auth());
    await releaseThroughRelay(writer, trusting, info.id, auth());
  });

  test("through node C, which does not trust A's certificate, each request is refused with the certificate error's code, and A keeps the export", async () => {
    const whole = await download(`${advertised}/admin/projects/export?name=${PROJECT}`, auth(), { ca: authority.root });
    assert.equal(whole.status, 200, whole.body.toString());
    const id = String(whole.headers['x-alto-export']);

    const attempts = [
      download(`${exportUrl(untrusting.url, id)}?info`, auth()),
      download(exportUrl(untrusting.url, id), { ...auth(), range: 'bytes=1000-' }),
      download(exportUrl(untrusting.url, id), auth(), { method: 'DELETE' }),
    ];
    for (const refused of await Promise.all(attempts)) {
      assert.equal(refused.status, 503, refused.body.toString());
      assert.equal(refused.headers['retry-after'], '5');
      const answer = JSON.parse(refused.body.toString()) as { id: string; detail: string };
      assert.equal(answer.id, 'unavailable');
      // A's certificate is its own (no chain): a node without the root cannot verify it.
      assert.match(answer.detail, /did not answer \(its connection failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
      assert.ok(!refused.body.toString().includes('127.0.0.1'), `the answer does not name A's address: ${refused.body.toString()}`);
    }

    // Nothing reached A: its export is whole, as B (which trusts the root) and A describe it.
    assert.equal(spoolFiles(first).length, 1);
    const described = await download(`${exportUrl(trusting.url, id)}?info`, auth());
    assert.equal(described.status, 200, described.body.toString());
    assert.equal((JSON.parse(described.body.toString()) as { state: string }).state, 'complete');
    assert.equal((await download(exportUrl(advertised, id), auth(), { method: 'DELETE', ca: authority.root })).status, 204);
    assert.deepEqual(spoolFiles(first), []);
  });
});
