/**
 * Scheduled backups: `alto up --backup-to FOLDER --backup-every 1s --backup-keep 2` backs itself
 * up again and again while it serves, keeps the newest two (older manifests and the content only
 * they held are removed), shows them in `/v1/status` (and so `alto status`), and one whose target
 * cannot be written shows the failure with its reason there, in `/metrics` and on the console's
 * overview (in a real browser). A kept backup restores and serves.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startProcess, temporaryDataDir, waitForAsync, type ServerProcess } from './harness.js';
import { runCli } from './apps-fixture.js';
import { chromiumPath, ensureConsoleBuilt, SCREENSHOTS } from './console-fixture.js';
import { chromium } from 'playwright-core';

const MASTER_KEY = randomBytes(32).toString('hex');
const ADMIN_KEY = `sk_admin_${randomBytes(12).toString('hex')}`;
const environment = { ALTO_MASTER_KEY: MASTER_KEY, ALTO_ADMIN_KEY: ADMIN_KEY };

const folders: string[] = [];
const servers: ServerProcess[] = [];
after(async () => {
  for (const server of servers) await server.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

interface BackupStatus {
  successes: number;
  failures: number;
  keep: number;
  last_success?: { id: string; files: number };
  last_failure?: { at: string; reason: string };
  next_at?: string;
}

async function backupStatus(server: ServerProcess): Promise<BackupStatus> {
  const response = await fetch(`${server.url}/v1/status`, { headers: { authorization: `Bearer ${server.adminKey}` } });
  const body = (await response.json()) as { backups?: BackupStatus };
  assert.ok(body.backups, 'the admin key sees the backups in /v1/status');
  return body.backups;
}

function finished(folder: string): string[] {
  return readdirSync(folder).filter((name) => existsSync(join(folder, name, 'manifest.json'))).sort();
}

function manifestOf(folder: string, id: string): { files: { path: string; sha256: string }[] } {
  return JSON.parse(readFileSync(join(folder, id, 'manifest.json'), 'utf8'));
}

test('scheduled backups run while Alto serves, keep the newest ones, and show in status', async () => {
  const dataDir = temporaryDataDir();
  const backups = temporaryDataDir();
  const restoredParent = temporaryDataDir();
  folders.push(dataDir, backups, restoredParent);
  const server = await startProcess({ dataDir, env: environment, args: ['--backup-to', backups, '--backup-every', '1s', '--backup-keep', '2'] });
  servers.push(server);
  const key = await server.projectKey('shop');
  assert.equal((await server.call('db', 'Create', { table: 'orders', record: { id: 'first' } }, key)).status, 200);

  let first: BackupStatus['last_success'];
  let firstDatabase: string | undefined;
  await waitForAsync(async () => {
    first = (await backupStatus(server)).last_success;
    if (first) firstDatabase = manifestOf(backups, first.id).files.find((file) => file.path === 'alto.db')!.sha256;
    return first !== undefined;
  }, 'the first scheduled backup', 30_000);
  // A write after it: every later backup's database differs from the first's.
  assert.equal((await server.call('db', 'Create', { table: 'orders', record: { id: 'second' } }, key)).status, 200);
  await waitForAsync(async () => (await backupStatus(server)).successes >= 4, 'four scheduled backups', 30_000);
  const status = await backupStatus(server);
  assert.equal(status.failures, 0);
  assert.equal(status.keep, 2);
  assert.ok(status.next_at || status.successes >= 4);
  const metrics = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.adminKey}` } })).text();
  assert.match(metrics, /alto_backups_total\{result="ok"\} ([4-9]|\d{2,})/);
  assert.match(metrics, /alto_backup_failing 0/);
  await server.close();

  // The newest two are kept; the first, and the database copy only it held, are gone.
  const kept = finished(backups);
  assert.equal(kept.length, 2, kept.join(', '));
  assert.ok(!kept.includes(first!.id));
  const named = new Set(kept.flatMap((id) => manifestOf(backups, id).files.map((file) => file.sha256)));
  assert.ok(!named.has(firstDatabase!));
  assert.ok(!existsSync(join(backups, 'blobs', 'sha256', firstDatabase!)), "the first backup's database copy is removed");
  for (const sha256 of named) assert.ok(existsSync(join(backups, 'blobs', 'sha256', sha256)), `blob ${sha256} of a kept backup is there`);

  const restored = join(restoredParent, 'restored');
  const restore = await runCli(['restore', backups, '--data', restored], environment);
  assert.equal(restore.code, 0, restore.stderr + restore.stdout);
  const again = await startProcess({ dataDir: restored, env: environment });
  servers.push(again);
  const read = await again.call('db', 'Read', { table: 'orders', orderBy: 'id' }, key);
  assert.deepEqual(read.body.records.map((record: { id: string }) => record.id), ['first', 'second']);
  await again.close();
});

test('a scheduled backup that fails shows its reason in status and in /metrics, and is tried again', async () => {
  const dataDir = temporaryDataDir();
  const parent = temporaryDataDir();
  folders.push(dataDir, parent);
  // A file where the backup folder's parent should be: the folder cannot be made.
  writeFileSync(join(parent, 'not-a-folder'), '');
  const server = await startProcess({ dataDir, env: environment, args: ['--backup-to', join(parent, 'not-a-folder', 'backups'), '--backup-every', '1s'] });
  servers.push(server);
  await waitForAsync(async () => (await backupStatus(server)).failures >= 2, 'two failed attempts', 30_000);
  const status = await backupStatus(server);
  assert.equal(status.successes, 0);
  assert.match(status.last_failure!.reason, /ENOTDIR|not a directory/);
  const metrics = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.adminKey}` } })).text();
  assert.match(metrics, /alto_backups_total\{result="failed"\} [2-9]/);
  assert.match(metrics, /alto_backup_failing 1/);
  assert.match(metrics, /alto_backup_last_success_timestamp_seconds 0/);
  const cli = await runCli(['status', '--url', server.url, '--key', server.adminKey, '--json'], environment);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(JSON.parse(cli.stdout).backups.last_failure.reason, /ENOTDIR|not a directory/);

  // The console's overview shows the failure and its reason to the operator, in a real browser.
  ensureConsoleBuilt();
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(server.url);
    await page.getByLabel('API key', { exact: true }).fill(server.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 2, name: 'Backups' }).waitFor();
    const failure = page.locator('[data-field="last-failure"]');
    await failure.waitFor();
    assert.match(await failure.innerText(), /ENOTDIR|not a directory/);
    assert.match(await page.locator('[data-field="last-success"]').innerText(), /none yet/);
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOTS, 'overview-backups-failing.png'), fullPage: true });
  } finally {
    await browser.close();
  }
  await server.close();
});
