/**
 * TCP apps through any node: two `alto up --sandbox process` processes sharing one PostgreSQL
 * (`--store`), on two loopback addresses (127.0.0.1 and 127.0.0.2, so each can open the same
 * port number), a Redis app (`tcp: 6379`) run on the first. The second opens a relay port with the
 * app's port number, and a Redis client connected to it is served by the first node's instance
 * through a tunnel on its edge (compute/cluster/tcp-tunnel.ts): a key set through one node is
 * read through the other. A tunnel request that is not signed by a node of the cloud is refused
 * with 401 and opens nothing; once the app is deleted the relay port closes. Needs the test
 * services (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { redisImage } from './app-images.js';
import { eventually, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'tcprelay';

/** The first line of what a raw HTTP request to `host:port` gets back, and whether the connection was then closed. */
function rawRequest(host: string, port: number, text: string): Promise<{ statusLine: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head, ...rest] = received.split('\r\n\r\n');
      resolve({ statusLine: head.split('\r\n')[0] ?? '', body: rest.join('\r\n\r\n') });
    });
    socket.write(text);
  });
}

/** Whether something accepts connections at host:port now. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('a TCP app reached through a node that does not run it', () => {
  let database: TestDatabase;
  let registry: TestRegistry;
  let first: ServerProcess;
  let second: ServerProcess;
  let key: string;
  let image: string;
  const cache = privateSandboxCache();
  const folders = [temporaryDataDir(), temporaryDataDir()];
  const env = {
    ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
    ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
    ALTO_SANDBOX_CACHE: cache.dir,
  };

  before(async () => {
    database = await createTestDatabase('tcp_relay');
    registry = await startRegistry();
    await registry.push('tcprelay/redis', 'v1', await redisImage());
    image = `${registry.host}/tcprelay/redis:v1`;
    const args = ['--store', database.url, '--sandbox', 'process'];
    first = await startProcess({ dataDir: folders[0], args, env, host: '127.0.0.1' });
    second = await startProcess({ dataDir: folders[1], args, env, host: '127.0.0.2' });
    key = await first.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    await second?.close();
    await first?.close();
    await registry?.stop();
    await database?.drop();
    cache.remove();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  test('the other node relays connections to the instance through a tunnel; unsigned tunnels are refused; the relay port closes with the app', async () => {
    const run = await first.call('app', 'Run', { name: 'cache', image, memory: 128, tcp: 6379, min_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const port = run.body.service.tcp_port as number;
    assert.ok(port > 0, 'the app has an edge port');

    const direct = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await direct.connect();
      assert.equal(await direct.set('where', 'set through the node that runs the app'), 'OK');
    } finally {
      direct.disconnect();
    }

    // The second node opens its relay port at its next read of the nodes (every heartbeat).
    await eventually(() => accepts('127.0.0.2', port), 'the second node listens on the app\'s port', 20_000);
    const relayed = new Redis({ host: '127.0.0.2', port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await relayed.connect();
      assert.equal(await relayed.ping(), 'PONG');
      assert.equal(await relayed.get('where'), 'set through the node that runs the app', 'the same instance, through the tunnel');
      assert.equal(await relayed.set('back', 'set through the relay'), 'OK');
      // Many round trips on one relayed connection, and a value larger than one packet.
      const big = 'x'.repeat(256 * 1024);
      await relayed.set('big', big);
      assert.equal(await relayed.strlen('big'), big.length);
      assert.equal(await relayed.get('big'), big);
    } finally {
      relayed.disconnect();
    }
    const check = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await check.connect();
      assert.equal(await check.get('back'), 'set through the relay');
    } finally {
      check.disconnect();
    }

    // A tunnel asked for without the node link's signature: 401, and the connection is closed.
    const firstPort = Number(new URL(first.url).port);
    const refused = await rawRequest(
      '127.0.0.1',
      firstPort,
      `POST /v1/internal/tcp-tunnel?project=${PROJECT}&app=cache HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\nupgrade: alto-tcp\r\ncontent-length: 0\r\n\r\nPING\r\n`,
    );
    assert.match(refused.statusLine, /^HTTP\/1\.1 401 /);
    assert.match(JSON.parse(refused.body).detail, /node request refused: no x-alto-node header/);

    assert.equal((await first.call('app', 'Delete', { name: 'cache' }, key)).status, 200);
    await eventually(async () => !(await accepts('127.0.0.2', port)), 'the relay port closes once the app is gone', 20_000);
  });
});
