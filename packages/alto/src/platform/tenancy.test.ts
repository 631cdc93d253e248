import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { AltoError } from '../kit/errors.js';
import { openSqlite } from '../store/sqlite/database.js';
import { SqliteControlStore } from '../store/sqlite/control.js';
import type { ControlStore } from '../store/control.js';
import { PostgresControlStore } from '../store/postgres/control.js';
import { createTestDatabase } from '../store/postgres/test-database.js';
import { Tenancy, environmentOf, hashKey, namespaceOf, tenantInEnvironment } from './tenancy.js';
import type { Tenant } from './service.js';

function setup() {
  const sqlite = openSqlite(':memory:');
  const store = new SqliteControlStore(sqlite);
  return { sqlite, store, tenancy: new Tenancy(store, () => ['id', 'db']) };
}

async function rejectsWith(promise: Promise<unknown>, status: number, pattern: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AltoError, String(error));
    assert.equal(error.status, status);
    assert.match(error.detail, pattern);
    return true;
  });
}

test('the first start creates the admin key once; later starts keep it', async () => {
  const { tenancy } = setup();
  const first = await tenancy.bootstrap();
  assert.match(first.generatedAdminKey ?? '', /^alto_[0-9A-Za-z]{33}$/);
  const admin = await tenancy.authenticate(first.generatedAdminKey!);
  assert.equal(admin.role, 'admin');
  assert.deepEqual(admin.scopes, ['*']);
  assert.equal(admin.projectName, 'default');
  const second = await tenancy.bootstrap();
  assert.equal(second.generatedAdminKey, undefined);
  assert.equal(second.adminAccountId, first.adminAccountId);
});

test('ALTO_ADMIN_KEY becomes the admin key, and a short one is refused', async () => {
  const { tenancy } = setup();
  const key = 'operator-chosen-admin-key-0123456789';
  const result = await tenancy.bootstrap(key);
  assert.equal(result.generatedAdminKey, undefined);
  assert.equal((await tenancy.authenticate(key)).role, 'admin');
  await rejectsWith(setup().tenancy.bootstrap('short'), 400, /at least 24/);
});

test('keys are stored only as hashes', async () => {
  const { tenancy, sqlite } = setup();
  const { generatedAdminKey } = await tenancy.bootstrap();
  const admin = await tenancy.authenticate(generatedAdminKey!);
  await tenancy.createProject(admin.accountId, 'shop');
  const { secret } = await tenancy.generateKey(admin, { projectName: 'shop', scopes: ['id'] });
  const dump = JSON.stringify(sqlite.prepare('SELECT * FROM api_keys').all());
  assert.ok(!dump.includes(secret), 'a key is stored in clear');
  assert.ok(!dump.includes(generatedAdminKey!), 'the admin key is stored in clear');
  assert.ok(dump.includes(hashKey(secret)));
});

test('revoked keys get 401, blocked keys 403 until unblocked, unknown keys 401', async () => {
  const { tenancy } = setup();
  const admin = await tenancy.authenticate((await tenancy.bootstrap()).generatedAdminKey!);
  await tenancy.createProject(admin.accountId, 'shop');
  const { secret, record } = await tenancy.generateKey(admin, { projectName: 'shop', scopes: ['*'] });
  assert.equal((await tenancy.authenticate(secret)).projectName, 'shop');

  await tenancy.setKeyStatus(admin, record.id, 'blocked');
  await rejectsWith(tenancy.authenticate(secret), 403, /blocked/);
  await tenancy.setKeyStatus(admin, record.id, 'active');
  assert.equal((await tenancy.authenticate(secret)).keyId, record.id);

  await tenancy.setKeyStatus(admin, record.id, 'revoked');
  await rejectsWith(tenancy.authenticate(secret), 401, /revoked/);
  await rejectsWith(tenancy.setKeyStatus(admin, record.id, 'active'), 409, /stays revoked/);
  await rejectsWith(tenancy.authenticate('alto_not-a-key'), 401, /not valid/);
});

test('scopes must name known services; names follow the rules; environments separate namespaces', async () => {
  const { tenancy } = setup();
  const admin = await tenancy.authenticate((await tenancy.bootstrap()).generatedAdminKey!);
  await rejectsWith(tenancy.createProject(admin.accountId, 'Bad Name'), 400, /not valid/);
  await tenancy.createProject(admin.accountId, 'shop');
  await rejectsWith(tenancy.createProject(admin.accountId, 'shop'), 409, /already exists/);
  await rejectsWith(tenancy.generateKey(admin, { projectName: 'shop', scopes: ['nope'] }), 400, /unknown service "nope"/);
  await rejectsWith(tenancy.generateKey(admin, { projectName: 'shop', scopes: [] }), 400, /at least one/);
  await rejectsWith(tenancy.generateKey(admin, { projectName: 'ghost', scopes: ['id'] }), 404, /does not exist/);
  const dev = await tenancy.authenticate((await tenancy.generateKey(admin, { projectName: 'shop', scopes: ['id'] })).secret);
  const prod = await tenancy.authenticate(
    (await tenancy.generateKey(admin, { projectName: 'shop', scopes: ['id'], environment: 'prod' })).secret,
  );
  assert.equal(dev.projectId, prod.projectId);
  assert.notEqual(dev.namespace, prod.namespace);

  // X-Alto-Environment: an admin or owner key acts in any environment of its project, a project key only in its own.
  const adminInProd = tenantInEnvironment(admin, 'prod');
  assert.deepEqual([adminInProd.environment, adminInProd.namespace, adminInProd.keyId], ['prod', `${admin.projectId}/prod`, admin.keyId]);
  assert.equal(tenantInEnvironment(prod, 'prod'), prod, 'its own environment changes nothing');
  await rejectsWith(Promise.resolve().then(() => tenantInEnvironment(prod, 'dev')), 403, /belongs to environment "prod"/);
  await rejectsWith(Promise.resolve().then(() => tenantInEnvironment(admin, 'Bad Env')), 400, /not valid/);
  assert.equal(environmentOf(prod.namespace), 'prod');
  assert.equal(environmentOf(namespaceOf('p1', 'staging')), 'staging');
  assert.equal(environmentOf('p1'), 'dev', 'a bare project id: the default environment');
});

test('acting in another environment records it once per process, before the call goes on; a failed record fails the call', async () => {
  const { tenancy, store } = setup();
  const admin = await tenancy.authenticate((await tenancy.bootstrap()).generatedAdminKey!);
  const prod = await tenancy.authenticate((await tenancy.generateKey(admin, { projectName: 'default', scopes: ['id'], environment: 'prod' })).secret);

  assert.equal(tenancy.actInEnvironment(admin, 'dev'), admin, 'its own environment: the same tenant at once');
  assert.deepEqual(await store.listEnvironments(admin.projectId), [], 'and nothing recorded');
  const first = tenancy.actInEnvironment(admin, 'qa');
  assert.ok(first instanceof Promise, 'the first time, a promise of the store write');
  assert.equal((await first).namespace, `${admin.projectId}/qa`);
  assert.deepEqual(await store.listEnvironments(admin.projectId), ['qa'], 'recorded when the promise resolves');
  const again = tenancy.actInEnvironment(admin, 'qa');
  assert.ok(!(again instanceof Promise), 'recorded by this process already: at once, no promise');
  assert.equal((again as Tenant).environment, 'qa');

  // A project key may not name another environment: refused at once, nothing recorded.
  assert.throws(() => tenancy.actInEnvironment(prod, 'staging'), (error: unknown) => error instanceof AltoError && error.status === 403);
  assert.deepEqual(await store.listEnvironments(admin.projectId), ['qa']);

  // A store that cannot record: the call fails, and the next one tries again.
  let failing = true;
  const flaky = new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'noteEnvironment') {
        return (projectId: string, environment: string) => (failing ? Promise.reject(new Error('store unavailable')) : target.noteEnvironment(projectId, environment));
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const another = new Tenancy(flaky, () => ['id']);
  await assert.rejects(Promise.resolve(another.actInEnvironment(admin, 'staging')), /store unavailable/);
  assert.deepEqual(await store.listEnvironments(admin.projectId), ['qa']);
  failing = false;
  const retried = another.actInEnvironment(admin, 'staging');
  assert.ok(retried instanceof Promise, 'a failed record is not remembered');
  await retried;
  assert.deepEqual(await store.listEnvironments(admin.projectId), ['qa', 'staging']);
});

test('an account cannot touch another account’s keys or projects', async () => {
  const { tenancy } = setup();
  const admin = await tenancy.authenticate((await tenancy.bootstrap()).generatedAdminKey!);
  const other = await tenancy.createAccount('ada@example.com', 'hash');
  const owner = await tenancy.generateOwnerKey(other.accountId, other.project, 'test');
  const ownerTenant: Tenant = await tenancy.authenticate(owner.secret);
  assert.equal(ownerTenant.role, 'owner');
  await rejectsWith(tenancy.setKeyStatus(ownerTenant, (await tenancy.listKeys(admin, 'default'))[0].id, 'revoked'), 404, /does not exist/);
  await rejectsWith(tenancy.listKeys(ownerTenant, 'shop'), 404, /does not exist/);
  assert.deepEqual(
    (await tenancy.listProjects(ownerTenant.accountId)).map((project) => project.name),
    ['default'],
  );
});

test('the project holding the calling key cannot be deleted; deleting another removes its keys', async () => {
  const { tenancy } = setup();
  const admin = await tenancy.authenticate((await tenancy.bootstrap()).generatedAdminKey!);
  await rejectsWith(tenancy.deleteProject(admin, 'default'), 409, /holds the key/);
  await tenancy.createProject(admin.accountId, 'temp');
  const { secret } = await tenancy.generateKey(admin, { projectName: 'temp', scopes: ['id'] });
  await tenancy.deleteProject(admin, 'temp');
  await rejectsWith(tenancy.authenticate(secret), 401, /not valid/);
});

/** Two bootstraps at once, as two processes starting together on one empty store: one admin. */
async function assertOneAdmin(stores: [ControlStore, ControlStore]) {
  const results = await Promise.all(stores.map((store) => new Tenancy(store, () => ['id']).bootstrap()));
  assert.equal(results[0].adminAccountId, results[1].adminAccountId, 'both processes see the one admin account');
  const generated = results.map((result) => result.generatedAdminKey).filter((key) => key !== undefined);
  assert.equal(generated.length, 1, 'one admin key is generated, by one of them');
  const projects = await stores[0].listProjects(undefined);
  assert.equal(projects.length, 1, 'one default project');
  assert.equal(projects[0].accountId, results[0].adminAccountId);
  const keys = await stores[1].listKeys(projects[0].id);
  assert.deepEqual(keys.map((key) => key.role), ['admin']);
}

test('two bootstraps at once on one SQLite file make one admin account and one admin key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-bootstrap-'));
  const first = openSqlite(join(dir, 'alto.db'));
  const second = openSqlite(join(dir, 'alto.db'));
  try {
    await assertOneAdmin([new SqliteControlStore(first), new SqliteControlStore(second)]);
  } finally {
    first.close();
    second.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two bootstraps at once on one empty PostgreSQL database make one admin account and one admin key', async () => {
  const database = await createTestDatabase('bootstrap');
  const pools = [new pg.Pool({ connectionString: database.url, max: 4 }), new pg.Pool({ connectionString: database.url, max: 4 })];
  let stores: PostgresControlStore[] = [];
  try {
    stores = await Promise.all(pools.map((pool) => PostgresControlStore.open(pool)));
    await assertOneAdmin([stores[0], stores[1]]);
  } finally {
    for (const store of stores) await store.close();
    for (const pool of pools) await pool.end();
    await database.drop();
  }
});

test('a key found once is known at once, without the store; its revocation is seen at once', async (t) => {
  // A database file: with one in memory no other process could tell of a change, so nothing is kept.
  const dir = mkdtempSync(join(tmpdir(), 'alto-known-keys-'));
  const sqlite = openSqlite(join(dir, 'alto.db'));
  t.after(() => {
    sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const tenancy = new Tenancy(new SqliteControlStore(sqlite), () => ['id', 'db']);
  const { generatedAdminKey } = await tenancy.bootstrap();
  const admin = await tenancy.authenticate(generatedAdminKey!);
  await tenancy.createProject(admin.accountId, 'shop');
  const { secret, record } = await tenancy.generateKey(admin, { projectName: 'shop', scopes: ['id'] });
  assert.equal(tenancy.knownTenant(secret), undefined, 'not looked up yet: the store must be asked');
  const tenant = await tenancy.authenticate(secret);
  assert.equal(tenancy.knownTenant(secret), tenant, 'answered from memory, no promise');
  assert.equal(tenancy.knownTenant('alto_not-a-key-anyone-made'), undefined);
  await tenancy.setKeyStatus(admin, record.id, 'revoked');
  assert.equal(tenancy.knownTenant(secret), undefined, 'the revocation dropped what was known');
  await rejectsWith(tenancy.authenticate(secret), 401, /revoked/);
  assert.throws(() => tenancy.knownTenant(secret), /revoked/, 'a key known to be revoked is refused at once too');
});
