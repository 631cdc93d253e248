/**
 * What the browser tests of the console share: its built files (built here only when a fresh tree
 * has none; `npm ci` builds them), Debian's chromium, and where screenshots go.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ALTO_ROOT } from './harness.js';

export const SCREENSHOTS = join(ALTO_ROOT, '..', '..', 'test-output', 'console');

/** The console's dist/, built here only when a fresh tree has none. */
export function ensureConsoleBuilt(): void {
  const consoleDir = dirname(createRequire(import.meta.url).resolve('@alto/console/package.json'));
  if (existsSync(join(consoleDir, 'dist', 'index.html'))) return;
  execFileSync('npx', ['vite', 'build'], { cwd: consoleDir, stdio: 'ignore' });
}

export function chromiumPath(): string {
  for (const candidate of ['/usr/bin/chromium', '/usr/bin/chromium-browser']) if (existsSync(candidate)) return candidate;
  throw new Error('chromium is not installed: run scripts/test-services.sh (it installs Debian\'s chromium)');
}

/**
 * Debian's chromium on the console at `url`, signed in with `key` (the Overview shown); the
 * page's uncaught errors go to `pageErrors`.
 */
export async function signedInConsole(url: string, key: string, pageErrors: string[], height = 860): Promise<{ browser: Browser; page: Page }> {
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height }, colorScheme: 'light' });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(url);
  await page.getByLabel('API key', { exact: true }).fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  return { browser, page };
}
