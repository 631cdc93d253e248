// @ts-check
/**
 * @module compute/functions/function-server
 * The HTTP server a function's bundle runs (build.ts): it listens on $PORT and hands each
 * request to the handler, a web handler (a Request in, a Response out) or an M3O one (the JSON
 * body in, its JSON answer out), answers 500 with the error's message when the handler throws,
 * and on SIGTERM closes its connections and exits.
 *
 * Not run as it is: functionServerSource (server-source.ts) fills in the two placeholders, the
 * handler's file and how it is called, then esbuild bundles it with the handler. It runs in the
 * sandbox with the image's node, so it stays plain JavaScript, checked by tsc through @ts-check.
 */
// @ts-expect-error -- a placeholder: the handler's file is known only when a function is built.
import * as handlerModule from '@@HANDLER_FILE@@';
import { createServer } from 'node:http';
import { Readable } from 'node:stream';

/** @typedef {{ kind: 'web' } | { kind: 'json', exportName: string }} HandlerStyle */

/** @type {HandlerStyle} */
// @ts-expect-error -- a placeholder: how the handler is called is known only when a function is built.
const STYLE = '@@HANDLER_STYLE@@';
const port = Number(process.env.PORT || 8080);

/** @returns {any} the handler: the named export (M3O), or the default export or its fetch (web) */
function pick() {
  if (STYLE.kind === 'json') return handlerModule[STYLE.exportName];
  const exported = handlerModule.default;
  if (exported && typeof exported === 'object' && typeof exported.default === 'function') return exported.default;
  if (exported && typeof exported === 'object' && typeof exported.fetch === 'function') return exported.fetch.bind(exported);
  return exported;
}
const handler = pick();

/**
 * @param {import('node:http').IncomingMessage} request
 * @returns {Promise<Buffer>}
 */
function readBody(request) {
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

/**
 * @param {import('node:http').ServerResponse} response
 * @param {number} status
 * @param {unknown} value
 */
function answerJson(response, status, value) {
  const body = JSON.stringify(value === undefined ? {} : value);
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(body);
}

/**
 * @param {import('node:http').IncomingMessage} request
 * @param {import('node:http').ServerResponse} response
 */
async function serveJson(request, response) {
  const bytes = await readBody(request);
  let input = {};
  if (bytes.length > 0) {
    try {
      input = JSON.parse(bytes.toString('utf8'));
    } catch (/** @type {any} */ error) {
      return answerJson(response, 400, { error: 'the request body is not JSON: ' + error.message });
    }
  }
  answerJson(response, 200, await handler(input));
}

/**
 * @param {import('node:http').IncomingMessage} request
 * @param {import('node:http').ServerResponse} response
 */
async function serveWeb(request, response) {
  // @ts-expect-error -- request.url may be undefined by its type, but never is on a server's request.
  const url = new URL(request.url, 'http://' + (request.headers.host || 'function'));
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (Array.isArray(value)) for (const one of value) headers.append(name, one);
    else if (value !== undefined) headers.set(name, value);
  }
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
  // @ts-expect-error -- duplex: 'half' (a body streamed in) is Node's, and not in the type of RequestInit.
  const webRequest = new Request(url, { method: request.method, headers, body: hasBody ? Readable.toWeb(request) : undefined, duplex: 'half' });
  const answer = await handler(webRequest);
  if (!(answer instanceof Response)) {
    if (answer === undefined) { response.writeHead(204); response.end(); return; }
    return answerJson(response, 200, answer);
  }
  /** @type {Record<string, string | string[]>} */
  const outgoing = {};
  answer.headers.forEach((value, name) => { if (name !== 'set-cookie') outgoing[name] = value; });
  const cookies = answer.headers.getSetCookie ? answer.headers.getSetCookie() : [];
  if (cookies.length) outgoing['set-cookie'] = cookies;
  response.writeHead(answer.status, answer.statusText, outgoing);
  if (!answer.body) { response.end(); return; }
  for await (const chunk of answer.body) response.write(chunk);
  response.end();
}

const server = createServer((request, response) => {
  const serve = STYLE.kind === 'json' ? serveJson : serveWeb;
  serve(request, response).catch((error) => {
    console.error(error && error.stack ? error.stack : String(error));
    if (!response.headersSent) answerJson(response, 500, { error: error && error.message ? error.message : String(error) });
    else response.destroy(error);
  });
});

if (typeof handler !== 'function') {
  console.error('the handler is not a function: ' + (STYLE.kind === 'json' ? 'export ' + STYLE.exportName : 'default export') + ' is ' + typeof handler);
  process.exit(1);
}
server.listen(port, () => console.log('function listening on ' + port));
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
