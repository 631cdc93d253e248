/**
 * The edge's port with stand-in records and runtimes: an address no node runs is a 404, one
 * another node runs a 503 naming that node; HTTP to a TCP app (and the reverse) is a 404; an
 * instance the runtime has room on at once is handed out in a settled promise, and `release()`
 * frees its room once however often it is called; one that must wait is awaited, and none
 * ready is a 503 with Retry-After. (Admission and counting, and the app's waiting room:
 * runtime.test.ts; the whole wake path with real drivers: test/serverless*.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { UNOWNED } from '../../store/apps/port.js';
import { addressKeyOf, addressOfApp, AppsGateway } from './gateway.js';
import type { AppRecord, AppRecords } from './records.js';
import type { AppRuntime, InstanceSlot } from './runtime.js';

function appOf(name: string, node: string, settings: Partial<AppRecord['settings']> = {}): AppRecord {
  return { id: `id-${name}`, name, projectId: 'p1', projectName: 'shop', environment: 'dev', node, settings: { tcp: 0, concurrency: 2, max_instances: 1, ...settings } } as AppRecord;
}

function gatewayOf(here: AppRecord[], elsewhere: AppRecord[], runtimes: Map<string, AppRuntime>): AppsGateway {
  const records = {
    hereByAddress: (project: string, name: string, environment = 'dev') => here.find((app) => app.projectName === project && app.name === name && app.environment === environment),
    findByAddress: async (project: string, name: string, environment = 'dev') =>
      [...here, ...elsewhere].find((app) => app.projectName === project && app.name === name && app.environment === environment),
  } as unknown as AppRecords;
  return new AppsGateway({ node: 'node-a', appsDomain: 'localhost', records, runtimes, edgePort: () => 4000, closing: () => false });
}

const failsWith = (status: number, pattern: RegExp) => (error: unknown) => isAltoError(error) && error.status === status && pattern.test(error.detail);

test('an address no node runs is a 404; one another node runs (or none yet) is a 503 naming it', async () => {
  const gateway = gatewayOf([], [appOf('web', 'node-b'), appOf('api', UNOWNED)], new Map());
  await assert.rejects(gateway.acquire({ app: 'nope', project: 'shop' }, 'http'), failsWith(404, /no app "nope"/));
  await assert.rejects(gateway.acquire({ app: 'web', project: 'shop' }, 'http'), failsWith(503, /runs on node node-b, not on this node \(node-a\)/));
  await assert.rejects(gateway.acquire({ app: 'api', project: 'shop' }, 'http'), failsWith(503, /no node runs app "api" yet/));
  assert.equal(gateway.appUrl({ name: 'web', projectName: 'shop' }), 'http://web.shop.localhost:4000');
});

test('an app of another environment has the environment in its address and URL; the default one has none', async () => {
  const gateway = gatewayOf([], [{ ...appOf('web', 'node-b'), id: 'id-web-staging', environment: 'staging' }], new Map());
  await assert.rejects(gateway.acquire({ app: 'web', project: 'shop', environment: 'staging' }, 'http'), failsWith(503, /runs on node node-b/));
  await assert.rejects(gateway.acquire({ app: 'web', project: 'shop' }, 'http'), failsWith(404, /no app "web" in project "shop"/), 'the default environment has no app "web"');
  await assert.rejects(gateway.acquire({ app: 'web', project: 'shop', environment: 'prod' }, 'http'), failsWith(404, /no app "web" in environment "prod" of project "shop"/));
  assert.equal(gateway.appUrl({ name: 'web', projectName: 'shop', environment: 'staging' }), 'http://web.staging.shop.localhost:4000');
  assert.equal(gateway.appUrl({ name: 'web', projectName: 'shop', environment: 'dev' }), 'http://web.shop.localhost:4000');
  assert.deepEqual(addressOfApp({ name: 'web', projectName: 'shop', environment: 'staging' }), { app: 'web', project: 'shop', environment: 'staging' });
  assert.deepEqual(addressOfApp({ name: 'web', projectName: 'shop', environment: 'dev' }), { app: 'web', project: 'shop' });
  assert.notEqual(addressKeyOf({ app: 'web', project: 'shop', environment: 'staging' }), addressKeyOf({ app: 'web', project: 'shop' }));
});

test('a ready instance is acquired at once, in a settled promise, its room freed once', async () => {
  const app = appOf('web', 'node-a');
  let released = 0;
  let freed = 0;
  const instance = { id: 'i1', host: '10.0.0.2', port: 8080, connect: async () => undefined };
  const slot = { instance, release: () => (released += 1) } as unknown as InstanceSlot;
  let acquired = 0;
  const runtime = { app, tcp: {}, acquire: () => ((acquired += 1), slot), capacityFreed: () => (freed += 1) } as unknown as AppRuntime;
  const gateway = gatewayOf([app], [], new Map([[app.id, runtime]]));
  await assert.rejects(gateway.acquire({ app: 'web', project: 'shop' }, 'tcp'), failsWith(404, /has no TCP port/));
  const pending = gateway.acquire({ app: 'web', project: 'shop' }, 'http');
  // Settled already: the next microtask sees the target.
  let seen: unknown;
  void pending.then((target) => (seen = target));
  await Promise.resolve();
  assert.ok(seen, 'the target is there in the turn it was asked for');
  const target = await pending;
  assert.deepEqual([target.host, target.port, acquired], ['10.0.0.2', 8080, 1]);
  target.release();
  target.release();
  assert.deepEqual([released, freed], [1, 1]);
});

test('HTTP to a TCP app is a 404 naming its port; an exchange that waits is awaited, and none ready is a 503', async () => {
  const tcpApp = appOf('db', 'node-a', { tcp: 5432 });
  const idleApp = appOf('web', 'node-a');
  const tcpRuntime = { app: tcpApp, tcp: { port: 15432 } } as unknown as AppRuntime;
  let waited = 0;
  const idleRuntime = {
    app: idleApp,
    tcp: {},
    serving: { runningSlots: () => [] },
    acquire: async () => {
      waited += 1;
      return undefined;
    },
  } as unknown as AppRuntime;
  const gateway = gatewayOf([tcpApp, idleApp], [], new Map([[tcpApp.id, tcpRuntime], [idleApp.id, idleRuntime]]));
  await assert.rejects(gateway.acquire({ app: 'db', project: 'shop' }, 'http'), failsWith(404, /speaks TCP, not HTTP: connect to port 15432/));
  await assert.rejects(gateway.acquire({ app: 'web', project: 'shop' }, 'http'), (error) => failsWith(503, /has no instance ready/)(error) && isAltoError(error) && error.headers?.['retry-after'] === '2');
  assert.equal(waited, 1);
});
