/**
 * Apps relayed to a node reached over HTTPS: three `alto up --sandbox process` processes share one
 * PostgreSQL (`--store`). Node B serves HTTPS with a certificate from the test's own authority
 * for 127.0.0.1 and advertises `https://127.0.0.1:<its HTTPS port>`, and runs the app (deployed
 * through it). Node A trusts the authority (NODE_EXTRA_CA_CERTS): a request for the app through
 * A's edge is relayed to B over TLS (compute/cluster/peers.ts) and answered by B's instance, as
 * B's own (not relayed again, the app told how the client came to A); a keep-alive connection
 * carries several such requests, and a websocket upgrade goes through too. Node C does not
 * trust the authority: the same requests are answered at once with the 502 of an app whose node
 * did not answer, naming the certificate error, and C goes on serving. Needs the test
 * PostgreSQL (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, type ServerProcess } from './harness.js';
import { startHttpsNode, type HttpsNode } from './https-node-fixture.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { openWebsocket, WEBSOCKET_CGI } from './serverless-fixture.js';
import { echoImage, testAuthority, type TestAuthority } from './tls-fixture.js';

const PROJECT = 'relayed';
const HOST = `web.${PROJECT}.localhost`;
const edgePort = (server: ServerProcess) => Number(new URL(server.url).port);

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  /** The client connection carried an earlier request before this one. */
  reused: boolean;
}

/** One request through the edge at 127.0.0.1:`port` with the app's Host, on `agent`'s connections. */
function send(port: number, agent: Agent | false, path: string, method = 'GET', body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { host: HOST };
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    const request = httpRequest({ host: '127.0.0.1', port, path, method, headers, agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: response.headers, reused: request.reusedSocket }));
      response.on('error', reject);
    });
    request.setTimeout(15_000, () => request.destroy(new Error(`${method} ${path} timed out`)));
    request.on('error', reject);
    request.end(body);
  });
}

describe("an app on a node advertised at an https:// URL is served through a node that trusts its certificate, and refused through one that does not", () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  let authority: TestAuthority;
  let serving: HttpsNode;
  let trusting: ServerProcess;
  let untrusting: ServerProcess;
  const cache = privateSandboxCache();
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_SANDBOX_CACHE: cache.dir,
  };

  before(async () => {
    database = await createTestDatabase('apps_two_nodes_https');
    registry = await startRegistry();
    await registry.push(`${PROJECT}/web`, 'v1', await echoImage({ ws: WEBSOCKET_CGI }));
    authority = testAuthority();
    const args = ['--store', database.url, '--sandbox', 'process'];
    serving = await startHttpsNode(authority, { args, env, certificateFile: 'node-b' });
    trusting = await startProcess({ args, env: { ...env, NODE_EXTRA_CA_CERTS: authority.rootPath } });
    untrusting = await startProcess({ args, env });
    // Deployed through B, the app runs on B.
    const key = await trusting.projectKey(PROJECT, ['app']);
    const run = await serving.call('app', 'Run', { name: 'web', image: `${registry.host}/${PROJECT}/web:v1`, min_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const onB = await serving.call('app', 'Get', { name: 'web' }, key);
    assert.equal(onB.body.service.status, 'running', JSON.stringify(onB.body));
    assert.equal(onB.body.service.slots.length, 1, 'its instance runs on B');
  });

  after(async () => {
    await untrusting?.close();
    await trusting?.close();
    await serving?.server.close();
    await registry?.stop();
    await database?.drop();
    authority?.remove();
    cache.remove();
  });

  test("through A, the app's answer comes from B's instance over TLS, as B's own request", async () => {
    const page = await getThroughEdge(edgePort(trusting), HOST);
    assert.equal(page.status, 200, page.body);
    assert.equal(page.body, 'echo app\n');
    // The app as the instance saw the request: how the client came to A (plain HTTP), the Host it asked for, the body.
    const echoed = await send(edgePort(trusting), false, '/cgi-bin/echo', 'POST', 'relayed over tls');
    assert.equal(echoed.status, 200, echoed.body);
    assert.equal(echoed.body, `proto=http\nhost=${HOST}\nmethod=POST\nbody=relayed over tls\n`);
    // B served it over TLS to A, not to the browser: keeping to HTTPS is not B's to tell A's client.
    assert.equal(echoed.headers['strict-transport-security'], undefined);
    const key = await trusting.projectKey(PROJECT, ['app']);
    const onA = await trusting.call('app', 'Get', { name: 'web' }, key);
    assert.deepEqual(onA.body.service.slots, [], 'A relays; it started no instance of its own');
  });

  test('a keep-alive connection to A carries several requests, each relayed to B', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers: Answer[] = [];
      for (let index = 0; index < 6; index++) {
        answers.push(index % 2 === 0 ? await send(edgePort(trusting), agent, '/') : await send(edgePort(trusting), agent, '/cgi-bin/echo', 'POST', `request ${index}`));
      }
      answers.forEach((answer, index) => {
        assert.equal(answer.status, 200, answer.body);
        assert.equal(answer.body, index % 2 === 0 ? 'echo app\n' : `proto=http\nhost=${HOST}\nmethod=POST\nbody=request ${index}\n`);
      });
      assert.deepEqual(
        answers.map((answer) => answer.reused),
        [false, true, true, true, true, true],
        'one client connection carried them all',
      );
    } finally {
      agent.destroy();
    }
  });

  test("a websocket through A is upgraded by B's instance and streams", async () => {
    const websocket = await openWebsocket(edgePort(trusting), HOST);
    try {
      assert.match(websocket.head, /^HTTP\/1\.1 101 /);
      assert.match(websocket.head, /\r\nupgrade: websocket/i);
      const first = websocket.ticks();
      // The instance writes a tick every 200 ms: more arrive over the open connection.
      await new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 10_000;
        const check = () => (websocket.ticks() > first ? resolve() : Date.now() > deadline ? reject(new Error('no further tick within 10 s')) : setTimeout(check, 50));
        check();
      });
    } finally {
      await websocket.close();
    }
  });

  test("through C, which does not trust B's certificate, requests are answered 502 naming the certificate error, at once", async () => {
    const attempts = [getThroughEdge(edgePort(untrusting), HOST), send(edgePort(untrusting), false, '/cgi-bin/echo', 'POST', 'never reaches B')];
    for (const refused of await Promise.all(attempts)) {
      assert.equal(refused.status, 502, refused.body);
      const answer = JSON.parse(refused.body) as { id: string; detail: string };
      assert.equal(answer.id, 'unavailable');
      // B's certificate is signed by the authority, which C does not have: the chain stops at it.
      assert.match(answer.detail, /^app "web" in project "relayed" did not answer \(the TLS handshake with node \S+ failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE\); try again$/);
      assert.doesNotMatch(answer.detail, /127\.0\.0\.1/, 'the answer names no address inside the cloud');
      assert.doesNotMatch(answer.detail, /within \d+ ms/, 'refused at the handshake, not after the connect timeout');
    }
    // A websocket is refused the same way, and its connection closed.
    await assert.rejects(openWebsocket(edgePort(untrusting), HOST), /HTTP\/1\.1 502 .*UNABLE_TO_VERIFY_LEAF_SIGNATURE/s);
    // C goes on serving; B's app is still served through A.
    assert.equal((await getThroughEdge(edgePort(untrusting), 'localhost', '/livez')).status, 200);
    assert.equal((await getThroughEdge(edgePort(trusting), HOST)).body, 'echo app\n');
  });
});
