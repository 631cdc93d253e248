/**
 * The SQLite adapter on a data folder from before apps had nodes (and environments): its apps
 * come back as they were, with no node, in the default environment, until a node adopts them;
 * their instances and snapshots stay theirs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migrate, openSqlite } from '../sqlite/database.js';
import { UNOWNED } from './port.js';
import { MIGRATIONS, SqliteAppStore } from './sqlite.js';

test('apps recorded before nodes are kept, unowned, and adopted by the first node that asks', async () => {
  const db = openSqlite(':memory:');
  migrate(db, 'apps', MIGRATIONS.slice(0, 2));
  db.prepare(`INSERT INTO apps (id, project_id, project_name, name, image, digest, settings, version, status, error, tcp_port, created_at, updated_at)
    VALUES ('a1', 'p1', 'shop', 'web', 'web:v1', 'sha256:1', '{"port":8080}', 3, 'running', NULL, 40001, 10, 20)`).run();
  db.prepare("INSERT INTO app_instances (id, app_id, version, state, driver, started_at) VALUES ('i1', 'a1', 3, 'running', 'process', 15)").run();
  db.prepare("INSERT INTO app_snapshots (app_id, version, slot, dir, created_at) VALUES ('a1', 3, 0, '/data/s', 16)").run();

  const store = new SqliteAppStore(db);
  assert.deepEqual(await store.get('a1'), {
    id: 'a1',
    projectId: 'p1',
    projectName: 'shop',
    environment: 'dev',
    name: 'web',
    node: UNOWNED,
    image: 'web:v1',
    digest: 'sha256:1',
    settings: '{"port":8080}',
    version: 3,
    status: 'running',
    tcpPort: 40001,
    createdAt: 10,
    updatedAt: 20,
  });
  assert.deepEqual(await store.listOfNode('node-1'), []);
  assert.equal(await store.adoptUnowned('node-1'), 1);
  assert.deepEqual((await store.listOfNode('node-1')).map((app) => app.id), ['a1']);
  await store.endOpenInstances('node-1', 'Alto stopped', 30);
  assert.equal((await store.instancesOf('a1', 10))[0].state, 'exited');
  assert.equal((await store.snapshotsOf('a1'))[0].dir, '/data/s');
  assert.equal((await store.findByName('p1', 'dev', 'web'))?.id, 'a1', 'apps from before environments are in the default one');
  await store.remove('a1');
  assert.deepEqual(await store.instancesOf('a1', 10), [], 'instances still go with their app');
  db.close();
});
