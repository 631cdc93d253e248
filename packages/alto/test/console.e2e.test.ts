/**
 * The web console in a real browser: Debian's chromium driven by playwright-core against an
 * Alto started by the harness, which serves the built console at `/`. Walks what a new user
 * does: sign in with the admin key, create a project, generate a key and see it once, run
 * id/Generate and db/Create from the API explorer, page through a table, upload and download
 * in space, tail an event, see the calls on the usage page; then a phone-sized screen and the
 * dark theme. Saves a screenshot of each main page to test-output/console/<page>.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ALTO_ROOT, startInProcess, type TestAlto } from './harness.js';
import { chromiumPath, ensureConsoleBuilt, SCREENSHOTS } from './console-fixture.js';

const REPO_ROOT = join(ALTO_ROOT, '..', '..');

/** Retries `check` until it stops throwing, or throws its last error after the deadline. */
async function eventually<T>(check: () => Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent()) ?? '';
}

async function screenshot(page: Page, name: string, fullPage = true): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage });
}

/** Goes to a hash route and waits for the page's heading. */
async function open(page: Page, alto: TestAlto, route: string, heading: string): Promise<void> {
  await page.goto(`${alto.url}/#${route}`);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

describe('web console', () => {
  let alto: TestAlto;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  before(async () => {
    ensureConsoleBuilt();
    mkdirSync(SCREENSHOTS, { recursive: true });
    alto = await startInProcess();
    const home = await fetch(`${alto.url}/`, { headers: { accept: 'text/html' } });
    await home.arrayBuffer();
    if (!(home.headers.get('content-type') ?? '').startsWith('text/html')) {
      throw new Error('the edge does not serve the console at /: edge/server.ts must call createConsole(log) and webConsole.handle() in its router');
    }
    browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light', acceptDownloads: true });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
  });

  after(async () => {
    await browser?.close();
    await alto?.close();
  });

  test('the edge serves the console to browsers and keeps JSON for API clients', async () => {
    const html = await fetch(`${alto.url}/`, { headers: { accept: 'text/html,application/xhtml+xml' } });
    assert.equal(html.status, 200);
    assert.match(html.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(html.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const page = await html.text();
    assert.match(page, /<div id="root">/);

    const json = await fetch(`${alto.url}/`, { headers: { accept: 'application/json' } });
    assert.match(json.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal((await json.json()).name, 'alto');

    const script = /src="(\/assets\/[^"]+\.js)"/.exec(page)?.[1];
    assert.ok(script, 'index.html names its script');
    const asset = await fetch(`${alto.url}${script}`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match(asset.headers.get('cache-control') ?? '', /immutable/);
    await asset.arrayBuffer();

    const favicon = await fetch(`${alto.url}/favicon.svg`);
    assert.equal(favicon.headers.get('content-type'), 'image/svg+xml');
    await favicon.arrayBuffer();

    for (const escape of ['/assets/..%2F..%2Fpackage.json', '/assets/missing.js']) {
      const refused = await fetch(`${alto.url}${escape}`);
      assert.equal(refused.status, 404, escape);
      assert.equal((await refused.json()).id, 'not_found');
    }
  });

  test('sign in with the admin key, and a wrong key shows the API\'s error', async () => {
    await page.goto(alto.url);
    await page.getByLabel('API key', { exact: true }).fill('alto_not_a_real_key_000000000000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: '401' }).waitFor();
    await screenshot(page, 'sign-in');

    await page.getByLabel('API key', { exact: true }).fill(alto.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    assert.equal(await text(page, '.whoami .badge'), 'admin');
    assert.match(await text(page, '.whoami-project'), /default/);
    await screenshot(page, 'overview');

    // The key survives a reload (localStorage), and Apps shows only with the app service.
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    const services: string[] = (await (await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).json()).services;
    const nav = page.getByRole('navigation', { name: 'Console' });
    assert.equal(await nav.getByRole('link', { name: 'Apps' }).count(), services.includes('app') ? 1 : 0);
  });

  test('create a project with limits, then generate a scoped key that is shown once', async () => {
    await open(page, alto, '/projects', 'Projects');
    await page.getByLabel('Name', { exact: true }).fill('shop');
    await page.getByLabel('Rate limit (requests/s)', { exact: true }).fill('50');
    await page.getByLabel('Monthly quota (requests)', { exact: true }).fill('100000');
    await page.getByRole('button', { name: 'Create project' }).click();
    const row = page.locator('tr[data-project="shop"]');
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /50\/s/);
    const listed = await alto.call('projects', 'List');
    const shop = listed.body.projects.find((project: any) => project.name === 'shop');
    assert.deepEqual([shop.limits.rate_limit, shop.limits.monthly_quota], [50, 100000]);
    await screenshot(page, 'projects');

    await row.getByRole('link', { name: 'shop' }).click();
    await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor();
    await page.getByLabel('Environment', { exact: true }).fill('prod');
    await page.getByLabel('Description', { exact: true }).fill('checkout server');
    await page.getByLabel('All services').uncheck();
    await page.getByRole('checkbox', { name: 'id', exact: true }).check();
    await page.getByRole('checkbox', { name: 'db', exact: true }).check();
    await page.getByRole('button', { name: 'Generate key' }).click();
    const shown = page.getByTestId('new-key');
    await shown.waitFor();
    const key = ((await shown.textContent()) ?? '').trim();
    assert.match(key, /^alto_/);
    assert.match((await page.locator('.new-key').textContent()) ?? '', /you will not see it again/);
    await page.locator('tr', { hasText: 'checkout server' }).waitFor();
    await screenshot(page, 'keys');

    // The key is real, scoped as chosen, and in the environment given.
    assert.equal((await alto.call('id', 'Generate', { type: 'ulid' }, key)).status, 200);
    assert.equal((await alto.call('cache', 'Get', { key: 'x' }, key)).status, 403);
    const keys = await alto.call('keys', 'List', { project: 'shop' });
    assert.deepEqual(
      keys.body.keys.map((info: any) => [info.environment, info.scopes.sort(), info.description]),
      [['prod', ['db', 'id'], 'checkout server']],
    );

    // Once dismissed, the page no longer holds the key.
    await page.getByRole('button', { name: 'I have stored it' }).click();
    assert.equal(await page.getByTestId('new-key').count(), 0);
    assert.ok(!((await page.content()).includes(key)), 'the key is gone from the page');

    // Block from the list: the key is refused until unblocked.
    await page.locator('tr', { hasText: 'checkout server' }).getByRole('button', { name: 'Block' }).click();
    await page.locator('tr', { hasText: 'checkout server' }).getByText('blocked', { exact: true }).waitFor();
    assert.equal((await alto.call('id', 'Generate', {}, key)).status, 403);
  });

  test('the API explorer runs id/Generate and db/Create and shows curl, SDK and CLI', async () => {
    await open(page, alto, '/explorer?service=id&endpoint=Generate', 'API explorer');
    const editor = page.getByLabel('Request (JSON)', { exact: true });
    assert.deepEqual(JSON.parse(await editor.inputValue()), { type: 'uuid' }, 'prefilled with the example');
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await page.getByTestId('response-status').waitFor();
    assert.equal(await text(page, '[data-testid="response-status"]'), '200');
    assert.match(await text(page, '[data-testid="response-time"]'), /\d+ ms/);
    const generated = JSON.parse(await text(page, '[data-testid="response-body"]'));
    assert.match(generated.id, /^[0-9a-f-]{36}$/);
    assert.match(await text(page, '[data-testid="snippet"]'), /curl .*\/v1\/id\/Generate[\s\S]*-d '\{"type":"uuid"\}'/);
    await page.getByRole('tab', { name: 'SDK' }).click();
    assert.match(await text(page, '[data-testid="snippet"]'), /await alto\.id\.generate\(\{\s+"type": "uuid"\s+\}\)/);
    await page.getByRole('tab', { name: 'CLI' }).click();
    assert.equal(await text(page, '[data-testid="snippet"]'), `npx alto call id Generate '{"type":"uuid"}'`);

    // Find db/Create by searching, then run it with an edited request.
    await page.getByLabel('Search endpoints', { exact: true }).fill('db/cre');
    await page.locator('.endpoint-groups').getByRole('link', { name: 'Create', exact: true }).click();
    await page.getByRole('heading', { name: 'db/Create' }).waitFor();
    await page.getByLabel('Request (JSON)', { exact: true }).fill(JSON.stringify({ table: 'people', record: { name: 'P00', n: 0 } }));
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await eventually(async () => assert.equal(await text(page, '[data-testid="response-status"]'), '200'), 'db/Create to answer');
    const created = JSON.parse(await text(page, '[data-testid="response-body"]'));
    assert.ok(created.id, 'db/Create returns the id');
    await screenshot(page, 'explorer');

    // A stream endpoint runs over a websocket: id/Stream's example asks for three ids.
    await open(page, alto, '/explorer?service=id&endpoint=Stream', 'API explorer');
    await page.getByRole('heading', { name: 'id/Stream' }).waitFor();
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await page.getByText(/3 messages, stream closed/).waitFor();
    const streamed = (await text(page, '[data-testid="response-body"]')).split('\n').map((line) => JSON.parse(line));
    assert.equal(streamed.length, 3);
    assert.ok(streamed.every((message) => typeof message.id === 'string' && message.id.length === 26), JSON.stringify(streamed));
    await page.getByRole('tab', { name: 'SDK' }).click();
    assert.match(await text(page, '[data-testid="snippet"]'), /for await \(const message of alto\.id\.stream\(/);

    // An error comes back as the API gave it, detail and all.
    await open(page, alto, '/explorer?service=db&endpoint=Create', 'API explorer');
    await page.getByRole('heading', { name: 'db/Create' }).waitFor();
    await page.getByLabel('Request (JSON)', { exact: true }).fill(JSON.stringify({ table: 5 }));
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await eventually(async () => assert.equal(await text(page, '[data-testid="response-status"]'), '400'), 'the 400');
    assert.match(await text(page, '[data-testid="response-body"]'), /"detail": "table: /);
  });

  test('the db browser lists tables, pages through rows, queries, and deletes a row', async () => {
    const more = Array.from({ length: 29 }, (_, index) => ({ name: `P${String(index + 1).padStart(2, '0')}`, n: index + 1 }));
    assert.equal((await alto.call('db', 'Create', { table: 'people', record: more })).status, 200);

    await open(page, alto, '/db?table=people', 'Database');
    await page.locator('.table-list').getByRole('link', { name: 'people' }).waitFor();
    await eventually(async () => assert.equal(await text(page, '[data-testid="page-range"]'), '1–25 of 30'), 'the first page');
    assert.equal(await page.locator('tr[data-row-id]').count(), 25);
    await screenshot(page, 'db');
    await page.getByRole('button', { name: 'Next' }).click();
    await eventually(async () => assert.equal(await text(page, '[data-testid="page-range"]'), '26–30 of 30'), 'the second page');
    assert.equal(await page.locator('tr[data-row-id]').count(), 5);

    await page.getByLabel('Query', { exact: true }).fill('n >= 28');
    await page.getByRole('button', { name: 'Query', exact: true }).click();
    await eventually(async () => assert.equal(await text(page, '[data-testid="page-range"]'), '1–2 of 2'), 'the query');
    const names = await page.locator('tr[data-row-id]').allTextContents();
    assert.ok(names.some((row) => row.includes('P28')) && names.some((row) => row.includes('P29')), names.join(' | '));

    const target = page.locator('tr[data-row-id]', { hasText: 'P29' });
    await target.getByRole('button', { name: 'Delete' }).click();
    await target.getByRole('button', { name: 'Delete row' }).click();
    await eventually(async () => assert.equal(await text(page, '[data-testid="page-range"]'), '1–1 of 1'), 'the row to go');
    assert.equal((await alto.call('db', 'Count', { table: 'people' })).body.count, 29);

    // Edit a row as JSON: the fields given change, the others stay.
    const p28 = page.locator('tr[data-row-id]', { hasText: 'P28' });
    const p28Id = await p28.getAttribute('data-row-id');
    await p28.getByRole('button', { name: /^Edit/ }).click();
    await page.getByRole('form', { name: /^Edit row/ }).getByRole('textbox').fill('{"n": 280, "city": "Paris"}');
    await page.getByRole('button', { name: 'Save row' }).click();
    await page.locator('tr[data-row-id]', { hasText: 'Paris' }).waitFor();
    const edited = await alto.call('db', 'Read', { table: 'people', id: p28Id });
    assert.deepEqual([edited.body.records[0].name, edited.body.records[0].n, edited.body.records[0].city], ['P28', 280, 'Paris']);

    // A new table starts with its first row.
    await page.getByRole('button', { name: 'New table' }).click();
    await page.getByLabel('Table name', { exact: true }).fill('notes');
    await page.getByLabel('First row (JSON object)', { exact: true }).fill('{"text": "first note"}');
    await page.getByRole('button', { name: 'Create table' }).click();
    await page.getByRole('heading', { name: 'notes' }).waitFor();
    await eventually(async () => assert.equal(await text(page, '[data-testid="page-range"]'), '1–1 of 1'), 'the first row');
    assert.deepEqual((await alto.call('db', 'ListTables')).body.tables.sort(), ['notes', 'people']);
  });

  test('space: upload a file through a presigned URL, see it listed, download it', async () => {
    await open(page, alto, '/space', 'Space');
    const content = `hello from the console ${Date.now()}\n`;
    await page.locator('#upload-file').setInputFiles({ name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from(content) });
    const row = page.locator('tr[data-object="hello.txt"]');
    await row.waitFor();
    const head = await alto.call('space', 'Head', { name: 'hello.txt' });
    assert.equal(head.status, 200, JSON.stringify(head.body));
    await screenshot(page, 'space');

    const [download] = await Promise.all([page.waitForEvent('download'), row.getByRole('button', { name: /Download/ }).click()]);
    const path = await download.path();
    assert.equal(readFileSync(path, 'utf8'), content);

    // A folder: open it, upload into it, and see it as a folder from the top.
    await page.getByLabel('Folder name', { exact: true }).fill('docs');
    await page.getByRole('button', { name: 'Open folder' }).click();
    await page.getByText('This folder is empty').waitFor();
    await page.locator('#upload-file').setInputFiles({ name: 'notes.md', mimeType: 'text/markdown', buffer: Buffer.from('# notes\n') });
    await page.locator('tr[data-object="docs/notes.md"]').waitFor();
    await page.getByRole('navigation', { name: 'Folder' }).getByRole('link', { name: 'space' }).click();
    await page.getByRole('link', { name: 'docs/' }).waitFor();
    assert.equal((await alto.call('space', 'Head', { name: 'docs/notes.md' })).status, 200);
  });

  test('events: a message published from the form arrives in the live tail', async () => {
    await open(page, alto, '/events', 'Events');
    await page.getByLabel('Topic name', { exact: true }).fill('orders');
    await page.getByRole('button', { name: 'Open topic' }).click();
    await page.getByRole('heading', { name: 'Publish to orders' }).waitFor();
    await page.getByRole('button', { name: 'Start tail' }).click();
    await page.getByText('listening').waitFor();
    await page.getByLabel('Message (JSON object)', { exact: true }).fill('{"order": 42}');
    await page.getByRole('button', { name: 'Publish', exact: true }).click();
    await eventually(async () => assert.match(await text(page, '[data-testid="tail"]'), /\{"order":42\}/), 'the event in the tail');
    await screenshot(page, 'events');

    await open(page, alto, '/cron', 'Cron');
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    await screenshot(page, 'cron');
  });

  test('the apps page lists apps with a deploy form when the instance runs the app service', async (t) => {
    const status = await (await fetch(`${alto.url}/v1/status`, { headers: { authorization: `Bearer ${alto.adminKey}` } })).json();
    if (!status.services.includes('app')) {
      t.skip('this instance has no app service');
      return;
    }
    await open(page, alto, '/apps', 'Apps');
    await page.getByRole('heading', { name: 'Deploy an app' }).waitFor();
    await page.getByText('No apps yet').waitFor();
    assert.equal(await page.getByRole('alert').count(), 0, 'app/List answered without an error');
    await screenshot(page, 'apps');
  });

  test('the usage page shows the calls just made, by endpoint, with their cost', async () => {
    await open(page, alto, '/usage', 'Usage');
    // The admin key's project ("default") made these calls from the browser above.
    // usage/Summary writes pending records before it reads, so the first answer has them all.
    const endpoints = await text(page, '[data-testid="usage-endpoints"]');
    for (const name of ['id/Generate', 'db/Create', 'space/Upload', 'event/Publish']) assert.ok(endpoints.includes(name), `${name} in ${endpoints}`);
    const calls = Number((await text(page, '[data-testid="usage-calls"]')).replace(/\D/g, ''));
    const summary = await alto.call('usage', 'Summary', {});
    assert.ok(calls > 5 && calls <= summary.body.calls, `the page shows ${calls} calls, the API ${summary.body.calls}`);
    assert.ok(await page.locator('.hbar[data-name="db"]').count(), 'a bar for db');
    await screenshot(page, 'usage');
  });

  test('on a phone-sized screen the navigation folds behind a Menu button', async () => {
    const phone = await context.newPage();
    phone.on('pageerror', (error) => pageErrors.push(error.message));
    await phone.setViewportSize({ width: 375, height: 740 });
    await phone.goto(`${alto.url}/#/`);
    await phone.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    const nav = phone.getByRole('navigation', { name: 'Console' });
    const menu = phone.getByRole('button', { name: 'Menu' });
    assert.equal(await nav.isVisible(), false, 'the navigation is folded');
    assert.equal(await menu.isVisible(), true);
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `no sideways scrolling (page is ${width}px wide)`);
    await screenshot(phone, 'phone', false);

    await menu.click();
    await nav.waitFor({ state: 'visible' });
    assert.equal(await phone.getByRole('button', { name: 'Close' }).getAttribute('aria-expanded'), 'true');
    await screenshot(phone, 'phone-menu', false);
    await nav.getByRole('link', { name: 'Database' }).click();
    await phone.getByRole('heading', { level: 1, name: 'Database' }).waitFor();
    await nav.waitFor({ state: 'hidden' });
    await phone.close();
  });

  test('keyboard: the first Tab reaches the skip link, which moves focus to the content', async () => {
    await open(page, alto, '/db', 'Database');
    await page.reload(); // a fresh load: focus starts at the top of the document
    await page.getByRole('heading', { level: 1, name: 'Database' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    assert.ok(await page.getByRole('link', { name: 'Skip to content' }).isVisible(), 'the focused skip link shows');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');
    assert.equal(await page.evaluate(() => location.hash.split('?')[0]), '#/db', 'the route is kept');
  });

  test('the theme toggle switches to dark and back, and the choice is kept', async () => {
    await open(page, alto, '/', 'Overview');
    const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const light = await background();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
    await page.getByRole('button', { name: 'Switch to dark theme' }).click();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
    const dark = await background();
    assert.notEqual(dark, light);
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    assert.equal(await background(), dark, 'kept across a reload');
    await screenshot(page, 'overview-dark');
    await open(page, alto, '/usage', 'Usage');
    await page.getByTestId('usage-calls').waitFor();
    await screenshot(page, 'usage-dark');
    await page.getByRole('button', { name: 'Switch to light theme' }).click();
    assert.equal(await background(), light);

    // Sign out forgets the key.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key', { exact: true }).waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem('alto.key')), null);
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
  });
});

describe('web console on an instance with open sign-up', () => {
  let alto: TestAlto;
  let browser: Browser;

  before(async () => {
    ensureConsoleBuilt();
    alto = await startInProcess({ openSignup: true });
    browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  });

  after(async () => {
    await browser?.close();
    await alto?.close();
  });

  test('create an account, sign out, and sign in again with email and password', async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(alto.url);
    await page.getByRole('tab', { name: 'Account' }).click();
    await page.getByLabel('Email', { exact: true }).fill('ada@example.com');
    await page.getByLabel('Password', { exact: true }).fill('correct horse battery');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    assert.equal(await text(page, '.whoami .badge'), 'owner');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('tab', { name: 'Account' }).click();
    await page.getByLabel('Email', { exact: true }).fill('ada@example.com');
    await page.getByLabel('Password', { exact: true }).fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'email or password is wrong' }).waitFor();
    await page.getByLabel('Password', { exact: true }).fill('correct horse battery');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    assert.equal(await text(page, '.whoami .badge'), 'owner');
    // An owner manages its own projects: the default one is there.
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Projects' }).click();
    await page.locator('tr[data-project="default"]').waitFor();
    await page.close();
  });
});
