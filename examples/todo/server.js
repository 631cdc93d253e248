// @ts-check
/**
 * A todo API on Alto: accounts and sessions come from Alto's user service, todos are records in
 * its db service, both called with Alto's SDK (./alto-sdk, copied in by `alto init`).
 *
 *   POST   /signup     {"email","password"}  -> 201 {"session","user_id"}
 *   POST   /login      {"email","password"}  -> {"session","user_id"}
 *   GET    /todos                            -> {"todos":[...]}       (Authorization: Bearer <session>)
 *   POST   /todos      {"title"}             -> 201 {"todo"}
 *   PATCH  /todos/:id  {"title"?,"done"?}    -> {"todo"}
 *   DELETE /todos/:id                        -> 204
 *
 * Alto gives the app ALTO_URL (where its API is, from inside the sandbox); the key comes from
 * the app's environment: alto deploy . --name todo --env ALTO_KEY=<a key with scopes db,user>.
 * Locally: ALTO_URL=http://localhost:4000 ALTO_KEY=... PORT=3000 node server.js
 */
import { createServer } from 'node:http';
import { Alto, AltoError } from './alto-sdk/index.js';

const PORT = Number(process.env.PORT || 8080);
const TABLE = 'todos';

/** @typedef {{ id: string, owner: string, title: string, done: boolean, created: string }} Todo */

/** An error this app answers with: an HTTP status and what was wrong. */
class HttpError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The Alto client, or undefined (with the reason) when the environment does not say where Alto is. */
function connect() {
  const url = process.env.ALTO_URL;
  const key = process.env.ALTO_KEY;
  if (!url) return { alto: undefined, problem: 'ALTO_URL is not set: Alto sets it for apps it runs; locally, set it to http://localhost:4000' };
  if (!key) return { alto: undefined, problem: 'ALTO_KEY is not set: deploy with --env ALTO_KEY=<a key with scopes db,user>' };
  return { alto: new Alto({ url, key }), problem: undefined };
}
const { alto, problem } = connect();

/** @returns {Alto} */
function api() {
  if (!alto) throw new HttpError(503, problem ?? 'Alto is not configured');
  return alto;
}

/** @param {import('node:http').IncomingMessage} request @returns {Promise<Record<string, unknown>>} */
async function readJson(request) {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  try {
    const value = JSON.parse(text);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value;
  } catch {}
  throw new HttpError(400, 'the body must be a JSON object');
}

/** @param {unknown} value @param {string} field @returns {string} */
function text(value, field) {
  if (typeof value !== 'string' || !value.trim()) throw new HttpError(400, field + ' is required (a non-empty string)');
  return value.trim();
}

/** The user id of the session in `Authorization: Bearer <session>`. */
async function userOf(/** @type {import('node:http').IncomingMessage} */ request) {
  const session = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1];
  if (!session) throw new HttpError(401, 'sign in first: send Authorization: Bearer <session> (from POST /signup or /login)');
  try {
    return (await api().user.readSession({ session_id: session })).session.userId;
  } catch (error) {
    if (error instanceof AltoError && error.status < 500 && error.status !== 403) throw new HttpError(401, 'the session is unknown or expired: log in again');
    throw error;
  }
}

/** A todo of this user, or 404. @param {string} owner @param {string} id @returns {Promise<Todo>} */
async function findTodo(owner, id) {
  const { records } = await api().db.read({ table: TABLE, id });
  const todo = /** @type {Todo | undefined} */ (records[0]);
  if (!todo || todo.owner !== owner) throw new HttpError(404, 'no todo ' + id);
  return todo;
}

/** @param {string} email @param {string} password */
async function login(email, password) {
  const { session } = await api().user.login({ email, password });
  return { session: session.id, user_id: session.userId };
}

/**
 * The routes. Each answers [status, body].
 * @param {import('node:http').IncomingMessage} request
 * @returns {Promise<[number, unknown]>}
 */
async function route(request) {
  const url = new URL(request.url ?? '/', 'http://todo');
  const method = request.method ?? 'GET';
  const todoId = /^\/todos\/([^/]+)$/.exec(url.pathname)?.[1];

  if (method === 'GET' && url.pathname === '/') {
    return [200, { app: 'todo', alto: alto ? 'configured' : problem, routes: ['POST /signup', 'POST /login', 'GET /todos', 'POST /todos', 'PATCH /todos/:id', 'DELETE /todos/:id'] }];
  }
  if (method === 'GET' && url.pathname === '/healthz') return [200, { ok: true }];
  if (method === 'POST' && url.pathname === '/signup') {
    const body = await readJson(request);
    const email = text(body.email, 'email');
    const password = text(body.password, 'password');
    await api().user.create({ email, password });
    return [201, await login(email, password)];
  }
  if (method === 'POST' && url.pathname === '/login') {
    const body = await readJson(request);
    return [200, await login(text(body.email, 'email'), text(body.password, 'password'))];
  }
  if (method === 'GET' && url.pathname === '/todos') {
    const owner = await userOf(request);
    const { records } = await api().db.read({ table: TABLE, query: 'owner == ' + JSON.stringify(owner), orderBy: 'created', limit: 1000 });
    return [200, { todos: records }];
  }
  if (method === 'POST' && url.pathname === '/todos') {
    const owner = await userOf(request);
    const body = await readJson(request);
    /** @type {Omit<Todo, 'id'>} */
    const record = { owner, title: text(body.title, 'title'), done: false, created: new Date().toISOString() };
    const { id } = await api().db.create({ table: TABLE, record });
    return [201, { todo: { id, ...record } }];
  }
  if (method === 'PATCH' && todoId) {
    const owner = await userOf(request);
    const body = await readJson(request);
    const todo = await findTodo(owner, todoId);
    /** @type {Partial<Todo>} */
    const changes = {};
    if (body.title !== undefined) changes.title = text(body.title, 'title');
    if (body.done !== undefined) {
      if (typeof body.done !== 'boolean') throw new HttpError(400, 'done must be true or false');
      changes.done = body.done;
    }
    await api().db.update({ table: TABLE, id: todoId, record: changes });
    return [200, { todo: { ...todo, ...changes } }];
  }
  if (method === 'DELETE' && todoId) {
    const owner = await userOf(request);
    await findTodo(owner, todoId);
    await api().db.delete({ table: TABLE, id: todoId });
    return [204, undefined];
  }
  throw new HttpError(404, 'no route ' + method + ' ' + url.pathname);
}

/** Alto's 4xx errors (a taken email, a wrong password) pass through with their status and detail. */
function failure(/** @type {unknown} */ error) {
  if (error instanceof HttpError) return { status: error.status, message: error.message };
  if (error instanceof AltoError && error.status === 403) return { status: 502, message: 'Alto refused this app\'s key (ALTO_KEY): ' + error.detail };
  if (error instanceof AltoError && error.status >= 400 && error.status < 500) return { status: error.status, message: error.detail };
  console.error(error);
  return { status: 500, message: 'something went wrong; the app log has the details' };
}

const server = createServer(async (request, response) => {
  let status;
  let body;
  try {
    [status, body] = await route(request);
  } catch (error) {
    const { status: code, message } = failure(error);
    [status, body] = [code, { error: message }];
  }
  console.log(request.method + ' ' + request.url + ' ' + status);
  if (body === undefined) response.writeHead(status).end();
  else response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n');
});

server.listen(PORT, () => console.log('todo listening on ' + PORT + (alto ? ', Alto at ' + process.env.ALTO_URL : ' (' + problem + ')')));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
