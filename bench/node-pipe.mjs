// A peer for the apps benchmark: the least a Node.js proxy can do. Each client connection gets
// its own connection to the backend and bytes are copied both ways as they come, with no HTTP
// parsing, routing, accounting or pooling: what Node's sockets alone cost per request.
// Usage: node bench/node-pipe.mjs <backend host:port>; prints {"port": N} once listening.
import { connect, createServer } from 'node:net';

const [host, port] = (process.argv[2] ?? '').split(':');
const server = createServer((client) => {
  client.setNoDelay(true);
  const backend = connect(Number(port), host);
  backend.setNoDelay(true);
  client.on('data', (chunk) => backend.write(chunk));
  backend.on('data', (chunk) => client.write(chunk));
  client.on('error', () => backend.destroy());
  backend.on('error', () => client.destroy());
  client.on('close', () => backend.destroy());
  backend.on('close', () => client.destroy());
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
