/**
 * The per-client connection cap, and the cloud's other nodes, which relay many clients' requests
 * from one address and are not held to it. Clients are distinct loopback addresses (127.0.0.2,
 * .3); 127.0.0.1 is the host's own and counts toward the total only.
 */
import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { silentLogger } from '../kit/logger.js';
import { capConnections, PeerAddresses } from './connections.js';

const peers = new PeerAddresses(async (host) => (await lookup(host, { all: true })).map((entry) => entry.address));
const server = createServer((socket) => socket.pipe(socket));
let port = 0;

before(async () => {
  capConnections(server, { maxConnections: 100, maxConnectionsPerClient: 2 }, silentLogger(), (address) => peers.has(address));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** A connection from `localAddress`, and whether the server kept it: it echoes, or it closes. */
async function openFrom(localAddress: string): Promise<{ socket: Socket; kept: Promise<boolean> }> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  const kept = new Promise<boolean>((resolve) => {
    socket.once('data', () => resolve(true));
    socket.once('close', () => resolve(false));
  });
  socket.write('ping');
  return { socket, kept };
}

test('a client past the cap is cut; a node of the cloud is not, once its address is known', async () => {
  const client = await Promise.all([1, 2, 3].map(() => openFrom('127.0.0.2')));
  assert.deepEqual((await Promise.all(client.map((c) => c.kept))).sort(), [false, true, true], 'two kept, the third cut');

  await peers.update(['127.0.0.3', 'localhost']);
  assert.ok(peers.has('127.0.0.3') && peers.has('127.0.0.1'), 'an address as it is, a host name as it resolves');
  const relaying = await Promise.all([1, 2, 3, 4, 5].map(() => openFrom('127.0.0.3')));
  assert.deepEqual(await Promise.all(relaying.map((c) => c.kept)), [true, true, true, true, true]);

  // A node that left is a client like any other again.
  await peers.update([]);
  const afterLeaving = await Promise.all([1, 2, 3].map(() => openFrom('127.0.0.3')));
  assert.deepEqual((await Promise.all(afterLeaving.map((c) => c.kept))).sort(), [false, true, true]);
  assert.equal(peers.has('127.0.0.3'), false);
  for (const c of [...client, ...relaying, ...afterLeaving]) c.socket.destroy();
});
