/**
 * Apps' logs on disk, on a real temporary folder: lines written are read back with their time,
 * stream, instance and node, filtered by since, until, grep, instance and stream, newest
 * `limit` first; a new store over the same folder (Alto restarted) reads them; the folder stays
 * under its size cap as segments rotate; segments past the retention go; removing an app's log
 * deletes its folder; the throttle keeps a rate and counts what it drops. A project's days and
 * bytes (with a clock the test moves) bound its apps' logs together, oldest first across them.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { AppLogStore, droppedMarker, LogThrottle, MIN_LOG_MAX_BYTES, type ProjectLogBounds } from './log-store.js';
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

/** A store whose clock the test moves, with apps `a1`, `a2` of project `p1` and `b1` of `p2`, and bounds it can change. */
function projectStore(bounds: Record<string, ProjectLogBounds>, maxBytesPerApp = 64 * 1024 ** 2) {
  const clock = { now: T0 };
  const projects: Record<string, string> = { a1: 'p1', a2: 'p1', b1: 'p2' };
  const logs = new AppLogStore({
    dir: join(root, `logs-${folders++}`),
    node: 'node-a',
    log,
    maxBytesPerApp,
    now: () => clock.now,
    projectOf: async (appId) => projects[appId],
    boundsOf: async (projectId) => bounds[projectId]!,
  });
  return { logs, clock };
}

const texts = async (logs: AppLogStore, appId: string) => (await logs.read(appId, { limit: 5_000 })).map((entry) => entry.line);

test("a project's days: the sweep deletes segments whose last line is past them, in every app of the project, and no other project's", async () => {
  const day = 86_400_000;
  const bounds: Record<string, ProjectLogBounds> = { p1: { days: 2, bytes: 1024 ** 3 }, p2: { days: 2, bytes: 1024 ** 3 } };
  const { logs, clock } = projectStore(bounds);
  const projectOf = (appId: string) => (appId === 'b1' ? 'p2' : 'p1');
  for (const appId of ['a1', 'a2', 'b1']) logs.writer(appId, projectOf(appId)).append(line(T0, `${appId} day 0`));
  for (const appId of ['a1', 'a2', 'b1']) await logs.writer(appId).flush();
  // Three days later (a segment spans at most an eighth of the days, so these start new ones).
  clock.now = T0 + 3 * day;
  for (const appId of ['a1', 'a2', 'b1']) logs.writer(appId).append(line(clock.now, `${appId} day 3`));
  for (const appId of ['a1', 'a2', 'b1']) await logs.writer(appId).flush();
  assert.deepEqual(await texts(logs, 'a1'), ['a1 day 0', 'a1 day 3']);
  // A sweep of p1 deletes its apps' day-0 lines, and leaves p2's.
  await logs.sweep('p1');
  assert.deepEqual(await texts(logs, 'a1'), ['a1 day 3']);
  assert.deepEqual(await texts(logs, 'a2'), ['a2 day 3']);
  assert.deepEqual(await texts(logs, 'b1'), ['b1 day 0', 'b1 day 3']);
  // A longer bound for p2 keeps its lines through a sweep of every project; a shorter one then drops them.
  bounds.p2 = { days: 5, bytes: 1024 ** 3 };
  await logs.sweep();
  assert.deepEqual(await texts(logs, 'b1'), ['b1 day 0', 'b1 day 3']);
  bounds.p2 = { days: 1, bytes: 1024 ** 3 };
  await logs.sweep();
  assert.deepEqual(await texts(logs, 'b1'), ['b1 day 3']);
  // When even the newest line is past the days, the app's log is empty; it writes again afterwards.
  clock.now = T0 + 10 * day;
  await logs.sweep('p1');
  assert.deepEqual(await texts(logs, 'a1'), []);
  logs.writer('a1').append(line(clock.now, 'a1 day 10'));
  assert.deepEqual(await texts(logs, 'a1'), ['a1 day 10']);
});

test("a project's bytes: its apps together stay within them, the oldest segments going first whichever app wrote them", async () => {
  const bounds: Record<string, ProjectLogBounds> = { p1: { days: 30, bytes: 512 * 1024 }, p2: { days: 30, bytes: 1024 ** 3 } };
  const { logs, clock } = projectStore(bounds);
  const text = 'x'.repeat(200);
  // a1 writes first (older), then a2; each alone is within the project's bytes, together they are not.
  for (const appId of ['a1', 'a2']) {
    const writer = logs.writer(appId, 'p1');
    for (let batch = 0; batch < 16; batch++) {
      for (let index = 0; index < 100; index++) writer.append(line(clock.now, `${appId} ${batch}-${index} ${text}`));
      clock.now += 1000;
      await writer.flush();
    }
  }
  logs.writer('b1', 'p2').append(line(T0, `b1 first ${text}`));
  await logs.writer('b1').flush();
  const before = folderBytes(logs.dirOf('a1')) + folderBytes(logs.dirOf('a2'));
  assert.ok(before > 512 * 1024, `${before} bytes before the sweep`);
  await logs.sweep('p1');
  const after = folderBytes(logs.dirOf('a1')) + folderBytes(logs.dirOf('a2'));
  assert.ok(after <= 512 * 1024, `${after} bytes after the sweep`);
  const a1 = await texts(logs, 'a1');
  const a2 = await texts(logs, 'a2');
  // The oldest went first: a1's lines (all older than a2's) before any of a2's.
  assert.ok(!a1.some((entry) => entry.startsWith('a1 0-')), "a1's oldest lines went");
  assert.ok(a2.some((entry) => entry.startsWith('a2 0-')), "a2's oldest lines stayed, being newer than what went");
  assert.equal(a2.at(-1), `a2 15-99 ${text}`);
  // Another project is not touched.
  assert.deepEqual(await texts(logs, 'b1'), [`b1 first ${text}`]);
});

test("appends past a project's bytes bring a sweep by themselves", async () => {
  const bounds: Record<string, ProjectLogBounds> = { p1: { days: 30, bytes: 256 * 1024 }, p2: { days: 30, bytes: 1024 ** 3 } };
  const { logs, clock } = projectStore(bounds);
  const text = 'x'.repeat(200);
  // The bounds are read when the writers learn their project (a sweep reads them too).
  logs.writer('a1', 'p1');
  logs.writer('a2', 'p1');
  await logs.sweep('p1');
  for (const appId of ['a1', 'a2']) {
    for (let batch = 0; batch < 10; batch++) {
      for (let index = 0; index < 100; index++) logs.writer(appId).append(line(clock.now, `${appId} ${batch}-${index} ${text}`));
      clock.now += 1000;
      await logs.writer(appId).flush();
    }
  }
  await waitFor(async () => folderBytes(logs.dirOf('a1')) + folderBytes(logs.dirOf('a2')) <= 256 * 1024);
  assert.equal((await texts(logs, 'a2')).at(-1), `a2 9-99 ${text}`);
});

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

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
