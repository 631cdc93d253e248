/**
 * Metering and the price list end to end: usage totals equal the calls made after a clean
 * shutdown (the shutdown flush, not the timer, writes them), usage/Read filters, usage/Summary's
 * cost, usage/Prices serving the operator's edited prices.json, and `alto usage` in the CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CLI_ENTRY, startInProcess, startProcess, temporaryDataDir, type TestAlto } from './harness.js';

const run = promisify(execFile);
const today = new Date().toISOString().slice(0, 10);

test('usage totals match the calls made, exactly, after a clean shutdown flushed them', async () => {
  const dataDir = temporaryDataDir();
  // An hour between timed writes: only the shutdown flush can write these records.
  const server = await startProcess({ dataDir, env: { ALTO_USAGE_FLUSH_MS: '3600000' } });
  let projectKey: string;
  let keyId: string;
  try {
    await server.call('projects', 'Create', { name: 'metered' });
    const generated = await server.call('keys', 'Generate', { project: 'metered', scopes: ['id', 'db'] });
    projectKey = generated.body.key;
    keyId = generated.body.info.id;
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 7; i++) calls.push(server.call('id', 'Generate', { type: 'uuid' }, projectKey));
    for (let i = 0; i < 3; i++) calls.push(server.call('db', 'Create', { table: 'things', record: { n: i } }, projectKey));
    calls.push(server.call('id', 'Generate', { type: 'nope' }, projectKey)); // 400
    calls.push(server.call('cache', 'Get', { key: 'x' }, projectKey)); // 403: not in the key's scopes
    const answers = (await Promise.all(calls)) as { status: number }[];
    assert.deepEqual(answers.map((answer) => answer.status).sort(), [...Array(10).fill(200), 400, 403].sort());
  } finally {
    assert.equal(await server.stop('SIGTERM'), 0, server.stderr());
  }

  const restarted = await startProcess({ dataDir });
  try {
    const summary = await restarted.call('usage', 'Summary', { project: 'metered' });
    assert.equal(summary.status, 200, JSON.stringify(summary.body));
    assert.equal(summary.body.calls, 12, 'every call, refused ones too');
    assert.equal(summary.body.errors, 2);
    assert.equal(summary.body.requests_micros, 10, 'ten successful calls at 1 micro-unit each; failures are free');
    assert.equal(summary.body.due, '0.000010');
    assert.deepEqual(
      summary.body.endpoints.map((row: any) => [row.service, row.endpoint, row.calls, row.errors, row.price_micros]),
      [
        ['cache', 'Get', 1, 1, 0],
        ['db', 'Create', 3, 0, 3],
        ['id', 'Generate', 8, 1, 7],
      ],
    );

    const byService = await restarted.call('usage', 'Read', { project: 'metered', service: 'db' });
    assert.equal(byService.status, 200);
    assert.deepEqual(byService.body.usage, [
      { day: today, key: keyId!, service: 'db', endpoint: 'Create', calls: 3, errors: 0, bytes_in: byService.body.usage[0].bytes_in, bytes_out: byService.body.usage[0].bytes_out, price_micros: 3 },
    ]);
    assert.ok(byService.body.usage[0].bytes_in > 0 && byService.body.usage[0].bytes_out > 0);
    const byKey = await restarted.call('usage', 'Read', { project: 'metered', key: keyId!, from: today, to: today });
    assert.equal(byKey.body.usage.reduce((sum: number, row: any) => sum + row.calls, 0), 12);
    const byEndpoint = await restarted.call('usage', 'Read', { project: 'metered', service: 'id', endpoint: 'Generate' });
    assert.equal(byEndpoint.body.usage[0].calls, 8);
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    assert.deepEqual((await restarted.call('usage', 'Read', { project: 'metered', from: yesterday, to: yesterday })).body.usage, []);

    // A project key reads its own project's usage, not another's.
    const own = await restarted.call('usage', 'Summary', {}, projectKey!);
    assert.equal(own.status, 403, 'the key is scoped to id and db, not usage');
    const wide = (await restarted.call('keys', 'Generate', { project: 'metered', scopes: ['*'] })).body.key;
    assert.equal((await restarted.call('usage', 'Summary', {}, wide)).body.project, 'metered');
    const other = await restarted.call('usage', 'Summary', { project: 'default' }, wide);
    assert.equal(other.status, 403);
    assert.match(other.body.detail, /a project key reads only its own project's usage/);
  } finally {
    await restarted.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('the price list', () => {
  let alto: TestAlto;
  before(async () => {
    alto = await startInProcess();
  });
  after(() => alto.close());

  test('prices.json is written on first start from the services, in integer micro-units', () => {
    const file = JSON.parse(readFileSync(join(alto.dataDir, 'prices.json'), 'utf8'));
    assert.equal(file.currency, 'USD');
    assert.equal(file.requests.id.Generate, 1);
    assert.equal(file.requests.url.Shorten, 10);
    assert.equal(file.requests.usage.Summary, 0);
    assert.ok(Number.isInteger(file.compute.gb_second_micros) && file.compute.gb_second_micros > 0);
    assert.equal(file.free_tier.limits.rate_limit, 0);
  });

  test('usage/Prices serves the edited file without a key, and calls are charged at the new price', async () => {
    const path = join(alto.dataDir, 'prices.json');
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.requests.id.Generate = 7;
    file.compute.gb_second_micros = 20;
    file.free_tier.monthly_credit_micros = 5;
    file.free_tier.limits.db_rows = 1000;
    writeFileSync(path, JSON.stringify(file, null, 2));

    const prices = await alto.call('usage', 'Prices', {}, null);
    assert.equal(prices.status, 200, JSON.stringify(prices.body));
    const generate = prices.body.requests.find((row: any) => row.service === 'id' && row.endpoint === 'Generate');
    assert.deepEqual(generate, { service: 'id', endpoint: 'Generate', price_micros: 7, price: '0.000007' });
    assert.deepEqual(prices.body.compute, { gb_second_micros: 20, request_micros: 0 });
    assert.equal(prices.body.free_tier.monthly_credit_micros, 5);
    assert.equal(prices.body.free_tier.limits.db_rows, 1000);

    const key = await alto.projectKey('priced');
    for (let i = 0; i < 3; i++) assert.equal((await alto.call('id', 'Generate', {}, key)).status, 200);
    const summary = await alto.call('usage', 'Summary', { project: 'priced' });
    assert.equal(summary.body.requests_micros, 21);
    assert.equal(summary.body.free_credit_micros, 5);
    assert.equal(summary.body.due_micros, 16);
    assert.equal(summary.body.limits.db_rows, 1000, 'the free tier applies to a project without limits of its own');

    // A broken edit is refused; the last good list stays in force.
    writeFileSync(path, JSON.stringify({ ...file, requests: { id: { Generate: 0.5 } } }));
    const after = await alto.call('usage', 'Prices', {}, null);
    assert.equal(after.body.requests.find((row: any) => row.service === 'id' && row.endpoint === 'Generate').price_micros, 7);
    writeFileSync(path, JSON.stringify(file, null, 2));
  });

  test('alto usage, alto usage read and alto usage prices', async () => {
    const key = await alto.projectKey('cli-usage', ['*']);
    await alto.call('id', 'Generate', {}, key);
    const env = { ...process.env, NO_COLOR: '1', ALTO_CONFIG: join(alto.dataDir, 'no-config.json') };
    const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args, '--url', alto.url, '--key', key], { env });

    const summary = JSON.parse((await cli(['usage', '--json'])).stdout);
    assert.equal(summary.project, 'cli-usage');
    assert.equal(summary.endpoints.find((row: any) => row.service === 'id').calls, 1);
    // `summary` is the default subcommand; piped output is JSON for scripts.
    const explicit = JSON.parse((await cli(['usage', 'summary', '--month', summary.month])).stdout);
    assert.equal(explicit.month, summary.month);

    const read = JSON.parse((await cli(['usage', 'read', '--service', 'id', '--json'])).stdout);
    assert.equal(read.usage[0].calls, 1);
    const prices = JSON.parse((await cli(['usage', 'prices', '--json'])).stdout);
    assert.ok(prices.requests.some((row: any) => row.service === 'db'));

    const updated = await run(
      process.execPath,
      ['--import', 'tsx', CLI_ENTRY, 'projects', 'update', 'cli-usage', '--rate-limit', '50', '--monthly-quota', 'none', '--json', '--url', alto.url, '--key', alto.adminKey],
      { env },
    );
    assert.equal(JSON.parse(updated.stdout).project.limits.rate_limit, 50);
  });
});
