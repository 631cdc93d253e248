/**
 * The ClientHello reader against hellos Node's own TLS client sends: the server name and the
 * offered protocols are read; a record that is not a handshake, or a truncated one, reads as empty.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { test } from 'node:test';
import { clientHelloLength, MAX_CLIENT_HELLO_BYTES, parseClientHello } from './client-hello.js';

/** The first record a TLS client sends to a server that never answers. */
async function helloOf(servername: string | undefined, protocols: string[]): Promise<Buffer> {
  const server = createServer();
  const record = new Promise<Buffer>((resolve) => {
    server.on('connection', (socket) => {
      let bytes = Buffer.alloc(0);
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk]);
        const length = clientHelloLength(bytes);
        if (length !== undefined && bytes.length >= length) {
          socket.destroy();
          resolve(bytes.subarray(0, length));
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, ALPNProtocols: protocols, rejectUnauthorized: false });
  client.on('error', () => undefined);
  try {
    return await record;
  } finally {
    client.destroy();
    server.close();
  }
}

test('the server name and offered protocols are read from a real ClientHello', async () => {
  const hello = parseClientHello(await helloOf('Web.Shop.Example.com', ['h2', 'http/1.1']));
  assert.equal(hello.serverName, 'web.shop.example.com');
  assert.deepEqual(hello.protocols, ['h2', 'http/1.1']);
  const challenge = parseClientHello(await helloOf('www.shop.test', ['acme-tls/1']));
  assert.deepEqual(challenge, { serverName: 'www.shop.test', protocols: ['acme-tls/1'] });
});

test('no SNI and no ALPN read as absent', async () => {
  assert.deepEqual(parseClientHello(await helloOf(undefined, [])), { protocols: [] });
});

test('what is not a handshake record, or ends early, reads as empty and bounds the wait', async () => {
  assert.equal(clientHelloLength(Buffer.from('GET / HTTP/1.1\r\n')), Infinity);
  assert.equal(clientHelloLength(Buffer.from([0x16, 3, 1])), undefined);
  assert.equal(clientHelloLength(Buffer.from([0x16, 3, 1, 0xff, 0xff])), MAX_CLIENT_HELLO_BYTES);
  const record = await helloOf('www.shop.test', ['acme-tls/1']);
  assert.deepEqual(parseClientHello(record.subarray(0, 60)), { protocols: [] });
  assert.deepEqual(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')), { protocols: [] });
});
