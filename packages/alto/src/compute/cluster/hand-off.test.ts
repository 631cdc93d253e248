/**
 * The hand-off route on a loopback HTTP server: a hand-off signed by a live node of the cloud
 * for its own app is taken (200 once the receiver is done); unsigned, signed with another cloud's
 * key, altered, or replayed it is refused with 401; signed by a node that is not live, or for
 * another node's app, 403; a body past the bound 413; a failed take answers the receiver's error.
 * The receiver is a stand-in that records what it was asked. To a peer advertised at an https: URL
 * the hand-off goes over TLS, verified: a certificate this process does not trust refuses it at
 * the handshake, and the receiver is asked nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { testAuthority } from '../../../test/tls-fixture.js';
import { errors } from '../../kit/errors.js';
import { silentLogger } from '../../kit/logger.js';
import { handleHandOff, HAND_OFF_PATH, HandOffRefused, MAX_BODY_BYTES, requestHandOff, type HandOffReceiver } from './hand-off.js';
import { deriveNodeLinkKey, ReplayGuard, signNodeRequest } from './node-link.js';
import type { PeerAddress } from './peers.js';

const key = deriveNodeLinkKey(randomBytes(32));
const received: [string, string][] = [];
const receiver: HandOffReceiver = {
  key,
  replays: new ReplayGuard(),
  log: silentLogger(),
  isLiveNode: (id) => id === 'node-a' || id === 'node-b',
  async receive(appId, from) {
    if (appId === 'broken') throw errors.unavailable('version 1 of app "broken" did not become ready');
    received.push([appId, from]);
  },
};
let server: Server;
let peer: PeerAddress;

before(async () => {
  server = createServer((request, response) => void handleHandOff(request, response, receiver));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  peer = { id: 'node-r', name: 'receiver', host: '127.0.0.1', port: (server.address() as AddressInfo).port, tls: false };
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** POSTs `body` to the route with these headers; the status and the error's detail. */
function post(body: string, headers: Record<string, string>, path = HAND_OFF_PATH): Promise<{ status: number; detail: string }> {
  return new Promise((resolve, reject) => {
    const call = httpRequest({ host: '127.0.0.1', port: peer.port, path, method: 'POST', agent: false, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, detail: (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { detail?: string }).detail ?? '' }));
    });
    call.on('error', reject);
    call.end(body);
  });
}

const handOff = (app: string, from: string) => JSON.stringify({ app, from });
const signed = (signer: string, body: string, signingKey = key) => signNodeRequest(signingKey, signer, { method: 'POST', path: HAND_OFF_PATH, body });

test("a live node's hand-off of its own app is taken, and answered once the receiver is done", async () => {
  await requestHandOff(peer, key, 'node-a', 'app-1');
  assert.deepEqual(received.at(-1), ['app-1', 'node-a']);
  const body = handOff('app-2', 'node-b');
  assert.deepEqual(await post(body, signed('node-b', body)), { status: 200, detail: '' });
  assert.deepEqual(received.at(-1), ['app-2', 'node-b']);
});

test('unsigned, signed with another cloud\'s key, altered or replayed: 401, and nothing taken', async () => {
  const before = received.length;
  const body = handOff('app-3', 'node-a');
  const unsigned = await post(body, {});
  assert.equal(unsigned.status, 401);
  assert.match(unsigned.detail, /no x-alto-node header/);
  const foreign = await post(body, signed('node-a', body, deriveNodeLinkKey(randomBytes(32))));
  assert.equal(foreign.status, 401);
  assert.match(foreign.detail, /does not match/);
  const altered = await post(handOff('app-4', 'node-a'), signed('node-a', body));
  assert.equal(altered.status, 401, 'a body other than the one signed');
  const headers = signed('node-a', body);
  assert.equal((await post(body, headers)).status, 200);
  const replayed = await post(body, headers);
  assert.equal(replayed.status, 401);
  assert.match(replayed.detail, /replay/);
  assert.equal(received.length, before + 1, 'only the first of the replayed pair was taken');
  await assert.rejects(requestHandOff(peer, deriveNodeLinkKey(randomBytes(32)), 'node-a', 'app-5'), (error) => error instanceof HandOffRefused && error.status === 401);
});

test('a node that is not live, or a hand-off of another node\'s app: 403', async () => {
  const before = received.length;
  const stranger = handOff('app-6', 'node-z');
  const notLive = await post(stranger, signed('node-z', stranger));
  assert.equal(notLive.status, 403);
  assert.match(notLive.detail, /not a live node/);
  const others = handOff('app-7', 'node-b');
  const notOwn = await post(others, signed('node-a', others));
  assert.equal(notOwn.status, 403);
  assert.match(notOwn.detail, /only its own apps/);
  assert.equal(received.length, before);
});

test('a body past the bound is refused (413) before it is verified; one that is not a hand-off 400; another path 404', async () => {
  const large = JSON.stringify({ app: 'app-8', from: 'node-a', padding: 'x'.repeat(MAX_BODY_BYTES) });
  assert.equal((await post(large, signed('node-a', large))).status, 413);
  const notJson = 'app=app-9';
  assert.equal((await post(notJson, signed('node-a', notJson))).status, 400);
  const body = handOff('app-10', 'node-a');
  assert.equal((await post(body, signed('node-a', body), `${HAND_OFF_PATH}/more`)).status, 404);
});

test("a take that fails answers the receiver's error, for the sender to keep its app", async () => {
  await assert.rejects(requestHandOff(peer, key, 'node-a', 'broken'), (error) => error instanceof HandOffRefused && error.status === 503 && /did not become ready/.test(error.message));
});

test("to a TLS peer whose certificate this process cannot verify, the hand-off fails at the handshake and the receiver is asked nothing", async () => {
  const authority = testAuthority();
  const served = authority.issue(['127.0.0.1'], 'receiver');
  const before = received.length;
  const secure = createHttpsServer({ cert: served.certificate, key: served.key }, (request, response) => void handleHandOff(request, response, receiver));
  secure.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => secure.listen(0, '127.0.0.1', resolve));
  try {
    const tlsPeer: PeerAddress = { id: 'node-r', name: 'receiver', host: '127.0.0.1', port: (secure.address() as AddressInfo).port, tls: true };
    await assert.rejects(
      requestHandOff(tlsPeer, key, 'node-a', 'app-11'),
      (error) => error instanceof HandOffRefused && error.status === 0 && /TLS handshake with node receiver failed: .*UNABLE_TO_VERIFY_LEAF_SIGNATURE/.test(error.message),
    );
    assert.equal(received.length, before);
  } finally {
    await new Promise((resolve) => secure.close(resolve));
    authority.remove();
  }
});
