/**
 * The console's request log page in a real browser (Debian's chromium through playwright-core)
 * against Alto in process: calls made with a project key show in the Requests page, newest
 * first, with status, path and key prefix; the status and kind filters narrow the table; a call
 * made while the page is open appears on its own (auto-refresh); a bad filter shows the API's
 * 400; the Projects page shows each project's request_log_days. Saves
 * test-output/console/requests.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { startInProcess } from './harness.js';
import { ensureConsoleBuilt, signedInConsole, SCREENSHOTS } from './console-fixture.js';

describe('web console: the request log', () => {
  let alto: Awaited<ReturnType<typeof startInProcess>>;
  let browser: Browser;
  let page: Page;
  let key: string;
  const pageErrors: string[] = [];

  const nav = (label: string) => page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: label, exact: true });
  const rows = () => page.getByTestId('requests-table').locator('tbody tr');
  /** Waits until the table shows `count` rows, every one holding `text`. */
  const tableShows = (count: number, text: string, timeout = 10_000) =>
    page.waitForFunction(
      ([count, text]) => {
        const shown = [...document.querySelectorAll('[data-testid="requests-table"] tbody tr')];
        return shown.length === count && shown.every((row) => row.textContent?.includes(text as string));
      },
      [count, text] as const,
      { timeout },
    );

  before(async () => {
    ensureConsoleBuilt();
    mkdirSync(SCREENSHOTS, { recursive: true });
    alto = await startInProcess();
    key = await alto.projectKey('shop', ['id', 'db', 'logs']);
    for (let index = 0; index < 3; index++) assert.equal((await alto.call('id', 'Generate', { type: 'uuid' }, key)).status, 200);
    assert.equal((await alto.call('db', 'Create', { table: 'items', record: { name: 'first' } }, key)).status, 200);
    assert.equal((await alto.call('id', 'Generate', { type: 'nonsense' }, key)).status, 400);
    ({ browser, page } = await signedInConsole(alto.url, alto.adminKey, pageErrors, 900));
  });

  after(async () => {
    await browser?.close();
    await alto?.close();
  });

  test('the Requests page lists calls, filters them and refreshes on its own', async () => {
    await nav('Requests').click();
    await page.getByRole('heading', { level: 1, name: 'Requests' }).waitFor();
    await page.getByLabel('Project').selectOption('shop');
    await rows().first().waitFor();
    assert.equal(await rows().count(), 5);
    const newest = rows().first();
    assert.match((await newest.textContent()) ?? '', /POST\/v1\/id\/Generate400/);
    assert.match((await newest.textContent()) ?? '', new RegExp(key.slice(0, 8)));
    assert.match((await page.getByTestId('requests-table').textContent()) ?? '', /\/v1\/db\/Create/);

    await page.getByLabel('Status').fill('4xx');
    await page.getByRole('button', { name: 'Apply' }).click();
    await tableShows(1, '400');

    await page.getByLabel('Status').fill('');
    await page.getByLabel('Path prefix').fill('/v1/db/');
    await page.getByRole('button', { name: 'Apply' }).click();
    await tableShows(1, '/v1/db/Create');

    await page.getByLabel('Path prefix').fill('');
    await page.getByRole('button', { name: 'Apply' }).click();
    await tableShows(5, 'alto_');
    // A call made now shows without pressing Refresh (auto-refresh is on by default).
    assert.equal((await alto.call('db', 'Read', { table: 'items' }, key)).status, 200);
    await tableShows(6, 'alto_', 15_000);
    assert.match((await rows().first().textContent()) ?? '', /\/v1\/db\/Read/);
    await page.screenshot({ path: join(SCREENSHOTS, 'requests.png'), fullPage: true });

    await page.getByLabel('Kind').selectOption('app');
    await page.getByText('No requests match.').waitFor();

    await page.getByLabel('Status').fill('7xx');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('alert').getByText(/status: "7xx" is neither a status/).waitFor();
    assert.deepEqual(pageErrors, []);
  });

  test('the Projects page says how many days each request log keeps', async () => {
    assert.equal((await alto.call('projects', 'Create', { name: 'quiet', request_log_days: 0 })).status, 200);
    await nav('Projects').click();
    await page.getByRole('heading', { level: 1, name: 'Projects' }).waitFor();
    const row = (name: string) => page.getByRole('row').filter({ has: page.getByRole('rowheader', { name }) });
    await row('quiet').waitFor();
    assert.match((await row('shop').textContent()) ?? '', /7 days/);
    assert.match((await row('quiet').textContent()) ?? '', /off/);
    assert.deepEqual(pageErrors, []);
  });
});
