/**
 * What a copy of the data folder reveals, through the real server: TOTP seeds, cron signing
 * secrets and a project's SMTP URL (with its password) are sealed with the master key, not in
 * the SQLite file in plain text; values stored in plain text by an older Alto still work and are
 * sealed at the next start (or read); `alto.db`, its -wal and -shm are 0600 and the data folder
 * 0700; keys/List shows no characters of an admin key the operator chose (ALTO_ADMIN_KEY).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { startAlto } from '../../src/edge/server.js';
import { silentLogger } from '../../src/kit/logger.js';
import { startInProcess, temporaryDataDir } from '../harness.js';

/** Everything in the database files, as text, to look for a value in. */
function databaseText(dataDir: string): string {
  return ['alto.db', 'alto.db-wal']
    .map((name) => join(dataDir, name))
    .filter((path) => existsSync(path))
    .map((path) => readFileSync(path).toString('latin1'))
    .join('');
}

const SMTP_PASSWORD = 'smtp-password-that-must-not-leak';

test('TOTP seeds, cron signing secrets and SMTP passwords are sealed at rest; old plain values are sealed at start and keep working', async () => {
  const dataDir = temporaryDataDir();
  let alto: Awaited<ReturnType<typeof startInProcess>> | undefined;
  try {
    alto = await startInProcess({ dataDir });
    let key = await alto.projectKey('rest', ['*']);
    const generated = await alto.call('otp', 'Generate', { id: 'ada@example.com' }, key);
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    const seed = Buffer.from(base32Decode(generated.body.secret));
    const scheduled = await alto.call('cron', 'SigningSecret', {}, key);
    const signingSecret: string = scheduled.body.signingSecret;
    assert.match(signingSecret, /^whsec_/);
    const smtp = await alto.call('email', 'SetSmtp', { url: `smtp://apikey:${SMTP_PASSWORD}@1.1.1.1:587` }, key);
    assert.equal(smtp.status, 200, JSON.stringify(smtp.body));
    await alto.close();
    alto = undefined;

    const files = readFileSync(join(dataDir, 'alto.db'));
    const text = databaseText(dataDir);
    assert.ok(!text.includes(signingSecret), 'the cron signing secret is sealed');
    assert.ok(!text.includes(SMTP_PASSWORD) && !text.includes(encodeURIComponent(SMTP_PASSWORD)), 'the SMTP URL is sealed');
    assert.ok(!files.includes(seed) && !(existsSync(join(dataDir, 'alto.db-wal')) && readFileSync(join(dataDir, 'alto.db-wal')).includes(seed)), 'the TOTP seed is sealed');

    // An older Alto wrote them in plain text: put plain values back and start again.
    const db = new Database(join(dataDir, 'alto.db'));
    const namespace = (db.prepare('SELECT namespace FROM cron_signing_secrets').get() as { namespace: string }).namespace;
    db.prepare('UPDATE cron_signing_secrets SET secret = ? WHERE namespace = ?').run('whsec_plain_legacy_secret', namespace);
    db.prepare('UPDATE otp_secrets SET secret = ? WHERE namespace = ?').run(seed, namespace);
    db.prepare('UPDATE mail_settings SET smtp_url = ? WHERE namespace = ?').run(`smtp://apikey:${SMTP_PASSWORD}@1.1.1.1:587`, namespace);
    db.close();

    alto = await startInProcess({ dataDir });
    key = await alto.projectKey('rest', ['*']);
    assert.equal((await alto.call('cron', 'SigningSecret', {}, key)).body.signingSecret, 'whsec_plain_legacy_secret', 'a plain secret still reads');
    const again = await alto.call('otp', 'Generate', { id: 'ada@example.com' }, key);
    assert.equal(again.body.secret, generated.body.secret, 'a plain TOTP seed still reads');
    assert.deepEqual((await alto.call('email', 'ReadSmtp', {}, key)).body, { source: 'project', url: 'smtp://apikey:***@1.1.1.1:587' });
    await alto.close();
    alto = undefined;
    assert.ok(currentValue(dataDir, 'cron_signing_secrets', 'secret').startsWith('alto-sealed:v1:'));
    assert.ok(currentValue(dataDir, 'mail_settings', 'smtp_url').startsWith('alto-sealed:v1:'));
    assert.ok(!(currentBlob(dataDir, 'otp_secrets', 'secret')).equals(seed));
  } finally {
    await alto?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('alto.db, its -wal and -shm are 0600 and the data folder 0700', async () => {
  const alto = await startInProcess();
  try {
    await alto.projectKey('modes', ['*']);
    assert.equal(statSync(alto.dataDir).mode & 0o777, 0o700);
    for (const name of ['alto.db', 'alto.db-wal', 'alto.db-shm']) {
      const path = join(alto.dataDir, name);
      if (existsSync(path)) assert.equal(statSync(path).mode & 0o777, 0o600, name);
    }
    assert.ok(existsSync(join(alto.dataDir, 'alto.db-wal')), 'the WAL file was checked too');
  } finally {
    await alto.close();
  }
});

test('keys/List shows no characters of an admin key the operator chose', async () => {
  const dataDir = temporaryDataDir();
  const chosen = 'operator-chosen-admin-key-0123456789';
  const alto = await startAlto({ port: 0, host: '127.0.0.1', dataDir, adminKey: chosen, logger: silentLogger() });
  try {
    const response = await fetch(`${alto.url}/v1/keys/List`, {
      method: 'POST',
      headers: { authorization: `Bearer ${chosen}`, 'content-type': 'application/json' },
      body: JSON.stringify({ project: 'default' }),
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    const admin = body.keys.find((entry: { description: string }) => entry.description === 'admin key (ALTO_ADMIN_KEY)');
    assert.ok(admin, JSON.stringify(body.keys));
    assert.equal(admin.prefix, '');
    assert.ok(!JSON.stringify(body).includes(chosen.slice(0, 6)), 'no part of the chosen key is shown');
  } finally {
    await alto.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

function currentValue(dataDir: string, table: string, column: string): string {
  const db = new Database(join(dataDir, 'alto.db'), { readonly: true });
  try {
    return (db.prepare(`SELECT ${column} AS value FROM ${table}`).get() as { value: string }).value;
  } finally {
    db.close();
  }
}

function currentBlob(dataDir: string, table: string, column: string): Buffer {
  return currentValue(dataDir, table, column) as unknown as Buffer;
}

function base32Decode(text: string): number[] {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const bytes: number[] = [];
  for (const char of text.replace(/=+$/, '')) {
    value = (value << 5) | alphabet.indexOf(char);
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return bytes;
}
