/**
 * The console's logs page in a real browser: Debian's chromium driven by playwright-core against
 * a real `alto up --sandbox process` and a real docker-registry holding the busybox httpd image
 * (`httpd -v` writes a line to stderr for each request it answers). An app runs the image; the
 * page, opened from the navigation and the app picked, shows its lines with time, stream and
 * instance; filtering by text and by stream narrows them; with Follow on, a request made to the
 * app after the page loaded shows its new line without a reload; Follow off, or leaving the
 * page, closes the stream. A second app built from a Dockerfile shows its last build's log on the page; after a
 * restart of Alto, `alto logs NAME --build` still prints that log from disk.
 * Saves test-output/console/logs.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { busyboxHttpdImage, HTTPD_PORT } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { ensureConsoleBuilt, signedInConsole, SCREENSHOTS } from './console-fixture.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';

const APP = 'talker';
const BUILT = 'built';
/** The admin key's project: the console signed in with it reads there. */
const PROJECT = 'default';

describe('web console: logs of an app, filtered and followed; build logs kept on disk', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let browser: Browser;
  let page: Page;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const pageErrors: string[] = [];
  const start = () => startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir } });

  before(async () => {
    ensureConsoleBuilt();
    mkdirSync(SCREENSHOTS, { recursive: true });
    registry = await startRegistry();
    await registry.push('console/httpd', 'v1', await busyboxHttpdImage());
    alto = await start();
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

  const rows = () => page.getByTestId('log-lines').locator('tbody tr');
  const rowTexts = async () => (await rows().allTextContents()).join('\n');

  test('the lines with time, stream and instance; filters by text and stream; follow shows a new line live', async () => {
    const run = await alto.call('app', 'Run', { name: APP, image: `${registry.host}/console/httpd:v1`, port: HTTPD_PORT, min_instances: 1 });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const instance: string = run.body.service.instances[0].id;
    assert.equal((await getThroughEdge(edgePort, `${APP}.${PROJECT}.localhost`, '/')).status, 200);
    // httpd's line for that request is on disk before the page reads.
    await eventually(async () => (await alto.call('app', 'Logs', { name: APP, grep: 'response:200' })).body.lines.length > 0, 'the request line in the log');

    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Logs' }).click();
    await page.getByRole('heading', { level: 1, name: 'Logs' }).waitFor();
    await page.locator('#logs-source').selectOption(`app:${APP}`);
    await page.getByRole('heading', { name: `Output of ${APP}` }).waitFor();
    await rows().filter({ hasText: 'response:200' }).first().waitFor();

    // Each line shows its stream and its instance; Alto's own lines are the system stream.
    const requestRow = rows().filter({ hasText: 'response:200' }).first();
    assert.equal(await requestRow.getAttribute('data-stream'), 'stderr');
    assert.match((await requestRow.locator('td').nth(1).textContent()) ?? '', /stderr/);
    assert.equal(await requestRow.locator('td').nth(2).textContent(), instance.slice(0, 8));
    assert.match((await requestRow.locator('td').nth(0).textContent()) ?? '', /\d{2}:\d{2}:\d{2}\.\d{3}/);
    assert.ok((await rows().and(page.locator('[data-stream="system"]')).count()) > 0, "Alto's lines about the app show too");

    // By text: only the lines holding it.
    await page.locator('#logs-grep').fill('response:200');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => (await rows().count()) > 0 && (await rows().filter({ hasNotText: 'response:200' }).count()) === 0, 'only lines holding the text');

    // By stream: Alto's own lines only.
    await page.locator('#logs-grep').fill('');
    await page.locator('#logs-stream').selectOption('system');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => {
      const streams = await rows().evaluateAll((elements) => elements.map((element) => element.getAttribute('data-stream')));
      return streams.length > 0 && streams.every((stream) => stream === 'system');
    }, 'only system lines');
    assert.doesNotMatch(await rowTexts(), /response:200/);

    // A time range that holds nothing yet (from an hour on): no lines.
    await page.locator('#logs-stream').selectOption('');
    await page.locator('#logs-since').fill(new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'));
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByText('No lines match.').waitFor();
    await page.getByRole('button', { name: 'Clear' }).click();
    await rows().filter({ hasText: 'response:200' }).first().waitFor();

    // Follow: a request made now shows its line without a reload.
    const followSocket = () => page.waitForEvent('websocket', { predicate: (socket) => socket.url().includes('/v1/app/FollowLogs') });
    let socket = followSocket();
    await page.getByRole('switch', { name: 'Follow' }).check();
    const firstSocket = await socket;
    await page.getByTestId('follow-status').filter({ hasText: 'following new lines' }).waitFor();
    await rows().filter({ hasText: 'response:200' }).first().waitFor();
    assert.equal(await rows().filter({ hasText: 'response:404' }).count(), 0, 'no 404 before the request');
    assert.equal((await getThroughEdge(edgePort, `${APP}.${PROJECT}.localhost`, '/no-such-page')).status, 404);
    await rows().filter({ hasText: 'response:404' }).first().waitFor({ timeout: 20_000 });
    await page.screenshot({ path: join(SCREENSHOTS, 'logs.png'), fullPage: true });

    // Follow off closes the stream: the page reads the lines on disk again.
    await page.getByRole('switch', { name: 'Follow' }).uncheck();
    if (!firstSocket.isClosed()) await firstSocket.waitForEvent('close');
    await page.getByTestId('follow-status').filter({ hasText: 'not following' }).waitFor();
    await rows().filter({ hasText: 'response:404' }).first().waitFor();

    // Leaving the page closes the stream too.
    socket = followSocket();
    await page.getByRole('switch', { name: 'Follow' }).check();
    const secondSocket = await socket;
    await page.getByTestId('follow-status').filter({ hasText: 'following new lines' }).waitFor();
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    if (!secondSocket.isClosed()) await secondSocket.waitForEvent('close');
    await page.goBack();
    await page.getByRole('heading', { name: `Output of ${APP}` }).waitFor();
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  });

  test("an app built from a Dockerfile shows its last build's log; after a restart alto logs --build still prints it", async () => {
    const dockerfile = `FROM ${registry.host}/console/httpd:v1\nRUN echo build-step-marker > /www/marker.txt\n`;
    const built = await alto.call('app', 'Run', { name: BUILT, port: HTTPD_PORT, files: { Dockerfile: Buffer.from(dockerfile).toString('base64') } });
    assert.equal(built.status, 200, JSON.stringify(built.body));

    // An app run from an image has no build log.
    const buildSection = page.getByRole('region', { name: /Last build/ });
    await buildSection.getByRole('button', { name: 'Show build log' }).click();
    await buildSection.getByText(`No build log: ${APP} runs an image`).waitFor();

    // From the app's card on the Apps page to its logs.
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Apps' }).click();
    const card = page.locator(`li[data-app="${BUILT}"]`);
    await card.getByRole('button', { name: 'Logs' }).click();
    await card.getByRole('link', { name: /on the Logs page/ }).click();
    await page.getByRole('heading', { name: `Output of ${BUILT}` }).waitFor();
    assert.equal(await page.locator('#logs-source').inputValue(), `app:${BUILT}`);
    await buildSection.getByRole('button', { name: 'Show build log' }).click();
    const log = buildSection.getByTestId('build-log');
    await log.filter({ hasText: 'build-step-marker' }).waitFor();
    await buildSection.locator('.status', { hasText: 'succeeded' }).waitFor();
    assert.match((await log.textContent()) ?? '', /built builds\.alto\.internal\//);

    // Alto restarts: the build's log is read from disk.
    await alto.close();
    alto = await start();
    const printed = await runCli(['logs', BUILT, '--build', '--url', alto.url, '--key', alto.adminKey]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /RUN echo build-step-marker/);
    assert.match(printed.stdout, /built builds\.alto\.internal\//);
    const none = await runCli(['logs', APP, '--build', '--url', alto.url, '--key', alto.adminKey]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /no build log/);
  });
});
