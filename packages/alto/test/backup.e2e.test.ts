/**
 * `alto backup` and `alto restore` on a busy instance: while request loops keep creating db
 * records and space objects, the CLI backs the running `alto up` up; the backup is restored into
 * a new folder and started with the same master key, and every write acknowledged before the
 * backup began is there, with nothing the writers did not write, every listed object readable
 * and the sealed secret open. A second backup into the same folder copies only the new content;
 * a backup with a damaged file is refused by restore, which writes nothing. The same into an S3
 * bucket (s3rver).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startProcess, temporaryDataDir, waitFor, type ServerProcess } from './harness.js';
import { runCli } from './apps-fixture.js';
import { startS3Server, TEST_S3_CREDENTIALS } from './s3-server.js';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';

const MASTER_KEY = randomBytes(32).toString('hex');
const ADMIN_KEY = `sk_admin_${randomBytes(12).toString('hex')}`;
const environment = { ALTO_MASTER_KEY: MASTER_KEY, ALTO_ADMIN_KEY: ADMIN_KEY };

const folders: string[] = [];
const servers: ServerProcess[] = [];
after(async () => {
  for (const server of servers) await server.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** The summary line of `alto backup`. */
function summaryOf(stdout: string): { id: string; files: number; copied: number; bytes: string; reused: number } {
  const match = /backup (\S+): (\d+) files, (\d+) new blobs copied \(([^)]*)\), (\d+) already in the folder/.exec(stdout);
  assert.ok(match, `no summary in:\n${stdout}`);
  return { id: match[1], files: Number(match[2]), copied: Number(match[3]), bytes: match[4], reused: Number(match[5]) };
}

function manifestOf(backups: string, id: string): { files: { path: string; sha256: string }[] } {
  return JSON.parse(readFileSync(join(backups, id, 'manifest.json'), 'utf8'));
}

/** A loop of writes until stopped; `acknowledged` holds each write's name and when its answer came. */
function writer(write: (n: number) => Promise<boolean>) {
  const acknowledged = new Map<string, number>();
  const attempted = new Set<string>();
  let running = true;
  const done = (async () => {
    for (let n = 0; running; n++) {
      const name = `w${n}`;
      attempted.add(name);
      if (await write(n)) acknowledged.set(name, Date.now());
    }
  })();
  return {
    acknowledged,
    attempted,
    before: (time: number) => [...acknowledged].filter(([, at]) => at < time).map(([name]) => name),
    stop: async () => {
      running = false;
      await done;
    },
  };
}

async function allRecords(server: ServerProcess, key: string, table: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let offset = 0; ; offset += 1000) {
    const read = await server.call('db', 'Read', { table, limit: 1000, offset }, key);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    for (const record of read.body.records as { id: string }[]) ids.add(record.id);
    if (read.body.records.length < 1000) return ids;
  }
}

async function allObjects(server: ServerProcess, key: string): Promise<string[]> {
  const names: string[] = [];
  let startAfter = '';
  for (;;) {
    const page = await server.call('space', 'List', { prefix: 'busy/', startAfter }, key);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    names.push(...(page.body.objects as { name: string }[]).map((object) => object.name));
    if (!page.body.nextStartAfter) return names;
    startAfter = page.body.nextStartAfter;
  }
}

test('a backup of a busy instance restores every write acknowledged before it began, and only new content is copied the second time', async () => {
  const source = temporaryDataDir();
  const backups = temporaryDataDir();
  const restoredParent = temporaryDataDir();
  folders.push(source, backups, restoredParent);
  const restored = join(restoredParent, 'restored');

  const running = await startProcess({ dataDir: source, env: environment });
  servers.push(running);
  const key = await running.projectKey('shop');
  assert.equal((await running.call('secret', 'Set', { key: 'stripe', value: 'sk_live_42' }, key)).status, 200);
  const records = writer(async (n) => (await running.call('db', 'Create', { table: 'orders', record: { id: `w${n}`, n } }, key)).status === 200);
  const objects = writer(
    async (n) => (await running.call('space', 'Create', { name: `busy/w${n}`, object: Buffer.from(`object ${n}`).toString('base64') }, key)).status === 200,
  );
  await waitFor(() => records.acknowledged.size >= 50 && objects.acknowledged.size >= 50, 'the first writes', 30_000);

  const backupBegan = Date.now();
  const started = performance.now();
  const first = await runCli(['backup', '--data', source, '--to', backups], environment);
  const backupSeconds = (performance.now() - started) / 1000;
  const backupEnded = Date.now();
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const acknowledgedDuring = [...records.acknowledged.values(), ...objects.acknowledged.values()].filter((at) => at > backupBegan && at < backupEnded).length;
  await records.stop();
  await objects.stop();
  // The writers kept writing while the backup ran: it was taken online.
  assert.ok(acknowledgedDuring > 0, 'writes were acknowledged during the backup');
  const firstSummary = summaryOf(first.stdout);
  assert.match(first.stdout, /database: alto\.db, .* \(SQLite online backup\)/);
  assert.match(first.stdout, /master key: /);
  assert.ok(firstSummary.files > 50 && firstSummary.copied > 50, first.stdout);

  // Again, with one more object: only content the first backup did not hold is copied (that
  // object, the objects written after the first backup read the folder, the database's copy).
  assert.equal((await running.call('space', 'Create', { name: 'busy/after', object: Buffer.from('after').toString('base64') }, key)).status, 200);
  const blobsBefore = readdirSync(join(backups, 'blobs', 'sha256')).length;
  const second = await runCli(['backup', '--data', source, '--to', backups], environment);
  assert.equal(second.code, 0, second.stderr + second.stdout);
  const secondSummary = summaryOf(second.stdout);
  const firstManifest = manifestOf(backups, firstSummary.id);
  const secondManifest = manifestOf(backups, secondSummary.id);
  const held = new Set(firstManifest.files.map((file) => file.sha256));
  const newContent = new Set(secondManifest.files.filter((file) => !held.has(file.sha256)).map((file) => file.sha256));
  assert.ok(secondManifest.files.some((file) => file.path.endsWith('/busy/after~') && newContent.has(file.sha256)));
  assert.equal(secondSummary.copied, newContent.size, second.stdout);
  assert.ok(secondSummary.reused >= firstManifest.files.length - 1, `the first backup's files are not copied again: ${second.stdout}`);
  assert.equal(readdirSync(join(backups, 'blobs', 'sha256')).length, blobsBefore + secondSummary.copied);
  await running.close();

  // The first backup, restored and started with the same master key.
  const restoreStarted = performance.now();
  const restore = await runCli(['restore', backups, '--at', firstSummary.id, '--data', restored], environment);
  const restoreSeconds = (performance.now() - restoreStarted) / 1000;
  assert.equal(restore.code, 0, restore.stderr + restore.stdout);
  assert.match(restore.stdout, /checked: every file matches its sha256/);
  assert.ok(!existsSync(join(restored, 'master-key')), 'the master key is not in the backup');
  const again = await startProcess({ dataDir: restored, env: environment });
  servers.push(again);

  const restoredRecords = await allRecords(again, key, 'orders');
  for (const id of records.before(backupBegan)) assert.ok(restoredRecords.has(id), `record ${id}, acknowledged before the backup, is restored`);
  for (const id of restoredRecords) assert.ok(records.attempted.has(id), `record ${id} was written`);
  const count = await again.call('db', 'Count', { table: 'orders' }, key);
  assert.equal(count.body.count, restoredRecords.size);

  const restoredObjects = new Set(await allObjects(again, key));
  for (const name of objects.before(backupBegan)) assert.ok(restoredObjects.has(`busy/${name}`), `object ${name}, acknowledged before the backup, is restored`);
  assert.ok(!restoredObjects.has('busy/after'), 'the first backup is restored, not the second');
  // Every listed object reads back whole, with what was written.
  for (const name of restoredObjects) {
    const read = await again.call('space', 'Read', { name }, key);
    assert.equal(read.status, 200, `${name}: ${JSON.stringify(read.body)}`);
    assert.equal(Buffer.from(read.body.object.data, 'base64').toString(), `object ${name.slice('busy/w'.length)}`);
  }
  assert.equal((await again.call('secret', 'Get', { key: 'stripe' }, key)).body.value, 'sk_live_42');
  await again.close();

  process.stdout.write(
    `# backup of ${firstSummary.files} files (${firstSummary.bytes}) took ${backupSeconds.toFixed(2)} s; restore ${restoreSeconds.toFixed(2)} s; ` +
      `${restoredRecords.size} records and ${restoredObjects.size} objects restored\n`,
  );

  // A damaged file: restore names it and writes nothing.
  const object = secondManifest.files.find((file) => file.path.includes('busy'))!;
  writeFileSync(join(backups, 'blobs', 'sha256', object.sha256), 'not what was backed up');
  const damagedTarget = join(restoredParent, 'damaged');
  const refused = await runCli(['restore', backups, '--data', damagedTarget], environment);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, new RegExp(`backup ${secondSummary.id} is damaged, \\d+ of its files fail their checksum; nothing was written`));
  assert.ok(refused.stderr.includes(object.path), refused.stderr);
  assert.ok(!existsSync(damagedTarget), 'nothing was written');

  // A folder with files in it is refused.
  const occupied = await runCli(['restore', backups, '--at', firstSummary.id, '--data', source], environment);
  assert.notEqual(occupied.code, 0);
  assert.match(occupied.stderr, /is not empty: restore into a new \(or empty\) folder/);
});

test('a backup into an S3 bucket restores from it; a second one uploads only new content, and a damaged blob is refused', async () => {
  const s3 = await startS3Server('alto-backups');
  const source = temporaryDataDir();
  const restoredParent = temporaryDataDir();
  folders.push(source, restoredParent);
  const credentials = { ...environment, AWS_ACCESS_KEY_ID: TEST_S3_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_S3_CREDENTIALS.secretAccessKey };
  const bucketUrl = s3.objectsUrl.replace('s3://alto-backups', 's3://alto-backups/nightly/');
  try {
    const running = await startProcess({ dataDir: source, env: environment });
    servers.push(running);
    const key = await running.projectKey('shop');
    for (let n = 0; n < 20; n++) {
      assert.equal((await running.call('db', 'Create', { table: 'orders', record: { id: `o${n}`, n } }, key)).status, 200);
      assert.equal((await running.call('space', 'Create', { name: `busy/o${n}`, object: Buffer.from(`object o${n}`).toString('base64') }, key)).status, 200);
    }
    const first = await runCli(['backup', '--data', source, '--to', bucketUrl], credentials);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const firstSummary = summaryOf(first.stdout);
    const second = await runCli(['backup', '--data', source, '--to', bucketUrl], credentials);
    assert.equal(second.code, 0, second.stderr + second.stdout);
    const secondSummary = summaryOf(second.stdout);
    // Nothing but the database's copy can be new: no object was written in between.
    assert.ok(secondSummary.copied <= 1, second.stdout);
    assert.ok(secondSummary.reused >= secondSummary.files - 1, second.stdout);
    await running.close();
    const list = await runCli(['restore', bucketUrl, '--list'], credentials);
    assert.equal(list.code, 0, list.stderr + list.stdout);
    assert.deepEqual(list.stdout.trim().split('\n').map((line) => line.split(' ')[0]), [firstSummary.id, secondSummary.id]);

    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: 'alto-backups', Prefix: 'nightly/' }));
    const keys = (listed.Contents ?? []).map((object) => object.Key!);
    assert.ok(keys.includes(`nightly/${firstSummary.id}/manifest.json`) && keys.includes(`nightly/${secondSummary.id}/manifest.json`), keys.join('\n'));
    assert.equal(keys.filter((key) => key.startsWith('nightly/blobs/sha256/')).length, firstSummary.copied + secondSummary.copied);

    const restored = join(restoredParent, 'restored');
    const restore = await runCli(['restore', bucketUrl, '--data', restored], credentials);
    assert.equal(restore.code, 0, restore.stderr + restore.stdout);
    const again = await startProcess({ dataDir: restored, env: environment });
    servers.push(again);
    assert.equal((await allRecords(again, key, 'orders')).size, 20);
    const objects = await allObjects(again, key);
    assert.equal(objects.length, 20);
    const read = await again.call('space', 'Read', { name: 'busy/o7' }, key);
    assert.equal(Buffer.from(read.body.object.data, 'base64').toString(), 'object o7');
    await again.close();

    // A blob overwritten in the bucket: restore refuses, naming the file, and writes nothing.
    const manifest = JSON.parse(
      await (await s3.client.send(new GetObjectCommand({ Bucket: 'alto-backups', Key: `nightly/${secondSummary.id}/manifest.json` }))).Body!.transformToString(),
    ) as { files: { path: string; sha256: string }[] };
    const object = manifest.files.find((file) => file.path.endsWith('/busy/o7~'))!;
    await s3.client.send(new PutObjectCommand({ Bucket: 'alto-backups', Key: `nightly/blobs/sha256/${object.sha256}`, Body: 'tampered' }));
    const damagedTarget = join(restoredParent, 'damaged');
    const refused = await runCli(['restore', bucketUrl, '--data', damagedTarget], credentials);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /is damaged, 1 of its files fail their checksum; nothing was written/);
    assert.ok(refused.stderr.includes(object.path), refused.stderr);
    assert.ok(!existsSync(damagedTarget));
  } finally {
    await s3.close();
  }
});
