/**
 * The function server's source: its placeholders filled in (and a missing or extra one refused),
 * and the filled file run by node around a web and an M3O handler, answering HTTP and ending on
 * SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { HandlerStyle } from './server-source.js';
import { fillPlaceholders, functionServerSource } from './server-source.js';

const dir = mkdtempSync(join(tmpdir(), 'alto-function-server-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('fillPlaceholders puts each expression in place of its placeholder, and refuses a missing or unused one', () => {
  assert.equal(fillPlaceholders("const a = '@@A@@'; f('@@B@@', '@@A@@');", { A: '{"x":1}', B: '"$&$1"' }), 'const a = {"x":1}; f("$&$1", {"x":1});');
  assert.throws(() => fillPlaceholders("'@@A@@' '@@B@@'", { A: '1' }), /placeholder B has no value/);
  assert.throws(() => fillPlaceholders("'@@A@@'", { A: '1', C: '2' }), /no placeholder for C/);
});

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

/** Runs the filled server with node (no bundling) until it listens; returns its port and process. */
async function startServer(name: string, handler: string, style: HandlerStyle) {
  const handlerFile = join(dir, `${name}-handler.mjs`);
  writeFileSync(handlerFile, handler);
  const serverFile = join(dir, `${name}-server.mjs`);
  const source = functionServerSource(handlerFile, style);
  assert.doesNotMatch(source, /@@/);
  writeFileSync(serverFile, source);
  const port = await freePort();
  const child = spawn(process.execPath, [serverFile], { env: { PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      output += chunk;
      if (output.includes(`function listening on ${port}`)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the function server ended (${code}) before it listened: ${output}`)));
  });
  return { port, child };
}

async function stop(child: ReturnType<typeof spawn>): Promise<number | null> {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = await exited;
  return code as number | null;
}

test('the server hands a web handler a Request and sends back its Response, and ends on SIGTERM', async () => {
  const { port, child } = await startServer('web', "export default async (request) => new Response(request.method + ' ' + new URL(request.url).pathname + ' ' + (await request.text()), { status: 201, headers: { 'x-answer': 'yes' } });", { kind: 'web' });
  try {
    const response = await fetch(`http://127.0.0.1:${port}/path`, { method: 'POST', body: 'hello' });
    assert.equal(response.status, 201);
    assert.equal(response.headers.get('x-answer'), 'yes');
    assert.equal(await response.text(), 'POST /path hello');
  } finally {
    assert.equal(await stop(child), 0);
  }
});

test('the server hands an M3O handler the JSON body and answers its JSON, 400 for a body that is not JSON', async () => {
  const { port, child } = await startServer('json', 'export async function greet(input) { return { hello: input.name }; }', { kind: 'json', exportName: 'greet' });
  try {
    const response = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: JSON.stringify({ name: 'ada' }) });
    assert.deepEqual(await response.json(), { hello: 'ada' });
    const bad = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: '{' });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /not JSON/);
  } finally {
    assert.equal(await stop(child), 0);
  }
});
