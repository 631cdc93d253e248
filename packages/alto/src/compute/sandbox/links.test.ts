/**
 * Link relays on the host's loopback (the microvm-without-namespace case; the gateway case is
 * covered end to end in test/apps-links.e2e.test.ts): bytes go both ways to the target a link's
 * `connect()` gives, the target is released once per connection when it ends, a connection whose
 * target cannot be had is closed, closing the relays ends their connections; the variables'
 * names and the checks on links.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { linkVariables, openLinkRelays, validateLinks } from './links.js';
import { MAX_RELAY_CONNECTIONS } from './platform-access.js';
import type { SandboxLink } from './port.js';

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Connects, writes `text`, half-closes, and resolves with everything read until the relay closes. */
function exchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let received = '';
    socket.on('data', (chunk) => (received += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
    socket.end(text);
  });
}

describe('link relays', () => {
  let echo: Server;
  let echoPort: number;
  const open = new Set<Socket>();

  before(async () => {
    echo = createServer({ allowHalfOpen: true }, (socket) => {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as { port: number }).port;
  });

  after(() => echo.close());

  test('relays to the target connect() gives, and releases it once when the connection ends', async () => {
    let acquired = 0;
    let released = 0;
    const link: SandboxLink = {
      name: 'cache',
      port: 6379,
      connect: async () => {
        acquired += 1;
        return { host: '127.0.0.1', port: echoPort, release: () => (released += 1) };
      },
    };
    const relays = await openLinkRelays([link]);
    try {
      assert.equal(relays.relays.length, 1);
      assert.equal(relays.relays[0].address, '127.0.0.1');
      assert.equal(await exchange(relays.relays[0].port, 'PING'), 'PING');
      assert.equal(await exchange(relays.relays[0].port, 'again'), 'again');
      await until(() => released === 2, 'both connections released');
      assert.equal(acquired, 2);
    } finally {
      await relays.close();
    }
    await assert.rejects(exchange(relays.relays[0].port, 'x'), /ECONNREFUSED/);
  });

  test('a connection whose target cannot be had is closed without a byte', async () => {
    const relays = await openLinkRelays([{ name: 'missing', port: 80, connect: () => Promise.reject(new Error('no app "missing"')) }]);
    try {
      assert.equal(await exchange(relays.relays[0].port, 'hello'), '');
    } finally {
      await relays.close();
    }
  });

  test('one relay (one sandbox) holds at most MAX_RELAY_CONNECTIONS connections; the excess is closed at once', async () => {
    const relays = await openLinkRelays([{ name: 'cache', port: 6379, connect: async () => ({ host: '127.0.0.1', port: echoPort, release() {} }) }]);
    const sockets: Socket[] = [];
    let closed = 0;
    try {
      for (let index = 0; index < MAX_RELAY_CONNECTIONS + 5; index++) {
        const socket = connect({ host: '127.0.0.1', port: relays.relays[0].port });
        socket.on('error', () => undefined);
        socket.once('close', () => (closed += 1));
        sockets.push(socket);
      }
      await until(() => closed === 5, 'the 5 connections past the cap to close');
    } finally {
      for (const socket of sockets) socket.destroy();
      await relays.close();
    }
  });

  test('closing the relays ends the connections they carry', async () => {
    let released = 0;
    const relays = await openLinkRelays([{ name: 'cache', port: 6379, connect: async () => ({ host: '127.0.0.1', port: echoPort, release: () => (released += 1) }) }]);
    const socket = connect({ host: '127.0.0.1', port: relays.relays[0].port });
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.on('error', () => undefined);
    socket.write('hold');
    await new Promise((resolve) => socket.once('data', resolve));
    await relays.close();
    await closed;
    await until(() => released === 1, 'the held connection released');
  });

  test('variables as Kubernetes names them; links checked', () => {
    assert.deepEqual(linkVariables([{ name: 'my-cache', host: '10.0.2.101', port: 6379 }]), {
      MY_CACHE_SERVICE_HOST: '10.0.2.101',
      MY_CACHE_SERVICE_PORT: '6379',
    });
    const link = (name: string): SandboxLink => ({ name, port: 80, connect: () => Promise.reject(new Error('unused')) });
    assert.throws(() => validateLinks(Array.from({ length: 17 }, (_, index) => link(`app-${index}`))), /at most 16/);
    assert.throws(() => validateLinks([link('a'), link('a')]), /twice/);
    assert.throws(() => validateLinks([link('Bad_Name')]), /app name/);
    assert.doesNotThrow(() => validateLinks([link('a'), link('b-2')]));
  });
});
