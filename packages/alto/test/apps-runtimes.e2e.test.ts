/**
 * Real runtimes as apps, unchanged, on both sandbox drivers (the process sandbox, then microVMs,
 * under tcg on these machines): a Node.js HTTP app (the host's own
 * node packed as an OCI image) reached through the edge, streaming responses passing through
 * as they are written, X-Forwarded-* set; and Debian's redis-server packed as an image, reached
 * with ioredis through its TCP port on the edge, its data on a volume kept across a redeploy.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { nodeAppImage, redisImage } from './app-images.js';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';

const PROJECT = 'runtimes';

for (const driver of ['process', 'microvm'] as const) describe(`Node.js and Redis images as apps (${driver})`, () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let edgePort: number;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const call = (endpoint: string, body: unknown) => alto.call('app', endpoint, body, key);

  before(async () => {
    registry = await startRegistry();
    const [node, redis] = await Promise.all([nodeAppImage(), redisImage()]);
    await Promise.all([registry.push('runtimes/node', 'v1', node), registry.push('runtimes/redis', 'v1', redis)]);
    alto = await startProcess({ dataDir, args: ['--sandbox', driver], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    edgePort = Number(new URL(alto.url).port);
    key = await alto.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a Node.js app answers through the edge; streams pass through as written; X-Forwarded-* are set', async () => {
    const run = await call('Run', { name: 'node', image: `${registry.host}/runtimes/node:v1`, env_vars: { GREETING: 'bonjour' }, memory: 256 });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.equal(run.body.service.instances[0].driver, driver);
    const host = `node.${PROJECT}.localhost:${edgePort}`;
    const hello = await getThroughEdge(edgePort, host);
    assert.equal(hello.status, 200);
    assert.equal(hello.body, 'bonjour from node\n');

    const headers = JSON.parse((await getThroughEdge(edgePort, host, '/headers')).body);
    assert.equal(headers['x-forwarded-host'], host);
    assert.equal(headers['x-forwarded-proto'], 'http');
    assert.match(headers['x-forwarded-for'], /127\.0\.0\.1/);

    // The first chunk arrives long before the last one is written.
    const chunks = await new Promise<{ text: string; at: number }[]>((resolve, reject) => {
      const received: { text: string; at: number }[] = [];
      const request = httpRequest({ host: '127.0.0.1', port: edgePort, path: '/stream?count=4&interval=400', headers: { host }, agent: false }, (response) => {
        response.on('data', (chunk: Buffer) => received.push({ text: chunk.toString(), at: Date.now() }));
        response.on('end', () => resolve(received));
        response.on('error', reject);
      });
      request.on('error', reject);
      request.end();
    });
    const text = chunks.map((chunk) => chunk.text).join('');
    assert.equal(text, 'chunk 0\nchunk 1\nchunk 2\nchunk 3\ndone\n');
    assert.ok(chunks.length >= 3, `the stream came in ${chunks.length} pieces`);
    assert.ok(chunks[0].text.startsWith('chunk 0') && !chunks[0].text.includes('done'), 'the first piece held the whole stream');

    const logs = (await call('Logs', { name: 'node' })).body.logs as string;
    assert.match(logs, /listening on 8080/);
  });

  test('a cron job calls the app by name (app://node/hook) with a signed body', async () => {
    const cronKey = await alto.projectKey(PROJECT, ['cron']);
    const missing = await alto.call('cron', 'Schedule', { name: 'x', interval: '* * * * *', callback: 'app://nope/hook' }, cronKey);
    assert.equal(missing.status, 400);
    assert.match(missing.body.detail, /no app "nope" in this project/);
    const elsewhere = await alto.projectKey('another-project', ['cron']);
    const notTheirs = await alto.call('cron', 'Schedule', { name: 'x', interval: '* * * * *', callback: 'app://node/hook' }, elsewhere);
    assert.equal(notTheirs.status, 400, 'another project cannot target this project\'s app');

    const scheduled = await alto.call('cron', 'Schedule', { id: 'tick', name: 'tick', interval: '*/1 * * * * *', callback: 'app://node/hook?from=cron' }, cronKey);
    assert.equal(scheduled.status, 200, JSON.stringify(scheduled.body));
    assert.equal(scheduled.body.job.callback, 'app://node/hook?from=cron');
    await eventually(async () => {
      const logs = (await call('Logs', { name: 'node', lines: 200 })).body.logs as string;
      return new RegExp(`hook host=node\\.${PROJECT}\\.localhost:${edgePort} signed=yes \\{"id":"tick","name":"tick"`).test(logs);
    }, 'the cron callback in the app\'s log');
    await eventually(async () => {
      const jobs = await alto.call('cron', 'Jobs', {}, cronKey);
      return jobs.body.jobs[0].runs.some((run: { status: string }) => run.status === 'succeeded');
    }, 'a succeeded run in Jobs');
    assert.equal((await alto.call('cron', 'Delete', { id: 'tick' }, cronKey)).status, 200);
  });

  test('Redis through its TCP port on the edge; its volume keeps the data across a redeploy', async () => {
    const run = await call('Run', {
      name: 'cache',
      image: `${registry.host}/runtimes/redis:v1`,
      tcp: 6379,
      volumes: [{ name: 'data', path: '/data' }],
    });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const service = run.body.service;
    assert.equal(service.tcp, 6379);
    assert.ok(service.tcp_port > 0, JSON.stringify(service));
    // An HTTP request for a TCP app is refused with the port to use.
    const http = await getThroughEdge(edgePort, `cache.${PROJECT}.localhost`);
    assert.equal(http.status, 404);
    assert.match(http.body, new RegExp(`port ${service.tcp_port}`));

    const first = new Redis({ host: '127.0.0.1', port: service.tcp_port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await first.connect();
      assert.equal(await first.set('greeting', 'kept across redeploys'), 'OK');
      assert.equal(await first.incr('visits'), 1);
    } finally {
      first.disconnect();
    }

    // A redeploy (new settings, so a new version): the volume goes with the app.
    const update = await call('Update', { name: 'cache', env_vars: { REDEPLOYED: '1' } });
    assert.equal(update.status, 200, JSON.stringify(update.body));
    assert.equal(update.body.service.version, 2);
    assert.equal(update.body.service.tcp_port, service.tcp_port);

    const second = new Redis({ host: '127.0.0.1', port: service.tcp_port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await eventually(async () => {
        await second.connect().catch(() => undefined);
        return (await second.ping()) === 'PONG';
      }, 'redis after the redeploy');
      assert.equal(await second.get('greeting'), 'kept across redeploys');
      assert.equal(await second.incr('visits'), 2);
    } finally {
      second.disconnect();
    }
    const logs = (await call('Logs', { name: 'cache', lines: 1000 })).body.logs as string;
    assert.match(logs, /stopping version 1 before version 2 starts \(the app has volumes\)/);
  });
});
