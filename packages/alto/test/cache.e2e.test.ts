/**
 * The `cache` block through the real server over HTTP: M3O's documented examples through M3O's
 * own client, expiry, the Alto additions, limits and errors, two projects kept apart, project
 * deletion, the same scenario on Redis (`--cache`), and a write that survives `kill -9`.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import { Redis } from 'ioredis';
import { startInProcess, startProcess, temporaryDataDir, type TestAlto } from './harness.js';

function m3oClient(alto: TestAlto, key: string): Client {
  return new Client({ token: key, address: `${alto.url}/` });
}

async function failure(promise: Promise<unknown>): Promise<any> {
  return promise.then(
    (value) => assert.fail(`expected an error, got ${JSON.stringify(value)}`),
    (body: unknown) => body,
  );
}

async function eventually(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** M3O's documented examples (cache/examples.json), in order, with the responses it documents. */
async function m3oExamples(client: Client): Promise<void> {
  assert.deepEqual(await client.call('cache', 'Set', { key: 'foo', value: 'bar' }), { status: 'ok' });
  assert.deepEqual(await client.call('cache', 'Get', { key: 'foo' }), { key: 'foo', value: 'bar', ttl: 0 });
  assert.deepEqual(await client.call('cache', 'Increment', { key: 'counter', value: 2 }), { key: 'counter', value: 2 });
  assert.deepEqual(await client.call('cache', 'Decrement', { key: 'counter', value: 2 }), { key: 'counter', value: 0 });
  assert.deepEqual(await client.call('cache', 'ListKeys', {}), { keys: ['counter', 'foo'] });
  assert.deepEqual(await client.call('cache', 'Delete', { key: 'foo' }), { status: 'ok' });
  assert.deepEqual(await client.call('cache', 'Get', { key: 'foo' }), { key: 'foo', value: '', ttl: 0 });
  assert.deepEqual(await client.call('cache', 'Delete', { key: 'foo' }), { status: 'ok' }, 'deleting a missing key succeeds');
}

/** Two projects with the same keys never see each other's. */
async function isolation(first: Client, second: Client): Promise<void> {
  await first.call('cache', 'Set', { key: 'shared', value: 'first' });
  await second.call('cache', 'Set', { key: 'shared', value: 'second' });
  await first.call('cache', 'Increment', { key: 'visits', value: 5 });
  assert.deepEqual(await first.call('cache', 'Get', { key: 'shared' }), { key: 'shared', value: 'first', ttl: 0 });
  assert.deepEqual(await second.call('cache', 'Get', { key: 'shared' }), { key: 'shared', value: 'second', ttl: 0 });
  assert.deepEqual(await second.call('cache', 'Get', { key: 'visits' }), { key: 'visits', value: '', ttl: 0 });
  assert.deepEqual(await second.call('cache', 'Increment', { key: 'visits', value: 1 }), { key: 'visits', value: 1 });
  assert.deepEqual(await first.call('cache', 'Get', { key: 'visits' }), { key: 'visits', value: '5', ttl: 0 });
  await second.call('cache', 'Delete', { key: 'shared' });
  assert.equal(((await first.call('cache', 'Get', { key: 'shared' })) as { value: string }).value, 'first');
  const firstKeys = ((await first.call('cache', 'ListKeys', {})) as { keys: string[] }).keys;
  const secondKeys = ((await second.call('cache', 'ListKeys', {})) as { keys: string[] }).keys;
  assert.ok(firstKeys.includes('shared') && !secondKeys.includes('shared'));
}

/** A value set with a ttl reads back with it, then is gone for every endpoint. */
async function expiry(client: Client): Promise<void> {
  // Two seconds: long enough that a busy machine still reads them before they go.
  await client.call('cache', 'Set', { key: 'session', value: 'abc', ttl: 2 });
  await client.call('cache', 'Set', { key: 'hits', value: '40', ttl: 2 });
  assert.deepEqual(await client.call('cache', 'Get', { key: 'session' }), { key: 'session', value: 'abc', ttl: 2 });
  assert.deepEqual(await client.call('cache', 'Increment', { key: 'hits', value: 2 }), { key: 'hits', value: 42 });
  assert.equal(((await client.call('cache', 'Get', { key: 'hits' })) as { ttl: number }).ttl, 2, 'Increment keeps the ttl');
  // Listing is the condition: it must drop both once their time is up, whenever that is.
  await eventually(async () => {
    const { keys } = (await client.call('cache', 'ListKeys', { prefix: '' })) as { keys: string[] };
    return !keys.includes('session') && !keys.includes('hits');
  }, 'the expired keys to leave the listing');
  assert.deepEqual(await client.call('cache', 'Get', { key: 'session' }), { key: 'session', value: '', ttl: 0 });
  assert.deepEqual(await client.call('cache', 'Increment', { key: 'hits', value: 1 }), { key: 'hits', value: 1 }, 'an expired counter starts from zero');
  assert.deepEqual(await client.call('cache', 'Get', { key: 'hits' }), { key: 'hits', value: '1', ttl: 0 });
}

describe('cache on embedded SQLite', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let shopKey: string;
  let blogKey: string;

  before(async () => {
    alto = await startInProcess();
    shopKey = await alto.projectKey('shop', ['cache']);
    blogKey = await alto.projectKey('blog', ['cache']);
  });
  after(() => alto.close());

  test("M3O's documented examples through M3O's client", async () => {
    await m3oExamples(m3oClient(alto, shopKey));
  });

  test('two projects never see each other', async () => {
    await isolation(m3oClient(alto, shopKey), m3oClient(alto, blogKey));
  });

  test('expired keys are gone for every endpoint', async () => {
    await expiry(m3oClient(alto, shopKey));
  });

  test('int64 fields also arrive as strings, as protobuf JSON writes them', async () => {
    const client = m3oClient(alto, shopKey);
    assert.deepEqual(await client.call('cache', 'Increment', { key: 'strings', value: '7' }), { key: 'strings', value: 7 });
    assert.deepEqual(await client.call('cache', 'Decrement', { key: 'strings', value: '10' }), { key: 'strings', value: -3 });
    await client.call('cache', 'Set', { key: 'ttl-string', value: 'v', ttl: '120' });
    assert.deepEqual(await client.call('cache', 'Get', { key: 'ttl-string' }), { key: 'ttl-string', value: 'v', ttl: 120 });
  });

  test('Alto additions: ListKeys by prefix, GetMany, SetMany', async () => {
    const client = m3oClient(alto, blogKey);
    assert.deepEqual(
      await client.call('cache', 'SetMany', {
        items: [
          { key: 'post:1', value: 'hello' },
          { key: 'post:2', value: 'world', ttl: 300 },
          { key: 'draft:1', value: '…' },
        ],
      }),
      { status: 'ok' },
    );
    assert.deepEqual(await client.call('cache', 'ListKeys', { prefix: 'post:' }), { keys: ['post:1', 'post:2'] });
    assert.deepEqual(await client.call('cache', 'GetMany', { keys: ['post:2', 'missing', 'post:1'] }), {
      items: [
        { key: 'post:2', value: 'world', ttl: 300 },
        { key: 'post:1', value: 'hello', ttl: 0 },
      ],
    });
  });

  test('errors are clear 4xx', async () => {
    const client = m3oClient(alto, shopKey);
    const missingKey = await failure(client.call('cache', 'Get', {}));
    assert.equal(missingKey.code, 400);
    assert.match(missingKey.detail, /^key: /);
    const emptyKey = await failure(client.call('cache', 'Set', { key: '', value: 'x' }));
    assert.equal(emptyKey.code, 400);
    assert.match(emptyKey.detail, /key: missing/);
    const notString = await failure(client.call('cache', 'Set', { key: 'k', value: 5 }));
    assert.equal(notString.code, 400);
    assert.match(notString.detail, /^value: expected a string/);
    await client.call('cache', 'Set', { key: 'word', value: 'hello' });
    const notInteger = await failure(client.call('cache', 'Increment', { key: 'word', value: 1 }));
    assert.equal(notInteger.code, 400);
    assert.match(notInteger.detail, /not an integer/);
    const badDelta = await failure(client.call('cache', 'Increment', { key: 'n', value: 1.5 }));
    assert.equal(badDelta.code, 400);
    assert.match(badDelta.detail, /^value: expected an integer/);
    const longKey = await failure(client.call('cache', 'Get', { key: 'k'.repeat(513) }));
    assert.equal(longKey.code, 400);
    assert.match(longKey.detail, /512-byte limit/);
    const negativeTtl = await failure(client.call('cache', 'Set', { key: 'k', value: 'v', ttl: -5 }));
    assert.equal(negativeTtl.code, 400);
    assert.match(negativeTtl.detail, /^ttl: -5 is out of range/);

    const tooBig = await alto.call('cache', 'Set', { key: 'big', value: 'x'.repeat(1024 * 1024 + 1) }, shopKey);
    assert.equal(tooBig.status, 413);
    assert.match(tooBig.body.detail, /1048576-byte limit/);
    const justFits = await alto.call('cache', 'Set', { key: 'big', value: 'x'.repeat(1024 * 1024) }, shopKey);
    assert.equal(justFits.status, 200);

    const otherScope = await alto.projectKey('shop', ['id']);
    const forbidden = await alto.call('cache', 'Get', { key: 'foo' }, otherScope);
    assert.equal(forbidden.status, 403);
  });

  test("deleting a project deletes its cache entries", async () => {
    const key = await alto.projectKey('doomed', ['cache']);
    const client = m3oClient(alto, key);
    await client.call('cache', 'SetMany', { items: [{ key: 'a', value: '1' }, { key: 'b', value: '2', ttl: 600 }] });
    const { projects } = (await alto.call('projects', 'List')).body as { projects: { id: string; name: string }[] };
    const projectId = projects.find((project) => project.name === 'doomed')!.id;
    const rows = () =>
      (
        alto.alto.platform.stores.sqlite
          .prepare('SELECT COUNT(*) AS n FROM cache_entries WHERE substr(namespace, 1, length(?)) = ?')
          .get(`${projectId}/`, `${projectId}/`) as { n: number }
      ).n;
    assert.equal(rows(), 2);
    assert.equal((await alto.call('projects', 'Delete', { name: 'doomed' })).status, 200);
    assert.equal(rows(), 0);
    assert.equal((await alto.call('cache', 'Get', { key: 'a' }, key)).status, 401, 'its keys are revoked too');
  });
});

describe('cache on Redis (--cache)', () => {
  const redisUrl = process.env.ALTO_TEST_REDIS_URL;
  let alto: Awaited<ReturnType<typeof startProcess>>;

  before(async () => {
    if (!redisUrl) throw new Error('ALTO_TEST_REDIS_URL is not set: run ". scripts/test-services.sh" first');
    alto = await startProcess({ args: ['--cache', redisUrl] });
  });
  after(() => alto?.close());

  test('the examples, isolation and expiry hold on Redis too', async () => {
    const shop = m3oClient(alto, await alto.projectKey('shop', ['cache']));
    const blog = m3oClient(alto, await alto.projectKey('blog', ['cache']));
    await m3oExamples(shop);
    await isolation(shop, blog);
    await expiry(blog);
    const error = await failure(shop.call('cache', 'Increment', { key: 'shared', value: 1 }));
    assert.equal(error.code, 400);
    assert.match(error.detail, /not an integer/);
  });

  test('deleting the projects deletes their keys from Redis', async () => {
    const { projects } = (await alto.call('projects', 'List')).body as { projects: { id: string; name: string }[] };
    const redis = new Redis(redisUrl!);
    try {
      const keysOf = async (projectId: string) => {
        const names: string[] = [];
        let cursor = '0';
        do {
          const [next, batch] = await redis.scan(cursor, 'MATCH', `alto:{${projectId}/*`, 'COUNT', 500);
          names.push(...batch);
          cursor = next;
        } while (cursor !== '0');
        return names;
      };
      for (const name of ['shop', 'blog']) {
        const projectId = projects.find((project) => project.name === name)!.id;
        assert.ok((await keysOf(projectId)).length > 0, `${name} has keys in Redis`);
        assert.equal((await alto.call('projects', 'Delete', { name })).status, 200);
        assert.deepEqual(await keysOf(projectId), [], `${name}'s keys are gone`);
      }
    } finally {
      await redis.quit();
    }
  });
});

test('an acknowledged Set survives kill -9 of the server', async () => {
  const dataDir = temporaryDataDir();
  try {
    const first = await startProcess({ dataDir });
    const key = await first.projectKey('durable', ['cache']);
    assert.deepEqual((await first.call('cache', 'Set', { key: 'order:1', value: 'paid' }, key)).body, { status: 'ok' });
    assert.deepEqual((await first.call('cache', 'Increment', { key: 'orders', value: 1 }, key)).body, { key: 'orders', value: 1 });
    assert.equal(await first.stop('SIGKILL'), 'SIGKILL');
    const second = await startProcess({ dataDir });
    try {
      assert.deepEqual((await second.call('cache', 'Get', { key: 'order:1' }, key)).body, { key: 'order:1', value: 'paid', ttl: 0 });
      assert.deepEqual((await second.call('cache', 'Get', { key: 'orders' }, key)).body, { key: 'orders', value: '1', ttl: 0 });
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
