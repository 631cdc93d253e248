/**
 * `PatientConnector` against a listener like QEMU's hostfwd: a backlog of 1 and an owner that does
 * not accept for a while (a child process whose event loop is blocked), so the host's kernel drops
 * the SYNs beyond its queue. The connector tries again itself (more attempts than connections),
 * every connection gets through once the owner accepts, a refused connection fails at once, and a
 * listener that never accepts fails at the deadline.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { PatientConnector } from './connect.js';

const children: ChildProcess[] = [];
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

/** A child listening on 127.0.0.1 with a backlog of 1 that accepts nothing for `blockMs`; resolves its port. */
async function slowListener(blockMs: number): Promise<number> {
  const script = `
    const server = require('node:net').createServer((socket) => socket.end());
    server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
      process.stdout.write(server.address().port + '\\n');
      // Blocks the event loop: nothing is accepted meanwhile.
      setImmediate(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${blockMs}));
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  return Number(chunk.toString().trim());
}

test('connections beyond a full backlog of 1 are retried by the connector and all get through', async () => {
  const port = await slowListener(1_500);
  let attempts = 0;
  const connector = new PatientConnector(() => {
    attempts += 1;
    return { host: '127.0.0.1', port };
  }, { parallel: 2, attemptMs: 100 });
  const sockets = await Promise.all(Array.from({ length: 8 }, () => connector.connect().then((socket) => socket.on('error', () => undefined))));
  assert.equal(sockets.length, 8);
  assert.ok(attempts > 8, `dropped handshakes were tried again (${attempts} attempts for 8 connections)`);
  for (const socket of sockets) socket.destroy();
});

test('a refused connection fails at once; one never accepted fails at the deadline', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: closedPort } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  let refusedAttempts = 0;
  const refused = new PatientConnector(() => {
    refusedAttempts += 1;
    return { host: '127.0.0.1', port: closedPort };
  });
  await assert.rejects(refused.connect(), { code: 'ECONNREFUSED' });
  assert.equal(refusedAttempts, 1, 'no retry when nothing listens');

  const port = await slowListener(60_000);
  const connector = new PatientConnector(() => ({ host: '127.0.0.1', port }), { parallel: 1, attemptMs: 50, deadlineMs: 400 });
  // The kernel queues a few handshakes before it drops them; then a connection waits in vain.
  const queued: Socket[] = [];
  let failure: NodeJS.ErrnoException | undefined;
  while (!failure && queued.length < 10) {
    await connector.connect().then(
      (socket) => queued.push(socket.on('error', () => undefined)),
      (error: NodeJS.ErrnoException) => (failure = error),
    );
  }
  assert.equal(failure?.code, 'ETIMEDOUT', `a connection beyond the queue fails at the deadline (${queued.length} were queued)`);
  for (const socket of queued) socket.destroy();
});
