// @ts-check
/**
 * Counts visits in redis: each request INCRs the key `visits` and answers the new count. Redis is
 * another app of the same project, linked with `--link cache`, so Alto gives this app
 * CACHE_SERVICE_HOST and CACHE_SERVICE_PORT (as Kubernetes does for services). No dependencies:
 * a few lines of RESP (redis' protocol) below, so Alto builds it from source as it is.
 */
import { connect } from 'node:net';
import { createServer } from 'node:http';

const PORT = Number(process.env.PORT || 8080);
const REDIS_HOST = process.env.CACHE_SERVICE_HOST || '127.0.0.1';
const REDIS_PORT = Number(process.env.CACHE_SERVICE_PORT || 6379);

/** A command as RESP: an array of bulk strings. @param {string[]} words */
function encode(words) {
  return `*${words.length}\r\n` + words.map((word) => `$${Buffer.byteLength(word)}\r\n${word}\r\n`).join('');
}

/**
 * Sends one command on a connection of its own and resolves with the reply's first line,
 * decoded: `:12` → 12, `+OK` → 'OK'; an error reply (`-ERR ...`) rejects. Enough for INCR.
 * @param {string[]} words
 * @returns {Promise<string | number>}
 */
function redis(...words) {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: REDIS_HOST, port: REDIS_PORT });
    let reply = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('redis did not answer within 10 s')));
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('redis closed the connection without a reply')));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      const end = reply.indexOf('\r\n');
      if (end < 0) return;
      socket.end();
      const [type, text] = [reply[0], reply.slice(1, end)];
      if (type === '-') reject(new Error(text));
      else resolve(type === ':' ? Number(text) : text);
    });
    socket.write(encode(words));
  });
}

createServer(async (request, response) => {
  if (new URL(request.url ?? '/', 'http://counter').pathname !== '/') {
    response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  try {
    const visits = await redis('INCR', 'visits');
    response.writeHead(200, { 'content-type': 'text/plain' }).end(`${visits}\n`);
  } catch (error) {
    console.error(`redis at ${REDIS_HOST}:${REDIS_PORT}: ${/** @type {Error} */ (error).message}`);
    response.writeHead(503, { 'content-type': 'text/plain' }).end(`redis is not reachable: ${/** @type {Error} */ (error).message}\n`);
  }
}).listen(PORT, () => console.log(`redis-counter listening on ${PORT}, redis at ${REDIS_HOST}:${REDIS_PORT}`));
