/**
 * Issue 20, item 10: secrets handed to apps and functions, on a real `alto up --sandbox process`.
 * A `function`-only key deploys code that gets none of the project's secrets, and cannot name
 * them (403 naming the `secret` scope); a key that may read secrets names them and the function
 * (or a source-built app) gets exactly those. The values, and the key Alto makes for a function,
 * never come back in app/Status, Get, List or Logs to an `app`-only key, nor in function views;
 * a key weaker than the one that deployed cannot update the app or function into code that
 * would print them (403, or with `secrets: []` a function that has lost them and got a key of
 * the updater's own scopes). The CLI's `--secret NAME` sends the names.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, privateSandboxCache, runCli } from '../apps-fixture.js';
import { startProcess, temporaryDataDir, type CallResult, type ServerProcess } from '../harness.js';

const PROJECT = 'vault';
const STRIPE = `sk_live_${randomBytes(12).toString('hex')}`;
const DATABASE = `postgres://u:${randomBytes(12).toString('hex')}@db/x`;

/** Answers (and logs) what it finds in its env. */
const SPY = `
export default async function spy(): Promise<Response> {
  console.log('env: ' + JSON.stringify({ stripe: process.env.STRIPE_KEY, database: process.env.DATABASE_URL, key: process.env.ALTO_KEY }));
  return Response.json({ stripe: process.env.STRIPE_KEY ?? null, database: process.env.DATABASE_URL ?? null, key: process.env.ALTO_KEY ?? null });
}
`;

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('secrets reach apps and functions only when named, by a key that may read them', () => {
  let alto: ServerProcess;
  let owner: string;
  let functionOnly: string;
  let appOnly: string;
  let withSecrets: string;
  let appWithSecrets: string;
  /** ALTO_KEY of the function the owner deploys. */
  let functionKey = '';
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const scratch = mkdtempSync(join(tmpdir(), 'alto-secrets-'));

  function assertHidden(result: CallResult, what: string): void {
    const text = JSON.stringify(result.body);
    assert.ok(!text.includes(STRIPE), `${what} shows a secret's value: ${text}`);
    assert.ok(!text.includes(DATABASE), `${what} shows a secret's value: ${text}`);
    if (functionKey) assert.ok(!text.includes(functionKey), `${what} shows the function's key: ${text}`);
  }

  before(async () => {
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host' } });
    owner = await alto.projectKey(PROJECT, ['*']);
    functionOnly = await alto.projectKey(PROJECT, ['function']);
    appOnly = await alto.projectKey(PROJECT, ['app']);
    withSecrets = await alto.projectKey(PROJECT, ['function', 'secret']);
    appWithSecrets = await alto.projectKey(PROJECT, ['app', 'secret']);
    assert.equal((await alto.call('secret', 'Set', { key: 'stripe-key', value: STRIPE }, owner)).status, 200);
    assert.equal((await alto.call('secret', 'Set', { key: 'database-url', value: DATABASE }, owner)).status, 200);
  });

  after(async () => {
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  test('a function-only key gets no secrets into its function, and may not name them', async () => {
    const named = await alto.call('function', 'Deploy', { name: 'sneaky', source: SPY, secrets: ['stripe-key'] }, functionOnly);
    assert.equal(named.status, 403, JSON.stringify(named.body));
    assert.match(named.body.detail, /"secret" scope/);
    assertHidden(named, 'the refusal');

    const plain = await alto.call('function', 'Deploy', { name: 'sneaky', source: SPY }, functionOnly);
    assert.equal(plain.status, 200, JSON.stringify(plain.body));
    const seen = await alto.call('function', 'Call', { name: 'sneaky', request: {} }, functionOnly);
    assert.equal(seen.status, 200, JSON.stringify(seen.body));
    assert.equal(seen.body.response.stripe, null);
    assert.equal(seen.body.response.database, null);
    assertHidden(seen, 'the function\'s own answer');
  });

  test('named secrets reach the function with a key that may read them; unknown names are a 400', async () => {
    const unknown = await alto.call('function', 'Deploy', { name: 'payments', source: SPY, secrets: ['nope'] }, withSecrets);
    assert.equal(unknown.status, 400, JSON.stringify(unknown.body));
    assert.match(unknown.body.detail, /"nope" is not a secret/);

    const deployed = await alto.call('function', 'Deploy', { name: 'payments', source: SPY, secrets: ['stripe-key'] }, withSecrets);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    assert.deepEqual(deployed.body.function.secrets, ['stripe-key']);
    assertHidden(deployed, 'function/Deploy');
    const seen = await alto.call('function', 'Call', { name: 'payments', request: {} }, withSecrets);
    assert.equal(seen.body.response.stripe, STRIPE);
    assert.equal(seen.body.response.database, null, 'only the secrets named');

    // The owner's function, with both: its key is what an app-only key must never see.
    const mine = await alto.call('function', 'Deploy', { name: 'billing', source: SPY, secrets: ['stripe-key', 'database-url'] }, owner);
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    const answer = await alto.call('function', 'Call', { name: 'billing', request: {} }, owner);
    assert.equal(answer.body.response.database, DATABASE);
    functionKey = answer.body.response.key;
    assert.ok(functionKey.length > 16);
  });

  test('Status, Get, List and Logs never show the values nor the function key', async () => {
    for (const name of ['billing', 'payments']) {
      const status = await alto.call('app', 'Status', { name }, appOnly);
      assert.equal(status.status, 200, JSON.stringify(status.body));
      assertHidden(status, `app/Status of ${name}`);
      assert.ok(status.body.service.hidden_env.includes('STRIPE_KEY'));
      assertHidden(await alto.call('app', 'Get', { name }, appOnly), `app/Get of ${name}`);
    }
    const billing = await alto.call('app', 'Status', { name: 'billing' }, appOnly);
    assert.deepEqual(billing.body.service.hidden_env, ['ALTO_KEY', 'DATABASE_URL', 'STRIPE_KEY']);
    assert.deepEqual(billing.body.service.secrets, ['stripe-key', 'database-url']);
    assertHidden(await alto.call('app', 'List', {}, appOnly), 'app/List');
    assertHidden(await alto.call('function', 'List', {}, functionOnly), 'function/List');
    assertHidden(await alto.call('function', 'Describe', { name: 'billing' }, functionOnly), 'function/Describe');
    // The function printed its env: the logs show the names in their place.
    const logs = await eventually(async () => {
      const result = await alto.call('app', 'Logs', { name: 'billing' }, appOnly);
      return JSON.stringify(result.body).includes('env: ') && result;
    }, 'the function\'s env line in its logs');
    assertHidden(logs, 'app/Logs');
    assert.match(logs.body.logs, /\[hidden STRIPE_KEY\]/);
    assertHidden(await alto.call('function', 'Logs', { name: 'billing' }, functionOnly), 'function/Logs');
  });

  test('a copy of the database holds neither the secrets handed to apps nor a function\'s key', () => {
    // The server keeps running: its WAL is read too, as a copy of the folder would be.
    const stored = ['alto.db', 'alto.db-wal']
      .map((name) => join(dataDir, name))
      .filter((path) => existsSync(path))
      .map((path) => readFileSync(path).toString('latin1'))
      .join('');
    assert.ok(stored.length > 0, 'the database was read');
    for (const [what, value] of [['a secret', STRIPE], ['a secret', DATABASE], ["the function's key", functionKey]]) {
      assert.ok(!stored.includes(value), `${what} is sealed at rest`);
    }
  });

  test('a weaker key cannot update code into a function or app that holds secrets', async () => {
    const asApp = await alto.call('app', 'Update', { name: 'billing', env_vars: { DEBUG: '1' } }, appOnly);
    assert.equal(asApp.status, 403, JSON.stringify(asApp.body));
    assert.match(asApp.body.detail, /"secret"/);
    assertHidden(asApp, 'the app/Update refusal');

    const asFunction = await alto.call('function', 'Update', { name: 'billing', source: SPY }, functionOnly);
    assert.equal(asFunction.status, 403, JSON.stringify(asFunction.body));
    assertHidden(asFunction, 'the function/Update refusal');

    // Dropping the secrets is allowed; the new code gets a key of the updater's own scopes.
    const dropped = await alto.call('function', 'Update', { name: 'billing', source: SPY, secrets: [] }, functionOnly);
    assert.equal(dropped.status, 200, JSON.stringify(dropped.body));
    const seen = await alto.call('function', 'Call', { name: 'billing', request: {} }, functionOnly);
    assert.equal(seen.status, 200, JSON.stringify(seen.body));
    assert.equal(seen.body.response.stripe, null);
    assert.equal(seen.body.response.database, null);
    assert.notEqual(seen.body.response.key, functionKey, 'the owner-scoped key is not handed to the new code');
    const keys = (await alto.call('keys', 'List', { project: PROJECT })).body.keys.filter((key: any) => key.description === 'function billing');
    assert.deepEqual(keys.filter((key: any) => key.status === 'active').map((key: any) => key.scopes), [['function']]);
  });

  test('app/Run with secrets: refused to an app-only key, handed to a source-built app by a key that may read them', async () => {
    const server = "require('node:http').createServer((q, r) => r.end(JSON.stringify({ stripe: process.env.STRIPE_KEY ?? null }))).listen(Number(process.env.PORT));\n";
    const files = { 'package.json': b64(JSON.stringify({ name: 'shop', main: 'server.js' })), 'server.js': b64(server) };
    const refused = await alto.call('app', 'Run', { name: 'shop', files, secrets: ['stripe-key'] }, appOnly);
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.match(refused.body.detail, /"secret" scope/);
    // Always on: Resolve's raw address reaches only a running instance (a suspended one does not answer).
    const run = await alto.call('app', 'Run', { name: 'shop', files, secrets: ['stripe-key'], min_instances: 1 }, appWithSecrets);
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assertHidden(run, 'app/Run');
    const resolved = await alto.call('app', 'Resolve', { name: 'shop' }, appWithSecrets);
    const answer = await eventually(async () => {
      const response = await fetch(resolved.body.url);
      return response.ok && ((await response.json()) as { stripe: string | null });
    }, 'the app answering');
    assert.equal(answer.stripe, STRIPE);
    assertHidden(await alto.call('app', 'Status', { name: 'shop' }, appOnly), 'app/Status of a source-built app');
  });

  test('the CLI sends --secret names', async () => {
    const folder = join(scratch, 'cli-fn');
    mkdirSync(folder);
    writeFileSync(join(folder, 'index.ts'), SPY);
    const refused = await runCli(['fn', 'deploy', folder, '--name', 'from-cli', '--secret', 'stripe-key', '--url', alto.url, '--key', functionOnly]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /"secret" scope/);
    const deployed = await runCli(['fn', 'deploy', folder, '--name', 'from-cli', '--secret', 'stripe-key', '--secret', 'database-url', '--url', alto.url, '--key', withSecrets]);
    assert.equal(deployed.code, 0, deployed.stderr);
    const described = await alto.call('function', 'Describe', { name: 'from-cli' }, withSecrets);
    assert.deepEqual(described.body.function.secrets, ['stripe-key', 'database-url']);
  });
});
