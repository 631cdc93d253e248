// A peer for the apps benchmark: what a Node.js proxy gains by pipelining requests to the
// backend. Client connections share a few backend connections (8 by default); each request goes
// on the one with the fewest answers owed, requests arriving in the same tick leave in one
// write, and answers come back in order, each to the client that asked. It reads just enough
// HTTP for the benchmark's load (GET without a body, answers framed by Content-Length) and drops
// a connection that sends anything else: a measure of the technique, not a proxy to deploy
// (a slow answer holds up every request queued behind it on its connection).
// Usage: node bench/node-pipeline.mjs <backend host:port> [connections=8]; prints {"port": N} once listening.
import { connect, createServer } from 'node:net';

const [host, port] = (process.argv[2] ?? '').split(':');
const BACKEND_CONNECTIONS = Number(process.argv[3] ?? 8);
const HEAD_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)[ \t]*\r\n/i;

/** A backend connection: the clients owed answers, in the order their requests went out. */
function backendConnection() {
  const socket = connect(Number(port), host);
  socket.setNoDelay(true);
  const backend = { socket, owed: [], buffer: Buffer.alloc(0), corked: false };
  socket.on('data', (chunk) => {
    backend.buffer = backend.buffer.length === 0 ? chunk : Buffer.concat([backend.buffer, chunk]);
    for (;;) {
      const end = backend.buffer.indexOf(HEAD_END);
      if (end < 0) return;
      const length = CONTENT_LENGTH.exec(backend.buffer.toString('latin1', 0, end + 2));
      if (!length) return socket.destroy(new Error('an answer without Content-Length'));
      const total = end + 4 + Number(length[1]);
      if (backend.buffer.length < total) return;
      const client = backend.owed.shift();
      if (client && !client.destroyed) client.write(backend.buffer.subarray(0, total));
      backend.buffer = backend.buffer.subarray(total);
    }
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    for (const client of backend.owed) client.destroy();
    backends[backends.indexOf(backend)] = backendConnection();
  });
  return backend;
}

const backends = Array.from({ length: BACKEND_CONNECTIONS }, backendConnection);
/** Backend connections written to in this tick: uncorked together, so their requests leave in one write each. */
const corked = new Set();
const uncorkAll = () => {
  for (const backend of corked) {
    backend.corked = false;
    backend.socket.uncork();
  }
  corked.clear();
};

const server = createServer((client) => {
  client.setNoDelay(true);
  let buffer = Buffer.alloc(0);
  client.on('data', (chunk) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    for (;;) {
      const end = buffer.indexOf(HEAD_END);
      if (end < 0) return;
      if (buffer.toString('latin1', 0, 4) !== 'GET ') return client.destroy();
      let backend = backends[0];
      for (const candidate of backends) if (candidate.owed.length < backend.owed.length) backend = candidate;
      if (!backend.corked) {
        backend.corked = true;
        backend.socket.cork();
        if (corked.size === 0) process.nextTick(uncorkAll);
        corked.add(backend);
      }
      backend.socket.write(buffer.subarray(0, end + 4));
      backend.owed.push(client);
      buffer = buffer.subarray(end + 4);
    }
  });
  client.on('error', () => client.destroy());
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
process.on('SIGTERM', () => process.exit(0));
