/**
 * A new user's first hour, on a real `alto up --sandbox process` (the host's node as the
 * functions' runtime, so nothing is downloaded): `alto init` scaffolds the todo app into an
 * empty folder (and refuses a folder that is not), the app works against Alto when run on the
 * host, `alto deploy <folder>` builds and runs it, it answers through the edge and — with
 * ALTO_URL from Alto and ALTO_KEY from --env — signs users up and keeps their todos, and
 * `alto logs` shows its output. Then the examples of examples/: the function and the static
 * site; examples/todo is what `alto init` writes.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { scaffoldFiles } from '../src/cli/init.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';
import { freePort } from './images-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';

const PROJECT = 'first';
const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

interface JsonAnswer {
  status: number;
  body: any;
}

/** An HTTP request with a JSON body to 127.0.0.1:`port` for `host` (the edge, or the app on the host). */
function send(port: number, host: string, method: string, path: string, body?: unknown, session?: string): Promise<JsonAnswer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { host };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    if (session) headers.authorization = `Bearer ${session}`;
    const outgoing = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
      });
      response.on('error', reject);
    });
    outgoing.setTimeout(15_000, () => outgoing.destroy(new Error('request timed out')));
    outgoing.on('error', reject);
    outgoing.end(payload);
  });
}

/** Signs a user up, adds, changes, lists and deletes todos; another user sees none of them. */
async function exerciseTodoApi(port: number, host: string, tag: string): Promise<void> {
  const ada = await send(port, host, 'POST', '/signup', { email: `ada-${tag}@example.com`, password: 'correct horse' });
  assert.equal(ada.status, 201, JSON.stringify(ada.body));
  assert.match(ada.body.session, /.{16,}/);
  const created = await send(port, host, 'POST', '/todos', { title: 'write the README' }, ada.body.session);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.todo.id;
  const done = await send(port, host, 'PATCH', `/todos/${id}`, { done: true }, ada.body.session);
  assert.equal(done.status, 200, JSON.stringify(done.body));
  const listed = await send(port, host, 'GET', '/todos', undefined, ada.body.session);
  assert.deepEqual(
    listed.body.todos.map((todo: any) => [todo.id, todo.title, todo.done]),
    [[id, 'write the README', true]],
  );

  const login = await send(port, host, 'POST', '/login', { email: `ada-${tag}@example.com`, password: 'correct horse' });
  assert.equal(login.status, 200);
  assert.equal((await send(port, host, 'POST', '/login', { email: `ada-${tag}@example.com`, password: 'wrong horse' })).status, 401);
  assert.equal((await send(port, host, 'POST', '/signup', { email: `ada-${tag}@example.com`, password: 'correct horse' })).status, 409);
  assert.equal((await send(port, host, 'GET', '/todos')).status, 401);
  assert.equal((await send(port, host, 'POST', '/todos', { title: '' }, ada.body.session)).status, 400);

  const bob = await send(port, host, 'POST', '/signup', { email: `bob-${tag}@example.com`, password: 'correct horse' });
  assert.deepEqual((await send(port, host, 'GET', '/todos', undefined, bob.body.session)).body, { todos: [] });
  assert.equal((await send(port, host, 'DELETE', `/todos/${id}`, undefined, bob.body.session)).status, 404);
  assert.equal((await send(port, host, 'DELETE', `/todos/${id}`, undefined, login.body.session)).status, 204);
  assert.deepEqual((await send(port, host, 'GET', '/todos', undefined, ada.body.session)).body, { todos: [] });
}

describe('the first hour: alto init, alto deploy, the examples', () => {
  let alto: ServerProcess;
  let key: string;
  let appKey: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const scratch = mkdtempSync(join(tmpdir(), 'alto-first-hour-'));
  const todo = join(scratch, 'todo');
  let local: ChildProcess | undefined;

  const cli = (args: string[]) => runCli([...args, '--url', alto.url, '--key', key]);

  before(async () => {
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host' } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app', 'function']);
    appKey = await alto.projectKey(PROJECT, ['db', 'user']);
  });

  after(async () => {
    local?.kill('SIGTERM');
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  test('alto init scaffolds the todo app into an empty folder and refuses one that is not', async () => {
    const made = await runCli(['init', todo]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /created todo/);
    assert.match(made.stdout, /alto keys generate --project default --scopes db,user/);
    assert.match(made.stdout, /alto deploy .*todo --name todo --env ALTO_KEY=<that key>/);
    for (const file of ['package.json', 'server.js', 'README.md', '.gitignore', 'jsconfig.json', 'alto-sdk/index.js', 'alto-sdk/generated.js', 'alto-sdk/index.d.ts'])
      assert.ok(existsSync(join(todo, file)), `${file} written`);
    assert.deepEqual(JSON.parse(readFileSync(join(todo, 'package.json'), 'utf8')).scripts, { start: 'node server.js' });

    const again = await runCli(['init', todo]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /is not empty .*--force/);
    writeFileSync(join(todo, 'server.js'), 'changed');
    const forced = await runCli(['init', todo, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(readFileSync(join(todo, 'server.js'), 'utf8'), /todo listening on/);

    const badName = await runCli(['init', join(scratch, 'other'), '--name', 'Not_An_App']);
    assert.notEqual(badName.code, 0);
    assert.match(badName.stderr, /is not an app name/);
  });

  test('the scaffold works against Alto when run on the host (ALTO_URL, ALTO_KEY, PORT)', async () => {
    const port = await freePort();
    local = spawn(process.execPath, ['server.js'], { cwd: todo, env: { ...process.env, ALTO_URL: alto.url, ALTO_KEY: appKey, PORT: String(port) }, stdio: 'ignore' });
    await eventually(async () => (await send(port, 'localhost', 'GET', '/healthz')).status === 200, 'the todo app on the host');
    await exerciseTodoApi(port, 'localhost', 'host');
    local.kill('SIGTERM');
    local = undefined;
  });

  test('alto deploy <folder>: the todo app answers through the edge, calls Alto with ALTO_URL, and logs', async () => {
    const deployed = await cli(['deploy', todo, '--name', 'todo', '--env', `ALTO_KEY=${appKey}`, '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.equal(JSON.parse(deployed.stdout).url, `http://todo.${PROJECT}.localhost:${edgePort}`);
    const host = `todo.${PROJECT}.localhost`;
    const index = await send(edgePort, host, 'GET', '/');
    assert.equal(index.status, 200, JSON.stringify(index.body));
    assert.equal(index.body.app, 'todo');
    assert.equal(index.body.alto, 'configured', 'the app sees ALTO_URL and ALTO_KEY');
    await exerciseTodoApi(edgePort, host, 'edge');

    const logs = await eventually(async () => {
      const printed = await cli(['logs', 'todo']);
      return /todo listening on 8080, Alto at http:\/\//.test(printed.stdout) && /POST \/signup 201/.test(printed.stdout) && printed.stdout;
    }, "the todo app's lines in alto logs");
    assert.match(logs, /GET \/todos 200/);
  });

  test('examples/todo is what alto init writes', () => {
    for (const [path, content] of Object.entries(scaffoldFiles('todo'))) assert.equal(readFileSync(join(EXAMPLES, 'todo', path), 'utf8'), content, `examples/todo/${path}`);
  });

  test('examples/function deploys with alto fn deploy and answers', async () => {
    const deployed = await cli(['fn', 'deploy', join(EXAMPLES, 'function'), '--name', 'hello']);
    assert.equal(deployed.code, 0, deployed.stderr);
    const called = await cli(['fn', 'call', 'hello', '{"name":"Ada"}']);
    assert.equal(called.code, 0, called.stderr);
    assert.deepEqual({ ...JSON.parse(called.stdout), at: undefined }, { hello: 'Ada', method: 'POST', at: undefined });
    const browsed = await getThroughEdge(edgePort, `hello.${PROJECT}.localhost`, '/?name=Bo');
    assert.equal(browsed.status, 200, browsed.body);
    assert.equal(JSON.parse(browsed.body).hello, 'Bo');
  });

  test('examples/static-site deploys with alto deploy and serves its files', async () => {
    const deployed = await cli(['deploy', join(EXAMPLES, 'static-site'), '--name', 'site']);
    assert.equal(deployed.code, 0, deployed.stderr);
    const host = `site.${PROJECT}.localhost`;
    const page = await getThroughEdge(edgePort, host, '/');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<h1>Hello from Alto<\/h1>/);
    assert.match(String(page.headers['content-type']), /text\/html/);
    const css = await getThroughEdge(edgePort, host, '/style.css');
    assert.equal(css.status, 200);
    assert.equal(css.headers['content-type'], 'text/css');
    assert.equal((await getThroughEdge(edgePort, host, '/%2e%2e/package.json')).status, 404);
    assert.equal((await getThroughEdge(edgePort, host, '/missing')).status, 404);
  });
});
