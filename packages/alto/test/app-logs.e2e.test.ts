/**
 * Apps' logs on disk, end to end on the process sandbox: a real `alto up` runs a busybox app of
 * two instances that writes what it is asked to (a CGI drops a file its main loop prints) and
 * floods stdout on request. Logs filters by since, until, grep, instance and stream, and alto
 * logs takes the same flags; FollowLogs goes on from the lines on disk to new ones; bad filters are answered 400 naming the field; a flood is
 * throttled with a "[… N lines dropped]" line while Alto's memory stays bounded and the app's
 * log folder stays under its size cap as segments rotate; the lines outlast a restart of Alto;
 * the project's log_days and log_bytes (projects/Update, 400s for values out of bounds) delete
 * lines past them at once, the oldest first across the project's two apps; deleting the app
 * deletes its log.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { buildImage, busyboxBinary, startRegistry, type BuiltImage, type LayerEntry, type TestRegistry } from './images-fixture.js';
import { eventually, getThroughEdge, privateSandboxCache, runCli } from './apps-fixture.js';

const PROJECT = 'logs';
const HOST = `talker.${PROJECT}.localhost`;
/** The app's log folder cap and output rate in this test (small, so a flood passes both quickly). */
const MAX_BYTES = 256 * 1024;
const LINES_PER_SECOND = 500;
/**
 * About 600 MiB of output, against a bound of 256 MiB on Alto's growth: a store that kept the
 * flood fails by far, while the garbage a correct one leaves until V8 collects it (1 to 130 MiB
 * seen after 300 MiB, depending on when the last collection ran) stays well inside.
 */
const FLOOD_LINES = 600_000;
/** What Alto's resident memory may grow by while the flood goes through. */
const MAX_GROWTH_BYTES = 256 * 1024 ** 2;

const APPLETS = ['sh', 'httpd', 'sleep', 'touch', 'echo', 'cat', 'rm', 'mv', 'printf'];

/**
 * busybox httpd on 8080; /cgi-bin/say?TEXT makes the main loop print TEXT, /cgi-bin/flood makes
 * it print FLOOD_LINES lines of about 1 KiB at once, then "flood done" after a pause. The CGI
 * writes TEXT under a name the loop's glob does not match, then renames it into place, so the
 * loop never prints a half-written file or prints one twice (once by each name).
 */
function talkerImage(): Promise<BuiltImage> {
  const script = [
    'echo "talker starting"',
    'httpd -f -p 8080 -h /www &',
    'pad=$(printf "%1000s" x)',
    'while true; do',
    '  for f in /tmp/say.*; do [ -e "$f" ] && cat "$f" && rm "$f"; done',
    `  if [ -e /tmp/flood ]; then rm /tmp/flood; i=0; while [ $i -lt ${FLOOD_LINES} ]; do echo "flood $i $pad"; i=$((i+1)); done; sleep 1.5; echo "flood done"; fi`,
    '  sleep 0.1',
    'done',
  ].join('\n');
  const cgi = (body: string) => `#!/bin/sh\n${body}\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n`;
  const layer: LayerEntry[] = [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...APPLETS.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
    { type: 'dir', path: 'www/' },
    { type: 'file', path: 'www/index.html', content: 'talker\n' },
    { type: 'dir', path: 'www/cgi-bin/' },
    { type: 'file', path: 'www/cgi-bin/say', content: cgi('echo "$QUERY_STRING" > /tmp/writing.$$ && mv /tmp/writing.$$ /tmp/say.$$'), mode: 0o755 },
    { type: 'file', path: 'www/cgi-bin/flood', content: cgi('touch /tmp/flood'), mode: 0o755 },
  ];
  return buildImage({ layers: [layer], config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: [script], ExposedPorts: { '8080/tcp': {} } } });
}

/** Alto's resident memory, in bytes, from the kernel. */
function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) * 1024;
}

function folderBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

describe('app logs on disk', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let appId: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const logDir = () => join(dataDir, 'logs', 'apps', appId);

  const start = () =>
    startProcess({
      dataDir,
      args: ['--sandbox', 'process'],
      env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_LOG_MAX_BYTES_PER_APP: String(MAX_BYTES), ALTO_LOG_LINES_PER_SECOND: String(LINES_PER_SECOND) },
    });
  const call = (endpoint: string, body: unknown) => alto.call('app', endpoint, body, key);
  const get = (path: string) => getThroughEdge(Number(new URL(alto.url).port), HOST, path);
  const logs = async (query: Record<string, unknown>) => {
    const result = await call('Logs', { name: 'talker', ...query });
    assert.equal(result.status, 200, JSON.stringify(result.body));
    return result.body.lines as { at: string; stream: string; line: string; instance: string; node?: string }[];
  };
  /** Has the app print `text` and waits for it in its log; the line. */
  const say = async (text: string) => {
    assert.equal((await get(`/cgi-bin/say?${text}`)).status, 200);
    return eventually(async () => (await logs({ grep: text })).find((line) => line.line === text), `"${text}" in the log`);
  };

  before(async () => {
    registry = await startRegistry();
    await registry.push('demo/talker', 'v1', await talkerImage());
    alto = await start();
    key = await alto.projectKey(PROJECT, ['app']);
    const run = await call('Run', { name: 'talker', image: `${registry.host}/demo/talker:v1`, port: 8080, min_instances: 2, max_instances: 2 });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    appId = run.body.service.id;
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('Logs filters by instance, stream, grep, since and until; alto logs takes the same flags', async () => {
    const starts = await eventually(async () => {
      const found = await logs({ grep: 'talker starting' });
      return new Set(found.map((line) => line.instance)).size === 2 && found;
    }, 'both instances\' start lines');
    const [first, second] = [...new Set(starts.map((line) => line.instance))] as [string, string];
    const ofFirst = await logs({ instance: first, lines: 5_000 });
    assert.ok(ofFirst.length > 0 && ofFirst.every((line) => line.instance === first), JSON.stringify(ofFirst));
    assert.ok(ofFirst.some((line) => line.line === 'talker starting'));
    assert.ok(ofFirst.some((line) => line.stream === 'system' && line.line.includes(`instance ${first} of version 1 is ready`)));
    assert.ok(!ofFirst.some((line) => line.instance === second));
    assert.ok((await logs({ stream: 'system' })).every((line) => line.stream === 'system'));
    assert.ok(starts.every((line) => line.node), 'each line names its node');

    const alpha = await say('alpha-line');
    const beta = await say('beta-line');
    assert.ok(Date.parse(beta.at) > Date.parse(alpha.at));
    const texts = (lines: { line: string }[]) => lines.map((line) => line.line).filter((line) => line.endsWith('-line'));
    assert.deepEqual(texts(await logs({ since: beta.at })), ['beta-line']);
    assert.deepEqual(texts(await logs({ until: alpha.at })), ['alpha-line']);
    assert.deepEqual(texts(await logs({ since: alpha.at, until: beta.at })), ['alpha-line', 'beta-line']);
    assert.deepEqual(texts(await logs({ since: '10m' })), ['alpha-line', 'beta-line']);
    assert.deepEqual(texts(await logs({ grep: 'alpha' })), ['alpha-line']);
    assert.deepEqual((await logs({ limit: 1, stream: 'stdout' })).map((line) => line.line), ['beta-line']);

    const cli = await runCli(['logs', 'talker', '--grep', 'beta', '--since', '10m', '--url', alto.url, '--key', key]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout.trim(), 'beta-line');
    const instance = await runCli(['logs', 'talker', '--instance', second, '--stream', 'system', '--json', '--url', alto.url, '--key', key]);
    assert.equal(instance.code, 0, instance.stderr);
    const printed = instance.stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.ok(printed.length > 0 && printed.every((line) => line.instance === second && line.stream === 'system'), instance.stdout);
  });

  test('FollowLogs gives the filtered lines on disk, then new ones as they come, each once', async () => {
    await say('follow-line-1');
    const followed: { line: string }[] = [];
    const follow = new WebSocket(`${alto.url.replace('http', 'ws')}/v1/app/FollowLogs`, { headers: { authorization: `Bearer ${key}` } });
    follow.on('message', (data) => followed.push(JSON.parse(data.toString())));
    try {
      await new Promise<void>((resolve, reject) => {
        follow.once('open', () => follow.send(JSON.stringify({ name: 'talker', grep: 'follow-line', since: '10m' }), (error) => (error ? reject(error) : resolve())));
        follow.once('error', reject);
      });
      await eventually(async () => followed.length >= 1, 'the line on disk on the followed stream');
      await say('follow-line-2');
      await eventually(async () => followed.length >= 2, 'the new line on the followed stream');
      await say('follow-line-3');
      await eventually(async () => followed.length >= 3, 'another new line on the followed stream');
      assert.deepEqual(followed.map((line) => line.line), ['follow-line-1', 'follow-line-2', 'follow-line-3']);
    } finally {
      follow.close();
    }
  });

  test('bad filters are answered 400 naming the field', async () => {
    const longGrep = await call('Logs', { name: 'talker', grep: 'x'.repeat(257) });
    assert.equal(longGrep.status, 400);
    assert.match(JSON.stringify(longGrep.body), /grep/);
    const since = await call('Logs', { name: 'talker', since: 'yesterday' });
    assert.equal(since.status, 400);
    assert.match(since.body.detail, /^since: "yesterday" is neither an RFC 3339 time/);
    const until = await call('Logs', { name: 'talker', until: '2026-13-45' });
    assert.equal(until.status, 400);
    assert.match(JSON.stringify(until.body), /until/);
    const limit = await call('Logs', { name: 'talker', limit: 1_000_000 });
    assert.equal(limit.status, 400);
    assert.match(JSON.stringify(limit.body), /limit/);
    const cli = await runCli(['logs', 'talker', '--since', 'soon', '--url', alto.url, '--key', key]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /since/);
  });

  test('a flood is throttled with a counted marker, Alto\'s memory stays bounded, and rotation keeps the folder under its cap', async (t) => {
    const before = residentBytes(alto.child.pid!);
    assert.equal((await get('/cgi-bin/flood')).status, 200);
    await eventually(async () => (await logs({ grep: 'flood done' })).length > 0, 'the end of the flood', 120_000);
    const markers = await logs({ stream: 'system', grep: 'lines dropped]', lines: 5_000 });
    const dropped = markers.reduce((sum, line) => sum + Number(/^\[… (\d+) lines? dropped\]$/.exec(line.line)![1]), 0);
    assert.ok(dropped > 0 && dropped < FLOOD_LINES, `${dropped} lines dropped`);
    // About 600 MiB went through; what Alto kept of it is bounded by its rings, buffers and the
    // rate. The garbage the flood leaves until V8 collects it moves the figure, not the flood's size.
    const grown = residentBytes(alto.child.pid!) - before;
    t.diagnostic(`Alto's resident memory grew by ${Math.round(grown / 1024 ** 2)} MiB while about ${Math.round(FLOOD_LINES / 1024)} MiB of output went through`);
    assert.ok(grown < MAX_GROWTH_BYTES, `Alto grew by ${Math.round(grown / 1024 ** 2)} MiB`);
    assert.ok(folderBytes(logDir()) <= MAX_BYTES, `${folderBytes(logDir())} bytes in the log folder`);
    assert.ok(readdirSync(logDir()).length > 1, 'the log rotated into several segments');
    // The newest lines are kept, the oldest pruned.
    const kept = await logs({ grep: 'flood ', stream: 'stdout', lines: 5_000 });
    assert.ok(kept.length > 0 && kept.length < FLOOD_LINES - dropped + 1);
  });

  test('the lines outlast a restart of Alto', async () => {
    await say('delta-line');
    const beforeRestart = await logs({ grep: 'delta-line' });
    assert.equal(beforeRestart.length, 1);
    assert.equal(await alto.stop('SIGTERM'), 0);
    alto = await start();
    await eventually(async () => (await call('Status', { name: 'talker' })).body.service?.status === 'running', 'the app after the restart', 60_000);
    assert.deepEqual(await logs({ grep: 'delta-line' }), beforeRestart);
    // New lines go on after the old ones.
    const gamma = await say('gamma-line');
    assert.ok(Date.parse(gamma.at) > Date.parse(beforeRestart[0]!.at));
  });

  test("the project's log_days and log_bytes delete what they no longer allow, the oldest first across its apps", async () => {
    const projectOf = async () => {
      const listed = await alto.call('projects', 'List', {});
      return (listed.body.projects as { name: string; log_days: number; log_bytes: number }[]).find((project) => project.name === PROJECT)!;
    };
    assert.deepEqual({ days: (await projectOf()).log_days, bytes: (await projectOf()).log_bytes }, { days: 7, bytes: 256 * 1024 ** 2 });
    // Out of bounds: 400s naming the field; nothing changes.
    for (const [change, pattern] of [
      [{ log_days: 0 }, /log_days/],
      [{ log_days: 31 }, /log_days: this instance keeps apps' logs at most 30 days/],
      [{ log_bytes: 1000 }, /log_bytes: must be at least 262144/],
      [{ log_bytes: 2 * 1024 ** 3 }, /log_bytes: this instance keeps at most/],
      [{ log_days: 1.5 }, /log_days/],
    ] as const) {
      const refused = await alto.call('projects', 'Update', { name: PROJECT, ...change });
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.match(JSON.stringify(refused.body), pattern);
    }
    assert.equal((await projectOf()).log_days, 7);

    // Age: lines of three days ago (a segment as Alto writes it) go when the project keeps 2 days.
    const threeDaysAgo = Date.now() - 3 * 86_400_000;
    const old = [0, 1, 2].map((index) => JSON.stringify({ time: new Date(threeDaysAgo + index).toISOString(), stream: 'stdout', instance: 'i0', node: 'n', version: 1, text: `ancient-line ${index}` })).join('\n');
    writeFileSync(join(logDir(), `${String(threeDaysAgo).padStart(13, '0')}.jsonl`), `${old}\n`);
    assert.equal((await logs({ grep: 'ancient-line', since: '7d' })).length, 3);
    const kept = await say('recent-line');
    const updated = await alto.call('projects', 'Update', { name: PROJECT, log_days: 2 });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.equal(updated.body.project.log_days, 2);
    await eventually(async () => (await logs({ grep: 'ancient-line', since: '7d' })).length === 0, 'the lines past 2 days gone');
    assert.deepEqual((await logs({ grep: 'recent-line' })).map((line) => line.line), [kept.line]);

    // Bytes: a second app floods too; together the two folders pass 256 KiB, and log_bytes of
    // 256 KiB leaves only the newest segments of both, the older app's flood going first.
    const second = await call('Run', { name: 'talker2', image: `${registry.host}/demo/talker:v1`, port: 8080 });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    const secondDir = join(dataDir, 'logs', 'apps', second.body.service.id);
    await getThroughEdge(Number(new URL(alto.url).port), `talker2.${PROJECT}.localhost`, '/cgi-bin/flood');
    await eventually(async () => existsSync(secondDir) && folderBytes(secondDir) > 128 * 1024, "the second app's flood on disk", 120_000);
    const firstBytes = folderBytes(logDir());
    assert.ok(firstBytes + folderBytes(secondDir) > 256 * 1024, `${firstBytes} + ${folderBytes(secondDir)} bytes before`);
    const oldestOfFirst = readdirSync(logDir()).sort()[0]!;
    const bytes = await alto.call('projects', 'Update', { name: PROJECT, log_bytes: 256 * 1024 });
    assert.equal(bytes.status, 200, JSON.stringify(bytes.body));
    assert.equal(bytes.body.project.log_bytes, 256 * 1024);
    await eventually(async () => folderBytes(logDir()) + folderBytes(secondDir) <= 256 * 1024, 'both apps within the project\'s 256 KiB');
    assert.ok(!existsSync(join(logDir(), oldestOfFirst)), "the older app's oldest segment went");
    const secondLines = await call('Logs', { name: 'talker2', grep: 'flood ', limit: 5 });
    assert.equal(secondLines.status, 200);
    assert.ok((secondLines.body.lines as unknown[]).length > 0, "the second app's newest lines are kept");
    // null returns to the node's defaults.
    const reset = await alto.call('projects', 'Update', { name: PROJECT, log_days: null, log_bytes: null });
    assert.deepEqual({ days: reset.body.project.log_days, bytes: reset.body.project.log_bytes }, { days: 7, bytes: 256 * 1024 ** 2 });
    assert.equal((await call('Delete', { name: 'talker2' })).status, 200);
  });

  test('deleting the app deletes its log', async () => {
    assert.ok(existsSync(logDir()));
    assert.equal((await call('Delete', { name: 'talker' })).status, 200);
    assert.equal(existsSync(logDir()), false);
  });
});
