/**
 * The console's functions flow in a real browser: Debian's chromium driven by playwright-core
 * against a real `alto up --sandbox process` (a private sandbox cache; the host's node as the
 * functions' runtime, ALTO_FUNCTIONS_NODE=host, as functions.e2e.test.ts does, so nothing is
 * downloaded). Deploys the form's own example source, sees the function ACTIVE with its address,
 * calls it from the page with a JSON body and sees its answer, sees the line it logged in its
 * runtime logs and its build in the build logs, updates its source, deletes it with the
 * confirmation; then the usage page shows the compute it ran (GB-seconds, and a row for it by
 * app). A build error shows the API's 400 first. Saves test-output/console/functions.png and
 * usage-compute.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { eventually, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { ensureConsoleBuilt, signedInConsole, SCREENSHOTS } from './console-fixture.js';

const FUNCTION = 'greeter';
/** The admin key's project: the console signed in with it deploys there. */
const PROJECT = 'default';

/** The GB-seconds the usage page's compute card shows, as a number. */
async function computeShown(page: Page): Promise<number> {
  return Number(((await page.getByTestId('usage-compute').textContent()) ?? '').replace(/[^\d.]/g, ''));
}

describe('web console: functions on the process sandbox', () => {
  let alto: ServerProcess;
  let browser: Browser;
  let page: Page;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const pageErrors: string[] = [];

  const nav = (label: string) => page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: label, exact: true });

  before(async () => {
    ensureConsoleBuilt();
    mkdirSync(SCREENSHOTS, { recursive: true });
    alto = await startProcess({
      dataDir,
      args: ['--sandbox', 'process'],
      env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_FUNCTIONS_NODE: 'host', ALTO_USAGE_FLUSH_MS: '100' },
    });
    ({ browser, page } = await signedInConsole(alto.url, alto.adminKey, pageErrors, 900));
  });

  after(async () => {
    await browser?.close();
    await alto?.close();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('deploy the example, call it, read its logs, update and delete it; usage shows its compute', async () => {
    // The usage page before: no compute yet.
    await nav('Usage').click();
    await page.getByRole('heading', { level: 1, name: 'Usage' }).waitFor();
    await page.getByTestId('usage-compute').waitFor();
    assert.equal(await computeShown(page), 0, 'no compute before any function ran');
    await page.getByText('No compute this month.').waitFor();

    await nav('Functions').click();
    await page.getByRole('heading', { level: 1, name: 'Functions' }).waitFor();
    await page.getByText('No functions yet').waitFor();
    const source = page.getByLabel('Source', { exact: true });
    const example = await source.inputValue();
    assert.match(example, /export default async function/, 'the form starts from an example handler');

    // A build error: the API's 400 names the line, and nothing is deployed.
    await page.getByLabel('Name', { exact: true }).fill(FUNCTION);
    await source.fill('export default async function (request: Request) {\n  return new Response("ok"\n}\n');
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    const refused = page.getByRole('alert').filter({ hasText: /400/ });
    await refused.waitFor({ timeout: 30_000 });
    assert.match((await refused.textContent()) ?? '', /index\.ts:3/, 'the error names the line');
    assert.deepEqual((await alto.call('function', 'List')).body.functions, []);

    // The form's own example deploys, and the function shows ACTIVE at its address.
    await source.fill(example);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    const card = page.locator(`li[data-function="${FUNCTION}"]`);
    await card.locator('.status', { hasText: 'ACTIVE' }).waitFor({ timeout: 45_000 });
    const listed = (await alto.call('function', 'List')).body.functions;
    assert.deepEqual(listed.map((fn: any) => [fn.name, fn.status, fn.runtime, fn.source]), [[FUNCTION, 'ACTIVE', 'nodejs', example]]);
    assert.equal(await card.getByRole('link', { name: listed[0].url }).getAttribute('href'), listed[0].url);
    assert.match(listed[0].url, new RegExp(`^http://${FUNCTION}\\.${PROJECT}\\.localhost:\\d+$`));
    assert.equal(await page.getByRole('alert').count(), 0, 'the earlier error went with the new deploy');
    assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), '', 'the form is cleared for the next function');

    // Call it from the page with a JSON body: its answer shows.
    await card.getByRole('button', { name: 'Call', exact: true }).click();
    await card.getByLabel('Request body (JSON)').fill('{"name": "console"}');
    await card.getByRole('button', { name: `Call ${FUNCTION}` }).click();
    const answer = card.getByTestId('function-response');
    await answer.waitFor({ timeout: 20_000 });
    assert.deepEqual(JSON.parse((await answer.textContent()) ?? ''), { hello: 'console' });
    // Not JSON: the page says so and will not send it.
    await card.getByLabel('Request body (JSON)').fill('{"name": ');
    await card.getByText(/Not valid JSON/).waitFor();
    assert.equal(await card.getByRole('button', { name: `Call ${FUNCTION}` }).isDisabled(), true);

    // Its runtime logs show the line it wrote for that call; its build logs what was built.
    await card.getByRole('button', { name: 'Logs', exact: true }).click();
    await card.getByTestId('function-logs').filter({ hasText: 'said hello to console' }).waitFor({ timeout: 20_000 });
    await page.evaluate(() => window.scrollTo(0, 0)); // the sticky top bar stays at the top of a full-page shot
    await page.screenshot({ path: join(SCREENSHOTS, 'functions.png'), fullPage: true });
    await card.getByRole('tab', { name: 'Build' }).click();
    await card.getByTestId('function-logs').filter({ hasText: /bundled index\.ts/ }).waitFor();
    await card.getByRole('button', { name: 'Hide logs' }).click();
    assert.equal(await card.getByTestId('function-logs').count(), 0);

    // A new version of its source: version 2 answers differently.
    await card.getByRole('button', { name: 'Edit source' }).click();
    const newSource = card.getByLabel('New source');
    assert.equal(await newSource.inputValue(), example, 'the editor starts from the deployed source');
    await newSource.fill(example.replace('{ hello: name }', '{ hello: name, version: 2 }'));
    await card.getByRole('button', { name: `Update ${FUNCTION}` }).click();
    await card.getByText(/· v2 ·/).waitFor({ timeout: 45_000 });
    const updated = await alto.call('function', 'Call', { name: FUNCTION, request: { name: 'v2' } });
    assert.deepEqual(updated.body.response, { hello: 'v2', version: 2 });

    // Delete from the page: it asks first, then the function is gone.
    await card.getByRole('button', { name: 'Delete', exact: true }).click();
    assert.equal((await alto.call('function', 'List')).body.functions.length, 1, 'not deleted before the confirmation');
    await card.getByRole('button', { name: `Delete ${FUNCTION}` }).click();
    await page.getByText('No functions yet').waitFor({ timeout: 30_000 });
    assert.deepEqual((await alto.call('function', 'List')).body.functions, []);

    // The usage page shows the compute it ran: GB-seconds above zero and a row for it by app.
    await nav('Usage').click();
    await page.getByRole('heading', { level: 1, name: 'Usage' }).waitFor();
    await eventually(async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.getByRole('button', { name: 'Refresh' }).waitFor();
      return (await computeShown(page)) > 0 && (await page.getByTestId('usage-compute-apps').count()) === 1;
    }, 'compute on the usage page', 15_000);
    const byApp = page.getByTestId('usage-compute-apps').locator(`li[data-name="${FUNCTION}"]`);
    assert.match((await byApp.textContent()) ?? '', /\d/, 'the function has its GB-seconds by app');
    const read = await alto.call('usage', 'Read', {});
    const rows = (read.body.compute as { app: string; mib_ms: number }[]).filter((row) => row.app === FUNCTION);
    const gbSeconds = rows.reduce((sum, row) => sum + row.mib_ms, 0) / 1_024_000;
    assert.ok(gbSeconds > 0, 'usage/Read has the function\'s compute');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(SCREENSHOTS, 'usage-compute.png'), fullPage: true });
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  });
});
