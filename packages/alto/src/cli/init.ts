/**
 * @module cli/init
 * `alto init [folder] [--name todo] [--force]`: scaffolds a small todo API in an empty folder —
 * accounts and sessions from the `user` service, todos in `db`, through Alto's SDK — that
 * `alto deploy <folder>` builds from source as it is, then prints the next commands.
 *
 * Why plain ESM JavaScript with JSDoc types (`// @ts-check`) rather than TypeScript: a source
 * deploy runs `node <file>` from package.json's start script in an image that has node but no
 * npm, no shell and no compiler (compute/functions/build.ts, startCommandOf), so a `.ts` server
 * would need a build step Alto cannot run. JSDoc gives the editor the same type checking.
 *
 * Why the SDK is copied into the app (`alto-sdk/`, Alto's own build of `@alto/sdk`, JavaScript
 * and declarations): a source deploy installs package.json's dependencies from the npm registry,
 * where `@alto/sdk` is not published, and does not upload node_modules. The app imports it by
 * path; the SDK needs nothing else at runtime (`ws` only for streams, which the app does not use).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { bold, dim, green } from './output.js';

/** Files `alto init` writes besides the SDK copy, by path in the app folder. */
export function scaffoldFiles(name: string): Record<string, string> {
  const packageJson = {
    name,
    version: '0.1.0',
    private: true,
    description: 'A todo API on Alto (db + user)',
    type: 'module',
    scripts: { start: 'node server.js' },
  };
  return {
    'package.json': JSON.stringify(packageJson, null, 2) + '\n',
    'server.js': SERVER_JS,
    'README.md': README_MD.replaceAll('__NAME__', name),
    '.gitignore': 'node_modules/\n.alto/\n.env\n',
    'jsconfig.json': JSON.stringify({ compilerOptions: { checkJs: true, module: 'nodenext', target: 'es2022', strict: true, noEmit: true }, include: ['server.js'] }, null, 2) + '\n',
  };
}

/** The app name from a folder name: lower-case letters, digits and dashes, as apps are named. */
export function appNameOf(folder: string): string {
  const name = basename(resolve(folder))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return /^[a-z]/.test(name) ? name : `app-${name || 'todo'}`.replace(/-+$/, '');
}

/** The folder of Alto's built SDK (its `dist`, where index.js is). */
function sdkFolder(): string {
  const entry = createRequire(import.meta.url).resolve('@alto/sdk');
  const folder = dirname(entry);
  if (!existsSync(join(folder, 'index.js'))) throw new Error(`Alto's SDK is not built (no ${join(folder, 'index.js')}); run npm run build in Alto's folder`);
  return folder;
}

/** Copies the SDK's JavaScript and declarations (not source maps) into `target`. */
function copySdk(target: string): string[] {
  const source = sdkFolder();
  mkdirSync(target, { recursive: true });
  const copied: string[] = [];
  for (const file of readdirSync(source).sort()) {
    if (!/\.(js|d\.ts)$/.test(file)) continue;
    copyFileSync(join(source, file), join(target, file));
    copied.push(file);
  }
  return copied;
}

export interface InitOptions {
  name?: string;
  force?: boolean;
}

/** Writes the scaffold into `folder`; answers the app name and the files written. */
export function initApp(folder: string, options: InitOptions = {}): { name: string; files: string[] } {
  const root = resolve(folder);
  const existing = statSync(root, { throwIfNoEntry: false });
  if (existing && !existing.isDirectory()) throw new Error(`${folder} is a file, not a folder`);
  const entries = existing ? readdirSync(root).filter((entry) => entry !== '.git') : [];
  if (entries.length > 0 && !options.force)
    throw new Error(`${folder} is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}): alto init writes a new app into an empty folder; give another folder, or --force to write over files of the same name`);
  const name = options.name ?? appNameOf(root);
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(name)) throw new Error(`--name "${name}" is not an app name: lower-case letters, digits and dashes, starting with a letter`);
  mkdirSync(root, { recursive: true });
  const files: string[] = [];
  for (const [path, content] of Object.entries(scaffoldFiles(name))) {
    writeFileSync(join(root, path), content);
    files.push(path);
  }
  for (const file of copySdk(join(root, 'alto-sdk'))) files.push(`alto-sdk/${file}`);
  return { name, files };
}

/** How to refer to the folder in the printed commands: ./todo rather than an absolute path. */
function shownFolder(folder: string): string {
  const path = relative(process.cwd(), resolve(folder)) || '.';
  return path.startsWith('..') || path.startsWith('/') || path === '.' ? path : `./${path}`;
}

export function addInitCommand(program: Command, action: <Args extends unknown[]>(run: (...args: Args) => Promise<void>) => (...args: Args) => Promise<void>): void {
  program
    .command('init [folder]')
    .description('scaffold a small todo API (db + user through the SDK) in an empty folder, ready for alto deploy')
    .option('-n, --name <name>', "the app's name (default: the folder's name)")
    .option('--force', 'write into a folder that is not empty (files of the same name are replaced)')
    .action(
      action(async (folder: string | undefined, flags: InitOptions) => {
        const target = folder ?? '.';
        const { name, files } = initApp(target, flags);
        const shown = shownFolder(target);
        process.stdout.write(
          `${green('created')} ${bold(name)} in ${shown}: ${files.filter((file) => !file.startsWith('alto-sdk/')).join(', ')}, alto-sdk/ ${dim("(Alto's SDK)")}\n\n` +
            `Next, with Alto running (alto up):\n` +
            `  alto keys generate --project default --scopes db,user --description ${name}   ${dim('# a key for the app, shown once')}\n` +
            `  alto deploy ${shown} --name ${name} --env ALTO_KEY=<that key>\n` +
            `  curl http://${name}.default.localhost:4000/                  ${dim('# or open it in the browser')}\n` +
            `  alto logs ${name}\n` +
            dim(`${shown === '.' ? '' : `${shown}/`}README.md has the routes (signup, login, todos).\n`),
        );
      }),
    );
}

const SERVER_JS = `// @ts-check
/**
 * A todo API on Alto: accounts and sessions come from Alto's user service, todos are records in
 * its db service, both called with Alto's SDK (./alto-sdk, copied in by \`alto init\`).
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

/** The user id of the session in \`Authorization: Bearer <session>\`. */
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
  const todoId = /^\\/todos\\/([^/]+)$/.exec(url.pathname)?.[1];

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
  if (error instanceof AltoError && error.status === 403) return { status: 502, message: 'Alto refused this app\\'s key (ALTO_KEY): ' + error.detail };
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
  else response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\\n');
});

server.listen(PORT, () => console.log('todo listening on ' + PORT + (alto ? ', Alto at ' + process.env.ALTO_URL : ' (' + problem + ')')));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

const README_MD = `# __NAME__

A todo API on Alto: accounts and sessions from Alto's \`user\`
service, todos in its \`db\` service, called with Alto's SDK. Plain ESM JavaScript with JSDoc
types (\`// @ts-check\`), so Alto runs it as it is: no build step.

\`\`\`sh
alto keys generate --project default --scopes db,user          # a key for the app (shown once)
alto deploy ./__NAME__ --name __NAME__ --env ALTO_KEY=<that key>
curl http://__NAME__.default.localhost:4000/
curl -X POST -d '{"email":"ada@example.com","password":"correct horse"}' http://__NAME__.default.localhost:4000/signup
curl -H "Authorization: Bearer <session>" -d '{"title":"write the README"}' http://__NAME__.default.localhost:4000/todos
curl -H "Authorization: Bearer <session>" http://__NAME__.default.localhost:4000/todos
alto logs __NAME__
\`\`\`

Alto gives the app \`ALTO_URL\` (its API, as reached from inside the sandbox); the key is yours to
give with \`--env\`. Locally: \`ALTO_URL=http://localhost:4000 ALTO_KEY=<key> PORT=3000 node server.js\`.

Routes: \`POST /signup\` and \`POST /login\` (\`{"email","password"}\` → \`{"session","user_id"}\`),
\`GET /todos\`, \`POST /todos\` (\`{"title"}\`), \`PATCH /todos/:id\` (\`{"title"?,"done"?}\`),
\`DELETE /todos/:id\`, each with \`Authorization: Bearer <session>\`. \`alto-sdk/\` is Alto's SDK,
copied in by \`alto init\`.
`;
