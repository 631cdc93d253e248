/**
 * The console's stacks page in a real browser: Debian's chromium driven by playwright-core against
 * a real `alto up --sandbox process` (with a private sandbox cache) and a real docker-registry
 * holding the busybox httpd image the test built. Deploys a one-service compose.yaml from the
 * page's form and sees the stack's row (service, app <stack>-web, running, its address); a
 * compose.yaml asking for `privileged: true` shows the API's error naming the key and its line
 * and makes nothing; destroying the stack from the page (after its confirmation) removes it.
 * template/List, called as the admin key, checks each step. Saves
 * test-output/console/stacks-deployed.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { busyboxHttpdImage, HTTPD_PORT } from './app-images.js';
import { privateSandboxCache } from './apps-fixture.js';
import { ensureConsoleBuilt, signedInConsole, SCREENSHOTS } from './console-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const STACK = 'shop';
/** The admin key's project: the console signed in with it deploys there. */
const PROJECT = 'default';

interface ListedStack {
  name: string;
  services: { service: string; app: string; status: string; url?: string; tcp_port?: number }[];
}

describe('web console: stacks on the process sandbox', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let browser: Browser;
  let page: Page;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const pageErrors: string[] = [];

  /** The project's stacks as the API lists them. */
  async function listedStacks(): Promise<ListedStack[]> {
    const listed = await alto.call<{ stacks: ListedStack[] }>('template', 'List');
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    return listed.body.stacks;
  }

  /** Fills the deploy form and submits it. */
  async function deployFromForm(name: string, compose: string): Promise<void> {
    await page.getByLabel('Stack name', { exact: true }).fill(name);
    await page.getByLabel('compose.yaml', { exact: true }).fill(compose);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
  }

  before(async () => {
    ensureConsoleBuilt();
    mkdirSync(SCREENSHOTS, { recursive: true });
    registry = await startRegistry();
    await registry.push('console/httpd', 'v1', await busyboxHttpdImage());
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });
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

  test('deploy a template from the form and see its row; a privileged service is refused naming its line; destroy it from the page', async () => {
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Stacks' }).click();
    await page.getByRole('heading', { level: 1, name: 'Stacks' }).waitFor();
    await page.getByText('No stacks yet').waitFor();
    assert.deepEqual(await listedStacks(), []);

    // 1. A one-service compose.yaml deploys as a stack: its row names the service, its app, running, and its address.
    await deployFromForm(STACK, `services:\n  web:\n    image: ${registry.host}/console/httpd:v1\n    ports: ["${HTTPD_PORT}"]\n`);
    const rows = page.locator(`tbody[data-stack="${STACK}"]`);
    const web = rows.locator('tr[data-service="web"]');
    await web.locator('.status', { hasText: 'running' }).waitFor({ timeout: 60_000 });
    await page.getByTestId('stack-deployed').filter({ hasText: `Deployed stack ${STACK}` }).waitFor();
    assert.equal(await rows.getByRole('rowheader').textContent(), STACK);
    const cells = await web.getByRole('cell').allTextContents();
    const url = `http://${STACK}-web.${PROJECT}.localhost:${edgePort}`;
    assert.deepEqual(cells.slice(0, 4), ['web', `${STACK}-web`, 'running', url]);
    assert.equal(await web.getByRole('link', { name: url }).getAttribute('href'), url);
    assert.equal(await page.getByLabel('Stack name', { exact: true }).inputValue(), '', 'the form is cleared for the next stack');
    const deployed = await listedStacks();
    assert.deepEqual(
      deployed.map((stack) => [stack.name, stack.services.map((service) => [service.service, service.app, service.status, service.url])]),
      [[STACK, [['web', `${STACK}-web`, 'running', url]]]],
    );
    await page.screenshot({ path: join(SCREENSHOTS, 'stacks-deployed.png'), fullPage: true });

    // 2. privileged: true is refused before anything is made; the error names the key and its line.
    await deployFromForm('risky', `services:\n  web:\n    image: ${registry.host}/console/httpd:v1\n    privileged: true\n    ports: ["${HTTPD_PORT}"]\n`);
    const refused = page.getByRole('alert').filter({ hasText: /400/ });
    await refused.waitFor({ timeout: 20_000 });
    assert.match((await refused.textContent()) ?? '', /compose\.yaml line 4: services\.web\.privileged/);
    assert.equal(await page.locator('tbody[data-stack="risky"]').count(), 0);
    assert.deepEqual(await listedStacks(), deployed, 'nothing was made');

    // 3. Destroy from the page: it asks first (offering to delete the data too), then the stack is gone.
    await rows.getByRole('button', { name: 'Destroy', exact: true }).click();
    assert.equal((await listedStacks()).length, 1, 'not destroyed before the confirmation');
    await rows.getByLabel('Also delete volumes and secrets').check();
    await rows.getByRole('button', { name: `Destroy ${STACK}`, exact: true }).click();
    await page.getByText('No stacks yet').waitFor({ timeout: 30_000 });
    assert.equal(await rows.count(), 0);
    assert.deepEqual(await listedStacks(), []);
    assert.deepEqual((await alto.call('app', 'List')).body.services, [], 'its app went with it');
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  });
});
