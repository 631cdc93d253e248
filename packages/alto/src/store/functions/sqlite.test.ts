/**
 * The SQLite adapter opens a data folder written before the functions had a port: the same
 * table and migration bookkeeping, so its functions are there, with no source archive.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { migrate, openSqlite } from '../sqlite/database.js';
import { SqliteFunctionStore } from './sqlite.js';

test('a data folder of before the port keeps its functions', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alto-functions-old-'));
  const db = openSqlite(join(dir, 'alto.db'));
  try {
    // The three migrations the functions manager applied itself, under its module name.
    migrate(db, 'compute.functions', [
      `CREATE TABLE functions (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, runtime TEXT NOT NULL,
         entrypoint TEXT NOT NULL, source_kind TEXT NOT NULL, source TEXT NOT NULL, repo TEXT NOT NULL, branch TEXT NOT NULL,
         subfolder TEXT NOT NULL, env_vars TEXT NOT NULL, image TEXT NOT NULL, build_log TEXT NOT NULL, created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL, UNIQUE (project_id, name));`,
      `ALTER TABLE functions ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
       ALTER TABLE functions ADD COLUMN key_secret TEXT NOT NULL DEFAULT '';
       ALTER TABLE functions ADD COLUMN environment TEXT NOT NULL DEFAULT '';`,
      `ALTER TABLE functions ADD COLUMN secret_names TEXT NOT NULL DEFAULT '[]';`,
    ]);
    db.prepare(
      `INSERT INTO functions (id, project_id, name, runtime, entrypoint, source_kind, source, repo, branch, subfolder, env_vars, image, build_log,
         created_at, updated_at, key_id, key_secret, environment)
       VALUES ('f1', 'p1', 'old', 'nodejs', '', 'inline', 'export default 1', '', '', '', '{"A":"b"}', 'img@sha256:1', 'log', 5, 6, 'k1', 'plain', 'dev')`,
    ).run();
    // One deployed without an environment: the default one once functions belong to environments.
    db.prepare(
      `INSERT INTO functions (id, project_id, name, runtime, entrypoint, source_kind, source, repo, branch, subfolder, env_vars, image, build_log,
         created_at, updated_at, key_id, key_secret, environment)
       VALUES ('f2', 'p1', 'older', 'nodejs', '', 'inline', 'export default 2', '', '', '', '{}', 'img@sha256:2', '', 5, 6, '', '', '')`,
    ).run();

    const store = new SqliteFunctionStore(db);
    assert.equal((await store.find('p1', 'dev', 'older'))?.id, 'f2');
    assert.deepEqual(await store.find('p1', 'dev', 'old'), {
      id: 'f1',
      projectId: 'p1',
      name: 'old',
      runtime: 'nodejs',
      entrypoint: '',
      sourceKind: 'inline',
      source: 'export default 1',
      repo: '',
      branch: '',
      subfolder: '',
      envVars: { A: 'b' },
      image: 'img@sha256:1',
      buildLog: 'log',
      keyId: 'k1',
      keySecret: 'plain',
      environment: 'dev',
      secrets: [],
      sourceArchive: '',
      createdAt: 5,
      updatedAt: 6,
    });
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
