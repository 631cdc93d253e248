/**
 * Item 2 of the security issue: one websocket frame must not end the server. Alto runs as its own
 * process, so a crash shows as an exit. Every malformed frame is sent after a real handshake on
 * stream endpoints (with a key), endpoints that are not streams (public ones need no key) must
 * refuse the upgrade outright, and a client that resets during the handshake is shrugged off.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startProcess, waitFor, type ServerProcess } from '../harness.js';
import { MALFORMED_FRAMES, rawConnect, upgradeRequest, type RawConnection } from './raw-http.js';

/** The status line's code of what the server answered, once it did. */
async function handshake(connection: RawConnection, path: string, key?: string): Promise<number> {
  connection.socket.write(upgradeRequest(path, key));
  await waitFor(() => connection.received().includes('\r\n\r\n') || connection.isClosed(), `an answer to the upgrade on ${path}`);
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(connection.received())?.[1] ?? 0);
}

describe('websocket frames cannot end the server', () => {
  let alto: ServerProcess;
  let key: string;
  const stillUp = async (what: string) => {
    assert.equal(alto.child.exitCode, null, `the server exited after ${what}:\n${alto.stderr().slice(-2000)}`);
    const live = await fetch(`${alto.url}/livez`);
    assert.equal(live.status, 200, `the server answers after ${what}`);
  };

  before(async () => {
    alto = await startProcess();
    key = await alto.projectKey('frames');
  });
  after(() => alto?.close());

  const streams = ['/v1/id/Stream', '/v1/db/Watch', '/v1/event/Consume', '/v1/mq/Subscribe'];
  for (const path of streams) {
    test(`malformed frames on ${path} close that connection only`, async () => {
      for (const [name, bytes] of Object.entries(MALFORMED_FRAMES)) {
        const connection = await rawConnect(alto.url);
        assert.equal(await handshake(connection, path, key), 101, `${path} upgrades with a key`);
        connection.socket.write(bytes);
        await waitFor(() => connection.isClosed(), `the server to close the connection after "${name}"`);
        await stillUp(`"${name}" on ${path}`);
      }
    });
  }

  test('a malformed frame after a valid request, mid-stream, closes that stream only', async () => {
    const connection = await rawConnect(alto.url);
    assert.equal(await handshake(connection, '/v1/event/Consume', key), 101);
    const { frame } = await import('./raw-http.js');
    connection.socket.write(frame(0x81, Buffer.from(JSON.stringify({ topic: 'news' }))));
    connection.socket.write(MALFORMED_FRAMES['reserved opcode 0x3']);
    await waitFor(() => connection.isClosed(), 'the stream to close');
    await stillUp('a bad frame mid-stream');
  });

  const notStreams = ['/v1/usage/Prices', '/v1/accounts/Login', '/v1/accounts/Signup', '/v1/id/Generate', '/v1/id/Id/Generate', '/v1/db/Read'];
  for (const path of notStreams) {
    test(`${path} is not a stream: the upgrade is refused with 400 and nothing is taken over`, async () => {
      for (const withKey of [false, true]) {
        for (const [name, bytes] of Object.entries(MALFORMED_FRAMES)) {
          const connection = await rawConnect(alto.url);
          const status = await handshake(connection, path, withKey ? key : undefined);
          assert.equal(status, 400, `${path} ${withKey ? 'with' : 'without'} a key answers the upgrade with 400`);
          assert.match(connection.received(), /is not a stream/);
          connection.socket.write(bytes);
          await waitFor(() => connection.isClosed(), 'the refused connection to close');
          await stillUp(`"${name}" sent to ${path}`);
        }
      }
    });
  }

  test('other paths refuse the upgrade: unknown endpoints, no key, and outside /v1', async () => {
    for (const [path, withKey, expected] of [
      ['/v1/nothing/Here', true, 404],
      ['/v1/id/Stream', false, 401],
      ['/livez', false, 404],
      ['/space/p/e/x', false, 404],
    ] as const) {
      const connection = await rawConnect(alto.url);
      assert.equal(await handshake(connection, path, withKey ? key : undefined), expected, path);
      connection.socket.write(MALFORMED_FRAMES['unmasked client frame']);
      await waitFor(() => connection.isClosed(), `${path} to close`);
      await stillUp(`an upgrade on ${path}`);
    }
  });

  test('a client that resets while its upgrade is checked does not end the server', async () => {
    for (let attempt = 0; attempt < 30; attempt++) {
      const connection = await rawConnect(alto.url);
      connection.socket.write(upgradeRequest('/v1/id/Stream', attempt % 2 === 0 ? 'alto_not_a_key' : key));
      connection.socket.resetAndDestroy();
    }
    // One more handshake goes all the way, after the resets were dealt with.
    const connection = await rawConnect(alto.url);
    assert.equal(await handshake(connection, '/v1/id/Stream', key), 101);
    connection.socket.destroy();
    await stillUp('resets during upgrades');
  });
});
