/**
 * Settings and specs with stand-in records, placement and gateway: what a request leaves out
 * takes its default (or, on update, stays), settings that contradict each other or the image are
 * a 400 saying which, a hidden value is not kept among env_vars too, and an app never links to
 * itself; the spec puts the app's env over the image's with PORT and a PATH, mounts volumes from
 * the data folder, names the platform's port, and links reach the linked app through the edge's
 * port (404 while it does not exist, another node's answer when it runs there). A driver without
 * outbound access refuses `outbound: true` before anything starts. (Real sandboxes: test/apps*.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { errors, isAltoError } from '../../kit/errors.js';
import type { ImageSpec } from '../images/spec.js';
import type { SandboxDriver } from '../sandbox/index.js';
import type { AppsGateway } from './gateway.js';
import type { Placement } from './placement.js';
import type { AppRecord, AppRecords, AppSettings } from './records.js';
import { APP_DEFAULTS, AppSpecs, assertLinks, settingsOf } from './spec.js';

const dataDir = mkdtempSync(join(tmpdir(), 'alto-spec-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

function imageOf(spec: Partial<ImageSpec> = {}): ImageSpec {
  return { os: 'linux', architecture: 'amd64', entrypoint: [], cmd: ['serve'], env: {}, workingDir: '/', user: '', exposedPorts: [], volumes: [], labels: {}, ...spec };
}

const badRequest = (pattern: RegExp) => (error: unknown) => isAltoError(error) && error.status === 400 && pattern.test(error.detail);

test('what a request leaves out takes its default; an update keeps what it had and adds env_vars', () => {
  const settings = settingsOf({}, undefined, imageOf());
  assert.deepEqual(
    [settings.port, settings.memory, settings.cpus, settings.min_instances, settings.max_instances, settings.concurrency, settings.idle_timeout, settings.pool],
    [APP_DEFAULTS.port, APP_DEFAULTS.memory, APP_DEFAULTS.cpus, APP_DEFAULTS.min_instances, APP_DEFAULTS.max_instances, APP_DEFAULTS.concurrency, APP_DEFAULTS.idle_timeout, APP_DEFAULTS.pool],
  );
  assert.deepEqual([settings.tcp, settings.outbound, settings.links, settings.volumes], [0, false, [], []]);
  assert.equal(settingsOf({}, undefined, imageOf({ exposedPorts: [{ port: 3000, protocol: 'tcp' }] })).port, 3000, "the image's exposed port");
  assert.equal(settingsOf({ tcp: 6379 }, undefined, imageOf()).port, 6379, 'a TCP app serves on its tcp port');
  assert.equal(settingsOf({ min_instances: 3, pool: 2 }, undefined, imageOf()).max_instances, 5, 'max_instances holds min_instances and the pool');
  const updated = settingsOf({ env_vars: { B: '2' }, memory: 512 }, { ...settings, env_vars: { A: '1' } }, imageOf());
  assert.deepEqual([updated.env_vars, updated.memory, updated.port], [{ A: '1', B: '2' }, 512, settings.port]);
});

test('settings that contradict each other are a 400 saying which; a hidden value is not kept among env_vars', () => {
  assert.throws(() => settingsOf({ port: 80, tcp: 5432 }, undefined, imageOf()), badRequest(/port 80 and tcp 5432 differ/));
  assert.throws(() => settingsOf({ min_instances: 3, max_instances: 2 }, undefined, imageOf()), badRequest(/max_instances 2 is below min_instances 3/));
  assert.throws(() => settingsOf({ max_instances: 2, pool: 2 }, undefined, imageOf()), badRequest(/pool 2 does not fit/));
  assert.throws(() => settingsOf({ min_instances: 2, max_instances: 2, volumes: [{ name: 'data', path: '/data' }] } as Partial<AppSettings>, undefined, imageOf()), badRequest(/set min_instances to 1/));
  const hidden = settingsOf({ env_vars: { KEY: 'k', SHOWN: 's' }, hidden_env: { env: { KEY: 'k' } } } as Partial<AppSettings>, undefined, imageOf());
  assert.deepEqual(hidden.env_vars, { SHOWN: 's' });
  assert.equal(settingsOf({ hidden_env: { env: {} } } as Partial<AppSettings>, undefined, imageOf()).hidden_env, undefined, 'an emptied hidden env is dropped');
  assert.throws(() => assertLinks('web', ['db', 'web']), badRequest(/cannot link to itself/));
  assertLinks('web', ['db']);
});

function appOf(name: string, settings: Partial<AppSettings> = {}): AppRecord {
  return { id: `id-${name}`, name, projectId: 'p1', projectName: 'shop', version: 1, settings: { ...settingsOf({}, undefined, imageOf()), ...settings } } as AppRecord;
}

function specsOf(here: AppRecord[], elsewhere: AppRecord[] = [], outbound = true): { specs: AppSpecs; acquired: string[] } {
  const acquired: string[] = [];
  const records = {
    hereByName: (projectId: string, name: string) => here.find((app) => app.projectId === projectId && app.name === name),
    findByName: async (projectId: string, name: string) => [...here, ...elsewhere].find((app) => app.projectId === projectId && app.name === name),
  } as unknown as AppRecords;
  const gateway = {
    acquire: async (address: { app: string }, kind: string) => {
      acquired.push(`${address.app} ${kind}`);
      return { host: '10.0.0.9', port: 1, connect: async () => undefined, release: () => undefined };
    },
    runElsewhere: (app: AppRecord) => errors.unavailable(`app "${app.name}" runs on node b`),
  } as unknown as AppsGateway;
  const placement = { place: async () => ({ describe: async () => ({ driver: 'process', capabilities: { outbound } }) }) as unknown as SandboxDriver } as unknown as Placement;
  return { specs: new AppSpecs({ dataDir, records, placement, gateway, platformPort: () => 4000 }), acquired };
}

test("the spec: the app's env over the image's with PORT and a PATH, volumes from the data folder, the platform's port", () => {
  const { specs } = specsOf([]);
  const app = appOf('web', { env_vars: { MODE: 'app' }, hidden_env: { env: { KEY: 'k' } }, volumes: [{ name: 'data', path: '/data' }] } as Partial<AppSettings>);
  const spec = specs.specOf(app, imageOf({ env: { MODE: 'image', LANG: 'C' } }), '/rootfs') as ReturnType<AppSpecs['specOf']> & { volumes?: { dir: string; path: string }[] };
  assert.deepEqual(spec.env, { MODE: 'app', LANG: 'C', KEY: 'k', PORT: '8080', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' });
  assert.deepEqual([spec.rootfs, spec.cmd, spec.port, spec.memoryMiB, spec.tenant, spec.platform], ['/rootfs', ['serve'], 8080, 256, 'p1', { port: 4000 }]);
  assert.deepEqual(spec.volumes, [{ dir: join(dataDir, 'apps', 'volumes', 'p1', 'web', 'data'), path: '/data' }]);
  assert.ok(existsSync(spec.volumes![0].dir), 'the volume folder is made');
  assert.equal(specs.volumesOf(app), join(dataDir, 'apps', 'volumes', 'p1', 'web'));
});

test("links reach the linked app through the edge's port: its own port, a 404 while missing, another node's answer", async () => {
  const db = appOf('db', { tcp: 5432, port: 5432 });
  const { specs, acquired } = specsOf([db], [appOf('cache')]);
  const spec = specs.specOf(appOf('web', { links: ['db', 'cache', 'later'] }), imageOf(), '/rootfs');
  assert.deepEqual(spec.links?.map((link) => [link.name, link.port]), [['db', 5432], ['cache', 80], ['later', 80]]);
  await spec.links![0].connect();
  assert.deepEqual(acquired, ['db tcp']);
  await assert.rejects(spec.links![1].connect(), (error) => isAltoError(error) && error.status === 503 && /runs on node b/.test(error.detail));
  await assert.rejects(spec.links![2].connect(), (error) => isAltoError(error) && error.status === 404 && /linked from "web"/.test(error.detail));
});

test('outbound: true on a driver without it is refused before anything starts; false asks no driver', async () => {
  const { specs } = specsOf([], [], false);
  await specs.assertDriverSupports({ projectId: 'p1', app: 'web', version: 1 }, { outbound: false });
  await assert.rejects(specs.assertDriverSupports({ projectId: 'p1', app: 'web', version: 1 }, { outbound: true }), badRequest(/outbound: true is not available here: the process sandbox/));
});
