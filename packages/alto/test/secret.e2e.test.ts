/**
 * The `secret` block through the real server over HTTP: M3O's documented examples through M3O's
 * own client, paths, two projects kept apart, errors, encryption at rest (no plaintext anywhere
 * in the data folder or the PostgreSQL table), the master key kept across restarts and checked,
 * project deletion, PostgreSQL (`--store`), and a write that survives `kill -9`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@m3o/m3o-node';
import pg from 'pg';
import { startInProcess, startProcess, temporaryDataDir, type TestAlto } from './harness.js';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';

function m3oClient(alto: TestAlto, key: string): Client {
  return new Client({ token: key, address: `${alto.url}/` });
}

async function failure(promise: Promise<unknown>): Promise<any> {
  return promise.then(
    (value) => assert.fail(`expected an error, got ${JSON.stringify(value)}`),
    (body: unknown) => body,
  );
}

/** M3O's documented examples (secret/examples.json), in order. */
async function m3oExamples(client: Client): Promise<void> {
  assert.deepEqual(await client.call('secret', 'Set', { key: 'foo', value: 'bar' }), {});
  const got = (await client.call('secret', 'Get', { key: 'foo' })) as Record<string, string>;
  assert.equal(got.key, 'foo');
  assert.equal(got.value, 'bar');
  assert.equal(got.path, '');
  assert.ok(!Number.isNaN(Date.parse(got.created)) && got.created === got.updated);
  assert.deepEqual(await client.call('secret', 'List', {}), { keys: ['foo'], paths: [] });
  assert.deepEqual(await client.call('secret', 'Delete', { key: 'foo' }), {});
  const gone = await failure(client.call('secret', 'Get', { key: 'foo' }));
  assert.equal(gone.code, 404);
  assert.match(gone.detail, /secret "foo" does not exist/);
  assert.deepEqual(await client.call('secret', 'Delete', { key: 'foo' }), {}, 'deleting a missing secret succeeds');
}

async function isolation(first: Client, second: Client): Promise<void> {
  await first.call('secret', 'Set', { key: 'db_password', path: 'prod', value: 'first-password' });
  await second.call('secret', 'Set', { key: 'db_password', path: 'prod', value: 'second-password' });
  await first.call('secret', 'Set', { key: 'only_first', value: 'x' });
  assert.equal(((await first.call('secret', 'Get', { key: 'db_password', path: 'prod' })) as { value: string }).value, 'first-password');
  assert.equal(((await second.call('secret', 'Get', { key: 'db_password', path: 'prod' })) as { value: string }).value, 'second-password');
  assert.equal((await failure(second.call('secret', 'Get', { key: 'only_first' }))).code, 404);
  assert.deepEqual(await second.call('secret', 'List', {}), { keys: [], paths: ['prod'] });
  await second.call('secret', 'Delete', { key: 'only_first' });
  await second.call('secret', 'Delete', { key: 'db_password', path: 'prod' });
  assert.equal(((await first.call('secret', 'Get', { key: 'only_first' })) as { value: string }).value, 'x');
  assert.deepEqual(await first.call('secret', 'List', { path: 'prod' }), { keys: ['db_password'], paths: [] });
}

/** Every byte of every file in the data folder but the master key itself. */
function dataFolderBytes(dataDir: string): Buffer {
  const files = readdirSync(dataDir).filter((name) => name !== 'master-key' && statSync(join(dataDir, name)).isFile());
  assert.ok(files.includes('alto.db'));
  return Buffer.concat(files.map((name) => readFileSync(join(dataDir, name))));
}

describe('secret on embedded SQLite', () => {
  const dataDir = temporaryDataDir();
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let shopKey: string;
  let blogKey: string;
  const plaintext = `sk_live_${randomBytes(12).toString('hex')}`;

  before(async () => {
    alto = await startInProcess({ dataDir });
    shopKey = await alto.projectKey('shop', ['secret']);
    blogKey = await alto.projectKey('blog', ['secret']);
  });
  after(async () => {
    await alto.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("M3O's documented examples through M3O's client", async () => {
    await m3oExamples(m3oClient(alto, shopKey));
  });

  test('two projects never see each other', async () => {
    await isolation(m3oClient(alto, shopKey), m3oClient(alto, blogKey));
  });

  test('paths group secrets like folders', async () => {
    const client = m3oClient(alto, blogKey);
    await client.call('secret', 'Set', { key: 'token', path: 'prod', value: 'p' });
    await client.call('secret', 'Set', { key: 'token', path: '/prod/eu/', value: 'eu' });
    await client.call('secret', 'Set', { key: 'token', path: 'staging', value: 's' });
    await client.call('secret', 'Set', { key: 'token', value: 'top' });
    const eu = (await client.call('secret', 'Get', { key: 'token', path: 'prod/eu' })) as { path: string; value: string };
    assert.deepEqual([eu.path, eu.value], ['prod/eu', 'eu']);
    assert.deepEqual(await client.call('secret', 'List', {}), { keys: ['token'], paths: ['prod', 'prod/eu', 'staging'] });
    assert.deepEqual(await client.call('secret', 'List', { path: 'prod' }), { keys: ['token'], paths: ['prod/eu'] });
    await client.call('secret', 'Set', { key: 'token', path: 'prod', value: 'p2' });
    const updated = (await client.call('secret', 'Get', { key: 'token', path: 'prod' })) as Record<string, string>;
    assert.equal(updated.value, 'p2');
    assert.ok(updated.updated >= updated.created);
  });

  test('errors are clear 4xx', async () => {
    const client = m3oClient(alto, shopKey);
    const noKey = await failure(client.call('secret', 'Set', { value: 'v' }));
    assert.equal(noKey.code, 400);
    assert.match(noKey.detail, /^key: /);
    const emptyKey = await failure(client.call('secret', 'Get', { key: '' }));
    assert.equal(emptyKey.code, 400);
    assert.match(emptyKey.detail, /key: missing/);
    const badPath = await failure(client.call('secret', 'Set', { key: 'k', path: 'prod//eu', value: 'v' }));
    assert.equal(badPath.code, 400);
    assert.match(badPath.detail, /^path: "prod\/\/eu" has an empty/);
    const notString = await failure(client.call('secret', 'Set', { key: 'k', value: 42 }));
    assert.equal(notString.code, 400);
    assert.match(notString.detail, /^value: expected a string/);
    const tooBig = await failure(client.call('secret', 'Set', { key: 'k', value: 'x'.repeat(64 * 1024 + 1) }));
    assert.equal(tooBig.code, 413);
    assert.match(tooBig.detail, /65536-byte limit/);
    const missing = await failure(client.call('secret', 'Get', { key: 'nope', path: 'prod' }));
    assert.equal(missing.code, 404);
    assert.match(missing.detail, /secret "nope" at path "prod" does not exist/);
    const otherScope = await alto.projectKey('shop', ['cache']);
    assert.equal((await alto.call('secret', 'List', {}, otherScope)).status, 403);
  });

  test('values are encrypted at rest, and they and the master key survive a restart', async () => {
    const client = m3oClient(alto, shopKey);
    await client.call('secret', 'Set', { key: 'stripe', path: 'prod', value: plaintext });
    await client.call('secret', 'Set', { key: 'stripe-copy', value: plaintext });
    const masterKey = readFileSync(join(dataDir, 'master-key'), 'utf8');
    assert.match(masterKey, /^[0-9a-f]{64}\n$/);
    assert.equal(statSync(join(dataDir, 'master-key')).mode & 0o777, 0o600);
    assert.ok(!dataFolderBytes(dataDir).includes(Buffer.from(plaintext)), 'plaintext in the database or its WAL');

    await alto.close();
    assert.ok(!dataFolderBytes(dataDir).includes(Buffer.from(plaintext)), 'plaintext in the database after a checkpoint');
    alto = await startInProcess({ dataDir });
    assert.equal(readFileSync(join(dataDir, 'master-key'), 'utf8'), masterKey, 'the master key is reused, not replaced');
    const got = (await alto.call('secret', 'Get', { key: 'stripe', path: 'prod' }, shopKey)).body;
    assert.equal(got.value, plaintext);
  });

  test('a ciphertext moved to another row does not decrypt there', async () => {
    const client = m3oClient(alto, shopKey);
    await client.call('secret', 'Set', { key: 'victim', value: 'do-not-leak' });
    await client.call('secret', 'Set', { key: 'attacker', value: 'mine' });
    alto.alto.platform.stores.sqlite
      .prepare(`UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE key = 'victim') WHERE key = 'attacker'`)
      .run();
    const moved = await alto.call('secret', 'Get', { key: 'attacker' }, shopKey);
    assert.equal(moved.status, 500);
    assert.doesNotMatch(JSON.stringify(moved.body), /do-not-leak/);
    await client.call('secret', 'Delete', { key: 'attacker' });
  });

  test('deleting a project deletes its secrets', async () => {
    const key = await alto.projectKey('doomed', ['secret']);
    await m3oClient(alto, key).call('secret', 'Set', { key: 'a', path: 'x', value: '1' });
    const { projects } = (await alto.call('projects', 'List')).body as { projects: { id: string; name: string }[] };
    const projectId = projects.find((project) => project.name === 'doomed')!.id;
    const rows = () =>
      (
        alto.alto.platform.stores.sqlite
          .prepare('SELECT COUNT(*) AS n FROM secrets WHERE substr(namespace, 1, length(?)) = ?')
          .get(`${projectId}/`, `${projectId}/`) as { n: number }
      ).n;
    assert.equal(rows(), 1);
    assert.equal((await alto.call('projects', 'Delete', { name: 'doomed' })).status, 200);
    assert.equal(rows(), 0);
  });

  test('the server refuses to start with a malformed or a different master key', async () => {
    const emptyDir = temporaryDataDir();
    try {
      await assert.rejects(
        startProcess({ dataDir: emptyDir, env: { ALTO_MASTER_KEY: 'hunter2' } }),
        /ALTO_MASTER_KEY must be 32 bytes written as 64 hex characters or 44 base64 characters/,
      );
    } finally {
      rmSync(emptyDir, { recursive: true, force: true });
    }
    await alto.close();
    await assert.rejects(
      startProcess({ dataDir, env: { ALTO_MASTER_KEY: randomBytes(32).toString('hex') } }),
      // Checked against the fingerprint the control store recorded at the first start, before any block opens.
      /ALTO_MASTER_KEY is not the master key of this cloud: the store \(sqlite\) was started with another one/,
    );
    const original = readFileSync(join(dataDir, 'master-key'), 'utf8').trim();
    // The right key works from the environment too, written in base64 this time.
    const withEnvironmentKey = await startProcess({ dataDir, env: { ALTO_MASTER_KEY: Buffer.from(original, 'hex').toString('base64') } });
    try {
      assert.equal((await withEnvironmentKey.call('secret', 'Get', { key: 'stripe', path: 'prod' }, shopKey)).body.value, plaintext);
    } finally {
      await withEnvironmentKey.stop();
    }
    alto = await startInProcess({ dataDir });
  });
});

describe('secret on PostgreSQL (--store)', () => {
  let database: TestDatabase | undefined;
  let databaseUrl: string;
  let alto: Awaited<ReturnType<typeof startProcess>> | undefined;

  before(async () => {
    database = await createTestDatabase('secret_e2e');
    databaseUrl = database.url;
    alto = await startProcess({ args: ['--store', databaseUrl] });
  });
  after(async () => {
    await alto?.close();
    await database?.drop();
  });

  test('the examples and isolation hold, and the table holds no plaintext', async () => {
    const shop = m3oClient(alto!, await alto!.projectKey('shop', ['secret']));
    const blog = m3oClient(alto!, await alto!.projectKey('blog', ['secret']));
    await m3oExamples(shop);
    await isolation(shop, blog);
    const plaintext = `pg-secret-${randomBytes(12).toString('hex')}`;
    await shop.call('secret', 'Set', { key: 'api', path: 'prod', value: plaintext });
    assert.equal(((await shop.call('secret', 'Get', { key: 'api', path: 'prod' })) as { value: string }).value, plaintext);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ dump: string; ciphertext: Buffer }>(
        `SELECT t::text AS dump, ciphertext FROM alto_secrets t`,
      );
      assert.ok(rows.length >= 3);
      for (const row of rows) {
        assert.ok(!row.dump.includes(plaintext) && !row.ciphertext.includes(Buffer.from(plaintext)));
        assert.ok(!row.ciphertext.includes(Buffer.from('first-password')));
      }
    } finally {
      await client.end();
    }
  });

  test('deleting a project deletes its secrets from PostgreSQL', async () => {
    const key = await alto!.projectKey('doomed', ['secret']);
    await m3oClient(alto!, key).call('secret', 'Set', { key: 'a', value: '1' });
    const { projects } = (await alto!.call('projects', 'List')).body as { projects: { id: string; name: string }[] };
    const projectId = projects.find((project) => project.name === 'doomed')!.id;
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const count = async () =>
        Number((await client.query('SELECT COUNT(*) AS n FROM alto_secrets WHERE starts_with(namespace, $1)', [`${projectId}/`])).rows[0].n);
      assert.equal(await count(), 1);
      assert.equal((await alto!.call('projects', 'Delete', { name: 'doomed' })).status, 200);
      assert.equal(await count(), 0);
    } finally {
      await client.end();
    }
  });
});

test('an acknowledged secret Set survives kill -9 of the server', async () => {
  const dataDir = temporaryDataDir();
  try {
    const first = await startProcess({ dataDir });
    const key = await first.projectKey('durable', ['secret']);
    assert.deepEqual((await first.call('secret', 'Set', { key: 'token', path: 'prod', value: 'survives' }, key)).body, {});
    assert.equal(await first.stop('SIGKILL'), 'SIGKILL');
    const second = await startProcess({ dataDir });
    try {
      const got = await second.call('secret', 'Get', { key: 'token', path: 'prod' }, key);
      assert.equal(got.status, 200);
      assert.equal(got.body.value, 'survives');
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
