/**
 * The console's apps flow in a real browser: Debian's chromium driven by playwright-core against
 * a real `alto up --sandbox process` (with a private sandbox cache) and a real docker-registry
 * holding the busybox httpd image the test built. Deploys from the apps page's form, sees the
 * app running and scaling to zero (the default: its instance suspended once ready), reaches it
 * through the edge by its Host (which wakes it), sees the request line httpd printed in the
 * page's logs, sees app/Run counted on the usage page, and deletes the app from the page with its
 * confirmation. First, a tag the registry lacks shows the API's error; last, "Always on" deploys
 * an app with min_instances 1 whose instance keeps running.
 * Saves test-output/console/apps-deployed.png and apps-logs.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { busyboxHttpdImage, HTTPD_PAGE, HTTPD_PORT } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { ensureConsoleBuilt, signedInConsole, SCREENSHOTS } from './console-fixture.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const APP = 'hello';
/** The admin key's project: the console signed in with it deploys there. */
const PROJECT = 'default';

/** The month's calls the usage page shows, as a number. */
async function usageCalls(page: Page): Promise<number> {
  return Number(((await page.getByTestId('usage-calls').textContent()) ?? '').replace(/\D/g, ''));
}

describe('web console: apps on the process sandbox', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let browser: Browser;
  let page: Page;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const pageErrors: string[] = [];

  before(async () => {
    ensureConsoleBuilt();
    mkdirSync(SCREENSHOTS, { recursive: true });
    registry = await startRegistry();
    await registry.push('console/httpd', 'v1', await busyboxHttpdImage());
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_USAGE_FLUSH_MS: '100' } });
    edgePort = Number(new URL(alto.url).port);
    ({ browser, page } = await signedInConsole(alto.url, alto.adminKey, pageErrors));
  });

  after(async () => {
    await browser?.close();
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('deploy from the form, see it run, reach it through the edge, read its logs, delete it; usage moves', async () => {
    // The usage page before the deploy: what it shows now is the baseline.
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Usage' }).click();
    await page.getByRole('heading', { level: 1, name: 'Usage' }).waitFor();
    await page.getByTestId('usage-calls').waitFor();
    const callsBefore = await usageCalls(page);
    assert.ok(!((await page.locator('[data-testid="usage-endpoints"]').textContent().catch(() => '')) ?? '').includes('app/Run'), 'no app/Run yet');

    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Apps' }).click();
    await page.getByRole('heading', { level: 1, name: 'Apps' }).waitFor();
    await page.getByText('No apps yet').waitFor();
    await page.getByLabel('Name', { exact: true }).fill(APP);
    await page.getByLabel('Port', { exact: true }).fill(String(HTTPD_PORT));
    // A tag the registry does not have: the API's error shows, and nothing is deployed.
    await page.getByLabel('Image', { exact: true }).fill(`${registry.host}/console/httpd:missing`);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    const refused = page.getByRole('alert').filter({ hasText: /4\d\d/ });
    await refused.waitFor({ timeout: 20_000 });
    assert.match((await refused.textContent()) ?? '', /missing/, 'the error names the image');
    assert.deepEqual((await alto.call('app', 'List')).body.services, []);

    await page.getByLabel('Image', { exact: true }).fill(`${registry.host}/console/httpd:v1`);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();

    // The app shows, running and scaling to zero: its one instance, on the process driver, suspended once ready.
    const card = page.locator(`li[data-app="${APP}"]`);
    await card.locator('.status', { hasText: 'running' }).waitFor({ timeout: 30_000 });
    await card.getByText(/1 instance \(scales to zero, max 1\)/).waitFor();
    const chip = card.locator('.chip');
    await eventually(async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      return (await chip.filter({ hasText: /suspended · process/ }).count()) === 1;
    }, 'the instance suspended on the page', 15_000);
    const listed = (await alto.call('app', 'List')).body.services;
    assert.deepEqual(listed.map((app: any) => [app.name, app.status, app.port, app.min_instances]), [[APP, 'running', HTTPD_PORT, 0]]);
    assert.ok(((await chip.first().textContent()) ?? '').includes(listed[0].instances[0].id.slice(0, 8)), 'the chip names the instance');
    const url = `http://${APP}.${PROJECT}.localhost:${edgePort}`;
    assert.equal(await card.getByRole('link', { name: url }).getAttribute('href'), url);
    assert.equal(await page.getByRole('alert').count(), 0, 'the earlier error went with the new deploy');
    assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), '', 'the form is cleared for the next app');
    await page.screenshot({ path: join(SCREENSHOTS, 'apps-deployed.png'), fullPage: true });

    // The app answers through the edge by its Host, woken by the request; httpd -v logs the request.
    const served = await getThroughEdge(edgePort, `${APP}.${PROJECT}.localhost`, '/');
    assert.equal(served.status, 200);
    assert.equal(served.body, HTTPD_PAGE);

    // Its logs, opened from the page, show the line httpd printed for that request.
    await card.getByRole('button', { name: 'Logs' }).click();
    const logs = card.getByTestId('app-logs');
    await logs.filter({ hasText: /response:200/ }).waitFor({ timeout: 20_000 });
    await page.screenshot({ path: join(SCREENSHOTS, 'apps-logs.png'), fullPage: true });
    await card.getByRole('button', { name: 'Hide logs' }).click();
    assert.equal(await card.getByTestId('app-logs').count(), 0);

    // The usage page counts the deploy.
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Usage' }).click();
    await page.getByRole('heading', { level: 1, name: 'Usage' }).waitFor();
    await eventually(async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.getByRole('button', { name: 'Refresh' }).waitFor();
      const endpoints = (await page.getByTestId('usage-endpoints').textContent()) ?? '';
      return endpoints.includes('app/Run') && (await usageCalls(page)) > callsBefore;
    }, 'app/Run on the usage page', 15_000);

    // Delete from the page: it asks first, then the app is gone, from the page and the edge.
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Apps' }).click();
    await card.waitFor();
    await card.getByRole('button', { name: 'Delete', exact: true }).click();
    assert.equal((await alto.call('app', 'List')).body.services.length, 1, 'not deleted before the confirmation');
    await card.getByRole('button', { name: `Delete ${APP}` }).click();
    await page.getByText('No apps yet').waitFor();
    assert.deepEqual((await alto.call('app', 'List')).body.services, []);
    await eventually(async () => (await getThroughEdge(edgePort, `${APP}.${PROJECT}.localhost`, '/')).status === 404, 'the edge to stop serving the app');

    // "Always on" asks for min_instances 1: the instance keeps running.
    await page.getByLabel('Name', { exact: true }).fill('steady');
    await page.getByLabel('Image', { exact: true }).fill(`${registry.host}/console/httpd:v1`);
    await page.getByLabel('Port', { exact: true }).fill(String(HTTPD_PORT));
    await page.getByLabel('Always on').check();
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    const steady = page.locator('li[data-app="steady"]');
    await steady.getByText(/1 instance \(always on, min 1, max 1\)/).waitFor({ timeout: 30_000 });
    await steady.locator('.chip').filter({ hasText: /running · process/ }).waitFor();
    assert.equal(await page.getByLabel('Always on').isChecked(), false, 'the form is cleared for the next app');
    const steadyStatus = (await alto.call('app', 'Status', { name: 'steady' })).body.service;
    assert.equal(steadyStatus.min_instances, 1);
    assert.deepEqual(steadyStatus.slots.map((slot: any) => slot.state), ['running']);
    assert.equal((await alto.call('app', 'Delete', { name: 'steady' })).status, 200);
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  });
});
