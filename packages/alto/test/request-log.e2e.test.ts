/**
 * The per-project request log end to end. On a real `alto up --sandbox process` with a busybox
 * web app: API calls (through the lane) and app requests (through the connection forwarder, and
 * one HTTP/1.0 request through Node's server and the proxy) are read back with logs/Read, with
 * their time, method, path (no query string), status, duration, bytes, key prefix or client
 * address and request id; every filter, the cursor, clear 400s, the logs scope, a project key
 * seeing only its own project, `alto requests`, and /metrics. In process: request_log_days per
 * project (0: none, the node's cap, back to the default), the retention sweep on a clock moved
 * forward, a websocket stream logged when it ends, and a deleted project's log going with it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CLI_ENTRY, startInProcess, startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { eventually, privateSandboxCache, runCli, webImage } from './apps-fixture.js';
import { openStream } from './stream-client.js';

const DAY_MS = 86_400_000;

interface Entry {
  time: string;
  kind: 'api' | 'app';
  method: string;
  path: string;
  status: number;
  duration_ms: number;
  bytes_in: number;
  bytes_out: number;
  key_prefix?: string;
  client_address?: string;
  request_id?: string;
  app?: string;
}

/** A request through the edge with an app's Host header and any other headers. */
function appRequest(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers: { host, ...headers }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    request.on('error', reject);
    request.end();
  });
}

/** An HTTP/1.0 request, which the forwarder leaves to Node's server (and so to edge/proxy.ts). */
function http10Request(port: number, host: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\n\r\n`));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('request log through the edge (process sandbox)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let otherKey: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const host = 'web.shop.localhost';
  const read = async (query: Record<string, unknown>, withKey = key) => {
    const result = await alto.call('logs', 'Read', query, withKey);
    assert.equal(result.status, 200, JSON.stringify(result.body));
    return result.body as { project: string; requests: Entry[]; cursor?: string };
  };

  before(async () => {
    registry = await startRegistry();
    await registry.push('demo/web', 'v1', await webImage('web', 'hello from web\n'));
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey('shop', ['app', 'id', 'logs']);
    otherKey = await alto.projectKey('other', ['id', 'logs']);
    const run = await alto.call('app', 'Run', { name: 'web', image: `${registry.host}/demo/web:v1`, port: 8080, min_instances: 1 }, key);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    await eventually(async () => (await appRequest(edgePort, host, '/')).status === 200, 'the app answering');
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('API calls and app requests are read back newest first, without query strings', async () => {
    const since = new Date(Date.now() - 1).toISOString();
    for (let index = 0; index < 3; index++) assert.equal((await alto.call('id', 'Generate', { type: 'uuid' }, key)).status, 200);
    assert.equal((await alto.call('id', 'Generate', { type: 'nonsense' }, key)).status, 400);
    assert.equal((await appRequest(edgePort, host, '/index.html?token=hunter2&page=1', { 'x-request-id': 'client-req-1' })).status, 200);
    assert.equal((await appRequest(edgePort, host, '/missing?secret=1')).status, 404);
    assert.match(await http10Request(edgePort, host, '/index.html?via=http10'), /^HTTP\/1\.[01] 200/);
    assert.equal((await alto.call('id', 'Generate', { type: 'uuid' }, otherKey)).status, 200);

    const { project, requests } = await eventually(async () => {
      const page = await read({ since });
      return page.requests.length >= 7 && page;
    }, 'seven requests in the log');
    assert.equal(project, 'shop');
    assert.equal(requests.length, 7, JSON.stringify(requests, null, 1));
    assert.doesNotMatch(JSON.stringify(requests), /hunter2|secret|via=http10/, 'no query string is kept');
    const times = requests.map((entry) => Date.parse(entry.time));
    assert.deepEqual(times, [...times].sort((a, b) => b - a), 'newest first');

    const api = requests.filter((entry) => entry.kind === 'api');
    assert.equal(api.length, 4);
    for (const entry of api) {
      assert.equal(entry.method, 'POST');
      assert.equal(entry.path, '/v1/id/Generate');
      assert.equal(entry.key_prefix, key.slice(0, entry.key_prefix!.length));
      assert.ok(entry.key_prefix!.length < key.length - 8, 'never the whole key');
      assert.equal(entry.client_address, '127.0.0.1');
      assert.match(entry.request_id!, /^[0-9a-f-]{36}$/);
      assert.ok(entry.duration_ms > 0 && entry.duration_ms < 5000);
      assert.ok(entry.bytes_in > 0 && entry.bytes_out > 0);
    }
    assert.deepEqual(api.map((entry) => entry.status).sort(), [200, 200, 200, 400]);

    const app = requests.filter((entry) => entry.kind === 'app');
    assert.deepEqual(app.map((entry) => [entry.path, entry.status]), [['/index.html', 200], ['/missing', 404], ['/index.html', 200]]);
    for (const entry of app) {
      assert.equal(entry.app, 'web');
      assert.equal(entry.method, 'GET');
      assert.equal(entry.key_prefix, undefined);
      assert.equal(entry.client_address, '127.0.0.1');
      assert.ok(entry.bytes_out > 0);
    }
    assert.equal(app[2].request_id, 'client-req-1', "the client's own request id");
    assert.ok(app[2].bytes_out > 'hello from web\n'.length, 'head and body counted');
  });

  test('filters: kind, app, status and class, path prefix, since and until, limit and cursor', async () => {
    const kinds = (entries: Entry[]) => entries.map((entry) => `${entry.kind} ${entry.status} ${entry.path}`);
    assert.ok((await read({ kind: 'app' })).requests.every((entry) => entry.kind === 'app'));
    assert.ok((await read({ kind: 'api' })).requests.every((entry) => entry.kind === 'api'));
    assert.ok((await read({ app: 'web' })).requests.length >= 3);
    assert.deepEqual((await read({ app: 'nothing' })).requests, []);
    assert.deepEqual(kinds((await read({ status: 404 })).requests), ['app 404 /missing']);
    assert.deepEqual(kinds((await read({ status: '4xx', kind: 'api' })).requests), ['api 400 /v1/id/Generate']);
    assert.ok((await read({ status: '2xx' })).requests.every((entry) => entry.status >= 200 && entry.status < 300));
    assert.ok((await read({ path: '/v1/id/' })).requests.every((entry) => entry.path === '/v1/id/Generate'));
    assert.deepEqual((await read({ path: '/miss' })).requests.map((entry) => entry.path), ['/missing']);
    assert.deepEqual((await read({ since: new Date(Date.now() + 60_000).toISOString() })).requests, []);
    assert.deepEqual((await read({ until: '2020-01-01T00:00:00Z' })).requests, []);
    assert.ok((await read({ since: '1h' })).requests.length >= 7);
    // As a query string too, the way `curl .../v1/logs/Read?status=5xx` asks.
    const viaQuery = await fetch(`${alto.url}/v1/logs/Read?status=404&kind=app`, { headers: { authorization: `Bearer ${key}` } });
    assert.deepEqual(((await viaQuery.json()) as { requests: Entry[] }).requests.map((entry) => entry.path), ['/missing']);

    const all = (await read({ limit: 1000 })).requests;
    const seen: Entry[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 20; page++) {
      const answer = await read({ limit: 3, ...(cursor ? { cursor } : {}) });
      assert.ok(answer.requests.length <= 3);
      seen.push(...answer.requests);
      cursor = answer.cursor;
      if (!cursor) break;
    }
    // Reads of the log are not in it, so nothing came in meanwhile: the pages hold every row once, in order.
    const summary = (entry: Entry) => `${entry.time} ${entry.kind} ${entry.path} ${entry.status} ${entry.request_id ?? ''}`;
    assert.ok(seen.length >= 7);
    assert.deepEqual(seen.map(summary), all.map(summary));
    assert.ok(!all.some((entry) => entry.path.startsWith('/v1/logs/')), 'reads of the log are left out of it');
  });

  test('bad filters are answered 400 naming what is wrong', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ since: 'yesterday' }, /since: "yesterday" is not a time/],
      [{ until: '2026-13-45' }, /until: .* is not a time/],
      [{ since: '2h', until: '3h' }, /since .* is not before until/],
      [{ status: '6xx' }, /status: "6xx"/],
      [{ status: 99 }, /status/],
      [{ kind: 'ws' }, /kind/],
      [{ limit: 0 }, /limit/],
      [{ limit: 1001 }, /limit/],
      [{ path: 'v1/id' }, /path: a path prefix starts with "\/"/],
      [{ cursor: 'not-a-cursor' }, /cursor: not a cursor this endpoint gave/],
    ];
    for (const [query, detail] of cases) {
      const result = await alto.call('logs', 'Read', query, key);
      assert.equal(result.status, 400, JSON.stringify(query));
      assert.match(result.body.detail, detail);
    }
  });

  test('a project key reads only its own project, and needs the logs scope', async () => {
    const other = await read({}, otherKey);
    assert.equal(other.project, 'other');
    assert.ok(other.requests.length >= 1);
    assert.ok(other.requests.every((entry) => entry.kind === 'api' && entry.key_prefix === otherKey.slice(0, entry.key_prefix!.length)));
    const asking = await alto.call('logs', 'Read', { project: 'shop' }, otherKey);
    assert.equal(asking.status, 403);
    assert.match(asking.body.detail, /reads only its own project's request log/);
    const withoutScope = await alto.projectKey('shop', ['id']);
    assert.equal((await alto.call('logs', 'Read', {}, withoutScope)).status, 403);
    // The operator's key may name any project.
    const byAdmin = await alto.call('logs', 'Read', { project: 'shop', kind: 'app' });
    assert.equal(byAdmin.status, 200);
    assert.ok(byAdmin.body.requests.length >= 3);
  });

  test('alto requests prints the log with the same filters', async () => {
    const table = await runCli(['requests', '--kind', 'app', '--status', '404', '--url', alto.url, '--key', key]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /404/);
    assert.match(table.stdout, /\/missing/);
    assert.doesNotMatch(table.stdout, /\/index\.html/);
    const json = await runCli(['requests', '--app', 'web', '--limit', '2', '--json', '--url', alto.url, '--key', key]);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout.trim().split('\n').map((line) => JSON.parse(line) as Entry);
    assert.equal(lines.length, 2);
    assert.ok(lines.every((entry) => entry.app === 'web'));
    const bad = await runCli(['requests', '--since', 'soon', '--url', alto.url, '--key', key]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /since: "soon" is not a time/);
  });

  test('alto requests -f prints requests made after it started', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'requests', '-f', '--kind', 'api', '--json', '--url', alto.url, '--key', key], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await eventually(async () => output.includes('/v1/id/Generate'), 'the requests already in the log');
      assert.equal((await alto.call('id', 'Types', {}, key)).status, 200);
      await eventually(async () => output.includes('/v1/id/Types'), 'the new request, followed', 15_000);
      const lines = output.trim().split('\n').map((line) => JSON.parse(line) as Entry);
      assert.equal(lines.filter((entry) => entry.path === '/v1/id/Types').length, 1, 'printed once');
      assert.ok(lines.every((entry) => entry.kind === 'api'));
    } finally {
      child.kill('SIGTERM');
    }
  });

  test('/metrics counts the rows written and dropped', async () => {
    const metrics = await fetch(`${alto.url}/metrics`, { headers: { authorization: `Bearer ${alto.adminKey}` } }).then((response) => response.text());
    const written = Number(/alto_request_log_rows_total\{result="written"\} (\d+)/.exec(metrics)?.[1]);
    assert.ok(written >= 8, metrics.split('\n').filter((line) => line.includes('request_log')).join('\n'));
    assert.match(metrics, /alto_request_log_rows_total\{result="dropped"\} 0/);
    assert.match(metrics, /alto_request_log_buffered_rows \d+/);
  });
});

describe('request log retention (in process)', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;

  before(async () => {
    alto = await startInProcess();
  });
  after(async () => {
    await alto?.close();
  });

  const project = async (name: string, body: Record<string, unknown> = {}) => {
    const created = await alto.call('projects', 'Create', { name, ...body });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const generated = await alto.call('keys', 'Generate', { project: name, scopes: ['id', 'logs'] });
    return { key: generated.body.key as string, days: created.body.project.request_log_days as number };
  };
  const calls = async (key: string, count: number) => {
    for (let index = 0; index < count; index++) assert.equal((await alto.call('id', 'Generate', { type: 'ulid' }, key)).status, 200);
  };
  const logged = async (key: string) => (await alto.call('logs', 'Read', { path: '/v1/id/' }, key)).body.requests.length as number;

  test('request_log_days: default 7, set per project, 0 keeps none, within the node cap, null returns to the default', async () => {
    const week = await project('week');
    assert.equal(week.days, 7);
    const month = await project('month', { request_log_days: 30 });
    assert.equal(month.days, 30);
    const quiet = await project('quiet', { request_log_days: 0 });
    assert.equal(quiet.days, 0);
    await calls(quiet.key, 3);
    assert.equal(await logged(quiet.key), 0, 'a project at 0 days keeps no request log');

    const tooMany = await alto.call('projects', 'Update', { name: 'week', request_log_days: 31 });
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.body.detail, /at most 30 days \(ALTO_REQUEST_LOG_MAX_DAYS\)/);
    assert.equal((await alto.call('projects', 'Create', { name: 'greedy', request_log_days: 365 })).status, 400);
    assert.equal((await alto.call('projects', 'List', {})).body.projects.some((entry: { name: string }) => entry.name === 'greedy'), false, 'refused before it was made');
    assert.equal((await alto.call('projects', 'Update', { name: 'quiet', request_log_days: -1 })).status, 400);

    assert.equal((await alto.call('projects', 'Update', { name: 'quiet', request_log_days: 2 })).body.project.request_log_days, 2);
    await calls(quiet.key, 2);
    assert.equal(await logged(quiet.key), 2, 'recorded again once turned on');
    assert.equal((await alto.call('projects', 'Update', { name: 'quiet', request_log_days: null })).body.project.request_log_days, 7);
  });

  test('the sweep deletes each project\'s rows past its days, on a clock moved forward', async () => {
    const week = await project('sweep-week');
    const month = await project('sweep-month', { request_log_days: 30 });
    await calls(week.key, 3);
    await calls(month.key, 3);
    assert.equal(await logged(week.key), 3);
    assert.equal(await logged(month.key), 3);
    const requestLog = alto.alto.platform.requestLog!;
    await requestLog.sweep(Date.now() + 6 * DAY_MS);
    assert.equal(await logged(week.key), 3, 'six days on: all kept');
    await requestLog.sweep(Date.now() + 8 * DAY_MS);
    assert.equal(await logged(week.key), 0, 'eight days on: past the default week');
    assert.equal(await logged(month.key), 3, 'within the month');
    await requestLog.sweep(Date.now() + 31 * DAY_MS);
    assert.equal(await logged(month.key), 0);
  });

  test('a websocket stream is in the log once it ends, with what it sent', async () => {
    const streaming = await project('streaming');
    const stream = await openStream(alto.url, streaming.key, 'id', 'Stream', { type: 'uuid', count: 3 });
    assert.equal((await stream.closed).code, 1000);
    assert.equal(stream.messages.length, 3);
    const { requests } = (await alto.call('logs', 'Read', {}, streaming.key)).body as { requests: Entry[] };
    assert.equal(requests.length, 1, JSON.stringify(requests));
    assert.equal(requests[0].path, '/v1/id/Stream');
    assert.equal(requests[0].status, 200);
    assert.equal(requests[0].method, 'GET');
    assert.ok(requests[0].bytes_out > 3 * 36);
  });

  test('deleting a project deletes its request log', async () => {
    const doomed = await project('doomed');
    await calls(doomed.key, 2);
    assert.equal(await logged(doomed.key), 2);
    const projectId = (await alto.call('projects', 'List', {})).body.projects.find((entry: { name: string }) => entry.name === 'doomed').id as string;
    assert.equal((await alto.call('projects', 'Delete', { name: 'doomed' })).status, 200);
    assert.deepEqual(await alto.alto.platform.stores.requestLog.read({ projectId, limit: 10 }), []);
  });
});
