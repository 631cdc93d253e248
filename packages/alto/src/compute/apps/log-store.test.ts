/**
 * Apps' logs on disk, on a real temporary folder: lines written are read back with their time,
 * stream, instance and node, filtered by since, until, grep, instance and stream, newest
 * `limit` first; a new store over the same folder (Alto restarted) reads them; the folder stays
 * under its size cap as segments rotate; segments past the retention go; removing an app's log
 * deletes its folder; the throttle keeps a rate and counts what it drops.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { AppLogStore, droppedMarker, LogThrottle, MIN_LOG_MAX_BYTES } from './log-store.js';
import type { AppLogLine } from './runtime.js';

const log = pino({ level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'alto-log-store-'));
after(() => rmSync(root, { recursive: true, force: true }));

let folders = 0;
function store(options: { dir?: string; maxBytesPerApp?: number; retentionMs?: number } = {}): AppLogStore {
  return new AppLogStore({ dir: options.dir ?? join(root, `logs-${folders++}`), node: 'node-a', log, maxBytesPerApp: options.maxBytesPerApp, retentionMs: options.retentionMs });
}

function line(at: number, text: string, stream: AppLogLine['stream'] = 'stdout', instance = 'i1'): AppLogLine {
  return { at, stream, line: text, instance, version: 1 };
}

function folderBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

/** An hour ago, within the default retention. */
const T0 = Math.floor(Date.now() / 1000) * 1000 - 3600_000;

test('lines are read back with their fields, oldest first, and one JSON object per line on disk', async () => {
  const logs = store();
  const writer = logs.writer('app1');
  writer.append(line(T0, 'hello'));
  writer.append(line(T0 + 1, 'oops', 'stderr', 'i2'));
  writer.append(line(T0 + 2, 'instance i1 is ready', 'system'));
  const read = await logs.read('app1', { limit: 10 });
  assert.deepEqual(read, [
    { at: T0, stream: 'stdout', line: 'hello', instance: 'i1', version: 1, node: 'node-a' },
    { at: T0 + 1, stream: 'stderr', line: 'oops', instance: 'i2', version: 1, node: 'node-a' },
    { at: T0 + 2, stream: 'system', line: 'instance i1 is ready', instance: 'i1', version: 1, node: 'node-a' },
  ]);
  const [segment] = readdirSync(logs.dirOf('app1'));
  const first = JSON.parse(readFileSync(join(logs.dirOf('app1'), segment!), 'utf8').split('\n')[0]!);
  assert.deepEqual(first, { time: new Date(T0).toISOString(), stream: 'stdout', instance: 'i1', node: 'node-a', version: 1, text: 'hello' });
});

test('since, until, grep, instance, stream and limit filter; the newest lines are kept', async () => {
  const logs = store();
  const writer = logs.writer('app');
  for (let index = 0; index < 100; index++) writer.append(line(T0 + index * 1000, `line ${index}${index % 10 === 0 ? ' tick' : ''}`, index % 2 ? 'stderr' : 'stdout', index < 50 ? 'a' : 'b'));
  const texts = async (query: Parameters<AppLogStore['read']>[1]) => (await logs.read('app', query)).map((entry) => entry.line);
  assert.deepEqual(await texts({ limit: 3 }), ['line 97', 'line 98', 'line 99']);
  assert.deepEqual(await texts({ limit: 100, since: T0 + 95_000 }), ['line 95', 'line 96', 'line 97', 'line 98', 'line 99']);
  assert.deepEqual(await texts({ limit: 100, since: T0 + 10_000, until: T0 + 12_000 }), ['line 10 tick', 'line 11', 'line 12']);
  assert.deepEqual(await texts({ limit: 100, grep: 'tick' }), [0, 10, 20, 30, 40, 50, 60, 70, 80, 90].map((index) => `line ${index} tick`));
  assert.deepEqual(await texts({ limit: 2, grep: 'tick', instance: 'a' }), ['line 30 tick', 'line 40 tick']);
  assert.deepEqual(await texts({ limit: 2, stream: 'stderr', instance: 'a' }), ['line 47', 'line 49']);
  // grep matches the text as the reader sees it.
  assert.deepEqual(await texts({ limit: 10, grep: 'LINE 99', text: (text) => text.toUpperCase() }), ['line 99']);
});

test('a new store over the same folder (Alto restarted) reads what the old one wrote, and appends after it', async () => {
  const dir = join(root, 'restart');
  const before = store({ dir });
  before.writer('app').append(line(T0, 'before the restart'));
  await before.close();
  const afterRestart = store({ dir });
  afterRestart.writer('app').append(line(T0 + 1, 'after the restart'));
  assert.deepEqual((await afterRestart.read('app', { limit: 10 })).map((entry) => entry.line), ['before the restart', 'after the restart']);
});

test('segments rotate and the oldest go, so the folder stays under its size cap', async () => {
  const logs = store({ maxBytesPerApp: MIN_LOG_MAX_BYTES });
  const writer = logs.writer('app');
  const text = 'x'.repeat(200);
  for (let batch = 0; batch < 40; batch++) {
    for (let index = 0; index < 100; index++) writer.append(line(T0 + batch * 100 + index, `${batch}-${index} ${text}`));
    await writer.flush();
    assert.ok(folderBytes(logs.dirOf('app')) <= MIN_LOG_MAX_BYTES, `${folderBytes(logs.dirOf('app'))} bytes after batch ${batch}`);
  }
  assert.ok(readdirSync(logs.dirOf('app')).length > 2, 'rotated into several segments');
  const read = await logs.read('app', { limit: 5_000 });
  assert.equal(read.at(-1)!.line, `39-99 ${text}`);
  assert.ok(!read.some((entry) => entry.line.startsWith('0-')), 'the oldest lines were pruned');
});

test('segments older than the retention are deleted as new lines come', async () => {
  const logs = store({ retentionMs: 3600_000, maxBytesPerApp: MIN_LOG_MAX_BYTES });
  const writer = logs.writer('app');
  const old = Date.now() - 2 * 3600_000;
  for (let index = 0; index < 300; index++) writer.append(line(old + index, `old ${index} ${'y'.repeat(200)}`));
  await writer.flush();
  for (let index = 0; index < 100; index++) writer.append(line(Date.now(), `new ${index} ${'z'.repeat(200)}`));
  await writer.flush();
  const read = await logs.read('app', { limit: 5_000 });
  assert.ok(!read.some((entry) => entry.line.startsWith('old 0 ')), 'the oldest segment went');
  assert.equal(read.filter((entry) => entry.line.startsWith('new ')).length, 100);
});

test('removing an app\'s log deletes its folder', async () => {
  const logs = store();
  logs.writer('app').append(line(T0, 'bye'));
  await logs.writer('app').flush();
  assert.ok(existsSync(logs.dirOf('app')));
  await logs.remove('app');
  assert.equal(existsSync(logs.dirOf('app')), false);
  assert.deepEqual(await logs.read('app', { limit: 10 }), []);
});

test('the throttle keeps its rate per second and reports the lines it dropped once', () => {
  const reported: number[] = [];
  const throttle = new LogThrottle((count) => reported.push(count), 10, 1_000_000);
  let kept = 0;
  for (let index = 0; index < 25; index++) if (throttle.admit(10, T0)) kept += 1;
  assert.equal(kept, 10);
  assert.deepEqual(reported, []);
  // The next window reports the drops of the last one, and keeps lines again.
  assert.equal(throttle.admit(10, T0 + 1000), true);
  assert.deepEqual(reported, [15]);
  assert.equal(droppedMarker(15), '[… 15 lines dropped]');
  // Bytes count too.
  const bytes = new LogThrottle((count) => reported.push(count), 1000, 100);
  assert.equal(bytes.admit(60, T0), true);
  assert.equal(bytes.admit(60, T0), false);
  bytes.stop();
  assert.deepEqual(reported, [15, 1]);
  throttle.stop();
});
