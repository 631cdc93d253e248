/**
 * Every endpoint, typed but hostile values: bodies that are well-formed JSON and carry, for each
 * property, a value of its declared type chosen from boundary sets (numbers: 0, -1, 2^31, 2^53+1,
 * ±1e308, 0.5; strings: empty, blank, "..", a path out of the tree, NUL, 70,000 characters, emoji,
 * RTL marks, "%00", SQL; dates far in the past and future; arrays: empty, one, 5,000 elements;
 * objects: empty, nested close to the depth limit). They pass the JSON framing and, often, the
 * schema's types, and reach the handlers, where an unexpected 500 hides. The endpoints and their
 * request schemas come from the server's own OpenAPI document, so a new endpoint is fuzzed the day
 * it is added. Alto runs as its own process, so a crash shows.
 *
 * Each answer must be below 500 (a 2xx is fine) and, when 4xx, a JSON error that says why; the
 * server must still answer /livez at the end. Both stores: the embedded one and PostgreSQL, whose
 * text refuses what SQLite keeps (NUL, lone surrogates; now refused at the door on both).
 *
 * Nothing here may make Alto connect anywhere but loopback. Fields that name something Alto
 * connects to (URLs, callbacks, image references, registries, compose files naming images) always
 * point at 127.0.0.1, at a listener of this test (an open registry that holds nothing, 404 for any
 * other path); their hostile part is the path.
 * Mail goes nowhere: no SMTP server is configured (email/SetSmtp is fuzzed with a loopback URL only).
 *
 * The stream endpoints (app/FollowLogs, app/BuildLogs, db/Watch, event/Consume, id/Stream,
 * images/Pull, mq/Subscribe) get the same bodies as the first message of a websocket, the
 * request of a stream (a POST to them answers 400 "open a websocket" before reading the body).
 * Each run waits, bounded, for the first message or the close: a refusal is an error frame
 * ({ code, detail }, code the HTTP status) followed by the close code 4000 + that status, and
 * must be below 4500 and say why; a stream that ended by itself closes 1000; one accepted with
 * nothing to send yet (a topic with no events) stays quiet for a second and is closed by the
 * test. At the end every socket is closed on both sides, and by the server's /metrics every stream
 * ended with a status below 500, a quiet one too (a late failure sends no frame to a client that
 * left, but is counted). images/Pull only ever names the test's registry listener.
 *
 * Not fuzzed here, and why: function/Deploy and function/Update: each accepted call builds an
 * image and boots a sandbox, seconds each, past this file's budget; functions.test.ts covers
 * their validation. The websocket framing itself (bytes that are no JSON, broken frames) is
 * fuzzed in json-fuzz.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../src/store/postgres/test-database.js';
import { startProcess, waitForAsync, type ServerProcess } from '../harness.js';
import { openStream, type StreamClient } from '../stream-client.js';

type JsonSchema = Record<string, any>;

interface Operation {
  service: string;
  endpoint: string;
  access: 'public' | 'key' | 'manage';
  stream: boolean;
  schema: JsonSchema;
  example: Record<string, unknown>;
}

const SKIPPED = new Set(['function/Deploy', 'function/Update']);

/** Runs per endpoint (fixed seed): enough for the boundary sets, and light enough that the suite's other files, run beside this one, do not starve. */
const RUNS_PER_ENDPOINT = 50;
/** How many endpoints are fuzzed at once against the one server (more only loads the machine the other files share). */
const PARALLEL_ENDPOINTS = 2;
/** Runs per stream endpoint: an accepted stream with nothing to send costs STREAM_QUIET_MS. */
const RUNS_PER_STREAM = 30;
/**
 * How long a stream may stay quiet after its request before it counts as accepted: a refusal is
 * sent as soon as the request is read (validation, a missing table or app), while an accepted
 * stream may wait for ever for an event, a change or a build that never comes.
 */
const STREAM_QUIET_MS = 1_000;
/** How long the server has to close a stream after its error frame, or after the test closed it. */
const CLOSE_TIMEOUT_MS = 5_000;
const SEED = 20_260_101;

const LONG_STRING = 'a'.repeat(70_000);
const BOUNDARY_STRINGS = [
  '',
  ' ',
  '..',
  '../../etc/passwd',
  '\u0000',
  'a\u0000b',
  LONG_STRING,
  '😀👩‍👩‍👧‍👦',
  '\u202Eevil\u202C',
  '%00',
  "' OR 1=1 --",
  '*',
  '/',
  '\\',
  '\ud800',
];
const BOUNDARY_NUMBERS = [0, -1, 2 ** 31, 2 ** 53 + 1, 1e308, -1e308, 0.5];
const BOUNDARY_DATES = ['0000-01-01T00:00:00Z', '1970-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '+275760-09-13T00:00:00Z', '-271821-04-20', '2025-02-30'];
/** The request body is one level; MAX_JSON_DEPTH (64) is for the whole body. */
const NESTING = 60;

/** Names of fields whose value Alto connects to, or fetches from. */
const CONNECTS_TO = /url|callback|redirect|webhook|^image$|^reference$|^registry$/i;
const isCompose = (name: string) => name === 'compose';

function nested(depth: number): unknown {
  let value: unknown = { leaf: 1 };
  for (let level = 1; level < depth; level++) value = { a: value };
  return value;
}

/** Builds hostile values of one JSON schema's declared type. */
class HostileValues {
  constructor(private readonly components: Record<string, JsonSchema>) {}

  resolve(schema: JsonSchema): JsonSchema {
    let current = schema;
    for (let hops = 0; current.$ref && hops < 10; hops++) current = this.components[String(current.$ref).split('/').pop()!]!;
    return current;
  }

  /** `small`: no long strings or big arrays (the items of a 5,000-element array). */
  of(raw: JsonSchema, small = false, depth = 0): fc.Arbitrary<unknown> {
    const schema = this.resolve(raw);
    // A recursive schema (any JSON value) ends here: deep trees come from nested(), within the depth limit.
    if (depth > 4) return fc.constant('x');
    const branches = schema.anyOf ?? schema.oneOf;
    if (branches) return fc.oneof(...branches.map((branch: JsonSchema) => this.of(branch, small, depth + 1)));
    if (schema.allOf?.length) return this.of(schema.allOf[0], small, depth + 1);
    if ('const' in schema) return fc.constant(schema.const);
    const strings = small ? BOUNDARY_STRINGS.filter((text) => text !== LONG_STRING) : BOUNDARY_STRINGS;
    if (Array.isArray(schema.enum)) return fc.oneof(fc.constantFrom(...schema.enum), fc.constantFrom(...strings));
    const types: string[] = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
    if (types.length > 1) return fc.oneof(...types.map((type) => this.of({ ...schema, type }, small, depth + 1)));
    switch (types[0]) {
      case 'string':
        return schema.format?.startsWith('date') ? fc.constantFrom(...BOUNDARY_DATES, ...strings) : fc.constantFrom(...strings);
      case 'number':
      case 'integer':
        return fc.constantFrom(...BOUNDARY_NUMBERS);
      case 'boolean':
        return fc.boolean();
      case 'null':
        return fc.constant(null);
      case 'array': {
        const item = this.of(schema.items ?? {}, true, depth + 1);
        const sizes = [fc.constant([]), item.map((value) => [value])];
        if (!small) sizes.push(item.map((value) => Array.from({ length: 5_000 }, () => value)));
        return fc.oneof(...sizes);
      }
      case 'object':
        return this.object(schema, small, depth);
      default:
        // Any JSON: a record, a db row, an event's message.
        return fc.oneof(fc.constantFrom(...strings), fc.constantFrom(...BOUNDARY_NUMBERS), fc.constant({}), fc.constant(nested(NESTING)), fc.constant([]));
    }
  }

  object(schema: JsonSchema, small: boolean, depth: number): fc.Arbitrary<unknown> {
    const properties: Record<string, JsonSchema> = schema.properties ?? {};
    const names = Object.keys(properties);
    if (names.length > 0) {
      const fields = Object.fromEntries(names.map((name) => [name, this.of(properties[name]!, small, depth + 1)]));
      return fc.oneof(fc.constant({}), fc.record(fields, { requiredKeys: [] }));
    }
    // A map: hostile keys, hostile values, or a deep tree.
    const value = schema.additionalProperties && typeof schema.additionalProperties === 'object' ? this.of(schema.additionalProperties, true, depth + 1) : fc.constant('v');
    const keys = fc.constantFrom(...BOUNDARY_STRINGS.filter((text) => text !== LONG_STRING), '__proto__', 'constructor');
    return fc.oneof(fc.constant({}), fc.tuple(keys, value).map(([key, inner]) => ({ [key]: inner })), fc.constant(nested(NESTING)));
  }
}

/** Points every field Alto would connect to at this test's listener; the hostile part becomes the path. */
function keepOnLoopback(value: unknown, listener: string, name = ''): unknown {
  if (typeof value === 'string') {
    if (isCompose(name)) return `services:\n  web:\n    image: ${listener.slice('http://'.length)}/web:v1\n    ports: ["8080"]\n# ${value.slice(0, 100)}`;
    if (!CONNECTS_TO.test(name)) return value;
    const path = encodeURIComponent(value.slice(0, 200).toWellFormed());
    if (/^image$|^reference$/i.test(name)) return `${listener.slice('http://'.length)}/fuzz${path ? `-${path.toLowerCase()}` : ''}:v1`;
    if (/^registry$/i.test(name)) return listener.slice('http://'.length);
    if (/^smtp/.test(value)) return `smtp://127.0.0.1:${new URL(listener).port}/${path}`;
    return `${listener}/${path}`;
  }
  if (Array.isArray(value)) return value.map((item) => keepOnLoopback(item, listener, name));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, keepOnLoopback(inner, listener, key)]));
  }
  return value;
}

/** An error frame of a stream: the error body an HTTP answer would carry, `code` its status. */
interface ErrorFrame {
  id: string;
  code: number;
  detail: string;
  request_id: string;
}

function isErrorFrame(message: unknown): message is ErrorFrame {
  const frame = message as Partial<ErrorFrame> | null;
  return typeof frame?.code === 'number' && typeof frame.request_id === 'string' && 'detail' in frame;
}

/** What `promise` gives within `ms`, else `fallback`: a bounded wait on an event, not a sleep. */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function operationsOf(document: JsonSchema): Operation[] {
  return Object.entries(document.paths as Record<string, { post: JsonSchema }>).map(([path, { post }]) => {
    const [, , service, endpoint] = path.split('/');
    const content = post.requestBody.content['application/json'];
    return {
      service: service!,
      endpoint: endpoint!,
      access: post['x-alto-access'],
      stream: post['x-alto-stream'] === true,
      schema: content.schema,
      example: content.example ?? {},
    };
  });
}

for (const store of ['embedded', 'postgres'] as const) describe(`every endpoint, typed but hostile values (${store} store)`, () => {
  let database: TestDatabase | undefined;
  let alto: ServerProcess;
  let projectKey: string;
  let operations: Operation[];
  let hostile: HostileValues;
  let listener: Server;
  let listenerUrl: string;
  let listenerRequests = 0;

  before(async () => {
    listener = createServer((request, response) => {
      listenerRequests++;
      // An open registry that holds nothing: logins succeed, pulls find no image.
      if (request.url === '/v2/') response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else response.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"no such image"}]}');
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    listenerUrl = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
    if (store === 'postgres') database = await createTestDatabase('endpoints_fuzz');
    alto = await startProcess(database ? { args: ['--store', database.url] } : {});
    projectKey = await alto.projectKey('fuzz-target');
    const document = await (await fetch(`${alto.url}/v1/openapi.json`)).json();
    hostile = new HostileValues(document.components.schemas);
    operations = operationsOf(document);
  });
  after(async () => {
    await alto?.close();
    await database?.drop();
    listener?.close();
  });

  /** The key the endpoint's caller holds: none, the project's, or the admin's. */
  function keyFor(operation: Operation): string | undefined {
    if (operation.access === 'key') return projectKey;
    if (operation.access === 'manage') return alto.adminKey;
    return undefined;
  }

  /** POSTs a body as the endpoint's caller would. */
  async function send(operation: Operation, body: unknown) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const key = keyFor(operation);
    if (key) headers.authorization = `Bearer ${key}`;
    const answer = await fetch(`${alto.url}/v1/${operation.service}/${operation.endpoint}`, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: answer.status, text: await answer.text() };
  }

  /** A body: the example with one or two properties made hostile, or every property hostile. */
  function bodies(operation: Operation): fc.Arbitrary<unknown> {
    const schema = hostile.resolve(operation.schema);
    const properties: Record<string, JsonSchema> = schema.properties ?? {};
    const names = Object.keys(properties);
    const example = keepOnLoopback(operation.example, listenerUrl) as Record<string, unknown>;
    const whole = hostile.of(schema);
    if (names.length === 0) return fc.oneof(fc.constant(example), whole);
    const oneField = fc
      .constantFrom(...names)
      .chain((name) => hostile.of(properties[name]!).map((value) => ({ ...example, [name]: value })));
    const twoFields = fc.tuple(oneField, fc.constantFrom(...names)).chain(([body, name]) => hostile.of(properties[name]!).map((value) => ({ ...body, [name]: value })));
    return fc.oneof({ arbitrary: oneField, weight: 3 }, { arbitrary: twoFields, weight: 1 }, { arbitrary: whole, weight: 1 }).map((body) => keepOnLoopback(body, listenerUrl));
  }

  /**
   * Runs `check` on `runs` bodies of each operation, `parallel` operations at once; answers each
   * operation that failed, with the body that made it fail (not shrunk: the server's state moves on).
   */
  async function fuzzEach(fuzzed: Operation[], runs: number, parallel: number, check: (operation: Operation, body: unknown) => Promise<void>): Promise<string[]> {
    const findings: string[] = [];
    const queue = [...fuzzed];
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        for (let operation = queue.shift(); operation; operation = queue.shift()) {
          const current = operation;
          const result = await fc.check(
            fc.asyncProperty(bodies(current), (body) => check(current, body)),
            { numRuns: runs, seed: SEED, endOnFailure: true },
          );
          if (result.failed) {
            const body = JSON.stringify(result.counterexample?.[0]) ?? '';
            findings.push(`${current.service}/${current.endpoint} with ${body.length > 400 ? `${body.slice(0, 400)}…` : body}: ${(result.errorInstance as Error)?.message}`);
          }
        }
      }),
    );
    return findings;
  }

  test('every answer is below 500, and a refusal says why', async () => {
    const fuzzed = operations.filter((operation) => !operation.stream && !SKIPPED.has(`${operation.service}/${operation.endpoint}`));
    assert.ok(fuzzed.length > 100, `the OpenAPI document lists ${fuzzed.length} endpoints to fuzz`);
    const statuses = new Map<number, number>();
    const findings = await fuzzEach(fuzzed, RUNS_PER_ENDPOINT, PARALLEL_ENDPOINTS, async (operation, body) => {
      const { status, text } = await send(operation, body);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      assert.ok(status < 500, `answered ${status}: ${text.slice(0, 300)}`);
      if (status >= 400) assert.ok(JSON.parse(text).detail, `a ${status} says why: ${text.slice(0, 300)}`);
    });
    console.log(`fuzzed ${fuzzed.length} endpoints × ${RUNS_PER_ENDPOINT} runs; answers by status: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; loopback listener got ${listenerRequests} requests`);
    assert.deepEqual(findings, []);
    assert.equal(alto.child.exitCode, null, `the server exited:\n${alto.stderr().slice(-2000)}`);
    assert.equal((await fetch(`${alto.url}/livez`)).status, 200);
  });

  test('every stream refuses its first message below 500 and says why, or serves it; every socket is closed', async () => {
    const streams = operations.filter((operation) => operation.stream);
    assert.deepEqual(
      streams.map((operation) => `${operation.service}/${operation.endpoint}`).sort(),
      ['app/BuildLogs', 'app/FollowLogs', 'db/Watch', 'event/Consume', 'id/Stream', 'images/Pull', 'mq/Subscribe'],
      'the stream endpoints of the OpenAPI document',
    );
    const registry = `${listenerUrl.slice('http://'.length)}/`;
    const requestsBefore = listenerRequests;
    const opened: StreamClient[] = [];
    /** Per endpoint, how its runs went: data, refused <status>, ended, quiet. */
    const outcomes = new Map<string, Record<string, number>>();
    const findings = await fuzzEach(streams, RUNS_PER_STREAM, streams.length, async (operation, body) => {
      const name = `${operation.service}/${operation.endpoint}`;
      if (name === 'images/Pull') {
        const { reference } = body as { reference?: unknown };
        assert.ok(typeof reference !== 'string' || reference.startsWith(registry), `images/Pull names only the test's registry, not ${String(reference)}`);
      }
      const stream = await openStream(alto.url, keyFor(operation) ?? '', operation.service, operation.endpoint, body as object);
      opened.push(stream);
      const firstMessage = new Promise<void>((resolve) => stream.ws.once('message', () => resolve()));
      const first = await within(Promise.race([firstMessage.then(() => 'message' as const), stream.closed.then(() => 'closed' as const)]), STREAM_QUIET_MS, 'quiet' as const);
      let outcome: string = first;
      if (first === 'message' && isErrorFrame(stream.messages[0])) {
        const error = stream.messages[0];
        outcome = `refused ${error.code}`;
        assert.ok(error.code >= 400 && error.code < 500, `refused with ${error.code}: ${JSON.stringify(error).slice(0, 300)}`);
        assert.ok(error.detail, `a ${error.code} says why: ${JSON.stringify(error).slice(0, 300)}`);
        const closed = await within(stream.closed, CLOSE_TIMEOUT_MS, undefined);
        assert.equal(closed?.code, 4000 + error.code, `the close after a ${error.code} error frame`);
      } else if (first === 'closed') {
        const { code, reason } = await stream.closed;
        outcome = `ended ${code}`;
        assert.equal(code, 1000, `closed with no message: ${code} ${reason}`);
      } else {
        // The first message was data, or nothing came: the stream was accepted; the client leaves.
        outcome = first === 'message' ? 'data' : 'quiet';
        stream.close();
        assert.ok(await within(stream.closed, CLOSE_TIMEOUT_MS, undefined), 'the stream closes when the client leaves');
      }
      const counts = outcomes.get(name) ?? {};
      counts[outcome] = (counts[outcome] ?? 0) + 1;
      outcomes.set(name, counts);
    });
    assert.deepEqual(findings, []);
    assert.equal(opened.length, streams.length * RUNS_PER_STREAM);
    assert.equal(opened.filter((stream) => !stream.isClosed()).length, 0, 'every socket the test opened is closed');
    // The server's side: each socket closed (its close handshake may end after the client's), and
    // each stream ended with a status below 500, a quiet one too (a late failure sends no frame to
    // a client that already left, but is counted).
    let streamsOpen = NaN;
    const serverStatuses = new Map<string, number>();
    const readMetrics = async () => {
      const metrics = await (await fetch(`${alto.url}/metrics`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).text();
      streamsOpen = Number(/^alto_api_streams_open (\d+)$/m.exec(metrics)?.[1]);
      serverStatuses.clear();
      for (const [, labels, count] of metrics.matchAll(/^alto_api_requests_total\{(.*)\} (\d+)$/gm)) {
        const label = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(labels!)?.[1];
        const route = `${label('service')}/${label('endpoint')}`;
        if (streams.some((operation) => `${operation.service}/${operation.endpoint}` === route)) serverStatuses.set(`${route} ${label('code')}`, Number(count));
      }
      return streamsOpen === 0 && [...serverStatuses.values()].reduce((sum, count) => sum + count, 0) === opened.length;
    };
    // Timed out, the assertions below say what is missing.
    await waitForAsync(readMetrics, 'the server to end every stream', CLOSE_TIMEOUT_MS).catch(() => undefined);
    assert.equal(streamsOpen, 0, 'the server counts no open stream');
    const ended = Object.fromEntries([...serverStatuses].sort());
    console.log(
      `fuzzed ${streams.length} stream endpoints × ${RUNS_PER_STREAM} first messages: ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}; ` +
        `ended, by the server's count: ${JSON.stringify(ended)}; loopback listener got ${listenerRequests - requestsBefore} requests`,
    );
    assert.equal(Object.values(ended).reduce((sum, count) => sum + count, 0), opened.length, `every stream ended, by the server's count: ${JSON.stringify(ended)}`);
    assert.deepEqual(Object.keys(ended).filter((routeStatus) => Number(routeStatus.split(' ')[1]) >= 500), [], `streams by status: ${JSON.stringify(ended)}`);
    assert.equal(alto.child.exitCode, null, `the server exited:\n${alto.stderr().slice(-2000)}`);
    assert.equal((await fetch(`${alto.url}/livez`)).status, 200);
  });

  // Findings of this fuzzing, fixed: PostgreSQL refused the text, and the refusal was a 500. Such
  // text is now refused at the door on every store (SQLite kept it, so a project holding it could
  // not move to PostgreSQL), with the path of the value that holds it.
  test('text no store keeps alike (NUL, half a surrogate pair) is a 400 that names where it was, on every store', async () => {
    const cases: [Operation['access'], string, string, Record<string, unknown>, string][] = [
      ['manage', 'keys', 'Generate', { project: '\u0000', scopes: ['*'] }, 'project'],
      ['manage', 'projects', 'Environments', { name: 'a\u0000b' }, 'name'],
      ['key', 'user', 'Create', { id: '\u0000', username: 'fuzz', email: 'fuzz@example.com', password: 'mySecretPass123' }, 'id'],
      ['key', 'otp', 'Generate', { id: '\u0000' }, 'id'],
      ['key', 'stream', 'SendMessage', { channel: 'general', text: 'a\u0000b' }, 'text'],
      ['key', 'email', 'Outbox', { to: '\u0000' }, 'to'],
      ['key', 'search', 'Index', { index: 'customers', id: '1', data: { '\u0000': 1 } }, 'data: a field name'],
      ['key', 'db', 'Create', { table: 'fuzz', record: { id: '\ud800' } }, 'record.id'],
    ];
    for (const [access, service, endpoint, body, path] of cases) {
      const { status, text } = await send({ service, endpoint, access, stream: false, schema: {}, example: {} }, body);
      assert.equal(status, 400, `${service}/${endpoint}: ${text.slice(0, 300)}`);
      const detail = JSON.parse(text).detail as string;
      assert.ok(detail.startsWith(`${path}: text may not hold a NUL character`), `${service}/${endpoint}: ${detail}`);
    }
  });
});
