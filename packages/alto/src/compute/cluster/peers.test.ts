/**
 * Where a peer's edge is reached (its advertised URL, http: or https:) and the connection to it:
 * plain TCP, or TLS verified against Node's default roots. A certificate from an authority the
 * process does not trust is refused at the handshake, naming the error's code; a peer that
 * accepts the TCP connection but never finishes the handshake is given up after the connect
 * timeout; nothing is handed out before the handshake is done. (A trusted peer is in
 * test/apps-two-nodes-https.e2e.test.ts, whose nodes read the test authority from
 * NODE_EXTRA_CA_CERTS at start.)
 */
import assert from 'node:assert/strict';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { testAuthority, type TestAuthority } from '../../../test/tls-fixture.js';
import { connectToPeer, peerAddressOf, PeerHandshakeError, type PeerAddress } from './peers.js';

const node = (advertiseUrl: string) => ({ id: 'n-1', name: 'alpha', advertiseUrl });

describe('peerAddressOf', () => {
  test('an http: URL is plain, an https: URL is TLS, each with its default port', () => {
    assert.deepEqual(peerAddressOf(node('http://10.0.0.5:4000')), { id: 'n-1', name: 'alpha', host: '10.0.0.5', port: 4000, tls: false });
    assert.deepEqual(peerAddressOf(node('http://node-a.internal')), { id: 'n-1', name: 'alpha', host: 'node-a.internal', port: 80, tls: false });
    assert.deepEqual(peerAddressOf(node('https://10.0.0.5:4443')), { id: 'n-1', name: 'alpha', host: '10.0.0.5', port: 4443, tls: true });
    assert.deepEqual(peerAddressOf(node('https://node-a.example.com/')), { id: 'n-1', name: 'alpha', host: 'node-a.example.com', port: 443, tls: true });
    assert.deepEqual(peerAddressOf(node('https://[fd00::5]:4443')), { id: 'n-1', name: 'alpha', host: 'fd00::5', port: 4443, tls: true });
  });

  test('another scheme is no address', () => {
    assert.equal(peerAddressOf(node('ftp://10.0.0.5')), undefined);
  });
});

describe('connectToPeer', () => {
  let authority: TestAuthority;
  let untrusted: Server;
  let silent: Server;
  let plain: Server;
  const held: Socket[] = [];
  let secured = 0;
  const peer = (server: Server, tls: boolean): PeerAddress => ({ id: 'n-1', name: 'alpha', host: '127.0.0.1', port: (server.address() as AddressInfo).port, tls });
  const listen = (server: Server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  before(async () => {
    authority = testAuthority();
    const served = authority.issue(['127.0.0.1'], 'peer');
    // A TLS edge whose certificate comes from an authority this process does not trust.
    untrusted = createTlsServer({ cert: served.certificate, key: served.key, ALPNProtocols: ['h2', 'http/1.1'] }, (socket) => {
      secured++;
      socket.end();
    });
    untrusted.on('tlsClientError', () => undefined);
    // Takes the TCP connection and says nothing: no handshake ever finishes.
    silent = createTcpServer((socket) => {
      held.push(socket);
      socket.on('error', () => undefined);
    });
    // Reads what it is sent (so its side closes once the client's does) and ends at once.
    plain = createTcpServer((socket) => {
      socket.on('error', () => undefined);
      socket.resume();
      socket.end();
    });
    await Promise.all([listen(untrusted), listen(silent), listen(plain)]);
  });

  after(async () => {
    for (const socket of held) socket.destroy();
    await Promise.all([untrusted, silent, plain].map((server) => new Promise((resolve) => server.close(resolve))));
    authority.remove();
  });

  test('a plain peer is connected to over TCP', async () => {
    const socket = await connectToPeer(peer(plain, false));
    assert.equal('encrypted' in socket, false);
    socket.destroy();
  });

  test("a TLS peer whose certificate this process cannot verify is refused at the handshake, with the error's code", async () => {
    const started = Date.now();
    await assert.rejects(connectToPeer(peer(untrusted, true)), (error: unknown) => {
      assert.ok(error instanceof PeerHandshakeError, String(error));
      assert.equal(error.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      assert.match(error.message, /^the TLS handshake with node alpha failed: .*\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/);
      return true;
    });
    assert.ok(Date.now() - started < 5_000, 'refused at once, not after the connect timeout');
    assert.equal(secured, 0, 'the connection never became one the peer serves');
  });

  test('a TLS peer that takes the connection but never finishes the handshake is given up after the timeout', async () => {
    await assert.rejects(connectToPeer(peer(silent, true), 300), /^Error: node alpha did not finish the TLS handshake within 300 ms$/);
  });

  test('a plain peer spoken to as TLS is not handed out as connected', async () => {
    // The TCP connection succeeds, then the peer closes without a handshake.
    await assert.rejects(connectToPeer(peer(plain, true)), PeerHandshakeError);
  });
});
