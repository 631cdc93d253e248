/**
 * Apps and functions calling Alto back (issue 9's "a TypeScript function that uses the SDK to
 * write to the db block, call it, see the row"), on a real `alto up`:
 * - process sandbox (ALTO_FUNCTIONS_NODE=host): a TypeScript function importing @alto/sdk writes
 *   `{ table: 'hits' }` with `new Alto({ url: ALTO_URL, key: ALTO_KEY })` on each Call; db/Read
 *   through the API sees the rows; its key is a project key described "function <name>"; the
 *   secrets named at deploy (secret/Set) are in its env, explicit env_vars winning, and an Update
 *   reads them again; Delete revokes its key (the API refuses it from then on). The harness starts Alto
 *   with `--host 127.0.0.1`, so this goes through the sandbox's forwarder to the edge's loopback.
 * - microvm sandbox: an app (busybox, from a real registry) reaches Alto's /livez at ALTO_URL
 *   from inside the guest.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { buildImage, busyboxBinary, startRegistry, type LayerEntry, type TestRegistry } from './images-fixture.js';

const PROJECT = 'callers';

const HITS = `
import { Alto } from '@alto/sdk';

interface Hit { id: string; note: string }

export default async function handle(request: Request): Promise<Response> {
  const input = (await request.json()) as Hit;
  const alto = new Alto({ url: process.env.ALTO_URL, key: process.env.ALTO_KEY });
  await alto.db.create({ table: 'hits', record: { id: input.id, note: input.note, from: 'function' } });
  return Response.json({
    wrote: input.id,
    url: process.env.ALTO_URL,
    key: process.env.ALTO_KEY,
    stripe: process.env.STRIPE_KEY ?? null,
    greeting: process.env.GREETING ?? null,
  });
}
`;

describe('functions call Alto with the SDK (process sandbox)', () => {
  let alto: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const call = (service: string, endpoint: string, body: unknown, as: string = key) => alto.call(service, endpoint, body, as);

  before(async () => {
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host' } });
    key = await alto.projectKey(PROJECT, ['*']);
  });

  after(async () => {
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a function writes to the db with ALTO_URL and ALTO_KEY; the secrets named are in its env; Delete revokes its key', async () => {
    assert.equal((await call('secret', 'Set', { key: 'stripe-key', value: 'sk_test_1' })).status, 200);
    assert.equal((await call('secret', 'Set', { key: 'greeting', value: 'from the secret' })).status, 200);

    const deployed = await call('function', 'Deploy', { name: 'hits', source: HITS, env_vars: { GREETING: 'explicit' }, secrets: ['stripe-key', 'greeting'] });
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    // The function's view shows what was given, not the key nor the secrets.
    assert.deepEqual(deployed.body.function.env_vars, { GREETING: 'explicit' });

    const first = await call('function', 'Call', { name: 'hits', request: { id: 'h1', note: 'first' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const seen = first.body.response;
    assert.equal(seen.wrote, 'h1');
    assert.match(seen.url, /^http:\/\/10\.231\.\d+\.\d+:\d+$/);
    assert.equal(seen.stripe, 'sk_test_1');
    assert.equal(seen.greeting, 'explicit', 'explicit env_vars win over secrets');
    assert.equal((await call('function', 'Call', { name: 'hits', request: { id: 'h2', note: 'second' } })).status, 200);

    const read = await call('db', 'Read', { table: 'hits', orderBy: 'id' });
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.deepEqual(
      read.body.records.map((record: any) => [record.id, record.note, record.from]),
      [['h1', 'first', 'function'], ['h2', 'second', 'function']],
    );

    // Its key: a project key of this project, described after it, active.
    const functionKey = seen.key as string;
    const keys = await alto.call('keys', 'List', { project: PROJECT });
    const info = keys.body.keys.find((entry: any) => entry.description === 'function hits');
    assert.ok(info, JSON.stringify(keys.body));
    assert.equal(info.role, 'project');
    assert.deepEqual(info.scopes, ['*']);
    assert.equal(info.status, 'active');
    assert.ok(functionKey.startsWith(info.prefix));

    // An Update reads the secrets again.
    assert.equal((await call('secret', 'Set', { key: 'stripe-key', value: 'sk_test_2' })).status, 200);
    const updated = await call('function', 'Update', { name: 'hits' });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    const after = await call('function', 'Call', { name: 'hits', request: { id: 'h3', note: 'third' } });
    assert.equal(after.status, 200, JSON.stringify(after.body));
    assert.equal(after.body.response.stripe, 'sk_test_2');
    assert.equal(after.body.response.key, functionKey, 'an update keeps the function key');

    assert.equal((await call('function', 'Delete', { name: 'hits' })).status, 200);
    const revoked = (await alto.call('keys', 'List', { project: PROJECT })).body.keys.find((entry: any) => entry.id === info.id);
    assert.equal(revoked.status, 'revoked');
    assert.equal((await call('db', 'Read', { table: 'hits' }, functionKey)).status, 401);
    // The project's own key goes on working.
    assert.equal((await call('db', 'Read', { table: 'hits' })).body.records.length, 3);
  });

  test('a key limited to some services gives its function no more than that', async () => {
    const narrow = await alto.projectKey(PROJECT, ['function', 'app']);
    const deployed = await call('function', 'Deploy', { name: 'narrow', source: HITS }, narrow);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const info = (await alto.call('keys', 'List', { project: PROJECT })).body.keys.find((entry: any) => entry.description === 'function narrow');
    assert.deepEqual([...info.scopes].sort(), ['app', 'function']);
    // The db write is refused with the key's own 403, which the function reports as its failure.
    const called = await call('function', 'Call', { name: 'narrow', request: { id: 'n1', note: 'x' } }, narrow);
    assert.equal(called.status, 400);
    assert.match(called.body.detail, /answered 500/);
    assert.equal((await call('function', 'Delete', { name: 'narrow' }, narrow)).status, 200);
  });
});

/** busybox httpd with a CGI that GETs $ALTO_URL/livez from inside the guest. */
async function livezImage() {
  const applets = ['sh', 'httpd', 'nc', 'cat', 'printf', 'echo'];
  const cgi = [
    '#!/bin/sh',
    'hostport=${ALTO_URL#http://}; host=${hostport%%:*}; port=${hostport#*:}; [ "$port" = "$hostport" ] && port=80',
    'printf "Content-Type: text/plain\\r\\n\\r\\n"',
    'echo "url=$ALTO_URL"',
    'printf "GET /livez HTTP/1.0\\r\\nHost: alto\\r\\n\\r\\n" | nc -w 5 "$host" "$port"',
  ].join('\n');
  const layer: LayerEntry[] = [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...applets.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
    { type: 'dir', path: 'www/' },
    { type: 'file', path: 'www/index.html', content: 'livez prober\n' },
    { type: 'dir', path: 'www/cgi-bin/' },
    { type: 'file', path: 'www/cgi-bin/livez', content: `${cgi}\n`, mode: 0o755 },
  ];
  return buildImage({
    layers: [layer],
    // httpd passes its environment on to CGIs.
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/httpd'], Cmd: ['-f', '-p', '8080', '-h', '/www'], ExposedPorts: { '8080/tcp': {} } },
  });
}

describe('apps reach Alto at ALTO_URL (microvm sandbox)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    registry = await startRegistry();
    await registry.push('vm/livez', 'v1', await livezImage());
    alto = await startProcess({ dataDir, args: ['--sandbox', 'microvm'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    key = await alto.projectKey('guests', ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('from inside a guest, ALTO_URL answers /livez', async () => {
    const run = await alto.call('app', 'Run', { name: 'livez', image: `${registry.host}/vm/livez:v1`, memory: 128 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.equal(run.body.service.instances[0].driver, 'microvm');
    const edgePort = Number(new URL(alto.url).port);
    const answer = await eventually(async () => {
      const result = await getThroughEdge(edgePort, 'livez.guests.localhost', '/cgi-bin/livez');
      return result.status === 200 && result.body.includes('"status":"ok"') && result.body;
    }, 'the guest reaching /livez', 30_000);
    assert.match(answer, /^url=http:\/\/10\.0\.2\.100\n/);
    assert.match(answer, /HTTP\/1\.1 200/);
    assert.equal((await alto.call('app', 'Delete', { name: 'livez' }, key)).status, 200);
  });
});
