/**
 * Functions on `alto up` processes of one cloud: different ports and data folders (so different
 * image stores), one PostgreSQL database (`--store`) and one S3-compatible bucket (`--objects`,
 * s3rver), the process sandbox and the host's node (ALTO_FUNCTIONS_NODE=host). A function
 * deployed on one node is listed and described on the other, which answers a Call with 503
 * naming the node that runs it (apps stay on their node). That node, started again on a new
 * data folder (its node id kept, its images gone), builds the function again from the source
 * kept in the bucket at the next Call, its secrets read with the function's own key rather than
 * the caller's; once no node runs the function's app, another node builds and runs it. A
 * function deployed from an uploaded folder is updated without its files from the kept copy;
 * Delete and a project's deletion remove the kept sources. Needs the test services
 * (`. scripts/test-services.sh`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { privateSandboxCache } from './apps-fixture.js';
import { startS3Server, TEST_S3_CREDENTIALS, type TestS3 } from './s3-server.js';

const PROJECT = 'fn-nodes';

const GREETER = `
export default async function handle(request: Request): Promise<Response> {
  const input = request.method === 'POST' ? await request.json() : {};
  return Response.json({ got: input, greeting: process.env.GREETING ?? null, stripe: process.env.STRIPE_KEY ?? null });
}
`;

const encoded = (text: string) => Buffer.from(text).toString('base64');
const REBUILT = /function built again from its stored source/g;

describe('functions on processes sharing PostgreSQL and S3', () => {
  let database: TestDatabase;
  let s3: TestS3;
  let args: string[];
  let env: Record<string, string>;
  let first: ServerProcess;
  let second: ServerProcess;
  /** The first node started again on a new data folder. */
  let replacement: ServerProcess;
  const replacementDir = temporaryDataDir();
  /** Deploys, updates, deletes: every scope. */
  let owner: string;
  /** Only calls and lists functions: may not read secrets. */
  let caller: string;
  let projectId: string;
  const caches = [privateSandboxCache(), privateSandboxCache()];

  /** The keys the bucket holds for the project's function sources. */
  const sourceKeys = async (): Promise<string[]> => {
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `_functions/${projectId}/` }));
    return (listed.Contents ?? []).map((entry) => entry.Key!.slice(`_functions/${projectId}/`.length)).sort();
  };
  const nodeOf = (server: ServerProcess) => readFileSync(join(server.dataDir, 'node-id'), 'utf8').trim();

  before(async () => {
    database = await createTestDatabase('functions_two_nodes');
    s3 = await startS3Server('alto-functions-two-nodes');
    env = {
      ALTO_MASTER_KEY: randomBytes(32).toString('hex'),
      ALTO_ADMIN_KEY: `alto_admin_${randomBytes(16).toString('hex')}`,
      ALTO_FUNCTIONS_NODE: 'host',
      AWS_ACCESS_KEY_ID: TEST_S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TEST_S3_CREDENTIALS.secretAccessKey,
    };
    args = ['--store', database.url, '--objects', s3.objectsUrl, '--sandbox', 'process'];
    first = await startProcess({ args, env: { ...env, ALTO_SANDBOX_CACHE: caches[0].dir } });
    second = await startProcess({ args, env: { ...env, ALTO_SANDBOX_CACHE: caches[1].dir } });
    owner = await first.projectKey(PROJECT, ['*']);
    caller = await first.projectKey(PROJECT, ['function']);
    projectId = (await first.call('projects', 'List', {})).body.projects.find((project: { name: string }) => project.name === PROJECT).id;
  });

  after(async () => {
    await second?.close();
    await replacement?.close();
    await first?.close();
    for (const cache of caches) cache.remove();
    rmSync(replacementDir, { recursive: true, force: true });
    await s3?.close();
    await database?.drop();
  });

  test('deployed on one node: listed and described on the other, whose Call names the node that runs it', async () => {
    assert.equal((await first.call('secret', 'Set', { key: 'stripe-key', value: 'sk_test_nodes' }, owner)).status, 200);
    const deployed = await first.call('function', 'Deploy', { name: 'greeter', source: GREETER, env_vars: { GREETING: 'hi' }, secrets: ['stripe-key'] }, owner);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const kept = await sourceKeys();
    assert.equal(kept.length, 1, `one source archive: ${kept}`);
    assert.match(kept[0], new RegExp(`^${deployed.body.function.id}/[a-z0-9]+-[0-9a-f]{12}\\.tar\\.gz$`));
    const logs = await first.call('function', 'Logs', { name: 'greeter', logs_type: 'build' }, owner);
    assert.match(logs.body.logs, /source kept for the other processes of this cloud: 1 files/);

    const listed = await second.call('function', 'List', {}, caller);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.deepEqual(listed.body.functions.map((fn: { name: string; status: string }) => [fn.name, fn.status]), [['greeter', 'ACTIVE']]);
    const described = await second.call('function', 'Describe', { name: 'greeter' }, caller);
    assert.equal(described.body.function.source, GREETER);
    assert.deepEqual(described.body.function.env_vars, { GREETING: 'hi' });

    const elsewhere = await second.call('function', 'Call', { name: 'greeter', request: {} }, caller);
    assert.equal(elsewhere.status, 503, JSON.stringify(elsewhere.body));
    assert.match(elsewhere.body.detail, new RegExp(`runs on node ${nodeOf(first)}`));
    assert.doesNotMatch(second.stdout(), REBUILT, 'nothing was built for it on the other node');
  });

  test('the node that runs it, started again on a new data folder without its images, builds it from the kept source at the next Call', async () => {
    writeFileSync(join(replacementDir, 'node-id'), `${nodeOf(first)}\n`);
    await first.close();
    replacement = await startProcess({ dataDir: replacementDir, args, env: { ...env, ALTO_SANDBOX_CACHE: caches[0].dir } });

    // The caller may not read secrets: they are read with the function's own key.
    const called = await replacement.call('function', 'Call', { name: 'greeter', request: { from: 'replacement' } }, caller);
    assert.equal(called.status, 200, JSON.stringify(called.body));
    assert.deepEqual(called.body.response, { got: { from: 'replacement' }, greeting: 'hi', stripe: 'sk_test_nodes' });
    assert.equal(replacement.stdout().match(REBUILT)?.length, 1);
    const again = await replacement.call('function', 'Call', { name: 'greeter', request: { n: 2 } }, caller);
    assert.deepEqual(again.body.response.got, { n: 2 });
    assert.equal(replacement.stdout().match(REBUILT)?.length, 1, 'built once');
  });

  test('once no node runs its app, another node builds the function and runs it', async () => {
    assert.equal((await replacement.call('app', 'Delete', { name: 'greeter' }, owner)).status, 200);
    const called = await second.call('function', 'Call', { name: 'greeter', request: { from: 'second' } }, caller);
    assert.equal(called.status, 200, JSON.stringify(called.body));
    assert.deepEqual(called.body.response, { got: { from: 'second' }, greeting: 'hi', stripe: 'sk_test_nodes' });
    assert.equal(second.stdout().match(REBUILT)?.length, 1);
    const elsewhere = await replacement.call('function', 'Call', { name: 'greeter', request: {} }, caller);
    assert.equal(elsewhere.status, 503, 'now the second node runs it');
    assert.match(elsewhere.body.detail, new RegExp(`runs on node ${nodeOf(second)}`));
  });

  test('a function deployed from an uploaded folder is updated without its files, from the kept copy; only on its node', async () => {
    const files = {
      'package.json': encoded(JSON.stringify({ name: 'adder', main: 'handler.ts' })),
      'lib/sum.ts': encoded('export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);\n'),
      'handler.ts': encoded("import { sum } from './lib/sum';\nexport function add(input: { values: number[] }) {\n  return { total: sum(input.values), unit: process.env.UNIT ?? null };\n}\n"),
    };
    const deployed = await second.call('function', 'Deploy', { name: 'adder', files, entrypoint: 'add', env_vars: { UNIT: 'apples' } }, owner);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const archive = (await sourceKeys()).find((key) => key.startsWith(`${deployed.body.function.id}/`));

    const elsewhere = await replacement.call('function', 'Update', { name: 'adder', env_vars: { UNIT: 'pears' } }, owner);
    assert.equal(elsewhere.status, 503, JSON.stringify(elsewhere.body));
    assert.match(elsewhere.body.detail, new RegExp(`runs on node ${nodeOf(second)}`));

    const updated = await second.call('function', 'Update', { name: 'adder', env_vars: { UNIT: 'pears' } }, owner);
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    const logs = await second.call('function', 'Logs', { name: 'adder', logs_type: 'build' }, owner);
    assert.match(logs.body.logs, /source: the files source kept at the last deploy/);
    assert.deepEqual((await second.call('function', 'Call', { name: 'adder', request: { values: [1, 2, 3.5] } }, caller)).body.response, { total: 6.5, unit: 'pears' });
    assert.ok((await sourceKeys()).includes(archive!), 'the kept copy stays the function\'s source');
  });

  test('Delete removes the function\'s kept sources; deleting the project removes every one', async () => {
    const adder = (await second.call('function', 'Describe', { name: 'adder' }, owner)).body.function.id as string;
    assert.equal((await second.call('function', 'Delete', { name: 'adder' }, owner)).status, 200);
    assert.deepEqual((await sourceKeys()).filter((key) => key.startsWith(`${adder}/`)), []);
    assert.equal((await replacement.call('function', 'Describe', { name: 'adder' }, caller)).status, 404);

    assert.equal((await sourceKeys()).length, 1, 'the greeter\'s');
    assert.equal((await second.call('projects', 'Delete', { name: PROJECT })).status, 200);
    assert.deepEqual(await sourceKeys(), []);
  });
});
