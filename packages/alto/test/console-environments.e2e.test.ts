/**
 * The console's environment picker in a real browser (Debian's chromium driven by
 * playwright-core) against a real `alto up --sandbox process`: an app deployed through the API in
 * the default environment and another in `staging` (X-Alto-Environment). The Apps page shows the
 * default environment's app only; picking `staging` shows staging's app (at its
 * `<app>.staging.<project>` address) and not the other, puts `env=staging` in the page's URL,
 * outlasts a reload and is remembered when the page is opened again without it; the app's logs
 * there are staging's (followed over app/FollowLogs with the environment in the query); the Logs
 * page lists staging's app. The Projects page shows a project's log_days and log_bytes. Saves
 * test-output/console/apps-environment.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { busyboxHttpdImage, HTTPD_PORT } from './app-images.js';
import { getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { ensureConsoleBuilt, signedInConsole, SCREENSHOTS } from './console-fixture.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

/** The admin key's project: the console signed in with it acts there. */
const PROJECT = 'default';

describe('web console: the environment picker', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let browser: Browser;
  let page: Page;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const pageErrors: string[] = [];

  /** app/Run with the admin key, in `environment` when given (X-Alto-Environment). */
  async function run(name: string, environment?: string): Promise<void> {
    const response = await fetch(`${alto.url}/v1/app/Run`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alto.adminKey}`, 'content-type': 'application/json', ...(environment ? { 'x-alto-environment': environment } : {}) },
      body: JSON.stringify({ name, image: `${registry.host}/console/httpd:v1`, port: HTTPD_PORT }),
    });
    assert.equal(response.status, 200, await response.text());
  }

  before(async () => {
    ensureConsoleBuilt();
    mkdirSync(SCREENSHOTS, { recursive: true });
    registry = await startRegistry();
    await registry.push('console/httpd', 'v1', await busyboxHttpdImage());
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    edgePort = Number(new URL(alto.url).port);
    await run('web');
    await run('api', 'staging');
    ({ browser, page } = await signedInConsole(alto.url, alto.adminKey, pageErrors));
  });

  after(async () => {
    await browser?.close();
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("the Apps page shows the picked environment's apps, the choice kept in the URL and remembered; logs and the Logs page follow it", async () => {
    const environments = await alto.call('projects', 'Environments', { name: PROJECT });
    assert.equal(environments.status, 200, JSON.stringify(environments.body));
    assert.deepEqual(environments.body, { default: 'dev', environments: ['dev', 'staging'] });

    const appsLink = page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Apps' });
    await appsLink.click();
    await page.getByRole('heading', { level: 1, name: 'Apps' }).waitFor();
    await page.locator('li[data-app="web"]').waitFor();
    assert.equal(await page.locator('li[data-app="api"]').count(), 0, "staging's app is not in the default environment's list");
    const picker = page.getByLabel('Environment', { exact: true });
    assert.equal(await picker.inputValue(), 'dev');

    await picker.selectOption('staging');
    const staging = page.locator('li[data-app="api"]');
    await staging.waitFor();
    assert.equal(await page.locator('li[data-app="web"]').count(), 0, "the default environment's app is not in staging's list");
    assert.match(page.url(), /#\/apps\?env=staging$/);
    const url = `http://api.staging.${PROJECT}.localhost:${edgePort}`;
    assert.equal(await staging.getByRole('link', { name: url }).getAttribute('href'), url);
    await page.screenshot({ path: join(SCREENSHOTS, 'apps-environment.png'), fullPage: true });

    // Its logs are staging's app's: a request to it through the edge shows in them (httpd -v).
    assert.equal((await getThroughEdge(edgePort, `api.staging.${PROJECT}.localhost`, '/')).status, 200);
    await staging.getByRole('button', { name: 'Logs' }).click();
    await staging.getByTestId('app-logs').filter({ hasText: /response:200/ }).waitFor({ timeout: 20_000 });
    await staging.getByRole('button', { name: 'Hide logs' }).click();

    // A reload keeps it (the URL), and so does opening the page again without it (remembered).
    await page.reload();
    await page.locator('li[data-app="api"]').waitFor();
    assert.equal(await page.getByLabel('Environment', { exact: true }).inputValue(), 'staging');
    await page.goto(`${alto.url}/#/`);
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Apps' }).click();
    await page.locator('li[data-app="api"]').waitFor();
    assert.equal(await page.locator('li[data-app="web"]').count(), 0);

    // The Logs page lists staging's app, not the default environment's.
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Logs' }).click();
    await page.getByRole('heading', { level: 1, name: 'Logs' }).waitFor();
    const source = page.locator('#logs-source');
    await source.locator('option[value="app:api"]').waitFor({ state: 'attached' });
    assert.equal(await source.locator('option[value="app:web"]').count(), 0);

    // Back to the default environment: its app again.
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Apps' }).click();
    await page.getByLabel('Environment', { exact: true }).selectOption('dev');
    await page.locator('li[data-app="web"]').waitFor();
    assert.equal(await page.locator('li[data-app="api"]').count(), 0);
    assert.deepEqual(pageErrors, []);
  });

  test("the Projects page shows how long and how much of its apps' logs a project keeps", async () => {
    const updated = await alto.call('projects', 'Update', { name: PROJECT, log_days: 3, log_bytes: 512 * 1024 });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Projects' }).click();
    const cell = page.locator(`tr[data-project="${PROJECT}"] td[data-app-logs]`);
    await cell.filter({ hasText: '3 days, 512 KiB' }).waitFor();
    assert.deepEqual(pageErrors, []);
  });
});
